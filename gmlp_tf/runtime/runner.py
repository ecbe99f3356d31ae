"""The runner: one lifecycle for every Task (gmlp_tf.runtime.task), written once.

run(task):
  1. start-up: seed, precision policy, distribution strategy (runner.start)
  2. task.prepare(strategy): the data read and checked, before anything is written
  3. the chief locks the output directory, writes or checks gmlp_config.json, run_info.json and
     the vocabulary (a cluster's other workers write nothing)
  4. the model built (and compiled for training) in strategy.scope()
  5. training: warm start from --init_checkpoint unless the output directory holds a checkpoint
     (BERT's rule: resume wins), recipe.json on the chief, then training.fit_resumable (Keras fit,
     or runtime.custom_loop across workers) with its checkpoints, exact resume, NaN stop and
     TensorBoard curves. Without training: the output directory's newest checkpoint, else
     --init_checkpoint's weights.
  6. evaluation on the chief (a copy of the trained weights across workers), task.evaluate
  7. eval_results.txt / .json, and the locks released however the run ends
run_sweep(tasks) runs several (a learning-rate sweep) under one strategy; script_main is the absl
main of a task's script: flags -> spec -> run -> printed report, bad input as one error line.
"""

import functools
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Type

import keras
import tensorflow as tf
from absl import logging

from gmlp_tf.models import saved_runs
from gmlp_tf.runtime import checks, custom_loop, locking, run_directory, training
from gmlp_tf.runtime.distribution import get_strategy
from gmlp_tf.runtime.flags import CommonSpec, spec_from_flags
from gmlp_tf.runtime.task import RunState, Task, task_class

# Errors that are the user's input, not a bug: one line and exit 1 instead of a traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError)
# TensorFlow's errors of reading input files (a truncated TFRecord, a file removed while read).
DATA_ERRORS = (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.PermissionDeniedError)


class TrainingIncompleteError(RuntimeError):
    """Training ended before its last step (the data ran out): the run is not reported as a success."""


def start(spec: CommonSpec, seed: Optional[int] = None) -> tf.distribute.Strategy:
    """Seeds Keras (spec.random_seed unless `seed`), sets the precision policy, returns the strategy."""
    checks.check_positive(log_every_steps=spec.log_every_steps, steps_per_execution=spec.steps_per_execution,
                          cluster_timeout_s=spec.cluster_timeout_s)
    keras.utils.set_random_seed(spec.random_seed if seed is None else seed)
    keras.mixed_precision.set_global_policy(spec.precision)
    return get_strategy(spec.strategy, spec.tpu, spec.tpu_zone, spec.gcp_project,
                        cluster_timeout_s=spec.cluster_timeout_s)


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


def run(task: Task, strategy: Optional[tf.distribute.Strategy] = None) -> Dict[str, Any]:
    """Runs one task (see the module docstring); returns its results ({} on workers but the chief).

    Args:
      task: the task, its spec resolved and checked.
      strategy: a strategy already started (runner.start) for several runs in one process; by
        default the task's own.
    """
    with locking.released_on_exit():
        return _run(task, strategy or start(task.spec, task.seed))


def run_sweep(tasks: Sequence[Task], output_dir: str,
              summarize: Callable[[List[Dict[str, Any]]], Dict[str, Any]]) -> Dict[str, Any]:
    """Runs tasks one after another under one strategy (e.g. a learning-rate sweep in output_dir's
    subdirectories); returns summarize(their results), also written to sweep_results.txt / .json
    when there are several runs with something to summarise.
    """
    with locking.released_on_exit():
        strategy = start(tasks[0].spec, tasks[0].seed)
        if is_chief(strategy):  # The sweep's directory; each run locks its own.
            locking.acquire(output_dir)
        summary = summarize([_run(task, strategy) for task in tasks])
        if summary and len(tasks) > 1 and is_chief(strategy):
            run_directory.write_results(output_dir, summary, name="sweep_results")
        return summary


