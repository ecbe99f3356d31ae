"""Top-1 / top-5 accuracy over the real examples of an evaluation dataset (Keras metrics)."""

from typing import Dict

import keras
import numpy as np
import tensorflow as tf

from gmlp_tf.runtime import progress


def evaluate(model: keras.Model, dataset: tf.data.Dataset, num_classes: int) -> Dict[str, float]:
    """Top-1 / top-5 accuracy over the real (weight 1) examples of an eval_dataset."""
    logits = progress.predict(model, dataset.map(lambda x, y, w: x), "Predicting the validation images")
    labels, weights = [], []
    for _, y, w in dataset.as_numpy_iterator():
        labels.append(y)
        weights.append(w)
    labels, weights = np.concatenate(labels), np.concatenate(weights)
    logits = logits[: len(labels)]
    k = min(5, num_classes)
    top1 = keras.metrics.SparseTopKCategoricalAccuracy(k=1)
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=k)
    top1.update_state(labels, logits, sample_weight=weights)
    top5.update_state(labels, logits, sample_weight=weights)
    return {"top_1_accuracy": float(top1.result()), "top_5_accuracy": float(top5.result()),
            "eval_examples": int(weights.sum())}
