"""Keras fit that checkpoints at every epoch end and resumes from the output directory."""

import os
from typing import Optional, Sequence, Union

import keras
import tensorflow as tf
from absl import logging

from gmlp_tf.runtime import checkpointing


def fit_resumable(
    model: keras.Model,
    dataset: Union[tf.data.Dataset, tf.distribute.DistributedDataset],
    output_dir: str,
    epochs: int,
    steps_per_epoch: Optional[int] = None,
    verbose: Union[int, str] = 1,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> keras.callbacks.History:
    """model.fit with BackupAndRestore (weights, optimizer state, epoch) and TensorBoard logs.

    A rerun with the same output_dir continues after the last finished epoch; a run that had
    finished trains no more.

    Args:
      model: a compiled Keras model.
      dataset: a tf.data.Dataset or tf.distribute.DistributedDataset (shuffled already).
      output_dir: holds checkpoints/ and logs/.
      epochs, steps_per_epoch: as for fit(); steps_per_epoch is needed for repeating datasets.
      verbose: as for fit().
      callbacks: more callbacks.

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
            keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), update_freq="epoch"),
            *callbacks,
        ],
        shuffle=False,  # The input pipeline shuffles; Keras cannot shuffle a tf.data stream.
        verbose=verbose,
    )
