"""The job runtime: what every job (pretraining, GLUE, SQuAD, ImageNet) does the same way.

A job module says only what is its own: its spec (flags), how it reads its data, builds its
model and scores it. Starting (seed, precision, strategy), the checks every job makes, the output
directory, warm starts, the results files, the finetuning demos' pretrained encoder and the
one-line error exit of a script are here.
"""

import functools
import json
import os
import sys
from typing import Any, Callable, Iterable, List, Mapping, Optional, Type, TypeVar

import keras
import tensorflow as tf
from absl import app, logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.runtime import checkpointing, custom_loop, locking
from gmlp_tf.runtime.distribution import get_strategy
from gmlp_tf.runtime.flags import CommonSpec, spec_from_flags

RESULTS_NAME = "eval_results"
# Where the pretraining demo writes, and where the finetuning demos look for its encoder.
DEMO_ENCODER_DIR = os.path.join("output", "pretraining_demo")
# Errors that are the user's input, not a bug: one line and exit 1 instead of a traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError)


JobRun = TypeVar("JobRun", bound=Callable[..., Any])


def releases_locks(run: JobRun) -> JobRun:
    """Decorates a job's run(spec): the output directories it locked are free again when it returns
    or raises, so a notebook can run a job and then another on the same directory."""

    @functools.wraps(run)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with locking.released_on_exit():
            return run(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def start(spec: CommonSpec, seed: Optional[int] = None) -> tf.distribute.Strategy:
    """Seeds Keras (spec.random_seed unless `seed`), sets the precision policy, returns the strategy."""
    check_positive(log_every_steps=spec.log_every_steps, steps_per_execution=spec.steps_per_execution)
    keras.utils.set_random_seed(spec.random_seed if seed is None else seed)
    keras.mixed_precision.set_global_policy(spec.precision)
    return get_strategy(spec.strategy, spec.tpu, spec.tpu_zone, spec.gcp_project)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes (checkpoints, logs, results): always, except on a cluster's other workers."""
    return custom_loop.is_chief(strategy)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Training steps through runtime.custom_loop (Keras fit and evaluate cannot run under the strategy)."""
    return custom_loop.needs_custom_loop(strategy)


def model_to_evaluate(strategy: tf.distribute.Strategy, model: keras.Model,
                      build: Callable[[], keras.Model]) -> Optional[keras.Model]:
    """The model to evaluate and predict with: `model`, except across workers (multi_worker).

    Keras evaluate and predict cannot run under MultiWorkerMirroredStrategy, so there the chief
    alone evaluates a copy, build() outside the strategy with `model`'s weights (the same on every
    worker), and the other workers get None: they have nothing to write.
    """
    if not is_multi_worker(strategy):
        return model
    if not is_chief(strategy):
        return None
    copy = build()
    copy.set_weights(model.get_weights())
    return copy


def whole_executions(steps_per_epoch: int, steps_per_execution: int) -> int:
    """steps_per_epoch rounded up to whole executions: fit() cannot stop inside one, so an epoch
    (a checkpoint interval) of 10 steps at --steps_per_execution=4 becomes 12."""
    rounded = -(-steps_per_epoch // steps_per_execution) * steps_per_execution
    if rounded != steps_per_epoch:
        logging.info("%d steps per epoch rounded up to %d, a multiple of --steps_per_execution=%d",
                     steps_per_epoch, rounded, steps_per_execution)
    return rounded


def require_output_dir(output_dir: Optional[str]) -> str:
    if not output_dir:
        raise ValueError("--output_dir is required")
    return output_dir


def check_max_seq_length(max_seq_length: int, config: GMLPConfig) -> None:
    """The spatial weights are sized for config.max_seq_length tokens: longer inputs cannot run."""
    if max_seq_length > config.max_seq_length:
        raise ValueError(
            f"max_seq_length {max_seq_length} exceeds the model config's max_seq_length {config.max_seq_length}")


def check_positive(**values: Optional[float]) -> None:
    """Raises naming the first flag whose value is given and not positive."""
    for name, value in values.items():
        if value is not None and not value > 0:  # NaN too.
            raise ValueError(f"--{name} must be positive, got {value}")


def check_non_negative(**values: Optional[float]) -> None:
    """Raises naming the first flag whose value is given and negative."""
    for name, value in values.items():
        if value is not None and not value >= 0:  # NaN too.
            raise ValueError(f"--{name} must be non-negative, got {value}")


def check_checkpoint_interval(num_train_steps: int, save_checkpoints_steps: int, steps_per_execution: int = 1) -> None:
    """Steps and interval are positive and whole executions (a compiled execution cannot stop midway)."""
    check_positive(num_train_steps=num_train_steps, save_checkpoints_steps=save_checkpoints_steps,
                   steps_per_execution=steps_per_execution)
    for name, value in (("num_train_steps", num_train_steps), ("save_checkpoints_steps", save_checkpoints_steps)):
        if value % steps_per_execution:
            raise ValueError(f"--{name} ({value}) must be a multiple of --steps_per_execution ({steps_per_execution})")


def prepare_output_dir(output_dir: str, config: GMLPConfig, task: str, num_labels: Optional[int] = None,
                       sp_model: Optional[bytes] = None, strategy: Optional[tf.distribute.Strategy] = None) -> None:
    """Locks output_dir for this run, creates or checks it (same architecture and task, writable) and
    writes the vocabulary. On a cluster's workers other than the chief (`strategy`), nothing: the
    chief alone locks and writes.

    Raises:
      ValueError: another run holds the directory (naming its host and pid), or it does not fit.
    """
    if strategy is not None and not is_chief(strategy):
        return
    locking.acquire(output_dir)
    checkpointing.prepare_output_dir(output_dir, config, task, num_labels)
    if sp_model is not None:  # Finetuning and export find the vocabulary beside the checkpoint.
        checkpointing.write_vocab(output_dir, sp_model)


def check_init_checkpoint(init_checkpoint: Optional[str], config: GMLPConfig) -> None:
    """The warm-start source's files and architecture, checked before anything is written."""
    if init_checkpoint:
        checkpointing.check_warm_start_source(init_checkpoint, config)


