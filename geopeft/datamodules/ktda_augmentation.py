"""Kornia GPU augmentation of KTDA's segmentation recipe (mmsegmentation's pipeline).

The reference trains with mmsegmentation's ``RandomCrop``, ``RandomFlip`` (p=0.5)
and ``PhotoMetricDistortion``, padding crops smaller than the crop size with 0
(image) and 255 (mask) and normalising with the ImageNet statistics.
:func:`ktda_train_augmentation` does the same on whole batches on the device, in
``on_after_batch_transfer``; :func:`ktda_eval_augmentation` only normalises.

A batch holds ``image [B, C, H, W]`` in the 0-255 scale and ``mask [B, H, W]``
(or ``[B, 1, H, W]``) of class indices; the mask is moved with the image by the
same crop and flip (index operations, so it keeps its integer values) and is
never touched by the photometric distortion.
"""

import math
from collections.abc import Sequence

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb, rgb_to_hsv
from torch import Tensor, nn
from torchgeo.datasets.utils import Sample

from .change_augmentation import _check_statistics, _pair, _statistics


class PhotoMetricDistortion(nn.Module):
    """mmsegmentation's photometric distortion, drawn per image on the device.

    In order, each step applied with probability *p* (0.5), independently per
    image:

    1. brightness: add ``delta`` in ``[-brightness_delta, brightness_delta]``;
    2. contrast: multiply by a factor in *contrast_range* (before the HSV steps
       for a random half of the images, after them for the others);
    3. saturation: multiply the HSV saturation by a factor in *saturation_range*;
    4. hue: rotate the hue by an angle in ``[-hue_delta, hue_delta]`` degrees.

    The image is clipped to ``[0, value_range]`` after every step. Saturation and
    hue need RGB, so they are skipped for other band counts.

    mmsegmentation's defaults (brightness 32, contrast and saturation 0.5-1.5,
    ``hue_delta=18``) work on 8-bit OpenCV HSV images whose hue unit is 2 degrees,
    so its ``hue_delta=18`` turns the hue by up to 36 degrees: the default here.
    Unlike mmsegmentation the values are not rounded to integers between steps,
    and the hue shift is drawn from a continuous range.
    """

    def __init__(
        self,
        brightness_delta: float = 32.0,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 36.0,
        p: float = 0.5,
        value_range: float = 255.0,
    ) -> None:
        """Initialize a new PhotoMetricDistortion instance.

        Args:
            brightness_delta: Largest brightness offset, in the image's scale.
            contrast_range: Range of the contrast factor.
            saturation_range: Range of the saturation factor (RGB only).
            hue_delta: Largest hue rotation in degrees (RGB only).
            p: Probability of each step, per image.
            value_range: The images' white level (255 for 8-bit images).
        """
        super().__init__()
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta
        self.p = p
        self.value_range = value_range

    def _draw(self, image: Tensor, low: float, high: float, identity: float) -> Tensor:
        """Draw one value per image in ``[low, high]``, or *identity* with 1 - p."""
        b = image.shape[0]
        values = torch.empty(b, device=image.device).uniform_(low, high)
        apply = torch.rand(b, device=image.device) < self.p
        return torch.where(apply, values, identity).view(b, 1, 1, 1)

    def forward(self, image: Tensor) -> Tensor:
        """Distort a batch of images.

        Args:
            image: ``[B, C, H, W]`` images in the ``[0, value_range]`` scale.

        Returns:
            The distorted images, float, same shape and scale.
        """
        image = image.float()
        top = self.value_range
        delta = self._draw(image, -self.brightness_delta, self.brightness_delta, 0.0)
        image = (image + delta).clamp(0, top)
        alpha = self._draw(image, *self.contrast_range, 1.0)
        contrast_first = torch.rand(image.shape[0], device=image.device) < 0.5
        contrast_first = contrast_first.view(-1, 1, 1, 1)
        image = torch.where(contrast_first, (image * alpha).clamp(0, top), image)
        if image.shape[1] == 3:
            saturation = self._draw(image, *self.saturation_range, 1.0)
            hue = self._draw(image, -self.hue_delta, self.hue_delta, 0.0)
            hsv = rgb_to_hsv(image / top)
            h = torch.remainder(hsv[:, :1] + hue * (math.pi / 180), 2 * math.pi)
            s = (hsv[:, 1:2] * saturation).clamp(0, 1)
            shifted = (hsv_to_rgb(torch.cat([h, s, hsv[:, 2:]], 1)) * top).clamp(0, top)
            changed = (saturation != 1) | (hue != 0)
            image = torch.where(changed, shifted, image)
        return torch.where(contrast_first, image, (image * alpha).clamp(0, top))


