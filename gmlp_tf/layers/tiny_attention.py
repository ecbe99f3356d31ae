"""Tiny attention of aMLP (paper section 4.3, Figure 6 and its pseudo-code)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="gmlp_tf")
class TinyAttention(keras.layers.Layer):
    """Single-head self-attention of size 64 or 128 whose output feeds the SGU's gate.

    It reads the normalised block input (after the block's LayerNorm, before the channel
    expansion) and projects its result to the SGU's width (d_ffn / 2 for the split SGU).
    Keras' MultiHeadAttention with one head is exactly the pseudo-code: q, k, v projections of
    size attention_size, softmax(q k^T / sqrt(attention_size)) v, then an output projection.

    Call args:
      inputs: [batch, n, d_model].
      padding_mask: optional [batch, n], 1 for real tokens; padded tokens are never attended to.
      training: enables attention dropout.

    Returns:
      [batch, n, output_size].
    """

    def __init__(
        self,
        attention_size,
        output_size,
        dropout=0.0,
        causal=False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
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
            name="attention",
        )

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)

    def call(self, inputs, padding_mask=None, training=None):
        attention_mask = None
        if padding_mask is not None:
            # [batch, 1, n]: every query may read only the real keys.
            attention_mask = ops.cast(padding_mask, "bool")[:, None, :]
        return self.attention(
            inputs,
            inputs,
            attention_mask=attention_mask,
            use_causal_mask=self.causal,
            training=training,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_size,)

    def get_config(self):
        config = super().get_config()
        config.update(
            attention_size=self.attention_size,
            output_size=self.output_size,
            dropout=self.dropout,
            causal=self.causal,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
