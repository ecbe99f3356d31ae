"""Task heads on the token encoder: masked-LM, sequence classification / regression, SQuAD span."""

from typing import Any, Dict, Optional

import keras
from keras import ops

from gmlp_tf.layers import Shape, Tensor
from gmlp_tf.layers.activations import exact_gelu


def gather_positions(sequence: Tensor, positions: Tensor) -> Tensor:
    """Gathers vectors at given token positions.

    Args:
      sequence: [batch, n, width].
      positions: int [batch, num_positions], each in [0, n).

    Returns:
      [batch, num_positions, width].
    """
    positions = ops.cast(positions, "int32")
    return ops.take_along_axis(sequence, positions[:, :, None], axis=1)


@keras.saving.register_keras_serializable(package="gmlp_tf")
class MaskedLMHead(keras.layers.Layer):
    """BERT's masked-LM head: dense transform, GELU, LayerNorm, then the tied token embedding.

    logits = LayerNorm(GELU(h W_t + b_t)) E^T + b_out, with E the encoder's token embedding
    (a keras.layers.ReversibleEmbedding, passed in; not serialized: the model that owns both
    re-links them). Logits are float32 even under mixed precision.

    Args:
      token_embedding: the encoder's embedding, [vocab_size, d_model].
      layer_norm_eps: epsilon of the LayerNorm.
      initializer_range: stddev of the transform's truncated-normal initializer.

    Call args:
      sequence_output: [batch, n, d_model].
      masked_positions: optional int [batch, num_predictions]; if absent every token is scored.

    Returns:
      float32 logits [batch, num_predictions (or n), vocab_size].
    """

    def __init__(
        self,
        token_embedding: keras.layers.ReversibleEmbedding,
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.token_embedding = token_embedding
        self.layer_norm_eps = float(layer_norm_eps)
        self.initializer_range = float(initializer_range)
        self.transform = keras.layers.Dense(
            token_embedding.output_dim,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range),
            name="transform", dtype=self.dtype_policy,
        )
        self.norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="norm", dtype=self.dtype_policy)

    def build(self, input_shape: Shape) -> None:
        self.transform.build(input_shape)
        self.norm.build(input_shape)
        self.output_bias = self.add_weight(
            name="output_bias", shape=(self.token_embedding.input_dim,), initializer="zeros"
        )

    def call(self, sequence_output: Tensor, masked_positions: Optional[Tensor] = None) -> Tensor:
        h = sequence_output
        if masked_positions is not None:
            h = gather_positions(h, masked_positions)
        h = self.norm(exact_gelu(self.transform(h)))
        logits = self.token_embedding(h, reverse=True)
        return ops.cast(logits, "float32") + ops.cast(self.output_bias, "float32")

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(layer_norm_eps=self.layer_norm_eps, initializer_range=self.initializer_range)
        return config


@keras.saving.register_keras_serializable(package="gmlp_tf")
class ClassificationHead(keras.layers.Layer):
    """Sequence classification (num_labels > 1) or regression (num_labels = 1) from `[CLS]`.

    dense(d_model, tanh) -> dropout -> dense(num_labels): the pooler plus classifier of BERT;
    without next-sentence prediction the pooler is trained at finetuning, as in RoBERTa.

    Args:
      num_labels: outputs per example; 1 for regression.
      hidden_size: width of the pooler (d_model).
      dropout: dropout after the pooler.
      initializer_range: stddev of the truncated-normal kernel initializers.

    Call args:
      cls_output: [batch, d_model].
      training: enables dropout.

    Returns:
      float32 logits (or, for regression, scores) [batch, num_labels].
    """

    def __init__(
        self,
        num_labels: int,
        hidden_size: int,
        dropout: float = 0.1,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_labels) <= 0:
            raise ValueError(f"num_labels must be positive, got {num_labels}")
        self.num_labels = int(num_labels)
        self.hidden_size = int(hidden_size)
        self.dropout_rate = float(dropout)
        self.initializer_range = float(initializer_range)
        init = keras.initializers.TruncatedNormal
        self.pooler = keras.layers.Dense(
            self.hidden_size, activation="tanh", kernel_initializer=init(stddev=initializer_range), name="pooler",
            dtype=self.dtype_policy,
        )
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout", dtype=self.dtype_policy)
        self.classifier = keras.layers.Dense(
            self.num_labels, kernel_initializer=init(stddev=initializer_range), name="classifier",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape: Shape) -> None:
        self.pooler.build(input_shape)
        self.classifier.build(tuple(input_shape[:-1]) + (self.hidden_size,))

    def call(self, cls_output: Tensor, training: Optional[bool] = None) -> Tensor:
        h = self.dropout(self.pooler(cls_output), training=training)
        return ops.cast(self.classifier(h), "float32")

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            num_labels=self.num_labels,
            hidden_size=self.hidden_size,
            dropout=self.dropout_rate,
            initializer_range=self.initializer_range,
        )
        return config


@keras.saving.register_keras_serializable(package="gmlp_tf")
class SpanHead(keras.layers.Layer):
    """SQuAD span head: a start and an end logit per token, as in BERT's run_squad.

    For SQuAD v2.0 "no answer" is scored at `[CLS]` (position 0):
    null_score = start_logits[:, 0] + end_logits[:, 0], compared with the best span's score.

    Args:
      initializer_range: stddev of the truncated-normal kernel initializer.

    Call args:
      sequence_output: [batch, n, d_model].

    Returns:
      dict of float32 tensors: "start_logits" [batch, n], "end_logits" [batch, n],
      "null_score" [batch].
    """

    def __init__(self, initializer_range: float = 0.02, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initializer_range = float(initializer_range)
        self.dense = keras.layers.Dense(
            2, kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range), name="dense",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape: Shape) -> None:
        self.dense.build(input_shape)

    def call(self, sequence_output: Tensor) -> Dict[str, Tensor]:
        logits = ops.cast(self.dense(sequence_output), "float32")
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        return {
            "start_logits": start_logits,
            "end_logits": end_logits,
            "null_score": start_logits[:, 0] + end_logits[:, 0],
        }

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(initializer_range=self.initializer_range)
        return config
