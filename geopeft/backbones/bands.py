"""Band names, and the first layer of pretrained weights adapted to other bands.

A backbone pretrained on some bands (ImageNet: red, green, blue; a TorchGeo weights
enum: ``meta['bands']``) can take images with other bands: the first layer keeps
the pretrained filter of every input band that matches a pretrained band, gives
the other input bands a share of the pretrained filters, and is rescaled so that
the layer's response keeps its pretrained scale (see
:func:`adapt_first_layer_weight`; ``docs/bands.md`` has examples).

Band names are case-insensitive and resolve to canonical names
(:data:`CANONICAL_BANDS`): plain names (``'red'``, ``'nir'``, ``'swir1'``), aerial
short names (``'R'``, ``'G'``, ``'B'``, ``'N'``/``'NIR'``), and numbered sensor
names. Numbered names mean different bands on different sensors (``'B4'`` is red
on Sentinel-2 and Landsat 8/9 but near infrared on Landsat 4-7), so they resolve
only when the sensor is known:

* explicitly, by a sensor prefix: ``'sentinel2:B8'``, ``'landsat8:B5'``,
  ``'landsat7:B4'`` (see :data:`SENSORS`);
* from the list: a list holding a zero-padded name (``'B01'`` ... ``'B09'``, as
  TorchGeo's Sentinel-2 datasets such as OSCD name them), ``'B8A'`` or ``'B12'``,
  which exist only on Sentinel-2, is read as Sentinel-2 throughout;
* from a TorchGeo weights enum's name (``SENTINEL2_...``, ``LANDSAT_OLI_...``,
  ``LANDSAT_TM_...``), for the bands the weights were pretrained on.

Any other numbered name is refused as ambiguous, with the ways to spell it.
"""

import difflib
import os
import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import torch
from torch import Tensor
from torchgeo.models import get_weight
from torchvision.models._api import WeightsEnum

#: Canonical band names and what they are (centre wavelengths are approximate).
CANONICAL_BANDS: dict[str, str] = {
    'coastal': 'coastal aerosol, ~443 nm (Sentinel-2 B01, Landsat 8/9 B1)',
    'blue': 'blue, ~490 nm',
    'green': 'green, ~560 nm',
    'red': 'red, ~665 nm',
    'rededge1': 'vegetation red edge 1, ~705 nm (Sentinel-2 B05)',
    'rededge2': 'vegetation red edge 2, ~740 nm (Sentinel-2 B06)',
    'rededge3': 'vegetation red edge 3, ~783 nm (Sentinel-2 B07)',
    'nir': 'near infrared, ~840 nm (Sentinel-2 B08, Landsat 8/9 B5, NAIP N)',
    'nir08': 'narrow near infrared, ~865 nm (Sentinel-2 B8A)',
    'watervapour': 'water vapour, ~945 nm (Sentinel-2 B09)',
    'cirrus': 'cirrus, ~1375 nm (Sentinel-2 B10, Landsat 8/9 B9)',
    'swir1': 'short-wave infrared 1, ~1610 nm',
    'swir2': 'short-wave infrared 2, ~2200 nm',
    'thermal': 'thermal infrared, ~10.9 um (Landsat 8/9 B10, Landsat 4-7 B6)',
    'thermal2': 'thermal infrared 2, ~12 um (Landsat 8/9 B11)',
    'pan': 'panchromatic (Landsat 7-9 B8)',
    'vv': 'SAR, vertical transmit, vertical receive',
    'vh': 'SAR, vertical transmit, horizontal receive',
    'hh': 'SAR, horizontal transmit, horizontal receive',
    'hv': 'SAR, horizontal transmit, vertical receive',
    'other': 'a band without a pretrained counterpart (elevation, an index, ...); '
    'never matched',
}

#: The bands of ImageNet (and timm) weights, in their order.
IMAGENET_BANDS: tuple[str, ...] = ('red', 'green', 'blue')

#: Names that mean the same band on every sensor (keys are normalised: lower case,
#: without ``-``, ``_`` and spaces).
_ALIASES: dict[str, str] = {
    **{name: name for name in CANONICAL_BANDS},
    'coastalaerosol': 'coastal',
    'aerosol': 'coastal',
    'b': 'blue',
    'g': 'green',
    'r': 'red',
    're1': 'rededge1',
    're2': 'rededge2',
    're3': 'rededge3',
    'n': 'nir',
    'nirnarrow': 'nir08',
    'narrownir': 'nir08',
    'nir09': 'watervapour',
    'watervapor': 'watervapour',
    'wv': 'watervapour',
    'swir16': 'swir1',
    'swir22': 'swir2',
    'tir': 'thermal',
    'tir1': 'thermal',
    'lwir': 'thermal',
    'lwir11': 'thermal',
    'tir2': 'thermal2',
    'lwir12': 'thermal2',
    'panchromatic': 'pan',
}

