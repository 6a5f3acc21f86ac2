"""Where a parallel adapter goes in each known backbone block type.

A :class:`Placement` names, inside one block, the module whose *input* a parallel
adapter reads (``src``: the block's channel-MLP or pointwise path) and the module
whose *output* the adapter's output is added to (``dst``: the block itself or the
last norm of its residual branch), together with the tensor layouts at both ends.
One rule per block type builds it; :func:`find_blocks` applies the rules to a whole
backbone.
"""

from collections.abc import Callable
from dataclasses import dataclass

from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from timm.models.convnext import ConvNeXtBlock
from timm.models.resnet import BasicBlock, Bottleneck
from timm.models.swin_transformer import SwinTransformerBlock
from timm.models.vision_transformer import Block as ViTBlock
from torch import Tensor, nn

#: Tensor layouts: channels first, channels last, and token sequences.
LAYOUTS = ('NCHW', 'NHWC', 'NLC')


@dataclass(frozen=True)
class Placement:
    """Where a parallel adapter reads and writes inside one block.

    Attributes:
        src: Dotted name (relative to the block) of the module whose input is read.
        dst: Dotted name of the module whose output receives the adapter output
            (``''`` is the block itself).
        in_features: Channels of the ``src`` input.
        out_features: Channels of the ``dst`` output.
        src_layout: Layout of the ``src`` input, one of :data:`LAYOUTS`.
        dst_layout: Layout of the ``dst`` output, one of :data:`LAYOUTS`.
    """

    src: str
    dst: str
    in_features: int
    out_features: int
    src_layout: str
    dst_layout: str


def _channels(layer: nn.Module, side: str) -> int:
    """Return the input (``side='in'``) or output channels of a Linear or Conv2d."""
    if isinstance(layer, nn.Linear):
        return layer.in_features if side == 'in' else layer.out_features
    if isinstance(layer, nn.Conv2d):
        return layer.in_channels if side == 'in' else layer.out_channels
    msg = f'expected nn.Linear or nn.Conv2d, got {type(layer).__name__}'
    raise TypeError(msg)


def _mlp_features(mlp: nn.Module) -> tuple[int, int]:
    """Return (input, output) channels of an MLP: its first and last layers."""
    layers = [m for m in mlp.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    return _channels(layers[0], 'in'), _channels(layers[-1], 'out')


def _convnext(block: ConvNeXtBlock) -> Placement:
    """ConvNeXt: next to ``mlp`` (reads ``norm(dwconv(x))``), added to the block output.

    The layer-scale ``gamma`` multiplies the MLP output inside the block, so the
    adapter output is added after the block rather than to the MLP output.
    """
    c_in, c_out = _mlp_features(block.mlp)
    layout = 'NCHW' if block.use_conv_mlp else 'NHWC'
    return Placement('mlp', '', c_in, c_out, layout, 'NCHW')


def _vit(block: ViTBlock) -> Placement:
    """ViT: next to ``mlp`` (reads ``norm2(x)`` tokens), added to the block output."""
    c_in, c_out = _mlp_features(block.mlp)
    return Placement('mlp', '', c_in, c_out, 'NLC', 'NLC')


def _swin(block: SwinTransformerBlock) -> Placement:
    """Swin: next to ``mlp`` (tokens ``[B, N, C]``), added to the NHWC block output."""
    c_in, c_out = _mlp_features(block.mlp)
    return Placement('mlp', '', c_in, c_out, 'NLC', 'NHWC')


def _bottleneck(block: Bottleneck) -> Placement:
    """ResNet bottleneck: next to ``conv3`` (1x1), added to the ``bn3`` output."""
    return Placement(
        'conv3', 'bn3', block.conv3.in_channels, block.bn3.num_features, 'NCHW', 'NCHW'
    )


def _basic(block: BasicBlock) -> Placement:
    """ResNet basic block: next to ``conv2``, added to the ``bn2`` output."""
    return Placement(
        'conv2', 'bn2', block.conv2.in_channels, block.bn2.num_features, 'NCHW', 'NCHW'
    )


def _inverted_residual(block: InvertedResidual) -> Placement:
    """MBConv: next to the projection ``conv_pwl``, added to the ``bn3`` output."""
    return Placement(
        'conv_pwl',
        'bn3',
        block.conv_pwl.in_channels,
        block.bn3.num_features,
        'NCHW',
        'NCHW',
    )


def _depthwise_separable(block: DepthwiseSeparableConv) -> Placement:
    """Depthwise-separable block: next to ``conv_pw``, added to the ``bn2`` output."""
    return Placement(
        'conv_pw',
        'bn2',
        block.conv_pw.in_channels,
        block.bn2.num_features,
        'NCHW',
        'NCHW',
    )


#: One placement rule per supported block type (subclasses match too).
RULES: dict[type[nn.Module], Callable[..., Placement]] = {
    ConvNeXtBlock: _convnext,
    ViTBlock: _vit,
    SwinTransformerBlock: _swin,
    Bottleneck: _bottleneck,
    BasicBlock: _basic,
    InvertedResidual: _inverted_residual,
    DepthwiseSeparableConv: _depthwise_separable,
}


def supported_block_types() -> str:
    """Return the supported block type names, comma separated."""
    return ', '.join(block_type.__name__ for block_type in RULES)


def placement(block: nn.Module) -> Placement | None:
    """Return the adapter placement for a block, or ``None`` for an unknown type.

    Args:
        block: Any module.

    Returns:
        The placement if *block* is an instance of a type in :data:`RULES`.
    """
    for block_type, rule in RULES.items():
        if isinstance(block, block_type):
            return rule(block)
    return None


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module, Placement]]:
    """Find every block of a backbone that has a placement rule.

    Args:
        model: The backbone.

    Returns:
        ``(name, block, placement)`` in module order.
    """
    found = []
    for name, module in model.named_modules():
        where = placement(module)
        if where is not None:
            found.append((name, module, where))
    return found


