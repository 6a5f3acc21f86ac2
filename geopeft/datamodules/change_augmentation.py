"""Kornia GPU augmentation for bi-temporal change-detection batches.

A change-detection batch holds ``image [B, 2, C, H, W]`` (date 1 and date 2) and
``mask [B, 1, H, W]`` (or ``[B, H, W]``). A correct augmentation moves both dates
and the mask with the SAME geometric transform (otherwise unchanged pixels look
changed) while the photometric transforms are drawn INDEPENDENTLY for each date
(the two acquisitions differ in light, season and sensor; the model must learn to
ignore that).

:class:`ChangeAugmentation` does this in three steps:

1. geometry: the dates are flattened into the channels (``[B, 2C, H, W]``) and a
   :class:`kornia.augmentation.AugmentationSequential` transforms this image and
   the mask with one parameter draw per sample, masks resampled with nearest;
2. photometry (:class:`DatewisePhotometric`): the dates are flattened into the
   batch (``[2B, C, H, W]``) so every date of every sample gets its own draw;
3. normalisation per band.

``K.VideoSequential`` draws one parameter set per sample for all its children,
so it cannot share the geometry while drawing the photometry per date; and with
Kornia 0.9 it rejects one-frame masks next to two-frame videos (TorchGeo 0.10.1's
own LEVIRCD/OSCD augmentations fail there). The flattening above avoids both.
Checked with Kornia 0.8.3 (the range pyproject pins) and 0.9.0.

The presets :func:`change_train_augmentation` and :func:`change_eval_augmentation`
work for any change datamodule, including as replacements of TorchGeo's
``LEVIRCDDataModule`` and ``OSCDDataModule`` augmentations::

    dm = LEVIRCDDataModule(root='data/levircd', patch_size=256)
    dm.train_aug = change_train_augmentation(dm.mean, dm.std, dm.patch_size)
"""

from collections.abc import Sequence

import kornia.augmentation as K
import torch
from torch import Tensor, nn
from torchgeo.datasets.utils import Sample

#: Train presets by name: whether each adds flips and rotations (``geometric``) and
#: per-date colour jitter (``photometric``). All crop to the patch size.
TRAIN_PRESETS: dict[str, dict[str, bool]] = {
    'crop': {'geometric': False, 'photometric': False},
    'geometric': {'geometric': True, 'photometric': False},
    'full': {'geometric': True, 'photometric': True},
}


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``(height, width)`` from a side or a pair."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _statistics(values: float | Sequence[float] | Tensor, name: str = 'mean') -> Tensor:
    """Return normalisation statistics as a 1-D float32 tensor, checked.

    Args:
        values: One value, or one per band.
        name: ``'mean'`` or ``'std'``, for the checks and the message.

    Returns:
        The values as a 1-D float32 tensor.

    Raises:
        ValueError: If a value is not finite, or a ``std`` is not positive (a zero
            std divides by zero and trains to NaN).
    """
    tensor = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if tensor.numel() == 0:
        msg = f'{name} is empty: give one value per band (or one for all bands)'
        raise ValueError(msg)
    bad = ~torch.isfinite(tensor)
    if name == 'std':
        bad |= tensor <= 0
    if bad.any():
        band = int(bad.nonzero()[0]) + 1
        value = float(tensor[band - 1])
        need = 'a positive number' if name == 'std' else 'a finite number'
        msg = (
            f'{name} of band {band} is {value:g}: normalisation needs {need} per '
            'band, (x - mean) / std: give the statistics of each band of the '
            'training images'
        )
        if name == 'std' and value == 0:
            msg += ' (a constant band has no spread: drop it, or use std 1)'
        raise ValueError(msg)
    return tensor


def _check_statistics(owner: str, mean: Tensor, std: Tensor, bands: int) -> None:
    """Check that *mean* and *std* hold one value, or one value per band.

    Args:
        owner: The augmentation, for the message.
        mean: Per-band means.
        std: Per-band standard deviations.
        bands: Bands of the images.

    Raises:
        ValueError: Naming the statistic, its length and the band count.
    """
    for name, values in (('mean', mean), ('std', std)):
        if values.numel() not in (1, bands):
            msg = (
                f'{owner}: {name} has {values.numel()} values but the images have '
                f'{bands} bands; pass one value per band (or one value for all bands)'
            )
            raise ValueError(msg)


