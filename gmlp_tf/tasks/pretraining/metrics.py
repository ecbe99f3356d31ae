"""Masked-LM loss and metrics: the weighted cross-entropy of BERT, accuracy and perplexity."""

from typing import Any, List, Optional

import keras
import tensorflow as tf
from keras import ops

# The weighted mean cross-entropy over masked tokens, tracked as a metric so that evaluation can
# report the loss whose exponential is the perplexity.
MASKED_LM_LOSS = "masked_lm_loss"


@keras.saving.register_keras_serializable(package="gmlp_tf")
class MaskedLMPerplexity(keras.metrics.Metric):
    """exp(sum_i w_i CE_i / sum_i w_i) over every masked position seen, padding weighted out.

    Accumulating sums (rather than averaging per-batch perplexities) makes the result the
    perplexity of the whole evaluation set.
    """

    def __init__(self, name: str = "perplexity", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.total_loss = self.add_variable(shape=(), initializer="zeros", name="total_loss")
        self.total_weight = self.add_variable(shape=(), initializer="zeros", name="total_weight")

    def update_state(self, y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: Optional[tf.Tensor] = None) -> None:
        losses = keras.losses.sparse_categorical_crossentropy(y_true, ops.cast(y_pred, "float32"), from_logits=True)
        weights = ops.ones_like(losses) if sample_weight is None else ops.cast(sample_weight, "float32")
        self.total_loss.assign_add(ops.sum(losses * weights))
        self.total_weight.assign_add(ops.sum(weights))

    def result(self) -> tf.Tensor:
        return ops.exp(self.total_loss / ops.maximum(self.total_weight, 1e-12))

    def reset_state(self) -> None:
        self.total_loss.assign(0.0)
        self.total_weight.assign(0.0)


def masked_lm_loss() -> keras.losses.SparseCategoricalCrossentropy:
    """Mean cross-entropy over masked positions, weighted by masked_lm_weights (padding has 0)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")


def masked_lm_metrics() -> List[keras.metrics.Metric]:
    """Accuracy, mean cross-entropy and perplexity over masked tokens (use as weighted_metrics)."""
    return [
        keras.metrics.SparseCategoricalAccuracy(name="masked_lm_accuracy"),
        keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name=MASKED_LM_LOSS),
        MaskedLMPerplexity(name="perplexity"),
    ]

