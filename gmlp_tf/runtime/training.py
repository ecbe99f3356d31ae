"""Keras fit that checkpoints, resumes exactly, stops on a NaN loss and logs to TensorBoard by step.

TensorBoard layout of an output directory:
  logs/train/   loss, learning_rate and the compiled metrics every `log_every_steps` steps
                (each the mean over the steps since the previous point)
  logs/eval/    the held-out metrics at every checkpoint (when an evaluation function is given)
Every scalar is indexed by the optimizer's step, so a resumed run continues the same curves
instead of restarting them at Keras' epoch or batch 0 (as keras.callbacks.TensorBoard would).
"""

import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gmlp_tf.models import checkpoint_format, saved_runs
from gmlp_tf.runtime import custom_loop, run_directory

LOGS_DIR = "logs"
TRAIN_RUN, EVAL_RUN = "train", "eval"
# Bookkeeping numbers an evaluation may return that are not curves.
NOT_CURVES = frozenset({"global_step", "eval_batches"})
EvaluateFn = Callable[[keras.Model], Mapping[str, float]]
DatasetLike = Union[tf.data.Dataset, tf.distribute.DistributedDataset]


def global_step(model: keras.Model) -> int:
    """The optimizer's step count (also under a strategy, where it is a mirrored variable)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations.value))


def _scalars(values: Mapping[str, object]) -> Dict[str, float]:
    """The finite-or-not numbers of a logs dict (Keras also puts tensors and None there)."""
    out = {}
    for key, value in values.items():
        try:
            out[key] = float(np.asarray(value))
        except (TypeError, ValueError):
            continue
    return out


class StepSummaries(keras.callbacks.Callback):
    """Writes training scalars every log_every_steps steps and held-out scalars at each epoch end.

    The training values are means over the steps since the previous point: the callback resets
    the compiled metrics after writing them (Keras would otherwise average from the epoch start),
    so Keras' own per-epoch figures (progress bar, History) cover the epoch's last such window.

    Args:
      log_dir: holds the train/ and eval/ TensorBoard runs.
      log_every_steps: optimizer steps between training points.
      evaluate_fn: called with the model at every epoch end (a checkpoint); returns the held-out
        metrics to write under eval/. None: no held-out curve.
      write: False on the workers of a cluster that are not its chief (they write nothing).
    """

    def __init__(self, log_dir: str, log_every_steps: int, evaluate_fn: Optional[EvaluateFn] = None,
                 write: bool = True) -> None:
        super().__init__()
        self.write = write
        if log_every_steps <= 0:
            raise ValueError(f"log_every_steps must be positive, got {log_every_steps}")
        self.log_dir = log_dir
        self.log_every_steps = int(log_every_steps)
        self.evaluate_fn = evaluate_fn
        self.eval_history: List[Tuple[int, Dict[str, float]]] = []
        self._writers: Dict[str, tf.summary.SummaryWriter] = {}
        self._last_logged = 0

    def _writer(self, run: str) -> tf.summary.SummaryWriter:
        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(os.path.join(self.log_dir, run))
        return self._writers[run]

    def _write(self, run: str, step: int, values: Mapping[str, float]) -> None:
        if not self.write:
            return
        with self._writer(run).as_default():
            for name, value in values.items():
                tf.summary.scalar(name, value, step=step)
        self._writer(run).flush()

    def on_train_begin(self, logs: Optional[Dict[str, object]] = None) -> None:
        self._last_logged = global_step(self.model)

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, object]] = None) -> None:
        step = global_step(self.model)
        if step - self._last_logged < self.log_every_steps:
            return
        values = _scalars(logs or {})
        values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._write(TRAIN_RUN, step, values)
        self._last_logged = step
        # Not after an epoch's last batch: Keras reads the epoch's logs (History, progress bar) from the metrics.
        if batch + 1 < (self.params.get("steps") or float("inf")):
            self.model.reset_metrics()

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, object]] = None) -> None:
        if self.evaluate_fn is None:
            return
        step = global_step(self.model)
        results = _scalars(self.evaluate_fn(self.model))
        self._write(EVAL_RUN, step, {k: v for k, v in results.items() if k not in NOT_CURVES})
        self.eval_history.append((step, results))
        logging.info("Held-out at step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in sorted(results.items())))

    def on_train_end(self, logs: Optional[Dict[str, object]] = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Ends training with NonFiniteLossError at the first step (or execution) whose loss is NaN or inf.

    It must come before any callback that resets the metrics: Keras' logged loss is the mean since
    the last reset, so one non-finite step makes every later mean non-finite until then.
    """

    def __init__(self, output_dir: str) -> None:
        super().__init__()
        self.output_dir = output_dir

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, object]] = None) -> None:
        loss = _scalars(logs or {}).get("loss")
        if loss is None or np.isfinite(loss):
            return
        step = global_step(self.model)
        executed = getattr(self.model, "steps_per_execution", 1) or 1
        where = f"step {step}" if executed == 1 else f"one of steps {step - executed + 1}-{step}"
        raise NonFiniteLossError(f"training loss is {loss} at {where}; stopped without saving. "
                                 + _last_good_checkpoint(self.output_dir))


class NonFiniteLossError(RuntimeError):
    """Training met a NaN or infinite loss (no checkpoint of it was written)."""


