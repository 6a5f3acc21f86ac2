"""The fault survey script (``scripts/fault_cases.py``) runs and judges cases right."""

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / 'scripts' / 'fault_cases.py'


@pytest.fixture(scope='module')
def survey() -> ModuleType:
    spec = importlib.util.spec_from_file_location('fault_cases', SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_survey_judges_cases_by_what_a_user_sees(
    survey: ModuleType, tmp_path: Path
) -> None:
    survey.make_data(tmp_path)
    cases = {case.name: case for case in survey._cases()}
    assert len(cases) >= 40
    for name in ('checkpoint truncated', 'output is the input, with --overwrite'):
        row = survey.run_case(cases[name], tmp_path)
        assert row['well'] and row['status'] == 1 and not row['traceback'], row
    assert (tmp_path / 'image.tif').exists()

    # A case whose message lacks the expected words is not handled well.
    wrong = survey.Case('test', 'wrong words', cases['scene missing'].argv, ('xyz',))
    row = survey.run_case(wrong, tmp_path)
    assert row['status'] == 1 and not row['well']
