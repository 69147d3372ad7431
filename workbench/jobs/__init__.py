"""Background jobs (sweeps, ScAle training) in worker processes, watched through files.

    params    form input → validated job parameters (FieldError names the field)
    registry  submit / get / list / cancel jobs: folders under <store>/jobs, no model code
    tasks     what each kind of job computes (runs only inside a worker)
    worker    the worker process: python -m workbench.jobs.worker <job folder>
"""

from workbench.jobs.params import FieldError, sweep_params, train_params
from workbench.jobs.registry import Job, JobRegistry

__all__ = ["FieldError", "Job", "JobRegistry", "sweep_params", "train_params"]
