"""Keras fit that checkpoints at every epoch end, resumes, and logs to TensorBoard by global step.

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

from gmlp_tf.runtime import checkpointing

LOGS_DIR = "logs"
TRAIN_RUN, EVAL_RUN = "train", "eval"
# Bookkeeping numbers an evaluation may return that are not curves.
NOT_CURVES = frozenset({"global_step", "eval_batches"})
EvaluateFn = Callable[[keras.Model], Mapping[str, float]]


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
    """

    def __init__(self, log_dir: str, log_every_steps: int, evaluate_fn: Optional[EvaluateFn] = None) -> None:
        super().__init__()
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


def fit_resumable(
    model: keras.Model,
    dataset: Union[tf.data.Dataset, tf.distribute.DistributedDataset],
    output_dir: str,
    epochs: int,
    steps_per_epoch: Optional[int] = None,
    verbose: Union[int, str] = 1,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    log_every_steps: int = 100,
    evaluate_fn: Optional[EvaluateFn] = None,
) -> keras.callbacks.History:
    """model.fit with BackupAndRestore (weights, optimizer state, epoch) and step-indexed TensorBoard.

    A rerun with the same output_dir continues after the last finished epoch; a run that had
    finished trains no more.

    Args:
      model: a compiled Keras model.
      dataset: a tf.data.Dataset or tf.distribute.DistributedDataset (shuffled already).
      output_dir: holds checkpoints/ and logs/.
      epochs, steps_per_epoch: as for fit(); steps_per_epoch is needed for repeating datasets.
      verbose: as for fit().
      callbacks: more callbacks.
      log_every_steps: steps between the training scalars in logs/train.
      evaluate_fn: model -> held-out metrics, run at every checkpoint and written to logs/eval.

    Returns:
      The keras History of this call.
    """
    if checkpointing.latest_weights(output_dir):
        logging.info("Resuming from the checkpoint in %s", output_dir)
    return model.fit(
        dataset,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=[
            checkpointing.backup_callback(output_dir),
            StepSummaries(os.path.join(output_dir, LOGS_DIR), log_every_steps, evaluate_fn),
            *callbacks,
        ],
        shuffle=False,  # The input pipeline shuffles; Keras cannot shuffle a tf.data stream.
        verbose=verbose,
    )


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
