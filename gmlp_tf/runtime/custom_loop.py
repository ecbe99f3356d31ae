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
        dataset = strategy.experimental_distribute_dataset(dataset)
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
