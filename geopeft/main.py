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
"""

import importlib
import os
import sys
from collections.abc import Callable, Sequence

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


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the ``geopeft`` command.

    Args:
        args: Command-line arguments (``sys.argv[1:]`` when None).

    Returns:
        Process exit status.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in _TOOLS:
        return _tool(argv[0])(argv[1:])
    # From the command line LightningCLI reads sys.argv itself (passing it too
    # triggers Lightning's mixed-arguments warning).
    lightning_cli(None if args is None else argv)
    return 0


if __name__ == '__main__':
    sys.exit(main())
