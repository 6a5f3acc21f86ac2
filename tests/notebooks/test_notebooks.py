"""The benchmark notebooks: committed clean, and executed in smoke mode.

Each notebook runs through papermill, as on a GPU box, with ``smoke=True``: tiny
generated data, a tiny backbone with random weights, every method. The kernel is
this interpreter (a kernel spec written for the test), so the notebooks run in the
environment under test; results and figures go to ``tmp_path``.
"""

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import papermill
import pytest

from geopeft.benchmarks import METHODS
from geopeft.results import load_records

NOTEBOOKS = Path(__file__).parents[2] / 'experiments' / 'notebooks'
KERNEL = 'geopeft-tests'

#: Parameters every notebook takes (besides its own).
COMMON = {
    'dataset',
    'root',
    'download',
    'backbone',
    'weights',
    'epochs',
    'batch_size',
    'lr',
    'weight_decay',
    'warmup_epochs',
    'accelerator',
    'precision',
    'num_workers',
    'threads',
    'limit_train_batches',
    'limit_eval_batches',
    'warmup_steps',
    'methods',
    'seeds',
    'smoke',
    'results_dir',
    'out_dir',
}

CASES = {
    'change_detection_benchmark': {
        'parameters': COMMON | {'arch', 'fusion', 'patch_size', 'render_pairs'},
        'run': {'seeds': '0'},
        'figures': {'tradeoffs.png', 'predictions.png'},
        'metric': 'F1',
    },
    'scene_classification_benchmark': {
        'parameters': COMMON | {'image_size', 'train_fraction', 'val_fraction'},
        'run': {'seeds': '0,1'},
        'figures': {'tradeoffs.png'},
        'metric': 'OA %',
    },
}


@pytest.fixture(scope='module')
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernel spec that runs this interpreter, found first on JUPYTER_PATH."""
    path = tmp_path_factory.mktemp('jupyter')
    spec = path / 'kernels' / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}']
    kernel_json = {'argv': argv, 'display_name': KERNEL, 'language': 'python'}
    (spec / 'kernel.json').write_text(json.dumps(kernel_json))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('JUPYTER_PATH', str(path))
        yield KERNEL


@pytest.mark.parametrize('name', list(CASES))
def test_committed_without_outputs_and_with_parameters(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / f'{name}.ipynb', as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == 'code']
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, 'clear outputs'
    first = code[0]
    assert 'parameters' in first.metadata.get('tags', [])
    names = {
        line.split('=')[0].strip()
        for line in first.source.splitlines()
        if '=' in line and not line.startswith('#')
    }
    assert CASES[name]['parameters'] <= names
    assert notebook.cells[0].cell_type == 'markdown'
    assert 'papermill' in notebook.cells[0].source


@pytest.mark.parametrize('name', list(CASES))
def test_smoke_run(name: str, kernel: str, tmp_path: Path) -> None:
    case = CASES[name]
    results, out = tmp_path / 'results', tmp_path / 'out'
    papermill.execute_notebook(
        str(NOTEBOOKS / f'{name}.ipynb'),
        str(tmp_path / f'{name}.ipynb'),
        parameters={
            'smoke': True,
            'accelerator': 'cpu',
            'results_dir': str(results),
            'out_dir': str(out),
            **case['run'],
        },
        kernel_name=kernel,
        progress_bar=False,
        cwd=str(NOTEBOOKS.parents[1]),
    )
    (record,) = load_records(results)
    assert record.experiment == name
    assert record.mode == 'smoke'
    assert [row['method'] for row in record.rows] == list(METHODS)
    assert case['metric'] in record.columns
    assert all(row['step ms'] > 0 for row in record.rows)
    assert record.command.startswith(f'papermill experiments/notebooks/{name}.ipynb')
    assert '-p smoke True' in record.command
    anchor = out / 'anchor' / 'runs.jsonl'
    if name == 'change_detection_benchmark':  # the section beside plain TorchGeo
        rows = {json.loads(line)['row'] for line in anchor.read_text().splitlines()}
        assert rows == {'torchgeo-full', 'torchgeo-frozen', 'linear', 'upetu-1bit'}
    figures = {path.name for path in (out / 'figures').iterdir()}
    assert case['figures'] <= figures
    executed = nbformat.read(tmp_path / f'{name}.ipynb', as_version=4)
    shown = [
        output
        for cell in executed.cells
        if cell.cell_type == 'code'
        for output in cell.outputs
        if 'image/png' in output.get('data', {})
    ]
    assert len(shown) == len(case['figures'])
