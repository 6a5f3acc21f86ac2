"""End-to-end CLI tests on tiny generated data (the way TorchGeo tests its tasks)."""

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.transform
import torch
from torchgeo.main import main as torchgeo_main

from geopeft.main import main
from geopeft.tasks import PEFTClassification

CONF = Path(__file__).parent / 'conf'


def _trainer_args(root: Path, tmp_path: Path) -> list[str]:
    return [
        '--data.init_args.root',
        str(root),
        '--trainer.accelerator',
        'cpu',
        '--trainer.max_epochs',
        '1',
        '--trainer.log_every_n_steps',
        '1',
        '--trainer.default_root_dir',
        str(tmp_path),
    ]


def test_geopeft_fit_test_predict(scene_root: Path, tmp_path: Path) -> None:
    args = [
        '--config',
        str(CONF / 'scene_folder.yaml'),
        *_trainer_args(scene_root, tmp_path),
    ]
    main(['fit', *args])
    ckpts = sorted(tmp_path.rglob('*.ckpt'))
    assert ckpts, 'fit wrote no checkpoint'
    main(['validate', *args, '--ckpt_path', str(ckpts[-1])])
    main(['test', *args, '--ckpt_path', str(ckpts[-1])])
    main(['predict', *args, '--ckpt_path', str(ckpts[-1])])


def test_torchgeo_fit_full_class_paths(scene_root: Path, tmp_path: Path) -> None:
    args = [
        '--config',
        str(CONF / 'scene_folder_torchgeo.yaml'),
        *_trainer_args(scene_root, tmp_path),
    ]
    torchgeo_main(['fit', *args])
    ckpts = sorted(tmp_path.rglob('*.ckpt'))
    assert ckpts
    task = PEFTClassification.load_from_checkpoint(ckpts[-1], weights_only=True)
    assert task.peft_config.method == 'lora'
    # The same YAML works with the geopeft command too.
    main(['test', *args, '--ckpt_path', str(ckpts[-1])])


