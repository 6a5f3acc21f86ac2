"""geopeft.datamodules: split protocols and data modules."""

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

__all__ = (
    'IMAGENET_MEAN',
    'IMAGENET_STD',
    'PROTOCOLS',
    'PROTOCOL_SEEDS',
    'AIDDataModule',
    'ResizeImage',
    'SceneClassificationDataModule',
    'SceneFolderDataModule',
    'SplitProtocol',
    'UCMercedProtocolDataModule',
    'stratified_split',
)
