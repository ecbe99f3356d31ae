"""Input checks every task makes the same way: each raises a ValueError naming the flag at fault.

They run before anything is written, so bad input costs one clear error line (the runner's
script main prints a ValueError as "<program>: error: ...").
"""

import math
from typing import Optional

from absl import logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs


def require_output_dir(output_dir: Optional[str]) -> str:
    """output_dir, which must be given."""
    if not output_dir:
        raise ValueError("--output_dir is required")
    return output_dir


def check_max_seq_length(max_seq_length: int, config: GMLPConfig) -> None:
    """The spatial weights are sized for config.max_seq_length tokens: longer inputs cannot run."""
    if max_seq_length > config.max_seq_length:
        raise ValueError(
            f"max_seq_length {max_seq_length} exceeds the model config's max_seq_length {config.max_seq_length}")


def check_positive(**values: Optional[float]) -> None:
    """Raises naming the first flag whose value is given and not a positive finite number."""
    for name, value in values.items():
        if value is not None and not value > 0:  # NaN too.
            raise ValueError(f"--{name} must be positive, got {value}")
        _check_finite(name, value)


def check_non_negative(**values: Optional[float]) -> None:
    """Raises naming the first flag whose value is given and not a non-negative finite number."""
    for name, value in values.items():
        if value is not None and not value >= 0:  # NaN too.
            raise ValueError(f"--{name} must be non-negative, got {value}")
        _check_finite(name, value)


def _check_finite(name: str, value: Optional[float]) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"--{name} must be a finite number, got {value}")


def check_checkpoint_interval(num_train_steps: int, save_checkpoints_steps: int, steps_per_execution: int = 1) -> None:
    """Steps and interval are positive and whole executions (a compiled execution cannot stop midway)."""
    check_positive(num_train_steps=num_train_steps, save_checkpoints_steps=save_checkpoints_steps,
                   steps_per_execution=steps_per_execution)
    for name, value in (("num_train_steps", num_train_steps), ("save_checkpoints_steps", save_checkpoints_steps)):
        if value % steps_per_execution:
            raise ValueError(f"--{name} ({value}) must be a multiple of --steps_per_execution ({steps_per_execution})")


def check_init_checkpoint(init_checkpoint: Optional[str], config: GMLPConfig) -> None:
    """The warm-start source's files and architecture, checked before anything is written."""
    if init_checkpoint:
        saved_runs.check_warm_start_source(init_checkpoint, config)


def whole_executions(steps_per_epoch: int, steps_per_execution: int) -> int:
    """steps_per_epoch rounded up to whole executions: fit() cannot stop inside one, so an epoch
    (a checkpoint interval) of 10 steps at --steps_per_execution=4 becomes 12."""
    rounded = -(-steps_per_epoch // steps_per_execution) * steps_per_execution
    if rounded != steps_per_epoch:
        logging.info("%d steps per epoch rounded up to %d, a multiple of --steps_per_execution=%d",
                     steps_per_epoch, rounded, steps_per_execution)
    return rounded
