"""User mistakes end ``geopeft`` with one line; bugs keep their traceback."""

from pathlib import Path

import pytest

import geopeft
from geopeft import main as main_module
from geopeft.main import main


def _fake_cli(error: BaseException, *, ours: bool) -> object:
    """A LightningCLI stand-in raising *error* from geopeft's code or from outside."""
    # Compiled as if it were a file of geopeft, or of another library.
    package = Path(geopeft.__file__).parent
    filename = package / 'checks.py' if ours else Path('/lib/other/checks.py')
    namespace: dict[str, object] = {}
    code = compile('def cli(args):\n    raise error\n', str(filename), 'exec')
    exec(code, {'error': error}, namespace)
    return namespace['cli']


@pytest.mark.parametrize(
    'error',
    [
        ValueError('std of band 1 is 0: give the statistics'),
        FileNotFoundError('input raster not found: x.tif'),
        FloatingPointError('the training loss is nan at step 3'),
    ],
)
def test_user_errors_are_one_line_with_status_1(
    error: BaseException,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(main_module, 'lightning_cli', _fake_cli(error, ours=True))
    monkeypatch.delenv('GEOPEFT_DEBUG', raising=False)
    assert main(['fit', '--config', 'x.yaml']) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f'geopeft fit: error: {error}', lines[1]]
    assert '--debug' in lines[1]
    with pytest.raises(type(error)):
        main(['fit', '--debug', '--config', 'x.yaml'])
    monkeypatch.setenv('GEOPEFT_DEBUG', '1')
    with pytest.raises(type(error)):
        main(['fit', '--config', 'x.yaml'])


def test_notes_of_an_error_follow_its_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    error = ValueError('the output exists')
    error.add_note('partial files kept: run again to resume')
    monkeypatch.setattr(main_module, 'lightning_cli', _fake_cli(error, ours=True))
    assert main(['predict']) == 1
    err = capsys.readouterr().err
    assert 'error: the output exists\npartial files kept' in err


@pytest.mark.parametrize(
    ('error', 'ours'),
    [(ZeroDivisionError('bug'), True), (ValueError('deep inside a library'), False)],
)
def test_unexpected_errors_keep_their_traceback(
    error: BaseException, ours: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main_module, 'lightning_cli', _fake_cli(error, ours=ours))
    with pytest.raises(type(error)):
        main(['fit'])


def test_own_commands_get_the_same_treatment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tool = _fake_cli(ValueError('bad option --x'), ours=True)
    monkeypatch.setattr(main_module, '_tool', lambda name: tool)
    assert main(['params', '--x']) == 1
    assert 'geopeft params: error: bad option --x' in capsys.readouterr().err


def test_a_data_module_refusing_its_config_is_one_line_through_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rasters_data import make_raster

    image = make_raster(tmp_path / 'image.tif', size=32, bands=1)
    argv = [
        'fit', '--model', 'PEFTSemanticSegmentation', '--model.init_args.model',
        'unet', '--model.init_args.backbone', 'resnet18',
        '--model.init_args.num_classes', '2', '--model.init_args.in_channels', '1',
        '--data',
        'RasterSegmentationDataModule', '--data.init_args.images', str(image),
        '--data.init_args.labels', str(image), '--data.init_args.mean', '[0.0]',
        '--data.init_args.std', '[0.0]', '--trainer.accelerator', 'cpu',
    ]  # fmt: skip
    # jsonargparse wraps the data module's error in its own; the line is ours.
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith('geopeft fit: error: std of band 1 is 0'), err
    assert len(err) == 2


@pytest.mark.parametrize(
    ('task', 'options', 'message'),
    [
        (
            'PEFTSemanticSegmentation',
            ['--model.init_args.model', 'unet'],
            'num_classes',
        ),
        ('PEFTClassification', ['--model.init_args.model', 'resnet18'], 'num_classes'),
        ('PEFTClassification', ['--model.init_args.task', 'multilabel'], 'num_labels'),
    ],
)
def test_a_missing_class_count_is_one_line_through_fit(
    task: str,
    options: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rasters_data import make_raster

    image = make_raster(tmp_path / 'image.tif', size=32, bands=1)
    argv = [
        'fit', '--model', task, '--model.init_args.weights', 'null',
        '--model.init_args.in_channels', '1', *options,
        '--data', 'RasterSegmentationDataModule', '--data.init_args.images',
        str(image), '--data.init_args.labels', str(image),
        '--trainer.accelerator', 'cpu',
    ]  # fmt: skip
    # Before: torchmetrics' "Optional arg `num_classes` must be type `int`"
    # with a 60-line traceback.
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith('geopeft fit: error: task='), err
    assert f'needs {message}' in err[0] and f'set {message}' in err[0]
    assert len(err) == 2