#: Numbered band names per sensor (normalised, without zero padding).
_SENSOR_BANDS: dict[str, dict[str, str]] = {
    'sentinel2': {
        'b1': 'coastal',
        'b2': 'blue',
        'b3': 'green',
        'b4': 'red',
        'b5': 'rededge1',
        'b6': 'rededge2',
        'b7': 'rededge3',
        'b8': 'nir',
        'b8a': 'nir08',
        'b9': 'watervapour',
        'b10': 'cirrus',
        'b11': 'swir1',
        'b12': 'swir2',
    },
    'landsat8': {
        'b1': 'coastal',
        'b2': 'blue',
        'b3': 'green',
        'b4': 'red',
        'b5': 'nir',
        'b6': 'swir1',
        'b7': 'swir2',
        'b8': 'pan',
        'b9': 'cirrus',
        'b10': 'thermal',
        'b11': 'thermal2',
    },
    'landsat7': {
        'b1': 'blue',
        'b2': 'green',
        'b3': 'red',
        'b4': 'nir',
        'b5': 'swir1',
        'b6': 'thermal',
        'b6vcid1': 'thermal',
        'b6vcid2': 'thermal',
        'b7': 'swir2',
        'b8': 'pan',
    },
}

#: Accepted sensor names (prefixes such as ``'landsat8:B5'``) and the band
#: numbering each one uses.
SENSORS: dict[str, str] = {
    'sentinel2': 'sentinel2',
    's2': 'sentinel2',
    'landsat8': 'landsat8',
    'landsat9': 'landsat8',
    'l8': 'landsat8',
    'l9': 'landsat8',
    'oli': 'landsat8',
    'landsat7': 'landsat7',
    'landsat5': 'landsat7',
    'landsat4': 'landsat7',
    'l7': 'landsat7',
    'l5': 'landsat7',
    'l4': 'landsat7',
    'tm': 'landsat7',
    'etm': 'landsat7',
}

#: How each sensor's numbering is called in messages.
_SENSOR_TITLES = {
    'sentinel2': 'Sentinel-2',
    'landsat8': 'Landsat 8/9 (OLI/TIRS)',
    'landsat7': 'Landsat 4-7 (TM/ETM+)',
}

#: Names that exist only on Sentinel-2 (normalised): zero-padded B01-B09, B8A, B12.
_SENTINEL2_ONLY = re.compile(r'b0\d|b8a|b12')

#: Sensor read from a TorchGeo weights enum's name, first match wins.
_ENUM_SENSORS = (
    ('SENTINEL2', 'sentinel2'),
    ('LANDSAT_OLI', 'landsat8'),
    ('LANDSAT_TM', 'landsat7'),
    ('LANDSAT_ETM', 'landsat7'),
    ('LANDSAT', 'landsat8'),
)


