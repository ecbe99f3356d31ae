"""The training loop for MultiWorkerMirroredStrategy, under which Keras 3 fit() cannot run.

fit() hands per-replica values to code that expects tensors under that strategy (keras-team/keras
#20585), so multi-worker training steps through `strategy.run(model.train_step)` itself: the same
compiled model, loss, optimizer and schedule as fit(), and the same Keras callbacks (checkpoints,
TensorBoard, the NaN stop) called at the same points, so a run's output directory is the same
whichever loop wrote it.
"""

import weakref
from typing import Dict, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

_train_steps_of: "weakref.WeakKeyDictionary[keras.Model, tf.types.experimental.GenericFunction]" = (
    weakref.WeakKeyDictionary())


def needs_custom_loop(strategy: tf.distribute.Strategy) -> bool:
    """Whether Keras fit() cannot train under `strategy`."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one process that writes: the chief (or worker 0) of a cluster, or a single process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def fit(model: keras.Model, dataset: Union[tf.data.Dataset, tf.distribute.DistributedDataset], epochs: int,
        steps_per_epoch: int, callbacks: Sequence[keras.callbacks.Callback] = (),
        verbose: Union[int, str] = 0) -> keras.callbacks.History:
    """model.fit(dataset, epochs=..., steps_per_epoch=...) for a repeating dataset, by strategy.run.

    Runs steps_per_execution steps per call of one tf.function; callbacks see the same batch and
    epoch events (with the compiled metrics as logs) as under fit().
    """
    strategy = model.distribute_strategy
    if isinstance(dataset, tf.data.Dataset):
        dataset = distribute(strategy, dataset)
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*callbacks, history], add_progbar=verbose not in (0, "0"), model=model, verbose=verbose, epochs=epochs,
        steps=steps_per_epoch)
    per_call = int(model.steps_per_execution or 1)
    train_steps = _train_steps_function(model)
    iterator = iter(dataset)
    model.stop_training = False
    logs: Dict[str, float] = {}
    callback_list.on_train_begin()
    for epoch in range(epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for begin in range(0, steps_per_epoch, per_call):
            count = min(per_call, steps_per_epoch - begin)
            callback_list.on_train_batch_begin(begin)
            train_steps(iterator, tf.constant(count))
            logs = _metrics(model)
            callback_list.on_train_batch_end(begin + count - 1, logs)
            if model.stop_training:
                break
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return history


def distribute(strategy: tf.distribute.Strategy,
               global_batches: tf.data.Dataset) -> tf.distribute.DistributedDataset:
    """Every worker reads the same global batches and keeps its own replicas' rows.

    So a cluster trains on exactly the batches one process would, in the same order, and a resumed
    run skips the same batches. Each batch's rows (dimension 0, e.g. 32) are split in replica order:
    worker w with r local replicas feeds them rows [w * r * b, (w + 1) * r * b) in r batches of b.

    Raises:
      ValueError: the batch size is known and does not divide among the replicas.
    """
    replicas = strategy.num_replicas_in_sync
    for spec in tf.nest.flatten(global_batches.element_spec):
        rows = spec.shape[0] if spec.shape.rank else None
        if rows is not None and rows % replicas:
            raise ValueError(f"a batch of {rows} does not divide among {replicas} replicas: give a batch size "
                             f"that is a multiple of {replicas}")

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines

        def split(t):
            rows = tf.shape(t)[0] // replicas
            first = context.input_pipeline_id * local * rows
            mine = tf.reshape(t[first:first + local * rows], tf.concat([[local, rows], tf.shape(t)[1:]], 0))
            static_rows = None if t.shape[0] is None else t.shape[0] // replicas
            return tf.ensure_shape(mine, [local, static_rows, *t.shape[1:]])  # Keras layers need the static dims.

        def this_worker(*parts):
            mine = tf.nest.map_structure(split, parts)
            return mine if len(mine) > 1 else mine[0]

        return global_batches.map(this_worker).unbatch()

    return strategy.distribute_datasets_from_function(dataset_fn)


def _train_steps_function(model):
    """A tf.function running `count` replicated train steps (built once per model)."""
    if model not in _train_steps_of:
        strategy = model.distribute_strategy

        @tf.function
        def train_steps(iterator, count):
            for _ in tf.range(count):
                strategy.run(model.train_step, args=(next(iterator),))

        _train_steps_of[model] = train_steps
    return _train_steps_of[model]


def _metrics(model):
    return {name: float(np.asarray(value)) for name, value in model.get_metrics_result().items()}
