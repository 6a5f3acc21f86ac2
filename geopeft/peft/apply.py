"""Turn a timm backbone into a PEFT backbone, by config."""

from collections.abc import Mapping
from typing import Any

from torch import nn

from .blocks import block_type_names, find_blocks, stage_layout, supported_block_types
from .capm import CAPM
from .config import PEFTConfig
from .eqam import add_eqam
from .lora import add_lora, default_lora_targets
from .vpt import add_prompt_tokens

#: Normalisation layers whose parameters BitFit trains.
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def _fail(config: PEFTConfig, name: str, needs: str, found: str) -> ValueError:
    """Build the build-time error of a method that cannot apply to a backbone."""
    return ValueError(
        f'PEFT method "{config.method}" cannot be applied to backbone "{name}": '
        f'{needs}; {found}.'
    )


def _check_stages(model: nn.Module, config: PEFTConfig, name: str, what: str) -> None:
    """Check that prompts can be added at the stage outputs of ``feature_info``."""
    info = getattr(model, 'feature_info', None)
    needs = f'{what} needs stage modules listed in model.feature_info'
    if not info:
        raise _fail(config, name, needs, f'{type(model).__name__} has no feature_info')
    for entry in info:
        try:
            model.get_submodule(entry['module'])
        except AttributeError:
            raise _fail(
                config, name, needs, f'it has no module "{entry["module"]}"'
            ) from None
    if stage_layout(model) == 'NLC' and not hasattr(
        getattr(model, 'patch_embed', None), 'dynamic_feat_size'
    ):
        raise _fail(
            config,
            name,
            f'{what} on token stage outputs needs a timm PatchEmbed as '
            'model.patch_embed (for the patch grid)',
            f'it has {type(getattr(model, "patch_embed", None)).__name__}',
        )


def _check(model: nn.Module, config: PEFTConfig, name: str) -> None:
    """Check, before changing anything, that the method applies to the backbone.

    Raises:
        ValueError: Naming the method, the backbone and what is missing.
    """
    method = config.method
    if hasattr(model, 'geopeft_config'):
        msg = (
            f'PEFT was already applied to backbone "{name}" '
            f'(method "{model.geopeft_config["method"]}"); build a fresh backbone.'
        )
        raise ValueError(msg)
    if method in ('eqam', 'upetu', 'adapter') and not find_blocks(model):
        what = 'EQAM' if method != 'adapter' else 'the fp32 adapter'
        raise _fail(
            config,
            name,
            f'{what} needs blocks with a recognised MLP/pointwise path',
            f'backbone "{name}" has blocks of type '
            f'{", ".join(block_type_names(model)) or "(none)"}; supported block '
            f'types: {supported_block_types()}',
        )
    if method in ('capm', 'upetu'):
        _check_stages(model, config, name, 'CAPM')
    if method == 'prompt':
        if stage_layout(model) == 'NLC':
            missing = [
                attribute
                for attribute in ('blocks', 'patch_embed', 'embed_dim')
                if not hasattr(model, attribute)
            ]
            if missing:
                raise _fail(
                    config,
                    name,
                    'prompt tokens need a timm VisionTransformer',
                    f'{type(model).__name__} has no {", ".join(missing)}',
                )
        else:
            _check_stages(model, config, name, 'prompt maps')
    if method == 'lora':
        _check_lora(model, config, name)


def _check_lora(model: nn.Module, config: PEFTConfig, name: str) -> None:
    """Check that every LoRA target matches a module of the backbone."""
    if config.target_modules is None:
        if not default_lora_targets(model):
            raise _fail(
                config,
                name,
                'default LoRA targets are the nn.Linear and 1x1 nn.Conv2d layers '
                'inside recognised blocks; set target_modules for other backbones',
                f'backbone "{name}" has blocks of type '
                f'{", ".join(block_type_names(model)) or "(none)"}; supported block '
                f'types: {supported_block_types()}',
            )
        return
    names = [module_name for module_name, _ in model.named_modules()]
    unmatched = [
        target
        for target in config.target_modules
        if not any(n == target or n.endswith(f'.{target}') for n in names)
    ]
    if unmatched:
        examples = ', '.join(default_lora_targets(model)[:4])
        raise _fail(
            config,
            name,
            f'LoRA target_modules {unmatched} match no module',
            f'targets are full module names or name suffixes (e.g. {examples})',
        )


def _enable_bitfit(model: nn.Module) -> None:
    """Make biases and normalisation-layer parameters trainable."""
    for module in model.modules():
        for parameter_name, parameter in module.named_parameters(recurse=False):
            if isinstance(module, NORM_TYPES) or parameter_name == 'bias':
                parameter.requires_grad_(True)


def _add_stage_prompts(model: nn.Module, config: PEFTConfig, *, gated: bool) -> None:
    """Add CAPM (gated) or plain prompt maps at the stage outputs."""
    prompts = CAPM.for_backbone(model, size=config.prompt_size, gated=gated)
    reference = next(model.parameters())
    model.add_module(
        'capm' if gated else 'prompt', prompts.to(reference.device, reference.dtype)
    )
    prompts.attach(model)