def canonical_band(name: str, sensor: str | None = None) -> str:
    """Resolve one band name to its canonical name.

    Args:
        name: A band name (case-insensitive): a canonical name or alias
            (``'red'``, ``'R'``, ``'swir16'``), a name only Sentinel-2 has
            (``'B01'``-``'B09'``, ``'B8A'``, ``'B12'``), or a numbered name with a
            known sensor (``'sentinel2:B8'``, or ``'B8'`` with
            ``sensor='sentinel2'``).
        sensor: Sensor whose numbering an unprefixed numbered name follows (see
            :data:`SENSORS`); a prefix in *name* wins.

    Returns:
        The canonical name, a key of :data:`CANONICAL_BANDS`.

    Raises:
        ValueError: If the name or sensor is unknown, or a numbered name is
            ambiguous without a sensor.
    """
    text = name.strip()
    if ':' in text:
        prefix, _, text = text.partition(':')
        sensor = prefix
    key = _normalise(text)
    if sensor is None and _SENTINEL2_ONLY.fullmatch(key):
        sensor = 'sentinel2'
    numbering = None if sensor is None else _sensor(sensor)
    if key in _ALIASES:
        return _ALIASES[key]
    numbered = _numbered(key)
    if numbering is not None:
        if numbered in _SENSOR_BANDS[numbering]:
            return _SENSOR_BANDS[numbering][numbered]
        known = ', '.join(n.upper() for n in _SENSOR_BANDS[numbering])
        msg = (
            f"Band '{name}' is not a {_SENSOR_TITLES[numbering]} band; its bands are "
            f'{known}, or use a plain name ({_known_names()}).'
        )
        raise ValueError(msg)
    landsat_product = numbered != key and not key.startswith('b')  # SR_B5, ST_B10
    meanings = {
        numbering: bands[numbered]
        for numbering, bands in _SENSOR_BANDS.items()
        if numbered in bands and not (landsat_product and numbering == 'sentinel2')
    }
    if meanings:
        readings = ', '.join(
            f'{meaning} on {_SENSOR_TITLES[numbering]}'
            for numbering, meaning in meanings.items()
        )
        spellings = ', '.join(f"'{numbering}:{text}'" for numbering in meanings)
        plain = ', '.join(f"'{m}'" for m in dict.fromkeys(meanings.values()))
        msg = (
            f"Band '{name}' is ambiguous ({readings}): use a plain name ({plain}) "
            f'or name the sensor: {spellings}. (A list holding a zero-padded '
            "Sentinel-2 name such as 'B02', or 'B8A' or 'B12', is read as "
            'Sentinel-2 throughout.)'
        )
        raise ValueError(msg)
    close = difflib.get_close_matches(key, list(_ALIASES), n=3, cutoff=0.6)
    hint = f' Did you mean {", ".join(repr(_ALIASES[c]) for c in close)}?'
    msg = (
        f"Unknown band '{name}'.{hint if close else ''} Known names: "
        f"{_known_names()}; short names 'R', 'G', 'B', 'N'/'NIR'; Sentinel-2 "
        "'B01'-'B12' and 'B8A'; Landsat as 'landsat8:B5' or 'landsat7:B4'. Name a "
        "band without a pretrained counterpart 'other'."
    )
    raise ValueError(msg)


def canonical_bands(names: Sequence[str], sensor: str | None = None) -> list[str]:
    """Resolve a list of band names to canonical names.

    Unprefixed numbered names follow *sensor*; without it, a list holding a name
    that exists only on Sentinel-2 (zero-padded ``'B01'``-``'B09'``, ``'B8A'``,
    ``'B12'``) is read as Sentinel-2 throughout, so TorchGeo's Sentinel-2 band
    lists (OSCD, EuroSAT, ...) resolve as they are.

    Args:
        names: Band names, one per image channel, in channel order (repeats are
            allowed, e.g. two dates stacked for early fusion).
        sensor: Sensor of unprefixed numbered names (see :data:`SENSORS`).

    Returns:
        The canonical names, in the same order.

    Raises:
        TypeError: If *names* is a single string.
        ValueError: If a name is unknown or ambiguous.
    """
    if isinstance(names, str):
        msg = (
            f'Band names must be a list with one name per channel, not the string '
            f"'{names}'; e.g. ['R', 'G', 'B', 'N'] or list('{names}')."
        )
        raise TypeError(msg)
    return [canonical_band(name, sensor or _list_sensor(names)) for name in names]


def pretrained_bands(weights: object) -> tuple[str | None, ...] | None:
    """The canonical bands a weights source was pretrained on, in channel order.

    Args:
        weights: A backbone's weights argument: True or ``'imagenet'`` (red,
            green, blue), a TorchGeo weights enum or its name (its
            ``meta['bands']``, numbered names read with the sensor in the enum's
            name), or anything else (a checkpoint file: bands unknown).

    Returns:
        The canonical names, with None for a band geopeft does not know (such as
        ``'NDVI'``); or None when the bands are unknown, in which case bands
        match by position.
    """
    if weights is True:
        return IMAGENET_BANDS
    enum = weights if isinstance(weights, WeightsEnum) else None
    if isinstance(weights, str):
        if weights.lower() == 'imagenet':
            return IMAGENET_BANDS
        if not Path(weights).exists() and os.sep not in weights:
            try:
                enum = get_weight(weights)
            except ValueError:
                return None
    if enum is None:
        return None
    names = enum.meta.get('bands')
    if not names:
        return None
    sensor = next(
        (found for tag, found in _ENUM_SENSORS if tag in enum.name.upper()), None
    )
    resolved = tuple(_resolve_or_none(name, sensor) for name in names)
    return resolved if any(resolved) else None