class DatewisePhotometric(nn.Module):
    """Photometric jitter drawn independently for every date of every sample.

    The images are divided by ``value_range`` (so 8-bit images lie in [0, 1]),
    flattened to ``[B * T, C, H, W]`` (one draw each), jittered and scaled back.

    * 3-band (RGB) images: :class:`kornia.augmentation.ColorJitter` (brightness
      and contrast factors in ``[1 - x, 1 + x]``, saturation likewise, hue shift in
      ``[-hue, hue]`` of a full turn, in random order), clipped to
      ``[0, value_range]`` (before the noise).
    * other band counts (saturation and hue need RGB): a brightness offset in
      ``[-brightness, brightness] * value_range`` and a contrast gain in
      ``[1 - contrast, 1 + contrast]`` applied to all bands, not clipped.
    * all, last: optional Gaussian noise of standard deviation ``noise_std *
      value_range``.
    """

    def __init__(
        self,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.05,
        noise_std: float = 0.0,
        p: float = 1.0,
        value_range: float = 255.0,
    ) -> None:
        """Initialize a new DatewisePhotometric instance.

        Args:
            brightness: Strength of the brightness jitter (0 for none).
            contrast: Strength of the contrast jitter (0 for none).
            saturation: Strength of the saturation jitter, RGB only (0 for none).
            hue: Largest hue shift as a fraction of a turn, RGB only (0 to 0.5).
            noise_std: Standard deviation of additive Gaussian noise, as a fraction
                of ``value_range`` (0 for none).
            p: Probability of jittering each date.
            value_range: The images' white level: 255 for 8-bit images, e.g. 10000
                for Sentinel-2 reflectance.
        """
        super().__init__()
        self.value_range = value_range
        noise = [K.RandomGaussianNoise(std=noise_std, p=1.0)] if noise_std > 0 else []
        self.rgb = K.ImageSequential(
            K.ColorJitter(brightness, contrast, saturation, hue, p=p), *noise
        )
        self.multiband = K.ImageSequential(
            K.RandomBrightness(
                (1 - brightness, 1 + brightness), clip_output=False, p=p
            ),
            K.RandomContrast((1 - contrast, 1 + contrast), clip_output=False, p=p),
            *noise,
        )

    def forward(self, image: Tensor) -> Tensor:
        """Jitter every date of a batch independently.

        Args:
            image: ``[B, T, C, H, W]`` images in their stored scale.

        Returns:
            The jittered images, same shape and scale.
        """
        b, t, c, h, w = image.shape
        flat = image.reshape(b * t, c, h, w) / self.value_range
        jitter = self.rgb if c == 3 else self.multiband
        return (jitter(flat) * self.value_range).reshape(b, t, c, h, w)


class ChangeAugmentation(nn.Module):
    """Augment a change-detection batch: shared geometry, per-date photometry.

    Takes and returns a batch dict: ``image [B, T, C, H, W]`` (T = 2 dates) and,
    when present, ``mask [B, 1, H, W]`` or ``[B, H, W]`` (kept integer; resampled
    with nearest). Other keys pass through unchanged.
    """

    def __init__(
        self,
        mean: float | Sequence[float] | Tensor,
        std: float | Sequence[float] | Tensor,
        geometric: K.AugmentationSequential | None = None,
        photometric: DatewisePhotometric | None = None,
    ) -> None:
        """Initialize a new ChangeAugmentation instance.

        Args:
            mean: Per-band mean for normalisation (one value, or one per band), in
                the images' stored scale.
            std: Per-band standard deviation for normalisation.
            geometric: Geometric transforms built with ``data_keys=None`` and
                ``keepdim=True``, applied once per sample to both dates and the
                mask; None for none.
            photometric: Per-date photometric jitter; None for none.
        """
        super().__init__()
        self.mean = _statistics(mean, 'mean')
        self.std = _statistics(std, 'std')
        self.geometric = geometric
        self.photometric = photometric
        self.normalize = K.Normalize(mean=self.mean, std=self.std, keepdim=True)

    def forward(self, batch: Sample) -> Sample:
        """Augment and normalise a batch.

        Args:
            batch: ``{'image': [B, T, C, H, W], 'mask': [B, 1, H, W] or [B, H, W]}``
                (the mask is optional).

        Returns:
            The batch with the transformed image and mask.

        Raises:
            ValueError: If the image is not 5-D, or mean/std have neither one value
                nor one value per band.
        """
        image = batch['image']
        if image.ndim != 5:
            msg = (
                'ChangeAugmentation expects change-detection batches with image '
                f'[B, T, C, H, W] (T = 2 dates); got image of shape '
                f'{tuple(image.shape)}'
            )
            raise ValueError(msg)
        b, t, c, h, w = image.shape
        _check_statistics('ChangeAugmentation', self.mean, self.std, c)

        mask = batch.get('mask')
        out = dict(batch)
        if self.geometric is not None:
            data = {'image': image.reshape(b, t * c, h, w)}
            if mask is not None:
                data['mask'] = mask[:, None] if mask.ndim == 3 else mask
            data = self.geometric(data)
            image = data['image'].reshape(b, t, c, *data['image'].shape[-2:])
            if mask is not None:
                out['mask'] = data['mask'][:, 0] if mask.ndim == 3 else data['mask']
        if self.photometric is not None:
            image = self.photometric(image)
        flat = image.reshape(b * t, c, *image.shape[-2:])
        out['image'] = self.normalize(flat).reshape(image.shape)
        return out