def _run(task: Task, strategy: tf.distribute.Strategy) -> Dict[str, Any]:
    keras.utils.set_random_seed(task.seed)
    task.prepare(strategy)
    schedule = task.schedule() if task.do_train else None
    created = False
    if is_chief(strategy):
        created = not tf.io.gfile.exists(task.output_dir)
        _prepare_output_dir(task)
    try:
        results = _build_train_evaluate(task, strategy, schedule)
    except BaseException:
        if created and not saved_runs.latest_weights(task.output_dir):
            _remove_unfinished(task.output_dir)
        raise
    if results:
        run_directory.write_results(task.output_dir, results)
    return results


def _build_train_evaluate(task: Task, strategy: tf.distribute.Strategy, schedule: Any) -> Dict[str, Any]:
    """Steps 4 to 6: the model built, trained (or loaded) and evaluated on the chief."""
    with strategy.scope():
        model = task.build_model()
        if task.do_train:
            task.compile_for_training(model)
    with task.input_errors():
        if task.do_train:
            _train(task, model, strategy, schedule)
            step = training.global_step(model)
        else:
            step = _load_for_evaluation(task, model)
        state = RunState(strategy=strategy, trained=task.do_train, global_step=step)
        model = model_to_evaluate(strategy, model, task.build_model)
        if model is None:  # A worker other than the chief: nothing to report.
            return {}
        return task.evaluate(model, state)


def _remove_unfinished(output_dir: str) -> None:
    """A run that created its output directory and failed before its first checkpoint leaves nothing."""
    logging.info("Removing %s: the run failed before its first checkpoint", output_dir)
    locking.release(output_dir)
    try:
        tf.io.gfile.rmtree(output_dir)
    except (OSError, tf.errors.OpError) as err:
        logging.warning("Could not remove %s: %s", output_dir, err)


def _prepare_output_dir(task: Task) -> None:
    """Locks the output directory, creates or checks it (same architecture and task), writes the vocabulary.

    Raises:
      ValueError: another run holds the directory (naming its host and pid), or it does not fit.
    """
    locking.acquire(task.output_dir)
    run_directory.prepare_output_dir(task.output_dir, task.config, task.model_task, task.num_labels)
    if task.vocabulary is not None:  # Finetuning and export find the vocabulary beside the checkpoint.
        run_directory.write_vocab(task.output_dir, task.vocabulary)
    task.write_run_files(task.output_dir)
    if task.config is not None:
        logging.info("Model config:\n%s", task.config.to_json_string())


def _train(task: Task, model: keras.Model, strategy: tf.distribute.Strategy, schedule: Any) -> None:
    """Warm start unless resuming, the recipe record, then resumable fit (or the loop across workers)."""
    spec = task.spec
    saved_runs.readable_weights(task.output_dir)  # Checkpoints none of which reads: refused before any write.
    warm_start_unless_resuming(model, spec.init_checkpoint, task.output_dir, task.warm_start_config())
    if is_chief(strategy):
        run_directory.record_recipe(task.output_dir, task.recipe())
    evaluate_fn = None  # Across workers Keras evaluate and predict cannot run: the chief evaluates after training.
    if spec.eval_at_checkpoints and not is_multi_worker(strategy):
        evaluate_fn = task.checkpoint_evaluator()
    training.fit_resumable(
        model, task.train_data(strategy), task.output_dir, schedule.num_train_steps, schedule.save_checkpoints_steps,
        verbose=task.fit_verbose, callbacks=task.callbacks(), log_every_steps=spec.log_every_steps,
        evaluate_fn=evaluate_fn)
    step = training.global_step(model)
    if step < schedule.num_train_steps:  # Keras fit stops, with a warning only, when the data runs out.
        raise TrainingIncompleteError(
            f"training stopped at step {step} of {schedule.num_train_steps}: the training data ran out (too few "
            "readable examples for a batch, or a finite dataset); nothing was evaluated")


def warm_start_unless_resuming(model: keras.Model, init_checkpoint: Optional[str], output_dir: str,
                               config: Any) -> bool:
    """BERT's rule: a checkpoint in output_dir always wins; init_checkpoint only starts a new run."""
    if not init_checkpoint:
        return False
    if saved_runs.latest_weights(output_dir):
        logging.info("Ignoring --init_checkpoint: %s already holds a checkpoint to resume", output_dir)
        return False
    saved_runs.warm_start(model, init_checkpoint, config)
    return True