def adapt_first_layer_weight(
    weight: Tensor,
    pretrained_bands: Sequence[str | None] | None,
    input_bands: Sequence[str] | None,
    in_channels: int,
) -> tuple[Tensor, list[str]]:
    """Adapt a pretrained first-layer weight to other input bands.

    Matching: input band *j* matches the pretrained band with the same canonical
    name (repeated names match occurrence by occurrence, cycling over the
    pretrained ones); when either side has no names, the first
    ``min(C_pre, C_in)`` input bands match the pretrained bands by position
    (skipping input bands named ``'other'``, which never match).

    Mixing: the adapted layer is the pretrained layer applied to an estimate of
    each pretrained band made from the input bands, ``est_k = sum_j A[k, j] x_j``,
    so the filter of input band *j* is ``sum_k A[k, j] W_k``. Each estimate is a
    weighted mean (row *k* of ``A`` sums to 1):

    * every unmatched input band weighs ``1 / C_in``, so it receives an equal
      share of every pretrained filter: ``(C_pre / C_in) * mean_k W_k``;
    * the rest, ``1 - u / C_in`` (``u``: unmatched input bands), is split
      equally among the input bands that match band *k*; a pretrained band no
      input band matches is split among all matched input bands (it is
      estimated from them).

    Because every row sums to 1, an image with the same value in every input band
    gets exactly the response the pretrained layer gives to that value in every
    pretrained band: the first layer's output keeps its pretrained scale for the
    frozen normalisation layers after it. Special cases: the same bands give the
    weight unchanged (reordered if the order differs); ``R, G, B, NIR`` on RGB
    weights copies the RGB filters scaled by 3/4 and gives NIR 3/4 of their mean
    (what timm's ``adapt_input_conv`` and SMP's ``patch_first_conv`` do with a
    repeated filter instead of the mean); a single unmatched band (panchromatic)
    gets the sum of the filters, as in both libraries; 13 Sentinel-2 bands on
    RGB weights copy the B04, B03, B02 filters scaled by 3/13, the 10 others get
    3/13 of their mean.

    Args:
        weight: Pretrained weight ``[O, C_pre, *kernel]`` (a convolution, or a
            linear layer ``[O, C_pre]``), band axis 1.
        pretrained_bands: Band names of the ``C_pre`` pretrained channels (None
            entries: unknown bands, never matched), or None to match by position.
        input_bands: Band names of the input channels, or None to match by
            position.
        in_channels: Number of input channels ``C_in``.

    Returns:
        The adapted weight ``[O, C_in, *kernel]`` (same dtype and device), and a
        line per input band saying which pretrained filters it took; the weight
        itself and an empty list when nothing changes.

    Raises:
        ValueError: If the weight has fewer than 2 dimensions, the name lists do
            not fit the channel counts, or an input band name is unknown.
    """
    if weight.ndim < 2:
        msg = (
            f'A first-layer weight of shape {tuple(weight.shape)} has no band axis; '
            'only convolution ([O, C, kh, kw]) or linear ([O, C]) weights adapt.'
        )
        raise ValueError(msg)
    num_pretrained = weight.shape[1]
    pretrained = _pretrained_names(pretrained_bands, num_pretrained)
    inputs = None if input_bands is None else canonical_bands(input_bands)
    if inputs is not None and len(inputs) != in_channels:
        msg = (
            f'{len(inputs)} input band names ({list(input_bands or [])}) for '
            f'in_channels={in_channels}: give one name per input channel.'
        )
        raise ValueError(msg)
    matches = _match(pretrained, inputs, num_pretrained, in_channels)
    mixing = _mixing(matches, num_pretrained)
    if num_pretrained == in_channels and all(
        mixing[k][j] == int(k == j)
        for k in range(in_channels)
        for j in range(in_channels)
    ):
        return weight, []
    table = torch.tensor(
        [[float(c) for c in row] for row in mixing],
        dtype=torch.float64,
        device=weight.device,
    )
    adapted = torch.tensordot(weight.double(), table, dims=([1], [0]))
    adapted = adapted.movedim(-1, 1).to(weight.dtype).contiguous()
    labels = [
        name if name is not None else f'band {k}'
        for k, name in enumerate(pretrained or [None] * num_pretrained)
    ]
    matched_by = 'by name' if pretrained and inputs else 'by position'
    lines = [
        f'{_input_label(input_bands, inputs, j)} <- '
        f'{_combination(mixing, j, labels)} '
        f'({matched_by if k is not None else "no match"})'
        for j, k in enumerate(matches)
    ]
    return adapted, lines


