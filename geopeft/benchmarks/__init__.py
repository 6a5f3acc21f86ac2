"""geopeft.benchmarks: every PEFT method side by side, as the notebooks run them.

The library behind ``experiments/notebooks/change_detection_benchmark.ipynb`` and
``scene_classification_benchmark.ipynb``: the method table, the fit + test runs
with step time and memory measured, the tables, figures and result records. See
``docs/benchmark_notebooks.md``.
"""

from .accuracy import AccuracySettings, run_accuracy
from .change import (
    ChangeBenchmarkSettings,
    PredictionSampler,
    prediction_samples,
    run_change_benchmark,
)
from .measure import Measurement, TrainingMeter
from .methods import METHODS, BenchmarkMethod, get_method, resolve_methods
from .plots import plot_predictions, plot_tradeoffs, save_figure
from .records import benchmark_record, papermill_command
from .runs import BenchmarkResult, RunResult
from .scene import SceneBenchmarkSettings, run_scene_benchmark
from .smoke_data import make_smoke_change_folder, make_smoke_scenes

__all__ = (
    'METHODS',
    'AccuracySettings',
    'BenchmarkMethod',
    'BenchmarkResult',
    'ChangeBenchmarkSettings',
    'Measurement',
    'PredictionSampler',
    'RunResult',
    'SceneBenchmarkSettings',
    'TrainingMeter',
    'benchmark_record',
    'get_method',
    'make_smoke_change_folder',
    'make_smoke_scenes',
    'papermill_command',
    'plot_predictions',
    'plot_tradeoffs',
    'prediction_samples',
    'resolve_methods',
    'run_accuracy',
    'run_change_benchmark',
    'run_scene_benchmark',
    'save_figure',
)
