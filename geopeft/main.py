"""The ``geopeft`` command.

``geopeft fit|validate|test|predict`` is TorchGeo's LightningCLI in which geopeft's
tasks and datamodules (and TorchGeo's own) resolve by bare class name. The other
sub-commands are geopeft's own tools:

* ``geopeft params``: parameter report of a PEFT model;
* ``geopeft export-adapter``: adapter-only file from a Lightning checkpoint;
* ``geopeft bench peft``: PEFT methods side by side (time, memory, size);
* ``geopeft bench ktda``: KTDA student variants side by side;
* ``geopeft bench sampling`` / ``bench predict``: raster sampling rate, whole-scene
  prediction overhead and memory;
* ``geopeft predict-raster``: a whole scene into a GeoTIFF (blended, resumable);
* ``geopeft seeds``: a split protocol over several seeds (mean +- std);
* ``geopeft prepare``: datasets that need a preparation step (L8-Biome patches);
* ``geopeft demo``: the offline end-to-end demonstration (the main job).

An error geopeft (or TorchGeo) raises for a user's mistake (a config value, data,
paths, bands, CRS, labels, a checkpoint) ends the command with one line naming the
problem and the fix, and exit status 1; ``--debug`` (anywhere on the command line)
or ``GEOPEFT_DEBUG=1`` shows the traceback instead. Unexpected exceptions always
show theirs.
"""

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from lightning.pytorch.cli import ArgsType, LightningCLI
from torchgeo.datamodules import BaseDataModule
from torchgeo.tasks import BaseTask

# Import so that classes are referenced by bare class name in configs.
import geopeft.datamodules  # noqa: F401
import geopeft.tasks  # noqa: F401
from geopeft import __version__

_RASTERIO_BEST_PRACTICES = {
    'GDAL_DISABLE_READDIR_ON_OPEN': 'EMPTY_DIR',
    'AWS_NO_SIGN_REQUEST': 'YES',
    'GDAL_MAX_RAW_BLOCK_CACHE_SIZE': '200000000',
    'GDAL_SWATH_SIZE': '200000000',
    'VSI_CURL_CACHE_SIZE': '200000000',
}


#: geopeft's own sub-commands: name -> module of ``geopeft.commands`` with a
#: ``main(argv)``. Only the module of the command run is imported.
_TOOLS = {
    'params': 'params',
    'export-adapter': 'export',
    'bench': 'bench',
    'demo': 'demo',
    'seeds': 'seeds',
    'prepare': 'prepare',
    'predict-raster': 'predict_raster',
    'results': 'results',
}


#: One line per command for ``geopeft --help`` (Lightning's first, then geopeft's).
_SUMMARY = (
    ('fit', 'train a task from a YAML config (LightningCLI, TorchGeo style)'),
    ('validate', 'one validation epoch of a config, e.g. from --ckpt_path'),
    ('test', 'one test epoch of a config (metrics on the test split)'),
    ('predict', "the data module's predict split through the model (Lightning)"),
    ('predict-raster', 'map whole scenes into tiled GeoTIFFs (blended, resumable)'),
    ('export-adapter', 'the adapter-only .safetensors file of a checkpoint'),
    ('params', 'parameter report of a PEFT model (trainable %, adapter size)'),
    ('bench', 'benchmarks: peft, ktda, sampling, predict, accuracy (tables)'),
    ('seeds', 'one config over several seeds: mean +- std of the test metrics'),
    ('prepare', 'datasets that need a preparation step (l8biome patches)'),
    ('demo', 'the offline end-to-end demonstration (the main job)'),
    ('results', 'rebuild experiments/RESULTS.md from the result records'),
)


def _print_commands(file: TextIO = sys.stdout) -> None:
    """Print every command with one line each (``geopeft``, ``geopeft --help``)."""
    width = max(len(name) for name, _ in _SUMMARY) + 2
    lines = [
        f'usage: geopeft COMMAND [options]   (geopeft {__version__})',
        '',
        'commands (geopeft COMMAND --help for the options of one):',
        *(f'  {name:<{width}}{line}' for name, line in _SUMMARY),
        '',
        'fit/validate/test/predict are LightningCLI: --config run.yaml, '
        '--print_config, --ckpt_path; --debug (or GEOPEFT_DEBUG=1) shows tracebacks.',
    ]
    print('\n'.join(lines), file=file)


