"""Try bad inputs and faults through the ``geopeft`` command and print what a user sees.

Each case runs one ``geopeft`` command line in this process (as the terminal would
run it: ``geopeft.main.main``) on small generated data, and is judged by what a
user gets: the exit status, the lines on stderr, whether a traceback escaped, the
message naming the problem, and the files on disk (inputs intact, no output
half-written). A case is *handled well* when it ends as expected: an error case
with exit status 1 or 2, one ``error:`` line holding the expected words and no
traceback; a case that should run (with a warning) with status 0 and the warning.

    python scripts/fault_cases.py            # the table, then "N of M handled well"
    python scripts/fault_cases.py --json     # one JSON object

The fault-injection tests (``tests/reliability/``) assert the same outcomes case by
case; kill -9 and a full disk are only there (they need a subprocess or a patched
write).
"""

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

CRS = 'EPSG:32616'


@dataclass
class Case:
    """One bad input or fault and the outcome a user should get."""

    group: str
    name: str
    argv: Callable[[Path], list[str]]
    words: tuple[str, ...]
    expect: str = 'error'  # or 'warning': runs, exit 0, the words in a warning
    intact: Callable[[Path], list[Path]] = field(default=lambda root: [])


def _raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = CRS,
    nodata: float | None = None,
) -> Path:
    """Write *data* (bands, rows, cols) as a tiled GeoTIFF."""
    profile = {
        'driver': 'GTiff',
        'width': data.shape[2],
        'height': data.shape[1],
        'count': data.shape[0],
        'dtype': data.dtype,
        'transform': from_origin(500000.0, 3740000.0, 0.5, 0.5),
        'tiled': True,
        'blockxsize': 16,
        'blockysize': 16,
    }
    if crs is not None:
        profile['crs'] = crs
    if nodata is not None:
        profile['nodata'] = nodata
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # rasterio's "not georeferenced"
        with rasterio.open(path, 'w', **profile) as dst:
            dst.write(data)
    return path


