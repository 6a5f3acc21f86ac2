"""geopeft.datamodules: split protocols and data modules."""

from .change_augmentation import (
    TRAIN_PRESETS,
    ChangeAugmentation,
    DatewisePhotometric,
    change_eval_augmentation,
    change_train_augmentation,
)
from .change_detection import ChangeFolderDataModule
from .ktda import GrassDataModule, L8BiomePatchesDataModule
from .ktda_augmentation import (
    KTDAAugmentation,
    PhotoMetricDistortion,
    ktda_eval_augmentation,
    ktda_train_augmentation,
)
from .rasters import (
    RasterChangeDataModule,
    RasterSegmentationDataModule,
    SegmentationAugmentation,
)
from .scene_classification import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AIDDataModule,
    ResizeImage,
    SceneClassificationDataModule,
    SceneFolderDataModule,
    UCMercedProtocolDataModule,
)
from .splits import PROTOCOL_SEEDS, PROTOCOLS, SplitProtocol, stratified_split
from .torchgeo_change import LEVIRCDChangeDataModule, OSCDChangeDataModule

__all__ = (
    'IMAGENET_MEAN',
    'IMAGENET_STD',
    'PROTOCOLS',
    'PROTOCOL_SEEDS',
    'TRAIN_PRESETS',
    'AIDDataModule',
    'ChangeAugmentation',
    'ChangeFolderDataModule',
    'DatewisePhotometric',
    'GrassDataModule',
    'KTDAAugmentation',
    'L8BiomePatchesDataModule',
    'LEVIRCDChangeDataModule',
    'OSCDChangeDataModule',
    'PhotoMetricDistortion',
    'RasterChangeDataModule',
    'RasterSegmentationDataModule',
    'ResizeImage',
    'SceneClassificationDataModule',
    'SceneFolderDataModule',
    'SegmentationAugmentation',
    'SplitProtocol',
    'UCMercedProtocolDataModule',
    'change_eval_augmentation',
    'change_train_augmentation',
    'ktda_eval_augmentation',
    'ktda_train_augmentation',
    'stratified_split',
)
