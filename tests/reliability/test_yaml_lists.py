"""The documented YAML list forms of ``images``/``labels`` work through ``fit``."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from rasters_data import make_raster

from geopeft.main import main

CONF = Path(__file__).parents[1] / 'conf'


@pytest.mark.parametrize('task', ['segmentation', 'change'])
def test_list_forms_of_the_raster_paths_fit(tmp_path: Path, task: str) -> None:
    halves = []
    for i in range(2):  # two image files side by side: a mosaic given as a list
        origin = (500000.0 + i * 320.0, 4000000.0)
        halves.append(
            make_raster(
                tmp_path / f'image{i}.tif',
                size=(64, 32),
                values='random',
                origin=origin,
                seed=i,
            )  # fmt: skip
        )
    mask = np.zeros((64, 64), dtype='uint8')
    mask[10:40, 20:50] = 1
    labels = make_raster(tmp_path / 'labels.tif', values=mask, origin=(500000.0, 4e6))
    config = yaml.safe_load((CONF / f'rasters_{task}.yaml').read_text())
    data = config['data']['init_args']
    paths = [str(p) for p in halves]
    if task == 'segmentation':
        data['images'] = paths
    else:
        data['images_a'] = paths
        data['images_b'] = paths
    data['labels'] = [str(labels)]  # a one-item list, the form that broke
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(config))
    argv = ['fit', '--config', str(path), '--trainer.fast_dev_run', 'true']
    argv += ['--trainer.accelerator', 'cpu', '--trainer.enable_progress_bar', 'false']
    argv += ['--trainer.default_root_dir', str(tmp_path / 'out')]
    assert main(argv) == 0