def warm_start_unless_resuming(model: keras.Model, init_checkpoint: Optional[str], output_dir: str,
                               config: GMLPConfig) -> bool:
    """BERT's rule: a checkpoint in output_dir always wins; init_checkpoint only starts a new run."""
    if not init_checkpoint:
        return False
    if checkpointing.latest_weights(output_dir):
        logging.info("Ignoring --init_checkpoint: %s already holds a checkpoint to resume", output_dir)
        return False
    checkpointing.warm_start(model, init_checkpoint, config)
    return True


def demo_encoder(directory: Optional[str] = None, strategy: str = "default") -> str:
    """The demo pretraining output directory, pretrained there first if it holds no checkpoint.

    Args:
      strategy: the finetuning run's --strategy. Across workers each would pretrain the encoder
        itself, so there a missing one is an error.
    """
    directory = directory or DEMO_ENCODER_DIR
    if not checkpointing.latest_weights(directory):
        if strategy == "multi_worker":
            raise ValueError(f"{directory} holds no pretrained checkpoint: run scripts/run_pretraining.py first "
                             "(or give --init_checkpoint) before finetuning the demo across workers")
        logging.info("No pretrained checkpoint in %s: running the pretraining demo first", directory)
        from gmlp_tf import tasks  # The task registry, not a task: runtime code names no task module.

        pretraining = tasks.job_module("pretraining")
        pretraining.run(pretraining.JobSpec(output_dir=directory))
    return directory


def result_lines(results: Mapping[str, Any]) -> List[str]:
    """BERT's eval_results.txt lines: "key = value", sorted by key."""
    return [f"{key} = {results[key]}" for key in sorted(results)]


def write_results(output_dir: str, results: Mapping[str, Any], name: str = RESULTS_NAME) -> str:
    """Writes NAME.txt ("key = value" lines) and NAME.json (the same numbers); returns the .txt path."""
    path = os.path.join(output_dir, name + ".txt")
    checkpointing.write_text_atomically(path, "".join(line + "\n" for line in result_lines(results)))
    checkpointing.write_text_atomically(
        os.path.join(output_dir, name + ".json"), json.dumps(dict(results), indent=2, sort_keys=True) + "\n")
    return path


def run_script(program: str, job: Callable[[], Any]) -> Any:
    """Runs job(); bad input ends the script with one line "<program>: error: ..." and exit 1."""
    try:
        return job()
    except USER_ERRORS as err:
        logging.flush()
        sys.exit(f"{program}: error: {err}")
    finally:
        locking.release_all()


def script_main(spec_cls: Type[CommonSpec], run: Callable[[Any], Any],
                report: Callable[[Any, Any], Iterable[str]]) -> Callable[[List[str]], None]:
    """The absl main of a job script: flags -> spec -> run(spec) -> printed report(results, spec)."""

    def main(argv: List[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        spec = spec_from_flags(spec_cls)
        results = run_script(os.path.basename(sys.argv[0]), lambda: run(spec))
        for line in report(results, spec):
            print(line)

    return main