def make_data(root: Path) -> None:
    """The generated scenes, labels, checkpoints and files every case uses."""
    rng = np.random.default_rng(0)
    size = 128
    classes = np.kron(rng.integers(0, 2, (size // 16, size // 16)), np.ones((16, 16)))
    image = (1000 * (classes + 1) + rng.integers(0, 200, (3, size, size))).astype(
        'uint16'
    )
    _raster(root / 'image.tif', image)
    _raster(root / 'mask.tif', classes[None].astype('uint8'))
    _raster(root / 'mask255.tif', (255 * classes[None]).astype('uint8'))
    _raster(root / 'mask5.tif', (5 * classes[None]).astype('uint8'))
    _raster(root / 'image4.tif', np.concatenate([image, image[:1]]))
    nan = image.astype('float32')
    nan[:, ::2] = np.nan  # every other row: unmasked NaN nodata
    _raster(root / 'image_nan.tif', nan)
    _raster(root / 'image_nocrs.tif', image.astype('uint8'), crs=None)
    _raster(root / 'small.tif', image[:, :24, :24])
    _raster(root / 'image_other_crs.tif', image, crs='EPSG:4326')
    (root / 'garbage.tif').write_bytes(b'this is not a GeoTIFF\n' * 50)
    data = (root / 'image.tif').read_bytes()
    (root / 'truncated.tif').write_bytes(data[: len(data) // 3])
    empty = {'type': 'FeatureCollection', 'features': []}
    (root / 'empty.geojson').write_text(json.dumps(empty))
    box = [[500010.0, 3739990.0], [500030.0, 3739990.0], [500030.0, 3739970.0]]
    feature = {
        'type': 'Feature',
        'properties': {'kind': 1},
        'geometry': {'type': 'Polygon', 'coordinates': [[*box, box[0]]]},
    }
    collection = {
        'type': 'FeatureCollection',
        'crs': {'type': 'name', 'properties': {'name': 'urn:ogc:def:crs:EPSG::32616'}},
        'features': [feature],
    }
    (root / 'labels.geojson').write_text(json.dumps(collection))
    _checkpoints(root)
    (root / 'foreign').mkdir()
    (root / 'foreign' / 'notes.txt').write_text('a file of the user')
    (root / 'empty_src').mkdir()
    _change_folder(root / 'pairs', 3)


def _checkpoints(root: Path) -> None:
    """A tiny untrained segmentation checkpoint and damaged copies of it."""
    from lightning.pytorch import Trainer

    from geopeft.tasks import PEFTSemanticSegmentation

    task = PEFTSemanticSegmentation(
        model='unet', backbone='resnet18', weights=None, peft='upetu',
        in_channels=3, num_classes=2,
        decoder_kwargs={'decoder_channels': [16, 8, 8, 8, 8]},
    )  # fmt: skip
    trainer = Trainer(accelerator='cpu', logger=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(root / 'seg.ckpt')
    data = (root / 'seg.ckpt').read_bytes()
    (root / 'truncated.ckpt').write_bytes(data[: len(data) // 2])
    (root / 'garbage.ckpt').write_bytes(b'\x00garbage' * 1000)
    (root / 'empty.ckpt').write_bytes(b'')
    (root / 'garbage.safetensors').write_bytes(b'{"not": "safetensors"}' * 10)


def _change_folder(root: Path, pairs: int) -> None:
    """A change folder (A/, B/, label/) of *pairs* 32 px PNG pairs."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for sub in ('A', 'B', 'label'):
        (root / sub).mkdir(parents=True)
    for i in range(pairs):
        for sub in ('A', 'B'):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / sub / f'{i}.png')
        label = (rng.random((32, 32)) > 0.8).astype(np.uint8) * 255
        Image.fromarray(label).save(root / 'label' / f'{i}.png')


def _fit(root: Path, **changes: Any) -> list[str]:
    """``geopeft fit`` of a tiny U-Net on the generated scene, with *changes*."""
    model = {
        'model': 'unet', 'backbone': 'resnet18', 'weights': 'null', 'peft': 'upetu',
        'in_channels': '3', 'num_classes': '2',
        'decoder_kwargs': '{decoder_channels: [16, 8, 8, 8, 8]}',
    }  # fmt: skip
    data = {
        'images': str(root / 'image.tif'), 'labels': str(root / 'mask.tif'),
        'batch_size': '2', 'patch_size': '32', 'length': '4',
        'split_fractions': '[0.5, 0.25, 0.25]', 'split_block_size': '32',
        'mean': '[1500.0]', 'std': '[600.0]',
    }  # fmt: skip
    for key, value in changes.items():
        where, name = key.split('__')
        target = model if where == 'model' else data
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    argv = ['fit', '--model', 'PEFTSemanticSegmentation']
    for key, value in model.items():
        argv += [f'--model.init_args.{key}', value]
    argv += ['--data', 'RasterSegmentationDataModule']
    for key, value in data.items():
        argv += [f'--data.init_args.{key}', value]
    argv += [
        '--trainer.accelerator', 'cpu', '--trainer.max_steps', '2',
        '--trainer.limit_val_batches', '1', '--trainer.logger', 'false',
        '--trainer.enable_progress_bar', 'false', '--trainer.enable_model_summary',
        'false', '--trainer.enable_checkpointing', 'false',
        '--trainer.default_root_dir', str(root / 'fit'),
    ]  # fmt: skip
    return argv


def _predict(
    root: Path, scene: str, out: str, *extra: str, std: str = '600'
) -> list[str]:
    """``geopeft predict-raster`` with the tiny checkpoint (or *extra*'s)."""
    argv = ['predict-raster', str(root / scene), str(root / out)]
    if '--ckpt' not in extra:
        argv += ['--ckpt', str(root / 'seg.ckpt')]
    argv += ['--mean', '1500', '--std', std, '--chip-size', '32', '--overlap', '8']
    argv += ['--no-progress']
    return [*argv, *[str(root / x) if x.endswith('.ckpt') else x for x in extra]]


def _bench(root: Path, *extra: str) -> list[str]:
    """``geopeft bench accuracy`` on the generated 3-pair change folder."""
    argv = ['bench', 'accuracy', '--task', 'change', '--root', str(root / 'pairs')]
    return [
        *argv,
        '--folds',
        '2',
        '--weights',
        'none',
        '--out',
        str(root / 'bench'),
        *extra,
    ]


def _cases() -> list[Case]:
    """The table of bad inputs and faults."""
    fit, predict = 'fit: data and config', 'predict-raster'
    return [
        Case(
            fit,
            'image file missing',
            lambda r: _fit(r, data__images=str(r / 'nope.tif')),
            ('nope.tif',),
        ),
        Case(
            fit,
            'label file missing',
            lambda r: _fit(r, data__labels=str(r / 'nope.tif')),
            ('nope.tif',),
        ),
        Case(
            fit,
            'image is not a GeoTIFF',
            lambda r: _fit(r, data__images=str(r / 'garbage.tif')),
            ('garbage.tif',),
        ),
        Case(
            fit,
            'image truncated',
            lambda r: _fit(r, data__images=str(r / 'truncated.tif')),
            ('truncated.tif',),
        ),
        Case(
            fit,
            '4 bands, model built for 3',
            lambda r: _fit(
                r, data__images=str(r / 'image4.tif'), model__in_channels='3'
            ),
            ('4 band', 'in_channels'),
        ),
        Case(
            fit,
            'std of 0',
            lambda r: _fit(r, data__std='[0.0]'),
            ('std of band 1 is 0',),
        ),
        Case(
            fit,
            'mean is NaN',
            lambda r: _fit(r, data__mean='[.nan]'),
            ('mean of band 1 is nan',),
        ),
        Case(
            fit,
            'one std for 2 of 3 bands',
            lambda r: _fit(r, data__mean='[1.0, 2.0]', data__std='[1.0, 2.0]'),
            ('band',),
        ),
        Case(
            fit,
            'patch larger than the raster',
            lambda r: _fit(
                r, data__images=str(r / 'small.tif'), data__labels=str(r / 'small.tif')
            ),
            ('32',),
        ),
        Case(
            fit,
            'images and labels in different CRS, no overlap',
            lambda r: _fit(r, data__images=str(r / 'image_other_crs.tif')),
            ('overlap',),
        ),
        Case(
            fit,
            'vector labels without features',
            lambda r: _fit(r, data__labels=str(r / 'empty.geojson')),
            ('no features',),
        ),
        Case(
            fit,
            'vector labels: unknown column',
            lambda r: _fit(
                r, data__labels=str(r / 'labels.geojson'), data__label_column='nosuch'
            ),
            ('nosuch',),
        ),
        Case(
            fit,
            'label values outside the classes',
            lambda r: _fit(r, data__labels=str(r / 'mask5.tif')),
            ('mask values [5]', 'num_classes'),
        ),
        Case(
            fit,
            'num_classes missing',
            lambda r: _fit(r, model__num_classes=None),
            ('needs num_classes',),
        ),
        Case(
            fit,
            'unknown PEFT method',
            lambda r: _fit(r, model__peft='nosuch'),
            ('nosuch',),
        ),
        Case(
            fit,
            'unknown backbone',
            lambda r: _fit(r, model__backbone='nosuch_net'),
            ('nosuch_net',),
        ),
        Case(
            fit,
            'unknown decoder',
            lambda r: _fit(r, model__model='nosuch'),
            ('nosuch',),
        ),
        Case(
            fit,
            'garbage adapter file',
            lambda r: _fit(r, model__adapter=str(r / 'garbage.safetensors')),
            ('garbage.safetensors',),
        ),
        Case(
            fit,
            'NaN pixels, no nodata: loss NaN',
            lambda r: _fit(r, data__images=str(r / 'image_nan.tif')),
            ('loss is nan', 'NaN'),
        ),
        Case(
            fit,
            '0/255 mask with ignore_index 255',
            lambda r: _fit(
                r,
                data__labels=str(r / 'mask255.tif'),
                model__ignore_index='255',
                data__ignore_index='255',
                model__num_classes='2',
            ),
            ('ignore_index=255',),
            expect='warning',
        ),
        Case(
            fit,
            'images as a YAML list',
            lambda r: _fit(
                r,
                data__images=f'[{r / "image.tif"}]',
                data__labels=f'[{r / "mask.tif"}]',
            ),
            (),
            expect='warning',
        ),
        Case(
            predict,
            'checkpoint missing',
            lambda r: _predict(r, 'image.tif', 'a.tif', '--ckpt', 'nope.ckpt'),
            ('nope.ckpt',),
        ),
        Case(
            predict,
            'checkpoint truncated',
            lambda r: _predict(r, 'image.tif', 'a.tif', '--ckpt', 'truncated.ckpt'),
            ('truncated.ckpt',),
        ),
        Case(
            predict,
            'checkpoint is garbage',
            lambda r: _predict(r, 'image.tif', 'a.tif', '--ckpt', 'garbage.ckpt'),
            ('garbage.ckpt',),
        ),
        Case(
            predict,
            'checkpoint empty',
            lambda r: _predict(r, 'image.tif', 'a.tif', '--ckpt', 'empty.ckpt'),
            ('empty.ckpt',),
        ),
        Case(
            predict,
            'scene missing',
            lambda r: _predict(r, 'nope.tif', 'a.tif'),
            ('nope.tif',),
        ),
        Case(
            predict,
            'scene is not a GeoTIFF',
            lambda r: _predict(r, 'garbage.tif', 'a.tif'),
            ('garbage.tif',),
        ),
        Case(
            predict,
            'scene truncated',
            lambda r: _predict(r, 'truncated.tif', 'a.tif'),
            ('truncated.tif',),
        ),
        Case(
            predict,
            '4-band scene, 3-band model',
            lambda r: _predict(r, 'image4.tif', 'a.tif'),
            ('4',),
        ),
        Case(
            predict,
            'std of 0',
            lambda r: _predict(r, 'image.tif', 'a.tif', std='0'),
            ('std of band 1 is 0',),
        ),
        Case(
            predict,
            'output is the input, with --overwrite',
            lambda r: _predict(r, 'image.tif', 'image.tif', '--overwrite'),
            ('input',),
            intact=lambda r: [r / 'image.tif'],
        ),
        Case(
            predict,
            'output exists, no --overwrite',
            lambda r: _predict(r, 'image.tif', 'mask.tif'),
            ('--overwrite',),
            intact=lambda r: [r / 'mask.tif'],
        ),
        Case(
            predict,
            'output being written by another run',
            lambda r: _locked(r) or _predict(r, 'image.tif', 'busy.tif'),
            ('pid',),
        ),
        Case(
            predict,
            'scene without a CRS',
            lambda r: _predict(r, 'image_nocrs.tif', 'nocrs.tif'),
            ('no CRS',),
            expect='warning',
        ),
        Case(
            'export-adapter',
            'checkpoint missing',
            lambda r: [
                'export-adapter',
                str(r / 'nope.ckpt'),
                str(r / 'a.safetensors'),
            ],
            ('nope.ckpt',),
        ),
        Case(
            'export-adapter',
            'checkpoint truncated',
            lambda r: [
                'export-adapter',
                str(r / 'truncated.ckpt'),
                str(r / 'a.safetensors'),
            ],
            ('truncated.ckpt',),
        ),
        Case(
            'export-adapter',
            'checkpoint is garbage',
            lambda r: [
                'export-adapter',
                str(r / 'garbage.ckpt'),
                str(r / 'a.safetensors'),
            ],
            ('garbage.ckpt',),
        ),
        Case(
            'prepare l8biome',
            'source folder missing',
            lambda r: ['prepare', 'l8biome', str(r / 'nope'), str(r / 'l8')],
            ('nope',),
        ),
        Case(
            'prepare l8biome',
            'source holds no scenes',
            lambda r: ['prepare', 'l8biome', str(r / 'empty_src'), str(r / 'l8')],
            ('empty_src',),
        ),
        Case(
            'prepare l8biome',
            'output holds foreign files',
            lambda r: ['prepare', 'l8biome', str(r / 'empty_src'), str(r / 'foreign')],
            ('foreign',),
            intact=lambda r: [r / 'foreign' / 'notes.txt'],
        ),
        Case(
            'demo',
            '--scene missing',
            lambda r: [
                'demo',
                '--scene',
                str(r / 'nope.tif'),
                '--out',
                str(r / 'demo'),
            ],
            ('nope.tif',),
        ),
        Case(
            'demo',
            '--data-root missing',
            lambda r: [
                'demo',
                '--data-root',
                str(r / 'nope'),
                '--out',
                str(r / 'demo'),
            ],
            ('nope',),
        ),
        Case(
            'params',
            'unknown PEFT method',
            lambda r: ['params', '--backbone', 'resnet18', '--peft', 'nosuch'],
            ('nosuch',),
        ),
        Case(
            'params',
            'unknown backbone',
            lambda r: ['params', '--backbone', 'nosuch_net'],
            ('nosuch_net',),
        ),
        Case(
            'bench accuracy',
            'more folds than pairs',
            lambda r: _bench(r, '--folds', '5'),
            ('5', 'fold'),
        ),
        Case(
            'bench accuracy',
            'unknown method',
            lambda r: _bench(r, '--methods', 'nosuch'),
            ('nosuch',),
        ),
        Case(
            'bench accuracy',
            'ktda row outside segmentation',
            lambda r: _bench(r, '--methods', 'ktda'),
            ('ktda',),
        ),
    ]


def _locked(root: Path) -> None:
    """Hold the output lock of ``busy.tif`` (as another run writing it would)."""
    from geopeft.predict.lock import OutputLock

    lock = OutputLock(root / 'busy.tif')
    lock.acquire()
    _HELD.append(lock)


_HELD: list[Any] = []


def run_case(case: Case, root: Path) -> dict[str, Any]:
    """Run one case and judge what a user would see."""
    from geopeft.main import main

    guarded = {path: path.read_bytes() for path in case.intact(root)}
    err, out = io.StringIO(), io.StringIO()
    escaped = None
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                status = main(case.argv(root))
            except SystemExit as stop:
                status = stop.code if isinstance(stop.code, int) else 1
            except Exception as error:  # a traceback would reach the user
                status = 1
                escaped = ''.join(traceback.format_exception_only(error)).strip()
    seconds = time.perf_counter() - start
    while _HELD:
        _HELD.pop().release()
    text = err.getvalue()
    warned = ' '.join(str(w.message) for w in caught) + ' ' + text
    errors = [line for line in text.splitlines() if 'error:' in line]
    intact = all(path.read_bytes() == data for path, data in guarded.items())
    if case.expect == 'error':
        message = escaped or (errors[0] if errors else text.strip()[-200:])
        well = (
            escaped is None
            and status in (1, 2)
            and len(errors) == 1
            and all(word.lower() in errors[0].lower() for word in case.words)
            and intact
        )
    else:
        message = next(
            (
                str(w.message)
                for w in caught
                if case.words and case.words[0] in str(w.message)
            ),
            escaped or (errors[0] if errors else 'ran'),
        )
        well = escaped is None and status == 0 and all(w in warned for w in case.words)
    return {
        'group': case.group,
        'case': case.name,
        'expect': case.expect,
        'status': status,
        'traceback': escaped is not None,
        'message': ' '.join(message.split())[:160],
        'inputs_intact': intact,
        'seconds': round(seconds, 1),
        'well': well,
    }


def main() -> None:
    """Run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('-k', default='', help='only cases whose name holds this')
    args = parser.parse_args()
    os.environ.pop('GEOPEFT_DEBUG', None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root)
        for number, case in enumerate(_cases(), 1):
            if args.k and args.k not in case.name:
                continue
            row = run_case(case, root)
            rows.append(row)
            if not args.json:
                mark = 'ok ' if row['well'] else 'BAD'
                print(
                    f'{number:2d} {mark} {row["group"]:<20} {row["case"]:<46} '
                    f'exit {row["status"]}  {row["message"][:110]}',
                    flush=True,
                )
    good = sum(row['well'] for row in rows)
    if args.json:
        print(json.dumps({'cases': rows, 'handled_well': good, 'tried': len(rows)}))
    else:
        print(f'{good} of {len(rows)} handled well')
    sys.exit(0 if good == len(rows) else 1)


if __name__ == '__main__':
    main()
