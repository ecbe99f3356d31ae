"""One package per task: pretraining, glue, squad, imagenet. No task imports another.

Each holds its data pipeline, its Task (task.py: the JobSpec of its script's flags, the Task
subclass that gmlp_tf.runtime.runner runs, and `run(spec)`), its metrics and its embedded demo
data. The tasks are registered here by name, so that the runtime can run one without importing
it (the finetuning demos start from the pretraining demo's encoder: runner.ensure_demo_run).
"""

from gmlp_tf.runtime import task as _task

TASKS = {
    "pretraining": "gmlp_tf.tasks.pretraining.task:PretrainingTask",
    "glue": "gmlp_tf.tasks.glue.task:ClassifierTask",
    "squad": "gmlp_tf.tasks.squad.task:SquadTask",
    "imagenet": "gmlp_tf.tasks.imagenet.task:ImageNetTask",
}

for _name, _path in TASKS.items():
    _task.register(_name, _path)