def _load_for_evaluation(task: Task, model: keras.Model) -> int:
    """Without training: the output directory's newest checkpoint, else --init_checkpoint's weights;
    returns the step of the weights loaded (0 when it is not known)."""
    if saved_runs.latest_weights(task.output_dir):
        return saved_runs.load_model_weights(model, task.output_dir).step or 0
    if task.spec.init_checkpoint:
        saved_runs.warm_start(model, task.spec.init_checkpoint, task.warm_start_config())
    else:
        logging.warning("EVALUATING UNTRAINED WEIGHTS: %s holds no checkpoint and no --init_checkpoint was given, "
                        "so the results below are those of a freshly initialised model", task.output_dir)
    return 0


def ensure_demo_run(task_name: str, directory: Optional[str] = None, strategy: str = "default") -> str:
    """The output directory of a registered task's embedded demo, run there first if it holds no
    checkpoint (the finetuning demos start from the pretraining demo's encoder).

    Args:
      task_name: the registered task whose demo makes the directory, e.g. "pretraining".
      directory: where to look (default: that task's demo_output_dir).
      strategy: the calling run's --strategy. Across workers each would run the demo itself, so
        there a missing directory is an error.
    """
    cls = task_class(task_name)
    directory = directory or cls.demo_output_dir
    if not saved_runs.latest_weights(directory):
        if strategy == "multi_worker":
            raise ValueError(f"{directory} holds no pretrained checkpoint: run scripts/run_{task_name}.py first "
                             "(or give --init_checkpoint) before finetuning the demo across workers")
        logging.info("No pretrained checkpoint in %s: running the %s demo first", directory, task_name)
        run(cls(cls.spec_class(output_dir=directory)))
    return directory


def releases_locks(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorates a function that runs jobs: the output directories they locked are free again when
    it returns or raises, so a notebook can run a job and then another on the same directory."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with locking.released_on_exit():
            return function(*args, **kwargs)

    return wrapper


def run_script(program: str, job: Callable[[], Any]) -> Any:
    """Runs job(); bad input ends the script with one line "<program>: error: ..." and exit 1.

    Errors TensorFlow raises while reading the input (a truncated or corrupt file, a file gone)
    are the input's too; Ctrl-C ends with one line saying that a rerun resumes, and exit 130.
    """
    try:
        return job()
    except USER_ERRORS as err:
        logging.flush()
        sys.exit(f"{program}: error: {err}")
    except DATA_ERRORS as err:
        logging.flush()
        sys.exit(f"{program}: error: the input data could not be read: {data_error_message(err)}")
    except KeyboardInterrupt:
        logging.flush()
        print(f"{program}: interrupted; the checkpoints written so far are intact: rerun the same command to "
              "resume from the last one", file=sys.stderr)
        sys.exit(130)
    finally:
        locking.release_all()


def data_error_message(err: tf.errors.OpError) -> str:
    """The first line of a TensorFlow error's message, without its graph-node context."""
    message = (getattr(err, "message", None) or str(err)).strip().splitlines()[0]
    return message.split("\t [[")[0].split(" [[")[0].strip()


def script_main(spec_cls: Type[CommonSpec], run_spec: Callable[[Any], Any],
                report: Callable[[Any, Any], Iterable[str]]) -> Callable[[List[str]], None]:
    """The absl main of a job script: flags -> spec -> run_spec(spec) -> printed report(results, spec)."""

    def main(argv: List[str]) -> None:
        refuse_arguments(argv)
        spec = spec_from_flags(spec_cls)
        results = run_script(os.path.basename(sys.argv[0]), lambda: run_spec(spec))
        for line in report(results, spec):
            print(line)

    return main


def refuse_arguments(argv: List[str]) -> None:
    """An absl main's arguments beyond its flags: one error line and exit 2 (absl's UsageError would
    print the whole flag help before the line that matters)."""
    if len(argv) > 1:
        print(f"{os.path.basename(argv[0])}: error: unexpected arguments: {' '.join(argv[1:])} (flags are "
              "--name=value; --helpshort lists them)", file=sys.stderr)
        sys.exit(2)