class StepCheckpoint(keras.callbacks.Callback):
    """Checkpoints at every epoch end (a checkpoint interval): model, optimizer, step and RNG states."""

    def __init__(self, output_dir: str, is_chief: bool = True) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.is_chief = is_chief

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, object]] = None) -> None:
        if not self.is_chief:
            return
        try:
            saved = run_directory.save(self.model, self.output_dir)
        except checkpoint_format.NonFiniteWeightsError as err:
            raise NonFiniteLossError(f"weights at step {global_step(self.model)} are not finite ({err}); not saved. "
                                     + _last_good_checkpoint(self.output_dir)) from None
        logging.info("Saved checkpoint %s", saved.weights)


def _last_good_checkpoint(output_dir: str) -> str:
    last = saved_runs.latest_weights(output_dir)
    if last is None:
        return "No checkpoint had been written; rerun with a lower --learning_rate"
    return f"The last good checkpoint is {last}; a rerun with a lower --learning_rate resumes from it"


def fit_resumable(
    model: keras.Model,
    make_dataset: Callable[[int], DatasetLike],
    output_dir: str,
    num_train_steps: int,
    save_checkpoints_steps: int,
    verbose: Union[int, str] = 1,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    log_every_steps: int = 100,
    evaluate_fn: Optional[EvaluateFn] = None,
) -> keras.callbacks.History:
    """model.fit that checkpoints every save_checkpoints_steps steps and resumes exactly.

    A rerun with the same output_dir loads the newest readable checkpoint (weights, optimizer
    state and step, dropout RNG states), skips the batches already trained on and trains to
    exactly num_train_steps optimizer steps, whatever interval either run used. Checkpoints fall
    on multiples of the interval and on the last step; a NaN or infinite loss stops the run
    (NonFiniteLossError) before anything of it is saved.

    Args:
      model: a compiled Keras model.
      make_dataset: skip -> the training data (a repeating tf.data.Dataset or DistributedDataset)
        without its first `skip` batches; it must give the same batches on every call.
      output_dir: holds checkpoints/ and logs/.
      num_train_steps: the run's total optimizer steps.
      save_checkpoints_steps: steps between checkpoints.
      verbose: as for fit().
      callbacks: more callbacks.
      log_every_steps: steps between the training scalars in logs/train.
      evaluate_fn: model -> held-out metrics, run at every checkpoint and written to logs/eval.

    Returns:
      The keras History of the last fit() call (empty when the run was already complete).
    """
    loaded = run_directory.restore(model, output_dir)
    step = global_step(model)
    if loaded is not None:
        logging.info("Resuming at step %d from %s", step, loaded.weights)
    history = keras.callbacks.History()
    if step >= num_train_steps:
        if step > num_train_steps:
            logging.warning("%s is at step %d, past --num_train_steps=%d: not training", output_dir, step,
                            num_train_steps)
        return history
    if step:
        logging.info("Skipping the %d batches already trained on", step)
    chief = custom_loop.is_chief(model.distribute_strategy)
    summaries = StepSummaries(os.path.join(output_dir, LOGS_DIR), log_every_steps, evaluate_fn, write=chief)
    every_fit = [StopOnNonFiniteLoss(output_dir), StepCheckpoint(output_dir, chief), summaries, *callbacks]
    for steps_per_epoch, epochs in checkpoint_segments(step, num_train_steps, save_checkpoints_steps):
        data = make_dataset(global_step(model))
        if custom_loop.needs_custom_loop(model.distribute_strategy):
            history = custom_loop.fit(model, data, epochs, steps_per_epoch, every_fit, verbose)
            continue
        history = model.fit(
            data, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=every_fit,
            shuffle=False,  # The input pipeline shuffles; Keras cannot shuffle a tf.data stream.
            verbose=verbose,
        )
    return history


def checkpoint_segments(step: int, num_train_steps: int, interval: int) -> List[Tuple[int, int]]:
    """(steps_per_epoch, epochs) of the fit() calls from `step` to num_train_steps.

    Every epoch ends at a multiple of `interval` or at the last step, so checkpoints fall there
    however the run was interrupted: e.g. step 20, 100 steps, interval 30 -> [(10, 1), (30, 2), (10, 1)].
    """
    segments = []
    first = min(num_train_steps - step, -step % interval)
    if first:
        segments.append((first, 1))
        step += first
    whole = (num_train_steps - step) // interval
    if whole:
        segments.append((interval, whole))
        step += whole * interval
    if num_train_steps > step:
        segments.append((num_train_steps - step, 1))
    return segments


def read_scalars(run_dir: str) -> Dict[str, List[Tuple[int, float]]]:
    """The scalars of one TensorBoard run directory (e.g. OUTPUT_DIR/logs/eval): tag -> [(step, value)].

    Event files are read in name (time) order and a later value for the same step replaces an
    earlier one, so the steps a resumed run repeated appear once.
    """
    by_tag: Dict[str, Dict[int, float]] = {}
    if not tf.io.gfile.isdir(run_dir):
        return {}
    for name in sorted(tf.io.gfile.listdir(run_dir)):
        if "tfevents" not in name:
            continue
        for record in tf.data.TFRecordDataset(os.path.join(run_dir, name)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                by_tag.setdefault(value.tag, {})[int(event.step)] = number
    return {tag: sorted(points.items()) for tag, points in by_tag.items()}
