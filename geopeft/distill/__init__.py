"""geopeft.distill: KTDA, distilling a frozen DINOv2 teacher into a CNN segmenter.

The teacher (:class:`DINOv2Teacher`) is a training-time cost only: the deployable
model (:class:`KTDAModel`) is the student with its feature alignment (FAM), pyramid
neck, feature modulation (FMM) and UPerNet head.
"""

from .alignment import NECK_SCALES, FeatureAlignment, PyramidNeck
from .heads import POOL_SCALES, FCNHead, UPerHead
from .loss import distillation_loss, width_kl
from .model import KTDAModel, KTDAOutput, build_ktda_model, ktda_parameter_report
from .modulation import BottleneckMLP, FeatureModulation, FMMKind, TokenBlocks
from .teacher import (
    PATCH_SIZE,
    TEACHERS,
    DINOv2Teacher,
    TeacherSpec,
    teacher_grid,
    teacher_spec,
)

__all__ = (
    'NECK_SCALES',
    'PATCH_SIZE',
    'POOL_SCALES',
    'TEACHERS',
    'BottleneckMLP',
    'DINOv2Teacher',
    'FCNHead',
    'FMMKind',
    'FeatureAlignment',
    'FeatureModulation',
    'KTDAModel',
    'KTDAOutput',
    'PyramidNeck',
    'TeacherSpec',
    'TokenBlocks',
    'UPerHead',
    'build_ktda_model',
    'distillation_loss',
    'ktda_parameter_report',
    'teacher_grid',
    'teacher_spec',
    'width_kl',
)
