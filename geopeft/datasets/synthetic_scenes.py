"""An embedded, procedurally generated scene-classification demo dataset.

The images are **synthetic**: drawn by a program from random shapes and noise so
that they look roughly like top-down aerial scenes. They are not real imagery and
results on them say nothing about accuracy on real data; they exist so that the
offline demo (``geopeft demo``) and tests have a non-trivial task without a
download.

Classes differ in spatial structure and texture as well as in colour, and colours
are shared across classes on purpose (the same grass in farmland, residential
lawns and river banks; the same asphalt in parking lots, streets and industrial
yards), while every image gets random rotation, scale, illumination and colour
jitter, blur and sensor noise. A classifier that looks only at mean colour does
markedly worse than one that sees structure.
"""

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..io import atomic_write_text

#: What the dataset is (printed by the demo, stored in the manifest).
DESCRIPTION = (
    'geopeft synthetic scenes: procedurally generated, aerial-like top-down images '
    '(NOT real imagery) of 8 land-cover classes that differ in spatial structure, '
    'texture and colour, with random rotation, scale, illumination, colour jitter, '
    'blur and sensor noise'
)

#: Class names (also the folder names), sorted.
CLASSES = (
    'dense_residential',
    'farmland',
    'forest',
    'industrial',
    'parking',
    'pond',
    'river',
    'sparse_residential',
)

#: Bumped whenever the drawing changes, so older folders are regenerated.
GENERATOR_VERSION = 1

MANIFEST = 'manifest.json'

Array = np.ndarray
Painter = Callable[[np.random.Generator, int, float], Array]

# Shared palette (RGB in 0-1). Classes draw from overlapping subsets of it.
GRASS = ((0.36, 0.49, 0.24), (0.45, 0.55, 0.29), (0.55, 0.58, 0.34))
DRY = ((0.62, 0.60, 0.40), (0.70, 0.64, 0.45))
SOIL = ((0.48, 0.39, 0.29), (0.58, 0.47, 0.34), (0.40, 0.33, 0.26))
CANOPY = ((0.16, 0.30, 0.14), (0.22, 0.36, 0.17), (0.27, 0.40, 0.20))
WATER = ((0.13, 0.25, 0.32), (0.18, 0.30, 0.28), (0.30, 0.34, 0.30))
ASPHALT = ((0.30, 0.30, 0.32), (0.38, 0.38, 0.39), (0.45, 0.44, 0.43))
CONCRETE = ((0.62, 0.62, 0.60), (0.72, 0.71, 0.68))
ROOFS = (
    (0.62, 0.30, 0.24),
    (0.50, 0.27, 0.22),
    (0.45, 0.45, 0.47),
    (0.35, 0.33, 0.33),
    (0.66, 0.56, 0.46),
    (0.30, 0.40, 0.50),
)
INDUSTRIAL_ROOFS = (
    (0.80, 0.80, 0.79),
    (0.66, 0.68, 0.70),
    (0.42, 0.52, 0.60),
    (0.58, 0.42, 0.34),
)
SHADOW = np.full(3, 0.15, np.float32)
POOL = np.array([0.30, 0.65, 0.75], np.float32)
CARS = (
    (0.90, 0.90, 0.90),
    (0.72, 0.73, 0.75),
    (0.10, 0.10, 0.11),
    (0.25, 0.26, 0.28),
    (0.62, 0.12, 0.10),
    (0.15, 0.25, 0.55),
    (0.70, 0.66, 0.55),
)


# --------------------------------------------------------------------------- #
# Drawing helpers
# --------------------------------------------------------------------------- #


def _pick_many(
    rng: np.random.Generator, palette: tuple, count: int, spread: float = 0.035
) -> Array:
    """Draw ``count`` palette colours with small random offsets, ``[count, 3]``."""
    colours = np.asarray(palette, dtype=np.float32)[
        rng.integers(len(palette), size=count)
    ]
    return np.clip(colours + rng.normal(0, spread, (count, 3)), 0, 1).astype(np.float32)


