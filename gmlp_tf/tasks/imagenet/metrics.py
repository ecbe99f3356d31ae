"""Top-1 / top-5 accuracy over the real examples of an evaluation dataset (Keras metrics)."""

from typing import Dict

import keras
import numpy as np
import tensorflow as tf

from gmlp_tf.utils import progress

TOP_K = 5


def evaluate(model: keras.Model, dataset: tf.data.Dataset, num_classes: int) -> Dict[str, float]:
    """Top-1 accuracy (and top-5, when there are more than 5 classes) over the real (weight 1) examples.

    Top-k of k >= num_classes is always 1, so "top_5_accuracy" is reported only where it says something.
    """
    logits = progress.predict(model, dataset.map(lambda x, y, w: x), "Predicting the validation images")
    labels, weights = [], []
    for _, y, w in dataset.as_numpy_iterator():
        labels.append(y)
        weights.append(w)
    labels, weights = np.concatenate(labels), np.concatenate(weights)
    logits = logits[: len(labels)]
    results = {"eval_examples": int(weights.sum())}
    for k in (1, TOP_K) if num_classes > TOP_K else (1,):
        metric = keras.metrics.SparseTopKCategoricalAccuracy(k=k)
        metric.update_state(labels, logits, sample_weight=weights)
        results[f"top_{k}_accuracy"] = float(metric.result())
    return results