def change_train_augmentation(
    mean: float | Sequence[float] | Tensor,
    std: float | Sequence[float] | Tensor,
    patch_size: int | Sequence[int],
    photometric: bool = True,
    *,
    geometric: bool = True,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.05,
    noise_std: float = 0.0,
    value_range: float = 255.0,
) -> ChangeAugmentation:
    """Build the training augmentation for change detection.

    In order, on the device:

    1. the same random crop of ``patch_size`` for both dates and the mask (padded
       with zeros where the image is smaller);
    2. if *geometric*: the same horizontal flip (p=0.5), vertical flip (p=0.5) and
       rotation by 0, 90, 180 or 270 degrees (square patches only: a rotation would
       cut a non-square patch) for both dates and the mask;
    3. if *photometric*: :class:`DatewisePhotometric`, colour jitter drawn
       independently per date (brightness, contrast, and for RGB saturation and
       hue; optional Gaussian noise);
    4. normalisation with *mean* and *std*.

    The mask stays integer; it is resampled with nearest.

    Args:
        mean: Per-band mean (one value or one per band), in the stored scale.
        std: Per-band standard deviation.
        patch_size: Side of the random crop, or ``(height, width)``.
        photometric: Whether to add the per-date photometric jitter.
        geometric: Whether to add the flips and 90-degree rotations.
        brightness: Strength of the brightness jitter.
        contrast: Strength of the contrast jitter.
        saturation: Strength of the saturation jitter (RGB only).
        hue: Largest hue shift as a fraction of a turn (RGB only).
        noise_std: Standard deviation of Gaussian noise as a fraction of
            *value_range* (0 for none).
        value_range: The images' white level (255 for 8-bit images).

    Returns:
        The augmentation, a module called on the batch dict.
    """
    size = _pair(patch_size)
    transforms: list[nn.Module] = [K.RandomCrop(size, pad_if_needed=True)]
    if geometric:
        transforms += [K.RandomHorizontalFlip(), K.RandomVerticalFlip()]
        if size[0] == size[1]:
            transforms.append(
                K.RandomRotation90(times=(0, 3), p=1.0, resample='nearest')
            )
    jitter = (
        DatewisePhotometric(
            brightness,
            contrast,
            saturation,
            hue,
            noise_std=noise_std,
            value_range=value_range,
        )
        if photometric
        else None
    )
    return ChangeAugmentation(
        mean,
        std,
        geometric=K.AugmentationSequential(*transforms, data_keys=None, keepdim=True),
        photometric=jitter,
    )


def change_eval_augmentation(
    mean: float | Sequence[float] | Tensor,
    std: float | Sequence[float] | Tensor,
    patch_size: int | Sequence[int] | None = None,
) -> ChangeAugmentation:
    """Build the evaluation augmentation for change detection.

    Normalisation with *mean* and *std*, after a center crop of *patch_size* for
    both dates and the mask when one is given (None keeps whole images, as the
    published LEVIR-CD protocols evaluate whole tiles). Nothing random.

    Args:
        mean: Per-band mean (one value or one per band), in the stored scale.
        std: Per-band standard deviation.
        patch_size: Side of the center crop, or ``(height, width)``; None for no
            crop. Images must be at least this large.

    Returns:
        The augmentation, a module called on the batch dict.
    """
    crop = None
    if patch_size is not None:
        crop = K.AugmentationSequential(
            K.CenterCrop(_pair(patch_size)), data_keys=None, keepdim=True
        )
    return ChangeAugmentation(mean, std, geometric=crop)