class KTDAAugmentation(nn.Module):
    """Augment a segmentation batch: pad, crop and flip, distort, normalise.

    Takes and returns a batch dict: ``image [B, C, H, W]`` and, when present,
    ``mask [B, H, W]`` or ``[B, 1, H, W]`` (kept integer, same shape). Other keys
    pass through unchanged.
    """

    def __init__(
        self,
        mean: float | Sequence[float] | Tensor,
        std: float | Sequence[float] | Tensor,
        patch_size: int | Sequence[int] | None = None,
        geometric: K.AugmentationSequential | None = None,
        photometric: nn.Module | None = None,
        ignore_index: int = 255,
    ) -> None:
        """Initialize a new KTDAAugmentation instance.

        Args:
            mean: Per-band mean for normalisation (one value, or one per band), in
                the images' stored scale.
            std: Per-band standard deviation for normalisation.
            patch_size: Images smaller than this are padded at the bottom and right
                (image 0, mask *ignore_index*) before *geometric*; None for none.
            geometric: Geometric transforms built with ``data_keys=None`` and
                ``keepdim=True``, applied once per sample to the image and the
                mask; None for none.
            photometric: Transform of the image alone (after the geometry and
                before normalisation); None for none.
            ignore_index: Mask value of padded pixels.
        """
        super().__init__()
        self.mean = _statistics(mean, 'mean')
        self.std = _statistics(std, 'std')
        self.patch_size = None if patch_size is None else _pair(patch_size)
        self.geometric = geometric
        self.photometric = photometric
        self.ignore_index = ignore_index
        self.normalize = K.Normalize(mean=self.mean, std=self.std, keepdim=True)

    def _pad(self, image: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Pad the bottom and right of images smaller than the patch size."""
        if self.patch_size is None:
            return image, mask
        height, width = image.shape[-2:]
        pad = (
            0,
            max(self.patch_size[1] - width, 0),
            0,
            max(self.patch_size[0] - height, 0),
        )
        if not any(pad):
            return image, mask
        image = F.pad(image, pad, value=0.0)
        if mask is not None:
            mask = F.pad(mask, pad, value=self.ignore_index)
        return image, mask

    def forward(self, batch: Sample) -> Sample:
        """Augment and normalise a batch.

        Args:
            batch: ``{'image': [B, C, H, W], 'mask': [B, H, W] or [B, 1, H, W]}``
                (the mask is optional).

        Returns:
            The batch with the transformed image and mask.

        Raises:
            ValueError: If the image is not 4-D, or mean/std have neither one value
                nor one value per band.
        """
        image = batch['image']
        if image.ndim != 4:
            msg = (
                'KTDAAugmentation expects segmentation batches with image '
                f'[B, C, H, W]; got image of shape {tuple(image.shape)}'
            )
            raise ValueError(msg)
        _check_statistics('KTDAAugmentation', self.mean, self.std, image.shape[1])

        out = dict(batch)
        mask = batch.get('mask')
        squeeze = mask is not None and mask.ndim == 3
        if mask is not None and squeeze:
            mask = mask[:, None]
        image, mask = self._pad(image.float(), mask)
        if self.geometric is not None:
            data = {'image': image}
            if mask is not None:
                data['mask'] = mask
            data = self.geometric(data)
            image, mask = data['image'], data.get('mask')
        if mask is not None:
            out['mask'] = mask[:, 0] if squeeze else mask
        if self.photometric is not None:
            image = self.photometric(image)
        out['image'] = self.normalize(image)
        return out


def ktda_train_augmentation(
    patch_size: int | Sequence[int],
    mean: float | Sequence[float] | Tensor,
    std: float | Sequence[float] | Tensor,
    ignore_index: int = 255,
    *,
    photometric: bool = True,
    hue_delta: float = 36.0,
    value_range: float = 255.0,
) -> KTDAAugmentation:
    """Build KTDA's training augmentation (mmsegmentation's pipeline, on the device).

    In order:

    1. images smaller than *patch_size* are padded at the bottom and right, image
       with 0 and mask with *ignore_index* (as mmsegmentation's data preprocessor);
    2. a random crop of *patch_size* (the same for image and mask);
    3. a horizontal flip with p=0.5 (the same for image and mask);
    4. if *photometric*: :class:`PhotoMetricDistortion` of the image (brightness
       +-32, contrast and saturation 0.5-1.5, hue +-*hue_delta* degrees, each with
       p=0.5);
    5. normalisation with *mean* and *std*.

    The mask keeps its integer values (crop and flip move pixels, nothing is
    interpolated).

    Args:
        patch_size: Side of the random crop, or ``(height, width)``.
        mean: Per-band mean (one value or one per band), in the stored scale.
        std: Per-band standard deviation.
        ignore_index: Mask value of padded pixels.
        photometric: Whether to add the photometric distortion.
        hue_delta: Largest hue rotation in degrees (mmsegmentation's hue_delta=18
            in OpenCV's 2-degree units is 36 degrees).
        value_range: The images' white level (255 for 8-bit images).

    Returns:
        The augmentation, a module called on the batch dict.
    """
    size = _pair(patch_size)
    geometric = K.AugmentationSequential(
        K.RandomCrop(size),
        K.RandomHorizontalFlip(p=0.5),
        data_keys=None,
        keepdim=True,
    )
    distortion = (
        PhotoMetricDistortion(
            brightness_delta=32.0 * value_range / 255,
            hue_delta=hue_delta,
            value_range=value_range,
        )
        if photometric
        else None
    )
    return KTDAAugmentation(
        mean,
        std,
        patch_size=size,
        geometric=geometric,
        photometric=distortion,
        ignore_index=ignore_index,
    )


def ktda_eval_augmentation(
    mean: float | Sequence[float] | Tensor,
    std: float | Sequence[float] | Tensor,
) -> KTDAAugmentation:
    """Build KTDA's evaluation augmentation: normalisation of whole images.

    Args:
        mean: Per-band mean (one value or one per band), in the stored scale.
        std: Per-band standard deviation.

    Returns:
        The augmentation, a module called on the batch dict.
    """
    return KTDAAugmentation(mean, std)
