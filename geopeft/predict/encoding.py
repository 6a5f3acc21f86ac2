"""Output pixels: blended sums -> a class map or per-class probabilities.

``classes``
    one band, the arg-max class (``uint8``, or ``uint16`` beyond 254 classes); a
    one-channel (binary or change) model gives 1 where its probability exceeds the
    threshold (0.5). Nodata is 255 (``uint8``) or 65535 (``uint16``).
``probabilities`` (``float32``)
    one band per channel, the blended probabilities; nodata is NaN.
``probabilities`` (``uint8``)
    one band per channel, ``round(254 * p)`` of the probability clipped to
    ``[0, 1]`` (divide by 254 to get it back, to within 0.002); nodata is 255.

A pixel is nodata when its input is nodata or no chip covered it (every chip over
it was nodata and skipped).
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np

#: What a prediction writes: a class map or per-class probabilities.
OutputMode = Literal['classes', 'probabilities']
#: Pixel type of ``probabilities``.
ProbabilityDtype = Literal['float32', 'uint8']

#: Rows encoded at a time (bounds the temporaries of wide scenes).
_ROWS_PER_PASS = 64


@dataclass(frozen=True)
class OutputEncoding:
    """How blended sums become output pixels.

    Attributes:
        mode: ``'classes'`` or ``'probabilities'``.
        channels: Channels of the model's output (classes; 1 for binary).
        probability_dtype: ``'float32'`` or ``'uint8'`` (``probabilities`` only).
        threshold: Probability above which a one-channel output is class 1.
    """

    mode: OutputMode = 'classes'
    channels: int = 2
    probability_dtype: ProbabilityDtype = 'float32'
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in ('classes', 'probabilities'):
            msg = f"output must be 'classes' or 'probabilities', got {self.mode!r}"
            raise ValueError(msg)
        if self.probability_dtype not in ('float32', 'uint8'):
            msg = (
                "probability dtype must be 'float32' or 'uint8', got "
                f'{self.probability_dtype!r}'
            )
            raise ValueError(msg)
        if self.channels < 1:
            msg = f'the model must output >= 1 channel, got {self.channels}'
            raise ValueError(msg)

    @property
    def count(self) -> int:
        """Bands of the output."""
        return 1 if self.mode == 'classes' else self.channels

    @property
    def dtype(self) -> str:
        """Numpy dtype name of the output."""
        if self.mode == 'classes':
            return 'uint8' if self.channels < 255 else 'uint16'
        return self.probability_dtype

    @property
    def nodata(self) -> float:
        """Nodata value of the output."""
        if self.dtype == 'float32':
            return float('nan')
        return float(np.iinfo(self.dtype).max)

    def encode(
        self, sums: np.ndarray, weight: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """Turn blended sums into output pixels.

        Args:
            sums: ``[channels, rows, width]`` weighted sums.
            weight: ``[rows, width]`` sums of weights.
            valid: ``[rows, width]`` True where the input has data.

        Returns:
            ``[count, rows, width]`` of :attr:`dtype`.
        """
        rows, width = weight.shape
        out = np.empty((self.count, rows, width), dtype=self.dtype)
        for start in range(0, rows, _ROWS_PER_PASS):
            part = slice(start, start + _ROWS_PER_PASS)
            out[:, part] = self._encode(sums[:, part], weight[part], valid[part])
        return out

    def _encode(
        self, sums: np.ndarray, weight: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """Encode a few rows (see :meth:`encode`)."""
        covered = valid & (weight > 0)
        if self.mode == 'classes' and self.channels > 1:
            # sum(p * w) / sum(w) has the arg-max of sum(p * w): weights are > 0.
            value = _argmax_channels(sums, self.dtype)[None]
        else:
            with np.errstate(invalid='ignore', divide='ignore'):
                value = sums / np.where(covered, weight, 1.0)
            if self.mode == 'classes':
                value = value > self.threshold
            elif self.dtype == 'uint8':
                value = np.rint(np.clip(value, 0.0, 1.0) * 254.0)
        value = value.astype(self.dtype, copy=False)
        if not covered.all():
            value[:, ~covered] = self.nodata
        return value


def _argmax_channels(sums: np.ndarray, dtype: str) -> np.ndarray:
    """``np.argmax(sums, axis=0)`` (first of equal maxima), channel by channel.

    A running maximum over the few channels of a class map is several times
    faster than NumPy's arg-max along the first, strided axis.
    """
    best = sums[0].copy()
    index = np.zeros(best.shape, dtype=dtype)
    for channel in range(1, len(sums)):
        better = sums[channel] > best
        np.copyto(best, sums[channel], where=better)
        index[better] = channel
    return index
