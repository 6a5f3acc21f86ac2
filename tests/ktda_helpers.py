"""Tiny KTDA settings shared by the distillation tests."""

from typing import Any

#: A 32-d, 4-block DINOv2-shaped ViT: the teacher of every fast test.
TINY_TEACHER: dict[str, Any] = {'embed_dim': 32, 'depth': 4, 'num_heads': 2}

#: Tap every block of the tiny teacher (1-based).
TINY_TAPS = [1, 2, 3, 4]

#: build_ktda_model / KTDASegmentation arguments of a tiny student.
TINY_STUDENT: dict[str, Any] = {
    'teacher': 'dinov2_vits14',
    'teacher_kwargs': TINY_TEACHER,
    'teacher_taps': TINY_TAPS,
    'fmm_depth': 1,
    'fmm_heads': 2,
    'head_channels': 16,
    'aux_channels': 8,
}