def test_export_adapter_reproduces_logits(
    scene_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A "pretrained" backbone saved to a local file, so it can be rebuilt exactly.
    torch.manual_seed(0)
    reference = PEFTClassification(model='convnext_atto', num_classes=3, peft='full')
    weights = tmp_path / 'pretrained.pth'
    torch.save(reference.model.backbone.model.state_dict(), weights)

    args = [
        '--config',
        str(CONF / 'scene_folder.yaml'),
        '--model.init_args.weights',
        str(weights),
        *_trainer_args(scene_root, tmp_path),
    ]
    main(['fit', *args])
    ckpt = sorted(tmp_path.rglob('*.ckpt'))[-1]
    adapter = tmp_path / 'adapter.safetensors'
    assert main(['export-adapter', str(ckpt), str(adapter)]) == 0
    assert 'bytes' in capsys.readouterr().out
    assert adapter.stat().st_size < 100_000

    trained = PEFTClassification.load_from_checkpoint(ckpt, weights_only=True).eval()
    rebuilt = PEFTClassification(
        model='convnext_atto',
        weights=str(weights),
        num_classes=3,
        peft={'method': 'upetu', 'bits': 1},
        adapter=str(adapter),
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(trained(x), rebuilt(x))


def test_params_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(['params', '--backbone', 'convnext_atto', '--num-classes', '5', '--json'])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    for key in ('total', 'trainable', 'trainable_percent', 'adapter_bytes'):
        assert key in report
    assert 0 < report['trainable'] < report['total']
    assert report['trainable_percent'] == pytest.approx(
        100 * report['trainable'] / report['total']
    )


def test_params_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['params', '--backbone', 'resnet18', '--peft', 'linear']) == 0
    out = capsys.readouterr().out
    assert 'resnet18' in out and 'head' in out


def test_unknown_method_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    # A usage error (exit status 2, one line on stderr), not a traceback.
    with pytest.raises(SystemExit) as exit_info:
        main(['params', '--backbone', 'resnet18', '--peft', 'upeto'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'Unknown PEFT method "upeto". Did you mean "upetu"?' in err


def test_bench_peft_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        'bench',
        'peft',
        '--backbone',
        'convnext_atto',
        '--methods',
        'linear',
        'upetu',
        '--batch-size',
        '2',
        '--image-size',
        '32',
        '--steps',
        '1',
        '--warmup',
        '0',
        '--json',
        '--device',
        'cpu',
    ]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row['method'] for row in rows] == ['linear', 'upetu']
    for row in rows:
        assert row['step_ms'] > 0 and row['peak_mb'] >= 0
        assert row['adapter_ratio'] < 0.1


def test_seeds_reports_mean_and_std(
    scene_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / 'seeds.json'
    argv = [
        'seeds',
        '--config',
        str(CONF / 'scene_folder.yaml'),
        '--seeds',
        '0',
        '1',
        '--out',
        str(out),
        *_trainer_args(scene_root, tmp_path),
    ]
    assert main(argv) == 0
    assert '+-' in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert len(payload['scores']) == 2
    assert all(0 <= s <= 1 for s in payload['scores'])


def demo_argv(out: Path, *extra: str) -> list[str]:
    """``geopeft demo`` on a tiny random model: 2 + 1 + 1 images per class, 1 epoch."""
    tiny = ['--backbone', 'convnext_atto', '--weights', 'none', '--per-class', '2']
    tiny += ['--val-per-class', '1', '--test-per-class', '1']
    fast = ['--epochs', '1', '--image-size', '32', '--batch-size', '4']
    return ['demo', '--out', str(out), *tiny, *fast, '--accelerator', 'cpu', *extra]


def test_demo_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / 'demo'
    argv = demo_argv(out, '--epochs', '2')
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert 'NOT real imagery' in printed
    assert (
        'UPetu and the linear probe tie' in printed or 'the linear probe by' in printed
    )
    summary = json.loads((out / 'metrics.json').read_text())
    assert [row['method'] for row in summary['results']] == ['upetu', 'linear']
    for row in summary['results']:
        assert 0 <= row['test_accuracy'] <= 1
        assert row['test_images'] == 8 and row['val_images'] == 8  # 1 per class
        assert Path(row['adapter_file']).is_file()
        last = out / 'checkpoints' / row['method'] / 'last.ckpt'
        assert torch.load(last, weights_only=True)['epoch'] == 1  # the last epoch
    upetu, linear = summary['results']
    assert upetu['lr'] == linear['lr']  # one head learning rate for every method
    assert (out / 'results.png').stat().st_size > 0
    assert (out / 'samples.png').stat().st_size > 0
    # The last step maps a georeferenced scene: a class GeoTIFF on its grid.
    scene = summary['scene']
    assert 0 <= scene['pixel_accuracy'] <= 1
    with (
        rasterio.open(out / 'scene.tif') as src,
        rasterio.open(scene['prediction']) as f,
    ):
        assert (f.crs, f.transform, f.shape) == (src.crs, src.transform, src.shape)
        assert f.crs.to_epsg() == 32633
        classes = f.read(1)
    assert classes.max() < len(summary['results'][0]['classes'])
    assert Path(scene['quicklook']).stat().st_size > 0
    assert not list(out.glob('.*'))  # no temporary files left behind


def test_demo_maps_a_given_raster(tmp_path: Path) -> None:
    # A 4-band raster (as NAIP's R, G, B, NIR) whose bands 1-3 are read as RGB.
    raster = tmp_path / 'naip.tif'
    profile = {
        'driver': 'GTiff',
        'width': 70,
        'height': 50,
        'count': 4,
        'dtype': 'uint8',
        'crs': 'EPSG:26914',
        'transform': rasterio.transform.from_origin(600000, 5200000, 5, 5),
    }
    with rasterio.open(raster, 'w', **profile) as f:
        f.write(np.random.default_rng(0).integers(0, 255, (4, 50, 70), dtype=np.uint8))
    out = tmp_path / 'demo'
    argv = demo_argv(
        out,
        '--methods',
        'linear',
        '--scene',
        str(raster),
        '--scene-bands',
        '1',
        '2',
        '3',
    )
    assert main(argv) == 0
    scene = json.loads((out / 'metrics.json').read_text())['scene']
    assert scene['pixel_accuracy'] is None  # no known layout
    with rasterio.open(scene['prediction']) as f:
        assert (f.width, f.height, f.crs.to_epsg()) == (70, 50, 26914)
        assert f.transform == profile['transform']
    assert not (out / 'scene.tif').exists()


def test_help_lists_every_command_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from geopeft import main as main_module

    assert main(['--help']) == 0
    out = capsys.readouterr().out
    commands = {'fit', 'validate', 'test', 'predict', *main_module._TOOLS}
    listed = {line.split()[0] for line in out.splitlines() if line.startswith('  ')}
    assert listed == commands
    # Bare "geopeft" is a usage error with the same list on stderr.
    assert main([]) == 2
    assert 'predict-raster' in capsys.readouterr().err


def test_params_lists_the_methods_with_their_own_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from geopeft.peft import METHODS

    assert main(['params', '--list-methods', '--json']) == 0
    table = json.loads(capsys.readouterr().out)
    assert list(table) == list(METHODS)
    assert table['lora']['lora_r'] == 8 and 'bits' not in table['lora']
    assert table['full'] == {} and table['upetu']['bits'] == 1
    assert main(['params', '--list-methods']) == 0
    assert 'prompt_tokens=8' in capsys.readouterr().out


def test_model_is_the_option_name_everywhere(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --model as in YAML; --arch stays an alias.
    for flag in ('--model', '--arch'):
        argv = ['params', '--task', 'segmentation', flag, 'unet']
        assert (
            main([*argv, '--backbone', 'resnet18', '--peft', 'linear', '--json']) == 0
        )
        assert json.loads(capsys.readouterr().out)['arch'] == 'unet'
