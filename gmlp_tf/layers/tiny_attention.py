"""Tiny attention of aMLP (paper section 4.3, Figure 6 and its pseudo-code)."""

from typing import Any, Dict, Optional, Tuple, Union

import keras
from keras import ops

from gmlp_tf.layers import InitializerLike, Shape, Tensor


@keras.saving.register_keras_serializable(package="gmlp_tf")
class TinyAttention(keras.layers.Layer):
    """Single-head self-attention of size 64 or 128 whose output feeds the SGU's gate.

    It reads the normalised block input (after the block's LayerNorm, before the channel
    expansion) and projects its result to the SGU's width (d_ffn / 2 for the split SGU).
    Keras' MultiHeadAttention with one head is exactly the pseudo-code: q, k, v projections of
    size attention_size, softmax(q k^T / sqrt(attention_size)) v, then an output projection.

    Args:
      attention_size: size of q, k and v (64 or 128 in the paper).
      output_size: channels of the output, the SGU's gate width.
      dropout: dropout on the attention probabilities.
      causal: query i attends only to keys j <= i.
      kernel_initializer: initializer of the four projections.

    Call args:
      inputs: [batch, n, d_model].
      padding_mask: optional [batch, n], 1 for real tokens; padded tokens are never attended to.
      training: enables attention dropout.
      return_attention_scores: also return the attention probabilities (as
        keras.layers.MultiHeadAttention's argument of that name).

    Returns:
      [batch, n, output_size]; with return_attention_scores, the tuple (that output, the
      attention probabilities [batch, n, n], queries by keys, before dropout).
    """

    def __init__(
        self,
        attention_size: int,
        output_size: int,
        dropout: float = 0.0,
        causal: bool = False,
        kernel_initializer: InitializerLike = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(attention_size) <= 0:
            raise ValueError(f"attention_size must be positive, got {attention_size}")
        self.attention_size = int(attention_size)
        self.output_size = int(output_size)
        self.dropout = float(dropout)
        self.causal = bool(causal)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=1,
            key_dim=self.attention_size,
            output_shape=self.output_size,
            dropout=self.dropout,
            kernel_initializer=keras.initializers.get(kernel_initializer),
            name="attention", dtype=self.dtype_policy,
        )

    def build(self, input_shape: Shape) -> None:
        self.attention.build(input_shape, input_shape)

    def call(
        self,
        inputs: Tensor,
        padding_mask: Optional[Tensor] = None,
        training: Optional[bool] = None,
        return_attention_scores: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        attention_mask = None
        if padding_mask is not None:
            # [batch, 1, n]: every query may read only the real keys.
            attention_mask = ops.cast(padding_mask, "bool")[:, None, :]
        outputs = self.attention(
            inputs,
            inputs,
            attention_mask=attention_mask,
            use_causal_mask=self.causal,
            training=training,
            return_attention_scores=return_attention_scores,
        )
        if not return_attention_scores:
            return outputs
        output, scores = outputs
        return output, scores[:, 0]  # The one head: [batch, 1, n, n] -> [batch, n, n].

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape[:-1]) + (self.output_size,)

    def compute_output_spec(
        self,
        inputs: keras.KerasTensor,
        padding_mask: Optional[keras.KerasTensor] = None,
        training: Optional[bool] = None,
        return_attention_scores: bool = False,
    ) -> Union[keras.KerasTensor, Tuple[keras.KerasTensor, keras.KerasTensor]]:
        # Keras would otherwise derive the symbolic output from compute_output_shape alone and
        # miss the probabilities.
        output = keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        n = inputs.shape[1]
        return output, keras.KerasTensor((inputs.shape[0], n, n), dtype=self.compute_dtype)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            attention_size=self.attention_size,
            output_size=self.output_size,
            dropout=self.dropout,
            causal=self.causal,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