def _match(
    pretrained: Sequence[str | None] | None,
    inputs: Sequence[str] | None,
    num_pretrained: int,
    in_channels: int,
) -> list[int | None]:
    """The pretrained band each input band matches (None: no match)."""
    if pretrained is None or inputs is None:
        matches: list[int | None] = []
        for j in range(in_channels):
            taken = sum(k is not None for k in matches)
            other = inputs is not None and inputs[j] == 'other'
            matches.append(None if other or taken >= num_pretrained else taken)
        return matches
    seen: dict[str, int] = {}
    matches = []
    for name in inputs:
        candidates = [k for k, p in enumerate(pretrained) if p == name]
        if name == 'other' or not candidates:
            matches.append(None)
            continue
        matches.append(candidates[seen.get(name, 0) % len(candidates)])
        seen[name] = seen.get(name, 0) + 1
    return matches


def _mixing(matches: Sequence[int | None], num_pretrained: int) -> list[list[Fraction]]:
    """The matrix ``A[k][j]`` of :func:`adapt_first_layer_weight`, exactly."""
    in_channels = len(matches)
    unmatched = [j for j, k in enumerate(matches) if k is None]
    matched = [j for j, k in enumerate(matches) if k is not None]
    share = Fraction(1, in_channels)
    rest = 1 - share * len(unmatched)
    rows = []
    for k in range(num_pretrained):
        row = [share if j in unmatched else Fraction(0) for j in range(in_channels)]
        receivers = [j for j in matched if matches[j] == k] or matched
        for j in receivers:
            row[j] += rest / len(receivers)
        rows.append(row)
    return rows


def _combination(mixing: list[list[Fraction]], j: int, labels: list[str]) -> str:
    """Input band *j*'s filter as a combination of pretrained filters, in words."""
    groups: dict[Fraction, list[str]] = {}
    for k, row in enumerate(mixing):
        if row[j]:
            groups.setdefault(row[j], []).append(labels[k])
    terms = []
    for coefficient, names in sorted(groups.items(), reverse=True):
        if len(names) == len(labels) > 1:
            terms.append(f'{coefficient * len(names)} x mean of all {len(names)}')
        elif len(names) == 1:
            terms.append(f'{coefficient} x {names[0]}')
        else:
            terms.append(f'{coefficient} x ({" + ".join(names)})')
    return ' + '.join(terms) or '0'


def _input_label(raw: Sequence[str] | None, canonical: list[str] | None, j: int) -> str:
    """Input band *j* for a message: its name (canonical name) or its index."""
    if raw is None or canonical is None:
        return f'band {j}'
    if _normalise(raw[j]) == canonical[j]:
        return canonical[j]
    return f'{raw[j]} ({canonical[j]})'


def _pretrained_names(
    names: Sequence[str | None] | None, num_pretrained: int
) -> list[str | None] | None:
    """Canonical pretrained names, or None if unknown or not one per channel."""
    if names is None or len(names) != num_pretrained:
        return None
    sensor = _list_sensor([n for n in names if n is not None])
    resolved = [None if n is None else _resolve_or_none(n, sensor) for n in names]
    return resolved if any(resolved) else None


def _list_sensor(names: Sequence[str]) -> str | None:
    """``'sentinel2'`` if a name exists only on Sentinel-2, else None."""
    if any(':' not in n and _SENTINEL2_ONLY.fullmatch(_normalise(n)) for n in names):
        return 'sentinel2'
    return None


def _resolve_or_none(name: str, sensor: str | None) -> str | None:
    """Canonical name of a pretrained band, or None if geopeft does not know it."""
    try:
        return canonical_band(name, sensor)
    except ValueError:
        return None


def _sensor(name: str) -> str:
    """The band numbering a sensor name uses.

    Raises:
        ValueError: If the sensor is unknown.
    """
    key = _normalise(name).rstrip('+')
    if key not in SENSORS:
        msg = f"Unknown sensor '{name}'; known sensors: {', '.join(SENSORS)}."
        raise ValueError(msg)
    return SENSORS[key]


def _normalise(name: str) -> str:
    """Lower case, without separators (``-``, ``_``, spaces)."""
    return re.sub(r'[-_\s]', '', name.lower())


def _numbered(key: str) -> str:
    """A numbered band key without zero padding or a product prefix (``SR_``)."""
    key = re.sub(r'^(?:sr|st|toa)(?=b\d)', '', key)
    return re.sub(r'^b0+(?=\d)', 'b', key)


def _known_names() -> str:
    """The canonical names, comma separated."""
    return ', '.join(CANONICAL_BANDS)