def apply_peft(
    model: nn.Module,
    config: PEFTConfig | str | Mapping[str, Any] | None,
    *,
    name: str = 'backbone',
) -> nn.Module:
    """Turn a timm backbone into a PEFT backbone in place.

    *model* is a timm model created with ``num_classes=0``; the task head lives
    outside it. New modules are inserted with forward hooks, so the pretrained
    parameter names are unchanged (except under LoRA, where HF ``peft`` moves a
    target's weights to ``<target>.base_layer``). What is trainable:

    * ``full``: everything; ``linear``: nothing (only the outside head trains);
    * ``bitfit``: biases and normalisation-layer parameters;
    * ``eqam``: one :class:`~geopeft.peft.EQAM` per block (``bits``-bit Q-Linear,
      hidden 16, scale 1.0 by default), in parallel with the block's MLP /
      pointwise path; ``capm``: :class:`~geopeft.peft.CAPM` at every stage in
      ``model.feature_info``; ``upetu``: both;
    * ``adapter``: AdaptFormer-style fp32 bottleneck in the EQAM place (bias,
      ReLU, hidden 64, scale 0.1 by default);
    * ``lora``: LoRA (HF ``peft``) on every ``nn.Linear`` and 1x1 ``nn.Conv2d``
      inside the blocks, or on ``target_modules``; only ``lora_A``/``lora_B``;
    * ``prompt``: the VPT-like baseline. On vision transformers (token stages)
      VPT-deep: ``prompt_tokens`` learnable tokens inserted after the prefix
      tokens before every block and dropped after it. On convolutional / Swin
      pyramids an additive learnable prompt map per stage (CAPM without the
      context gate).

    Args:
        model: The timm backbone (modified in place).
        config: A :class:`PEFTConfig`, a method name, a mapping of its fields or
            ``None`` (UPetu).
        name: The backbone's name, used in error messages and recorded for the
            adapter file metadata.

    Returns:
        *model*, with ``geopeft_backbone`` (the name) and ``geopeft_config`` (the
        config as a dict) attributes set.

    Raises:
        ValueError: If the config is invalid, PEFT was already applied, or the
            method cannot apply to this backbone (before anything is changed).
    """
    config = PEFTConfig.from_any(config)
    _check(model, config, name)
    method = config.method
    model.requires_grad_(method == 'full')
    if method == 'bitfit':
        _enable_bitfit(model)
    if method in ('eqam', 'upetu'):
        add_eqam(
            model,
            hidden=config.hidden or 16,
            bits=config.bits,
            scale=1.0 if config.scale is None else config.scale,
            learn_scale=config.learn_scale,
        )
    if method == 'adapter':
        add_eqam(
            model,
            attribute='adapter',
            hidden=config.hidden or 64,
            bits=32,
            scale=0.1 if config.scale is None else config.scale,
            learn_scale=config.learn_scale,
            bias=True,
            activation=nn.ReLU,
        )
    if method in ('capm', 'upetu'):
        _add_stage_prompts(model, config, gated=True)
    if method == 'prompt':
        if stage_layout(model) == 'NLC':
            add_prompt_tokens(model, config.prompt_tokens)
        else:
            _add_stage_prompts(model, config, gated=False)
    if method == 'lora':
        add_lora(
            model,
            config.target_modules or default_lora_targets(model),
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
        )
    model.geopeft_backbone = name
    model.geopeft_config = config.to_dict()
    return model


def keep_frozen_batchnorm_eval(module: nn.Module) -> None:
    """Put batch-norm layers whose parameters are all frozen into eval mode.

    A frozen backbone must not drift: the running statistics of batch norms whose
    affine parameters are frozen stay at their pretrained values, except inside
    backbones whose PEFT config sets ``adapt_batchnorm`` (see
    :func:`adapted_batchnorms`).

    Args:
        module: Any module (changed in place).
    """
    adapted = {id(norm) for norm in adapted_batchnorms(module)}
    for child in module.modules():
        if id(child) in adapted:
            continue
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in child.parameters(recurse=False)
        ):
            child.eval()


def adapted_batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """List the batch norms whose running statistics adapt to the training data.

    These are the batch norms of PEFT backbones built with ``adapt_batchnorm``;
    their statistics are saved in adapter files.

    Args:
        module: Any module.

    Returns:
        The batch-norm layers, in module order, each once.
    """
    found: dict[int, nn.modules.batchnorm._BatchNorm] = {}
    for sub in module.modules():
        config = getattr(sub, 'geopeft_config', None)
        if isinstance(config, dict) and config.get('adapt_batchnorm'):
            for child in sub.modules():
                if isinstance(child, nn.modules.batchnorm._BatchNorm):
                    found.setdefault(id(child), child)
    return list(found.values())
