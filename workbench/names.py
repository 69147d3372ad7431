"""The names every layer agrees on, in one torch-free module: what a request may say before any model loads.

A sweep, a training run or a probe set is described by a handful of closed vocabularies — which token
positions an intervention touches, which site kind it targets, which metric it measures, which probe
tasks exist, which engine and executor run it. The forms of the app's server, the job registry and
``workbench --help`` must check these names without importing torch (2–3 s, and the server never
loads a model), and the modules that compute with them must agree with what was checked. So the
tuples live here, and both sides import them:

===================  ==========================================  =================================
name                 values                                      used by
===================  ==========================================  =================================
:data:`POSITIONS`    ``last`` (the answer token), ``all``         interventions, sweeps, ScAle
:data:`TARGETS`      ``heads``, ``mlp``, ``edges``                sweep specs (site kinds, axis.py)
:data:`INTERVENTIONS` ``scale``, ``patch``, ``temperature``       sweep specs (families, axis.py)
:data:`DIRECTIONS`   ``noising``, ``denoising``                   patching
:data:`METRICS`      ``logit_diff``, ``accuracy``, …              metrics.py, sweep specs
:data:`MODES`        ``attn``, ``mlp``, ``both``                  ScAle vectors and training
:data:`TASKS`        spatial + control probe tasks                probe generation, evaluation
:data:`ENGINES`      ``auto``, ``packed``, ``naive``              sweeps.engine, the CLI
:data:`EXECUTORS`    ``local``, ``ray``                           sweeps.executors, the CLI
:data:`FORMATS`      benchmark formats with a local loader        probes.loaders, the CLI
===================  ==========================================  =================================

The site kinds and intervention families themselves (what a kind's result shape is, what a family's
value means) are :mod:`workbench.axis`; this module re-exports their names. Nothing here imports
numpy, pandas or torch (``tests/unit/test_names.py`` checks it in a fresh interpreter).
"""

from __future__ import annotations

from workbench.axis import DIRECTIONS, INTERVENTIONS, NO_HEAD, POSITIONS, TARGETS
from workbench.errors import WorkbenchError

# what a metric at the answer position may be (definitions: workbench.metrics)
METRICS: tuple[str, ...] = ("logit_diff", "accuracy", "p_correct", "kl")
METRIC_VERSION = 1  # bump when a metric's definition changes: stored results keyed on it are recomputed

# which of a ScAle vector's factors exist / are trained: head outputs, MLP outputs, or both
MODES: tuple[str, ...] = ("attn", "mlp", "both")
SCALE_FORMAT = "workbench.scale_vector"  # the "format" field of a saved ScAle vector's metadata

# probe tasks: the spatial ones (what the workbench is about) and the controls (colour, shape, count, existence)
SPATIAL_TASKS: tuple[str, ...] = ("relation", "verify")
CONTROL_TASKS: tuple[str, ...] = ("color", "shape", "count", "exists")
TASKS: tuple[str, ...] = SPATIAL_TASKS + CONTROL_TASKS
MAX_PROBES = 1_000_000  # the most probes one generated set (or job) may ask for
MAX_CANVAS = 1024  # the largest scene side in pixels

# how a sweep runs: the engine computes a chunk (packed: every site's variant in one batch), the executor places chunks
ENGINES: tuple[str, ...] = ("auto", "packed", "naive")
EXECUTORS: tuple[str, ...] = ("local", "ray")

# benchmark formats read from local files (workbench.probes.loaders, `workbench probes import FORMAT`)
FORMATS: tuple[str, ...] = ("spatialeval", "whatsup", "vsr", "cvbench")

__all__ = ["CONTROL_TASKS", "DIRECTIONS", "ENGINES", "EXECUTORS", "FORMATS", "INTERVENTIONS", "MAX_CANVAS", "MAX_PROBES",
           "METRICS", "METRIC_VERSION", "MODES", "NO_HEAD", "POSITIONS", "SCALE_FORMAT", "SPATIAL_TASKS", "TARGETS", "TASKS",
           "check_choice", "check_positions"]


def check_choice(what: str, value: str, choices: tuple[str, ...], fix: str | None = None) -> str:
    """``value`` if it is one of ``choices``; else one line naming ``what`` and the choices (the fix unless given)."""
    if value not in choices:
        raise WorkbenchError(f"unknown {what} {value!r}", fix or f"choose from: {', '.join(choices)}")
    return value


def check_positions(positions: str) -> str:
    """The one rule for ``positions``: ``last`` (only the answer token is intervened on, as in ScAle) or ``all``."""
    return check_choice("positions", positions, POSITIONS, "use 'last' (the answer token, as in ScAle) or 'all'")
