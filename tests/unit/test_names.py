"""workbench.names: the shared vocabularies, torch-free, and the modules that compute with them agree.

The app's server, the job registry and the job forms must not import torch (2–3 s, and they never run a
model): checked in a fresh interpreter, since this test process has long imported it. Where a computing
module still keeps its own copy of a tuple, the copy is checked here, in one place.
"""

import importlib
import subprocess
import sys

import pytest

from workbench import axis, names
from workbench.errors import WorkbenchError

TORCH_FREE = ("workbench.names", "workbench.app", "workbench.jobs.registry", "workbench.jobs.params", "workbench.sweeps.spec",
              "workbench.discovery.headsets", "workbench.cli.main")


def _heavy_after_import(module: str) -> list[str]:
    code = f"import sys, {module}; print(','.join(m for m in ('torch', 'transformers', 'nnsight') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    return [m for m in out.strip().split(",") if m]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_importing_does_not_load_torch(module):
    assert _heavy_after_import(module) == []


def test_building_the_app_does_not_load_torch(tmp_path):
    """Not only the import: creating the Dash app imports every page (the forms, the explorer, the exports)."""
    code = (f"import sys; from workbench.app import create_app; create_app({str(tmp_path)!r}, 'organism'); "
            "print(','.join(m for m in ('torch', 'transformers', 'nnsight') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == ""


def test_names_imports_nothing_heavier_than_the_standard_library():
    code = "import sys, workbench.names; print(sorted(m for m in ('numpy', 'pandas', 'PIL', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_the_axis_names_are_the_axis_names():
    assert names.POSITIONS is axis.POSITIONS and names.TARGETS is axis.TARGETS and names.TARGETS == ("heads", "mlp", "edges")
    assert names.INTERVENTIONS == tuple(axis.FAMILIES) and names.DIRECTIONS == ("noising", "denoising")


def test_the_computing_modules_use_the_same_names():
    from workbench import metrics
    from workbench.cli import probes as cli_probes
    from workbench.cli import sweeps as cli_sweeps
    from workbench.probes import items
    from workbench.probes.loaders import LOADERS
    from workbench.scale import vector
    from workbench.sweeps import engine, executors

    generate_module = importlib.import_module("workbench.probes.generate")  # the package's `generate` is the function

    assert metrics.METRICS is names.METRICS and metrics.METRIC_VERSION == names.METRIC_VERSION
    for name in ("logit_diff", "accuracy", "p_correct", "kl"):  # each name is a function of metrics.py
        assert callable(getattr(metrics, name))
    assert cli_probes.FORMATS is names.FORMATS and cli_sweeps.ENGINES is names.ENGINES and cli_sweeps.EXECUTORS is names.EXECUTORS
    # copies still kept by modules that compute (each may import from workbench.names instead)
    assert names.FORMATS == tuple(LOADERS)
    assert names.ENGINES == engine.ENGINES and names.EXECUTORS == executors.EXECUTORS
    assert names.MODES == vector.MODES and names.SCALE_FORMAT == vector.FORMAT
    assert (names.SPATIAL_TASKS, names.CONTROL_TASKS, names.TASKS) == (items.SPATIAL_TASKS, items.CONTROL_TASKS, items.TASKS)
    assert (names.MAX_PROBES, names.MAX_CANVAS) == (generate_module.MAX_PROBES, generate_module.MAX_CANVAS)


@pytest.mark.parametrize("bad", ["first", "", "LAST"])
def test_one_positions_rule_everywhere(bad):
    from workbench.interventions.core import HeadScale
    from workbench.scale.train import TrainConfig
    from workbench.sweeps.spec import SweepSpec

    assert names.check_positions("last") == "last" and names.check_positions("all") == "all"
    for make in (lambda: names.check_positions(bad), lambda: SweepSpec(positions=bad), lambda: TrainConfig(positions=bad),
                 lambda: HeadScale(__import__("torch").ones(2, 3), positions=bad)):
        with pytest.raises(WorkbenchError, match=f"unknown positions {bad!r}"):
            make()


def test_check_choice_names_the_field_and_the_choices():
    assert names.check_choice("engine", "packed", names.ENGINES) == "packed"
    with pytest.raises(WorkbenchError, match="unknown engine 'fast'") as e:
        names.check_choice("engine", "fast", names.ENGINES)
    assert e.value.fix == "choose from: auto, packed, naive"