def _tool(name: str) -> Callable[[Sequence[str]], int]:
    """The ``main`` of a sub-command (imported on use)."""
    return importlib.import_module(f'geopeft.commands.{_TOOLS[name]}').main


def lightning_cli(args: ArgsType = None) -> LightningCLI:
    """Run TorchGeo's LightningCLI with geopeft's classes available.

    Args:
        args: Command-line arguments (``sys.argv[1:]`` when None).

    Returns:
        The CLI object.
    """
    os.environ.update(_RASTERIO_BEST_PRACTICES)
    return LightningCLI(
        model_class=BaseTask,
        datamodule_class=BaseDataModule,
        seed_everything_default=0,
        parser_kwargs={'version': __version__},
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={'overwrite': True},
        args=args,
    )


#: Exceptions that are a user's mistake when geopeft or TorchGeo raises them.
_USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OSError,
    FloatingPointError,
    KeyError,
)
#: Packages whose own ``raise`` of a :data:`_USER_ERRORS` type is a user error.
_OWN_PACKAGES = ('geopeft', 'torchgeo')


def _package_dirs() -> list[Path]:
    """The folders of :data:`_OWN_PACKAGES`."""
    dirs = []
    for name in _OWN_PACKAGES:
        module = importlib.import_module(name)
        if module.__file__:
            dirs.append(Path(module.__file__).resolve().parent)
    return dirs


def _innermost_file(err: BaseException) -> Path | None:
    """The file of the innermost frame of *err*'s traceback."""
    tb = err.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve()


def _raised_by_us(err: BaseException) -> bool:
    """Whether *err* is a user error raised by geopeft's or TorchGeo's code.

    The innermost frame of the traceback must lie in one of
    :data:`_OWN_PACKAGES`: a ``ValueError`` raised deep inside torch is a bug to
    be shown with its traceback, one raised by geopeft's checks is a message.
    """
    if not isinstance(err, _USER_ERRORS):
        from .predict.lock import OutputBusyError

        if not isinstance(err, OutputBusyError):
            return False
    path = _innermost_file(err)
    return path is not None and any(
        path.is_relative_to(folder) for folder in _package_dirs()
    )


def _user_error(err: BaseException) -> BaseException | None:
    """The user error behind *err*, or None when *err* is unexpected.

    jsonargparse wraps an error raised while it builds a config's classes (a
    data module refusing its arguments) into its own "does not validate"
    error; the error of geopeft's check is then found in the chain.
    """
    if _raised_by_us(err):
        return err
    path = _innermost_file(err)
    if path is None or 'jsonargparse' not in path.parts:
        return None
    seen: set[int] = set()
    cause = err.__cause__ or err.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if _raised_by_us(cause):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def _one_line(command: str, err: BaseException) -> int:
    """Print a user error as one line (and its notes) and return the status 1."""
    message = str(err) if not isinstance(err, KeyError) else str(err.args[0])
    notes = ''.join(f'\n{note}' for note in getattr(err, '__notes__', []))
    print(
        f'geopeft {command}: error: {message}{notes}\n(--debug or GEOPEFT_DEBUG=1 '
        'shows the traceback)',
        file=sys.stderr,
    )
    return 1


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the ``geopeft`` command.

    Args:
        args: Command-line arguments (``sys.argv[1:]`` when None).

    Returns:
        Process exit status: 0, 1 for a user error (one line on stderr), 2 for
        usage errors (from the argument parsers).
    """
    argv = list(sys.argv[1:] if args is None else args)
    debug = '--debug' in argv or os.environ.get('GEOPEFT_DEBUG', '') not in ('', '0')
    argv = [arg for arg in argv if arg != '--debug']
    command = argv[0] if argv else ''
    if command in ('', '-h', '--help'):
        # Bare "geopeft" is a usage error: the list goes to stderr, status 2.
        _print_commands(sys.stdout if command else sys.stderr)
        return 0 if command else 2
    try:
        if command in _TOOLS:
            return _tool(command)(argv[1:])
        if args is None:
            # LightningCLI reads sys.argv itself (passing it too triggers its
            # mixed-arguments warning): hand it the arguments without --debug.
            sys.argv = [sys.argv[0], *argv]
            lightning_cli(None)
        else:
            lightning_cli(argv)
    except Exception as err:
        user_error = None if debug else _user_error(err)
        if user_error is None:
            raise
        return _one_line(command, user_error)
    return 0


if __name__ == '__main__':
    sys.exit(main())