def _pick(rng: np.random.Generator, palette: tuple, spread: float = 0.035) -> Array:
    """Draw a palette colour with a small random offset."""
    return _pick_many(rng, palette, 1, spread)[0]


@functools.lru_cache(maxsize=8)
def _squared_frequency(n: int) -> Array:
    """Squared spatial frequency of an ``n x n`` real FFT, ``[n, n // 2 + 1]``."""
    ky = np.fft.fftfreq(n).astype(np.float32)[:, None]
    kx = np.fft.rfftfreq(n).astype(np.float32)[None, :]
    return kx**2 + ky**2


def _gaussian_filter_fft(field: Array, sigma: float) -> Array:
    """Gaussian-filter a square 2-D field with periodic borders (FFT)."""
    n = field.shape[0]
    gain = np.exp(-2 * np.float32(np.pi * sigma) ** 2 * _squared_frequency(n))
    return np.fft.irfft2(np.fft.rfft2(field) * gain, s=(n, n))


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> Array:
    """Gaussian-filtered white noise, zero mean and unit std, ``[n, n]``."""
    field = _gaussian_filter_fft(rng.standard_normal((n, n), dtype=np.float32), sigma)
    field -= field.mean()
    return field / (field.std() + 1e-8)


def _blobs(rng: np.random.Generator, n: int, density: float, sigma: float) -> Array:
    """Round bumps at random points (e.g. tree crowns), scaled to ``[0, 1]``."""
    points = (rng.random((n, n), dtype=np.float32) < density).astype(np.float32)
    field = _gaussian_filter_fft(points, sigma)
    return field / (field.max() + 1e-8)


def _textured(
    rng: np.random.Generator, n: int, colour: Array, px: float, amount: float = 0.08
) -> Array:
    """A colour with coarse and fine multiplicative texture, ``[n, n, 3]``."""
    grain = rng.standard_normal((n, n), dtype=np.float32)
    texture = 0.6 * _smooth_noise(rng, n, 6 * px) + 0.3 * grain
    return colour[None, None, :] * (1 + amount * texture[..., None])


def _blend(image: Array, mask: Array, colour: Array | np.ndarray) -> None:
    """Paint ``colour`` (a colour or an image) where ``mask`` (0-1) is set."""
    alpha = mask[..., None]
    image *= 1 - alpha
    image += alpha * colour


def _rect(image: Array, y: float, x: float, h: float, w: float, colour: Array) -> None:
    """Fill an axis-aligned rectangle (clipped to the image)."""
    n = image.shape[0]
    y0, x0 = max(int(round(y)), 0), max(int(round(x)), 0)
    y1, x1 = min(int(round(y + h)), n), min(int(round(x + w)), n)
    if y1 > y0 and x1 > x0:
        image[y0:y1, x0:x1] = colour


def _stamp(
    image: Array,
    cy: float,
    cx: float,
    h: float,
    w: float,
    angle: float,
    colour: Array,
    round_shape: bool = False,
) -> None:
    """Paint an anti-aliased rotated rectangle (or ellipse) centred at (cy, cx)."""
    n = image.shape[0]
    radius = int(np.ceil(np.hypot(h, w) / 2)) + 2
    y0, y1 = max(int(cy) - radius, 0), min(int(cy) + radius + 1, n)
    x0, x1 = max(int(cx) - radius, 0), min(int(cx) + radius + 1, n)
    if y1 <= y0 or x1 <= x0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    if round_shape:
        distance = np.hypot(u / (w / 2), v / (h / 2))
        inside = (1 - distance) * min(h, w) / 2
    else:
        inside = np.minimum(w / 2 - np.abs(u), h / 2 - np.abs(v))
    mask = np.clip(inside + 0.5, 0, 1)
    _blend(image[y0:y1, x0:x1], mask, colour)


