"""One package per task: pretraining, glue, squad, imagenet. No task imports another.

Each holds its data pipeline, its job (what its script runs: a JobSpec of flags and `run`), its
metrics and its embedded demo data. The runtime finds a job by name here when one job needs
another's output (the finetuning demos need the pretraining demo's encoder).
"""

import importlib
from types import ModuleType

JOBS = {
    "pretraining": "gmlp_tf.tasks.pretraining.job",
    "glue": "gmlp_tf.tasks.glue.job",
    "squad": "gmlp_tf.tasks.squad.job",
    "imagenet": "gmlp_tf.tasks.imagenet.job",
}


def job_module(name: str) -> ModuleType:
    """The job module of a task (its JobSpec and run)."""
    if name not in JOBS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(JOBS)}")
    return importlib.import_module(JOBS[name])
