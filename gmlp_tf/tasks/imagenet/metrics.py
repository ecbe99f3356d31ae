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
    logits = np.asarray(logits)[: len(labels)]
    results = {"eval_examples": int(weights.sum())}
    for k in (1, TOP_K) if num_classes > TOP_K else (1,):
        results[f"top_{k}_accuracy"] = top_k_accuracy(logits, labels, weights, k)
    return results


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray, k: int) -> float:
    """The weighted share of examples whose label is among the k highest logits, ties counting against it.

    An example is right when fewer than k other classes score at least as high as its label, so
    a head whose logits are all equal (untrained) scores 0, not 100% (Keras'
    SparseTopKCategoricalAccuracy counts a tie as in the top k).

    Args:
      logits: [examples, classes].
      labels: [examples] int class ids.
      weights: [examples] example weights (0 for padding).
    """
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels).astype(np.int64).reshape(-1)
    label_logits = logits[np.arange(len(labels)), labels]
    rivals = (logits >= label_logits[:, None]).sum(axis=1) - 1  # Other classes at least as high as the label.
    weights = np.asarray(weights, np.float64).reshape(-1)
    return float(((rivals < k) * weights).sum() / max(weights.sum(), 1e-12))