def _module_types(roots: list[nn.Module]) -> tuple[set[str], set[str]]:
    """Collect (composite, single-layer) module type names inside *roots*.

    ``nn.Sequential`` and ``nn.ModuleList`` containers are looked through.
    """
    pending = [child for root in roots for child in root.children()]
    composite, layers = set(), set()
    while pending:
        module = pending.pop()
        children = list(module.children())
        if isinstance(module, nn.Sequential | nn.ModuleList):
            pending.extend(children)
        elif children:
            composite.add(type(module).__name__)
        else:
            layers.add(type(module).__name__)
    return composite, layers


def block_type_names(model: nn.Module) -> list[str]:
    """Name the types of the blocks that make up a backbone (for error messages).

    The blocks are the composite modules inside the stage modules of
    ``model.feature_info``; failing that, the composite modules of the whole model,
    or its single layers when it has no composite modules.

    Args:
        model: The backbone.

    Returns:
        Sorted distinct type names.
    """
    info = getattr(model, 'feature_info', None) or []
    stages = [model.get_submodule(entry['module']) for entry in info]
    composite, _ = _module_types(stages)
    if not composite:
        composite, layers = _module_types([model])
        composite = composite or layers
    return sorted(composite)


def to_channels_last(x: Tensor, layout: str) -> Tensor:
    """View a tensor with channels on the last dimension.

    Args:
        x: Tensor in *layout*.
        layout: One of :data:`LAYOUTS`.

    Returns:
        ``[B, H, W, C]`` for ``NCHW``, otherwise *x* itself.
    """
    return x.permute(0, 2, 3, 1) if layout == 'NCHW' else x


def from_channels_last(y: Tensor, like: Tensor, layout: str) -> Tensor:
    """Arrange a channels-last tensor like another tensor of a given layout.

    Args:
        y: Channels-last tensor holding as many elements as *like*.
        like: Target tensor, in *layout*.
        layout: Layout of *like*, one of :data:`LAYOUTS`.

    Returns:
        *y* with the shape and layout of *like*.
    """
    if layout == 'NCHW':
        batch, channels, height, width = like.shape
        return y.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
    return y.reshape(like.shape)


def stage_layout(model: nn.Module) -> str:
    """Return the layout of the stage outputs named in ``model.feature_info``.

    Vision transformers (timm models with ``num_prefix_tokens``) produce token
    sequences ``[B, N, C]`` (prefix tokens first), models that declare
    ``output_fmt = 'NHWC'`` (Swin) channels-last maps, all others ``NCHW`` maps.

    Args:
        model: The backbone.

    Returns:
        One of :data:`LAYOUTS`.
    """
    if hasattr(model, 'num_prefix_tokens'):
        return 'NLC'
    return 'NHWC' if getattr(model, 'output_fmt', 'NCHW') == 'NHWC' else 'NCHW'