def _meander(
    rng: np.random.Generator, n: int, amplitude: float, wavelength: float
) -> Array:
    """A random smooth curve ``y(x)`` across the canvas, ``[n]``."""
    x = np.arange(n, dtype=np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    walk = np.cumsum(rng.normal(0, 1, n))
    half = min(24, (n - 1) // 2)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / 8) ** 2)
    walk = np.convolve(walk - walk.mean(), kernel / kernel.sum(), mode='same')
    walk = walk / (np.abs(walk).max() + 1e-8)
    curve = n / 2 + amplitude * np.sin(2 * np.pi * x / wavelength + phase)
    return (curve + 0.5 * amplitude * walk).astype(np.float32)


def _shadow_offset(rng: np.random.Generator, px: float) -> tuple[float, float]:
    """A per-image sun direction: shadow offset (dy, dx) in pixels."""
    angle = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.8, 2.0) * px
    return length * np.sin(angle), length * np.cos(angle)


# --------------------------------------------------------------------------- #
# Painters: one per class, each returns a float image [n, n, 3] in about 0-1
# --------------------------------------------------------------------------- #


def _paint_farmland(rng: np.random.Generator, n: int, px: float) -> Array:
    """Fields of parallel crop strips, each field with its own orientation."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    fields = rng.integers(1, 5)
    seeds = rng.uniform(0, n, (fields, 2))
    owner = np.argmin([(yy - sy) ** 2 + (xx - sx) ** 2 for sy, sx in seeds], axis=0)
    image = np.zeros((n, n, 3), np.float32)
    palette = GRASS + DRY + SOIL + CANOPY[2:]
    for field in range(fields):
        angle = rng.uniform(0, np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        u -= u.min()
        widths = rng.uniform(3, 14, n) * px * rng.uniform(0.6, 1.4)
        edges = np.cumsum(widths)
        edges = edges[: np.searchsorted(edges, u.max()) + 1]
        strip = np.searchsorted(edges, u)
        colours = _pick_many(rng, palette, len(edges) + 1)
        period = rng.uniform(1.6, 3.2) * px
        furrows = 1 + rng.uniform(0.02, 0.1) * np.sin(2 * np.pi * u / period)
        layer = colours[strip] * furrows[..., None]
        mask = owner == field
        image[mask] = layer[mask]
    image *= 1 + 0.06 * _smooth_noise(rng, n, 5 * px)[..., None]
    if fields > 1 and rng.random() < 0.7:
        # Hedges or tracks along field borders.
        step = max(1, round(rng.uniform(0.6, 1.8) * px))
        border = np.zeros((n, n), bool)
        border[step:] |= owner[step:] != owner[:-step]
        border[:, step:] |= owner[:, step:] != owner[:, :-step]
        _blend(image, border.astype(np.float32), _pick(rng, CANOPY + SOIL))
    return image


def _paint_forest(rng: np.random.Generator, n: int, px: float) -> Array:
    """Dense blobby tree canopy with crown shading, sometimes a clearing or track."""
    crowns = _blobs(rng, n, rng.uniform(0.04, 0.09) / px**2, rng.uniform(1.2, 2.2) * px)
    crowns = np.clip(crowns / (np.quantile(crowns, 0.9) + 1e-6), 0, 1)
    mix = (_smooth_noise(rng, n, 14 * px) > rng.uniform(-0.5, 0.8)).astype(np.float32)
    dark, light = _pick(rng, CANOPY), _pick(rng, CANOPY + GRASS[:1])
    base = dark[None, None] * mix[..., None] + light[None, None] * (1 - mix[..., None])
    image = base * (0.55 + 0.55 * crowns[..., None])
    image *= 1 + 0.05 * _smooth_noise(rng, n, px)[..., None]
    if rng.random() < 0.35:
        clearing = _smooth_noise(rng, n, 10 * px) > rng.uniform(1.2, 1.8)
        _blend(
            image,
            clearing.astype(np.float32),
            _textured(rng, n, _pick(rng, GRASS + DRY), px),
        )
    if rng.random() < 0.35:
        curve = _meander(rng, n, rng.uniform(5, 30) * px, rng.uniform(80, 200) * px)
        distance = np.abs(np.arange(n)[:, None] - curve[None, :])
        track = np.clip(rng.uniform(1, 2) * px - distance + 0.5, 0, 1)
        _blend(image, track.astype(np.float32), _pick(rng, SOIL))
    return image


def _paint_land(rng: np.random.Generator, n: int, px: float) -> Array:
    """Background land around water: fields, grass with trees, or forest."""
    choice = rng.random()
    if choice < 0.4:
        return _paint_farmland(rng, n, px)
    if choice < 0.7:
        return _paint_forest(rng, n, px)
    image = _textured(rng, n, _pick(rng, GRASS), px, amount=0.12)
    dry = (_smooth_noise(rng, n, 10 * px) > 0.6).astype(np.float32)
    _blend(image, dry, _textured(rng, n, _pick(rng, DRY + SOIL), px))
    trees = _blobs(rng, n, 0.004 / px**2, 1.8 * px)
    _blend(image, np.clip(3 * trees, 0, 1), _pick(rng, CANOPY))
    return image


def _water(rng: np.random.Generator, n: int, px: float) -> Array:
    """A water surface with gentle ripples, ``[n, n, 3]``."""
    image = _textured(rng, n, _pick(rng, WATER, 0.03), px, amount=0.06)
    ripples = np.sin(np.arange(n) * 2 * np.pi / rng.uniform(3, 8) / px)
    return image * (1 + 0.02 * ripples[None, :, None])


def _paint_river(rng: np.random.Generator, n: int, px: float) -> Array:
    """A meandering water band with banks and riparian trees through land."""
    image = _paint_land(rng, n, px)
    centre = _meander(rng, n, rng.uniform(5, 35) * px, rng.uniform(70, 220) * px)
    width = rng.uniform(7, 30) * px * (1 + 0.15 * np.sin(np.arange(n) / 17))
    distance = np.abs(np.arange(n)[:, None] - centre[None, :]) - width[None, :] / 2
    bank = np.clip(rng.uniform(1, 4) * px - distance + 0.5, 0, 1)
    _blend(image, bank.astype(np.float32), _pick(rng, SOIL + DRY))
    if rng.random() < 0.6:
        trees = _blobs(rng, n, 0.02 / px**2, 1.6 * px)
        near = np.clip(1 - (distance - 2 * px) / (8 * px), 0, 1)
        _blend(image, np.clip(2.5 * trees * near, 0, 1), _pick(rng, CANOPY))
    water = np.clip(0.5 - distance, 0, 1).astype(np.float32)
    _blend(image, water, _water(rng, n, px))
    return image


def _paint_pond(rng: np.random.Generator, n: int, px: float) -> Array:
    """One or two lobed water bodies with a shore, surrounded by land."""
    image = _paint_land(rng, n, px)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    for index in range(1 if rng.random() < 0.7 else 2):
        spread = n / 10 if index == 0 else n / 4
        cy, cx = n / 2 + rng.normal(0, spread, 2)
        radius = rng.uniform(14, 42) * px / (1 + index)
        theta = np.arctan2(yy - cy, xx - cx)
        boundary = np.ones_like(theta)
        for k in range(2, 6):
            boundary += rng.uniform(0, 0.35 / k) * np.cos(k * theta + rng.uniform(0, 7))
        distance = np.hypot(yy - cy, xx - cx) - radius * boundary
        shore = np.clip(rng.uniform(1, 3) * px - distance + 0.5, 0, 1)
        _blend(image, shore, _pick(rng, SOIL + DRY + GRASS))
        _blend(image, np.clip(0.5 - distance, 0, 1), _water(rng, n, px))
    return image


def _paint_dense_residential(rng: np.random.Generator, n: int, px: float) -> Array:
    """A street grid with blocks of closely spaced houses, small yards and trees."""
    image = _textured(rng, n, _pick(rng, ASPHALT), px, amount=0.06)
    block_w, block_h = rng.uniform(32, 56) * px, rng.uniform(22, 34) * px
    street = rng.uniform(3, 6) * px
    lawn = _pick(rng, GRASS)
    roofs = [_pick(rng, ROOFS) for _ in range(rng.integers(2, 5))]
    shade = rng.uniform(0.7, 0.9)
    sy, sx = _shadow_offset(rng, px)
    shadow = _pick(rng, ASPHALT) * 0.45
    y = -rng.uniform(0, block_h)
    while y < n:
        x = -rng.uniform(0, block_w)
        while x < n:
            top, left = y + street / 2, x + street / 2
            height, width = block_h - street, block_w - street
            _rect(image, top, left, height, width, lawn)
            yard = rng.uniform(0.8, 2.0) * px
            depth = height / 2 - yard - rng.uniform(0.5, 2.5) * px
            for row in (0, 1):
                row_y = top + yard if row == 0 else top + height - yard - depth
                house_x = left + rng.uniform(0.5, 2) * px
                while house_x < left + width - 4 * px:
                    house_w = min(rng.uniform(6, 11) * px, left + width - house_x)
                    roof = roofs[rng.integers(len(roofs))] * rng.uniform(0.9, 1.1)
                    _rect(image, row_y + sy, house_x + sx, depth, house_w, shadow)
                    half = depth / 2
                    _rect(image, row_y, house_x, half, house_w, roof)
                    _rect(image, row_y + half, house_x, half, house_w, roof * shade)
                    house_x += house_w + rng.uniform(1, 3) * px
            x += block_w
        y += block_h
    trees = _blobs(rng, n, rng.uniform(0.001, 0.006) / px**2, 1.6 * px)
    _blend(image, np.clip(3 * trees, 0, 1), _pick(rng, CANOPY))
    return image


def _paint_sparse_residential(rng: np.random.Generator, n: int, px: float) -> Array:
    """A few detached houses with driveways along a road, in grass with trees."""
    image = _textured(rng, n, _pick(rng, GRASS), px, amount=0.12)
    dry = (_smooth_noise(rng, n, 9 * px) > rng.uniform(0.3, 1.2)).astype(np.float32)
    _blend(image, dry, _textured(rng, n, _pick(rng, DRY + SOIL), px))
    road_colour = _pick(rng, ASPHALT)
    curve = _meander(rng, n, rng.uniform(0, 25) * px, rng.uniform(90, 250) * px)
    road_width = rng.uniform(2.5, 4.5) * px
    distance = np.abs(np.arange(n)[:, None] - curve[None, :])
    _blend(image, np.clip(road_width / 2 - distance + 0.5, 0, 1), road_colour)
    sy, sx = _shadow_offset(rng, px)
    slope = np.gradient(curve)
    houses = rng.integers(5, 16)
    for _ in range(houses):
        x = rng.uniform(0, n)
        column = int(np.clip(x, 0, n - 1))
        side = rng.choice((-1.0, 1.0))
        offset = rng.uniform(11, 22) * px
        y = curve[column] + side * offset
        angle = np.arctan(slope[column]) + rng.normal(0, 0.15)
        h, w = rng.uniform(7, 11) * px, rng.uniform(8, 14) * px
        drive_len = offset - h / 2
        drive_y = curve[column] + side * drive_len / 2
        _stamp(image, drive_y, x, drive_len, 1.6 * px, 0.0, _pick(rng, CONCRETE))
        _stamp(image, y + sy, x + sx, h, w, angle, SHADOW)
        roof = _pick(rng, ROOFS)
        _stamp(image, y, x, h, w, angle, roof)
        _stamp(
            image,
            y - h / 4 * np.cos(angle),
            x + h / 4 * np.sin(angle),
            h / 2,
            w,
            angle,
            roof * 0.8,
        )
        if rng.random() < 0.15:
            pool_y = y - side * (h + 2 * px)
            _stamp(image, pool_y, x + w / 2, 2.5 * px, 4 * px, angle, POOL)
    trees = _blobs(rng, n, rng.uniform(0.002, 0.008) / px**2, 1.7 * px)
    _blend(image, np.clip(3 * trees, 0, 1), _pick(rng, CANOPY))
    return image


def _paint_parking(rng: np.random.Generator, n: int, px: float) -> Array:
    """Rows of stalls on asphalt, filled with small cars, with line markings."""
    ground = _pick(rng, ASPHALT)
    image = _textured(rng, n, ground, px, amount=0.06)
    stall_w, stall_d = rng.uniform(4.2, 5.5) * px, rng.uniform(8, 10) * px
    aisle = rng.uniform(7, 12) * px
    occupancy = rng.uniform(0.3, 0.95)
    line = _pick(rng, CONCRETE) * rng.uniform(0.9, 1.25)
    marked = rng.random() < 0.8
    y = -rng.uniform(0, 2 * stall_d + aisle)
    stalls = int(np.ceil(n / stall_w)) + 1
    while y < n:
        for row in (0, 1):
            row_y = y + row * stall_d
            x0 = -rng.uniform(0, stall_w)
            occupied = rng.random(stalls) < occupancy
            lengths = rng.uniform(6.5, 8, stalls) * px
            widths = rng.uniform(2.8, 3.4, stalls) * px
            jitter = rng.normal(0, 0.35, (stalls, 2)) * px
            colours = _pick_many(rng, CARS, stalls, 0.03)
            for stall in range(stalls):
                x = x0 + stall * stall_w
                if marked:
                    _rect(image, row_y, x, stall_d, 0.7 * px, line)
                if not occupied[stall]:
                    continue
                car_l, car_w, colour = lengths[stall], widths[stall], colours[stall]
                cx = x + (stall_w - car_w) / 2 + jitter[stall, 0]
                cy = row_y + (stall_d - car_l) / 2 + jitter[stall, 1]
                shadow = ground * 0.5
                _rect(image, cy + 0.8 * px, cx + 0.6 * px, car_l, car_w, shadow)
                _rect(image, cy, cx, car_l, car_w, colour)
                glass_y = cy + (0.2 if row else 0.6) * car_l
                glass_w = car_w - 0.8 * px
                _rect(
                    image, glass_y, cx + 0.4 * px, 0.2 * car_l, glass_w, colour * 0.35
                )
        y += 2 * stall_d + aisle
    if rng.random() < 0.5:
        # A planted island or verge with trees along one side.
        start = rng.uniform(0.1, 0.8) * n
        width = rng.uniform(5, 14) * px
        _rect(image, start, 0, width, n, _pick(rng, GRASS))
        trees = _blobs(rng, n, 0.01 / px**2, 1.6 * px)
        band = np.zeros((n, n), np.float32)
        band[int(start) : int(start + width)] = 1
        _blend(image, np.clip(3 * trees * band, 0, 1), _pick(rng, CANOPY))
    return image


def _paint_industrial(rng: np.random.Generator, n: int, px: float) -> Array:
    """Large flat roofs, storage tanks, yards and access roads."""
    image = _textured(rng, n, _pick(rng, CONCRETE + ASPHALT), px, amount=0.08)
    patches = (_smooth_noise(rng, n, 12 * px) > 0.5).astype(np.float32)
    _blend(image, patches, _textured(rng, n, _pick(rng, SOIL + GRASS + ASPHALT), px))
    for _ in range(rng.integers(1, 3)):
        road = rng.uniform(0, n)
        width = rng.uniform(4, 8) * px
        if rng.random() < 0.5:
            _rect(image, road, 0, width, n, _pick(rng, ASPHALT))
        else:
            _rect(image, 0, road, n, width, _pick(rng, ASPHALT))
    sy, sx = _shadow_offset(rng, px)
    sy, sx = 2 * sy, 2 * sx
    for _ in range(rng.integers(3, 9)):
        h, w = rng.uniform(18, 60) * px, rng.uniform(18, 60) * px
        y, x = rng.uniform(-h / 2, n - h / 2), rng.uniform(-w / 2, n - w / 2)
        roof = _pick(rng, INDUSTRIAL_ROOFS)
        _rect(image, y + sy, x + sx, h, w, roof * 0.3)
        _rect(image, y, x, h, w, roof)
        period = rng.uniform(3, 7) * px
        for ridge in np.arange(y + period, y + h - 1, period):
            _rect(image, ridge, x, 0.6 * px, w, roof * 0.85)
    if rng.random() < 0.5:
        radius = rng.uniform(4, 10) * px
        rows, cols = rng.integers(1, 4), rng.integers(2, 5)
        y0, x0 = (
            rng.uniform(0, n - rows * 2.6 * radius),
            rng.uniform(0, n - cols * 2.6 * radius),
        )
        tank = _pick(rng, INDUSTRIAL_ROOFS[:2])
        highlight = np.minimum(tank * 1.15, 1)
        d = 2 * radius
        for r in range(rows):
            for c in range(cols):
                cy, cx = y0 + (r + 0.5) * 1.3 * d, x0 + (c + 0.5) * 1.3 * d
                _stamp(image, cy + sy, cx + sx, d, d, 0, tank * 0.3, round_shape=True)
                _stamp(image, cy, cx, d, d, 0, tank, round_shape=True)
                top_y, top_x = cy - radius / 4, cx - radius / 4
                _stamp(
                    image, top_y, top_x, radius, radius, 0, highlight, round_shape=True
                )
    if rng.random() < 0.4:
        # Trucks in the yard.
        for _ in range(rng.integers(3, 12)):
            y, x = rng.uniform(0, n, 2)
            h, w = rng.uniform(3, 4) * px, rng.uniform(9, 14) * px
            _rect(image, y, x, h, w, _pick(rng, CARS))
    return image


PAINTERS: dict[str, Painter] = {
    'dense_residential': _paint_dense_residential,
    'farmland': _paint_farmland,
    'forest': _paint_forest,
    'industrial': _paint_industrial,
    'parking': _paint_parking,
    'pond': _paint_pond,
    'river': _paint_river,
    'sparse_residential': _paint_sparse_residential,
}


# --------------------------------------------------------------------------- #
# Viewing geometry and sensor: the per-image nuisance variation
# --------------------------------------------------------------------------- #


def _view(canvas: Array, size: int, side: float, angle: float, mirror: bool) -> Array:
    """Sample a rotated square of ``side`` canvas pixels into ``size`` pixels."""
    n = canvas.shape[0]
    t = ((np.arange(size) + 0.5) / size - 0.5) * side
    b, a = np.meshgrid(t, -t if mirror else t, indexing='ij')
    cos, sin = np.cos(angle), np.sin(angle)
    x = n / 2 + cos * a - sin * b - 0.5
    y = n / 2 + sin * a + cos * b - 0.5
    x0 = np.clip(np.floor(x).astype(int), 0, n - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, n - 2)
    wx = np.clip(x - x0, 0, 1)[..., None]
    wy = np.clip(y - y0, 0, 1)[..., None]
    top = canvas[y0, x0] * (1 - wx) + canvas[y0, x0 + 1] * wx
    bottom = canvas[y0 + 1, x0] * (1 - wx) + canvas[y0 + 1, x0 + 1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def _gaussian_blur(image: Array, sigma: float) -> Array:
    """Separable Gaussian blur with reflected borders."""
    radius = int(np.ceil(3 * sigma))
    if radius == 0:
        return image
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(image, pad, mode='reflect')
        length = image.shape[axis]
        image = sum(
            weight * np.take(padded, range(i, i + length), axis=axis)
            for i, weight in enumerate(weights)
        )
    return image


def _sensor(rng: np.random.Generator, image: Array, size: int) -> Array:
    """Illumination, colour balance, haze, blur and noise; returns uint8."""
    image = image * rng.uniform(0.8, 1.2) * rng.uniform(0.92, 1.08, 3)
    mean = image.mean()
    image = (image - mean) * rng.uniform(0.8, 1.2) + mean
    image = np.clip(image, 0, 1) ** rng.uniform(0.85, 1.2)
    haze = rng.uniform(0, 0.15)
    image = image * (1 - haze) + haze * np.array([0.75, 0.78, 0.82])
    image = _gaussian_blur(image, rng.uniform(0.2, 1.1) * size / 128)
    image = image + rng.normal(0, rng.uniform(0.004, 0.025), image.shape)
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def render_scene(class_name: str, *, size: int, rng: np.random.Generator) -> Array:
    """Draw one synthetic scene of a class.

    Args:
        class_name: One of :data:`CLASSES`.
        size: Side of the square output image in pixels.
        rng: Random generator (the image is a function of its state).

    Returns:
        An RGB image, uint8 ``[size, size, 3]``.
    """
    zoom = rng.uniform(0.8, 1.25)  # canvas pixels per output pixel
    side = size * zoom
    n = 16 * int(np.ceil((side * np.sqrt(2) + 4) / 16))  # FFT-friendly canvas
    canvas = PAINTERS[class_name](rng, n, size / 128)
    view = _view(canvas, size, side, rng.uniform(0, 2 * np.pi), rng.random() < 0.5)
    return _sensor(rng, view, size)


# --------------------------------------------------------------------------- #
# The generator
# --------------------------------------------------------------------------- #


def _file_name(class_name: str, index: int) -> str:
    return f'{class_name}_{index:04d}.png'


def _manifest(seed: int, size: int, per_class: int) -> dict[str, object]:
    return {
        'generator': 'geopeft.datasets.synthetic_scenes',
        'version': GENERATOR_VERSION,
        'description': DESCRIPTION,
        'seed': seed,
        'size': size,
        'per_class': per_class,
        'classes': list(CLASSES),
    }


def _is_complete(root: Path, manifest: dict[str, object]) -> bool:
    """Tell whether ``root`` already holds exactly this generated set."""
    try:
        stored = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if stored != manifest:
        return False
    per_class = int(manifest['per_class'])  # type: ignore[call-overload]
    return all(
        (root / name / _file_name(name, index)).is_file()
        for name in CLASSES
        for index in range(per_class)
    )


def generate_synthetic_scenes(
    root: str | Path,
    *,
    per_class: int = 80,
    size: int = 128,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the synthetic scene dataset as PNGs, one folder per class.

    The images are procedurally generated and aerial-like, **not real imagery**
    (see :data:`DESCRIPTION`). The output is deterministic for a seed: image
    ``i`` of class ``c`` depends only on ``(seed, c, i)`` and ``size``. A
    ``manifest.json`` written last records the parameters; when it matches and all
    files exist, nothing is redrawn. Stale images of this generator (e.g. from a
    larger ``per_class``) are removed; other files are left alone.

    Classes (see :data:`CLASSES`): dense residential (street grid, packed roofs),
    farmland (fields of parallel crop strips), forest (dense blobby canopy),
    industrial (large flat roofs, tanks, yards), parking (rows of cars on asphalt),
    pond (lobed water body in land), river (meandering water band with banks) and
    sparse residential (a few houses along a road in grass).

    Args:
        root: Output directory (created if needed).
        per_class: Images per class.
        size: Side of the square images in pixels.
        seed: Seed of the whole set.
        progress: Show a progress bar.

    Returns:
        ``root`` as a :class:`~pathlib.Path`, ready for
        :class:`~geopeft.datasets.SceneFolder`.

    Raises:
        ValueError: If ``per_class`` or ``size`` is not positive.
    """
    if per_class < 1 or size < 8:
        msg = f'need per_class >= 1 and size >= 8, got {per_class} and {size}'
        raise ValueError(msg)
    root = Path(root)
    manifest = _manifest(seed, size, per_class)
    if _is_complete(root, manifest):
        return root

    (root / MANIFEST).unlink(missing_ok=True)
    bar = tqdm(
        total=per_class * len(CLASSES), desc='synthetic scenes', disable=not progress
    )
    for label, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        expected = {_file_name(name, index) for index in range(per_class)}
        for stale in folder.glob(f'{name}_*.png'):
            if stale.name not in expected:
                stale.unlink()
        for index in range(per_class):
            rng = np.random.default_rng([seed, label, index])
            image = render_scene(name, size=size, rng=rng)
            Image.fromarray(image).save(folder / _file_name(name, index))
            bar.update()
    bar.close()
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2))
    return root
