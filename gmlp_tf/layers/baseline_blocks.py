"""The Table 3 baselines in one file: multi-head self-attention, the Transformer and MLP-Mixer blocks.

Both blocks keep the gMLP block's residual layout (pre-LayerNorm branches, each with dropout and
stochastic depth on its output), so that a comparison with gMLP changes only the token mixing.
"""

from typing import Any, Dict, Optional, Union

import keras
from keras import ops

from gmlp_tf.layers import InitializerLike, Shape, Tensor
from gmlp_tf.layers import fresh_initializer as _fresh
from gmlp_tf.layers.activations import exact_gelu
from gmlp_tf.layers.drop_path import DropPath
from gmlp_tf.layers.spatial_projection import checked_length, toeplitz_matrix

# Added to the float32 logits of keys that may not be read. Finite, so that a query without a
# readable key gets a uniform distribution rather than NaNs.
_MASKED_LOGIT = -1e9




@keras.saving.register_keras_serializable(package="gmlp_tf")
class SelfAttention(keras.layers.Layer):
    """Multi-head self-attention, optionally with a learned relative position bias.

        logits[b, h, i, j] = q[b, i, h] . k[b, j, h] / sqrt(head_size)   (content)
                             + r[h, j - i]                                (relative_positions)
        out = concat_h(softmax_j(logits) v) W_o

    q, k, v are projections with biases to num_heads heads of head_size = d_model / num_heads
    ([d_model, num_heads, head_size] kernels), W_o maps the heads back to d_model. r holds one
    scalar per head and offset j - i for the 2 * max_length - 1 offsets (unbucketed) and starts
    at zero; an input of n tokens uses the Toeplitz matrix of the 2n - 1 central offsets, the
    leading n x n block, as SpatialProjection does. With content=False (the paper's "rel pos -
    attn") there are no q and k: the logits are r alone, and the tokens reach the output only
    through v.

    Logits, masks and softmax are float32, also under mixed precision.

    Args:
      num_heads: attention heads; must divide the input's channels.
      max_length: the most tokens an input may have; r is sized for it.
      relative_positions: add the relative position bias r to the logits.
      content: include the content term q k^T; False needs relative_positions.
      dropout: dropout on the attention probabilities.
      causal: query i reads only keys j <= i.
      kernel_initializer, bias_initializer: initializers of the q, k, v and output projections.

    Call args:
      inputs: [batch, n, d_model], n <= max_length.
      padding_mask: optional [batch, n], 1 for real tokens; padded keys are never read.
      training: enables dropout.

    Returns:
      [batch, n, d_model].
    """

    def __init__(
        self,
        num_heads: int,
        max_length: int,
        relative_positions: bool = False,
        content: bool = True,
        dropout: float = 0.0,
        causal: bool = False,
        kernel_initializer: InitializerLike = "glorot_uniform",
        bias_initializer: InitializerLike = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_heads) <= 0 or int(max_length) <= 0:
            raise ValueError(f"num_heads and max_length must be positive, got {num_heads} and {max_length}")
        if not content and not relative_positions:
            raise ValueError("SelfAttention without content needs relative_positions: its logits would be empty")
        self.num_heads = int(num_heads)
        self.max_length = int(max_length)
        self.relative_positions = bool(relative_positions)
        self.content = bool(content)
        self.dropout_rate = float(dropout)
        self.causal = bool(causal)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout", dtype=self.dtype_policy)
        # The projections need d_model, known in build() (as in Keras' MultiHeadAttention).
        self.query = self.key = self.value = self.output_projection = None

    def _projection(self, equation: str, output_shape: Shape, bias_axes: str, name: str) -> keras.layers.EinsumDense:
        return keras.layers.EinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes,
            kernel_initializer=_fresh(self.kernel_initializer),
            bias_initializer=_fresh(self.bias_initializer),
            name=name, dtype=self.dtype_policy,
        )

    def build(self, input_shape: Shape) -> None:
        d_model = input_shape[-1]
        if d_model % self.num_heads:
            raise ValueError(f"num_heads {self.num_heads} does not divide the input's {d_model} channels")
        self.head_size = d_model // self.num_heads
        heads_shape = (None, self.num_heads, self.head_size)
        # [batch, n, d_model] -> [batch, n, heads, head_size], kernels [d_model, heads, head_size].
        if self.content:
            self.query = self._projection("bnd,dhk->bnhk", heads_shape, "hk", "query")
            self.key = self._projection("bnd,dhk->bnhk", heads_shape, "hk", "key")
        self.value = self._projection("bnd,dhk->bnhk", heads_shape, "hk", "value")
        self.output_projection = self._projection("bnhk,hkd->bnd", (None, d_model), "d", "output")
        heads_input_shape = tuple(input_shape[:-1]) + (self.num_heads, self.head_size)
        for projection in (self.query, self.key, self.value):
            if projection is not None:
                projection.build(input_shape)
        self.output_projection.build(heads_input_shape)
        if self.relative_positions:
            # Read in float32 under mixed precision too: it joins the float32 logits.
            self.relative_bias = self.add_weight(
                name="relative_bias",
                shape=(self.num_heads, 2 * self.max_length - 1),
                initializer="zeros",
                autocast=False,
            )

    def relative_bias_matrix(self, n: Optional[Union[int, Tensor]] = None) -> Tensor:
        """The relative position bias for n tokens (default max_length): [heads, n, n] float32,
        entry [h, i, j] = r[h, j - i]."""
        n = self.max_length if n is None else n
        centre = self.max_length - 1  # Index of offset 0.
        weights = self.relative_bias[:, centre - (n - 1) : centre + n]  # [heads, 2n - 1]
        # index[i, j] = j - i + n - 1: one Toeplitz matrix of indices serves every head.
        index = toeplitz_matrix(ops.arange(2 * n - 1, dtype="int32"), n)
        return ops.take(weights, index, axis=1)

    def attention_probs(self, inputs: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """softmax(logits), before dropout: [batch, heads, n, n] float32, over the keys j."""
        n = checked_length(inputs, self.max_length, "the self-attention")
        logits = self._key_bias(inputs, padding_mask)  # [batch, 1, 1, n]
        if self.content:
            query = self.query(inputs) * (self.head_size**-0.5)
            scores = ops.einsum("bihk,bjhk->bhij", query, self.key(inputs))
            logits = logits + ops.cast(scores, "float32")
        if self.relative_positions:
            logits = logits + ops.cast(self.relative_bias_matrix(n), "float32")[None]
        if self.causal:
            allowed = ops.tril(ops.ones((n, n), dtype="float32"))
            logits = logits + (1.0 - allowed) * _MASKED_LOGIT
        return ops.softmax(logits, axis=-1)

    def _key_bias(self, inputs: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        # [batch, 1, 1, n]; also carries the batch axis into r, which has none.
        if padding_mask is None:
            return ops.zeros_like(ops.cast(inputs[:, None, None, :, 0], "float32"))
        return (1.0 - ops.cast(padding_mask, "float32"))[:, None, None, :] * _MASKED_LOGIT

    def call(
        self, inputs: Tensor, padding_mask: Optional[Tensor] = None, training: Optional[bool] = None
    ) -> Tensor:
        probs = ops.cast(self.attention_probs(inputs, padding_mask), self.compute_dtype)
        probs = self.dropout(probs, training=training)
        context = ops.einsum("bhij,bjhk->bihk", probs, self.value(inputs))
        return self.output_projection(context)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            max_length=self.max_length,
            relative_positions=self.relative_positions,
            content=self.content,
            dropout=self.dropout_rate,
            causal=self.causal,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


class _ResidualBlock(keras.layers.Layer):
    """What both baseline blocks share with GMLPBlock: the initializers, the channel MLP and the
    residual branch's dropout and stochastic depth."""

    def __init__(
        self,
        d_model: int,
        d_ffn: int,
        max_length: int,
        dropout: float,
        survival_prob: float,
        layer_norm_eps: float,
        kernel_initializer: InitializerLike,
        bias_initializer: InitializerLike,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.d_model = int(d_model)
        self.d_ffn = int(d_ffn)
        self.max_length = int(max_length)
        self.dropout_rate = float(dropout)
        self.survival_prob = float(survival_prob)
        self.layer_norm_eps = float(layer_norm_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _make_channel_mlp(self) -> None:
        """Creates the channel MLP and the branch dropouts; called after the token mixer, so
        that the weights list in the order the block applies them."""
        self.ffn_norm = self._layer_norm("ffn_norm")
        self.proj_in = keras.layers.Dense(self.d_ffn, name="proj_in", dtype=self.dtype_policy, **self._dense_args())
        self.proj_out = keras.layers.Dense(self.d_model, name="proj_out", dtype=self.dtype_policy, **self._dense_args())
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout", dtype=self.dtype_policy)
        self.drop_path = DropPath(rate=1.0 - self.survival_prob, name="drop_path", dtype=self.dtype_policy)

    def _layer_norm(self, name: str) -> keras.layers.LayerNormalization:
        return keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name=name, dtype=self.dtype_policy)

    def _dense_args(self) -> Dict[str, keras.initializers.Initializer]:
        return dict(kernel_initializer=_fresh(self.kernel_initializer), bias_initializer=_fresh(self.bias_initializer))

    def _check_channels(self, input_shape: Shape) -> None:
        if input_shape[-1] != self.d_model:
            raise ValueError(f"{type(self).__name__} expects {self.d_model} channels, got {input_shape[-1]}")

    def _build_channel_mlp(self, input_shape: Shape) -> None:
        self.ffn_norm.build(input_shape)
        self.proj_in.build(input_shape)
        self.proj_out.build(tuple(input_shape[:-1]) + (self.d_ffn,))

    def _residual(self, inputs: Tensor, branch: Tensor, training: Optional[bool]) -> Tensor:
        return inputs + self.drop_path(self.dropout(branch, training=training), training=training)

    def _channel_mlp(self, inputs: Tensor, training: Optional[bool]) -> Tensor:
        """x + Dropout(GELU(LN(x) W_in) W_out): the position-wise feed-forward branch."""
        hidden = exact_gelu(self.proj_in(self.ffn_norm(inputs)))
        return self._residual(inputs, self.proj_out(hidden), training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            d_model=self.d_model,
            d_ffn=self.d_ffn,
            max_length=self.max_length,
            dropout=self.dropout_rate,
            survival_prob=self.survival_prob,
            layer_norm_eps=self.layer_norm_eps,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="gmlp_tf")
class TransformerBlock(_ResidualBlock):
    """A pre-LayerNorm Transformer (BERT) block, laid out as the gMLP block for a fair comparison:

        x = x + DropPath(Dropout(SelfAttention(LayerNorm(x))))
        x = x + DropPath(Dropout(GELU(LayerNorm(x) W_in) W_out))     exact (erf) GELU

    Args:
      d_model: channels of the input and output.
      d_ffn: hidden channels of the feed-forward branch.
      num_heads: attention heads; must divide d_model.
      max_length: the most tokens an input may have (see SelfAttention).
      relative_positions, attention_content, causal: see SelfAttention (attention_content is
        its `content`).
      dropout: dropout on each branch's output.
      attention_dropout: dropout on the attention probabilities.
      survival_prob: probability that an example keeps a branch in training, in (0, 1].
      layer_norm_eps: epsilon of the two LayerNorms.
      kernel_initializer, bias_initializer: initializers of every projection.

    Call args:
      inputs: [batch, n, d_model], n <= max_length.
      padding_mask: optional [batch, n], 1 for real tokens; padded keys are never read.
      training: enables dropout and stochastic depth.

    Returns:
      [batch, n, d_model].
    """

    def __init__(
        self,
        d_model: int,
        d_ffn: int,
        num_heads: int,
        max_length: int,
        relative_positions: bool = False,
        attention_content: bool = True,
        causal: bool = False,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        survival_prob: float = 1.0,
        layer_norm_eps: float = 1e-6,
        kernel_initializer: InitializerLike = "glorot_uniform",
        bias_initializer: InitializerLike = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            d_model, d_ffn, max_length, dropout, survival_prob, layer_norm_eps,
            kernel_initializer, bias_initializer, **kwargs,
        )
        if self.d_model % int(num_heads):
            raise ValueError(f"num_heads {num_heads} does not divide d_model {d_model}")
        self.num_heads = int(num_heads)
        self.relative_positions = bool(relative_positions)
        self.attention_content = bool(attention_content)
        self.causal = bool(causal)
        self.attention_dropout = float(attention_dropout)
        self.attention_norm = self._layer_norm("attention_norm")
        self.attention = SelfAttention(
            self.num_heads,
            self.max_length,
            relative_positions=self.relative_positions,
            content=self.attention_content,
            dropout=self.attention_dropout,
            causal=self.causal,
            kernel_initializer=_fresh(self.kernel_initializer),
            bias_initializer=_fresh(self.bias_initializer),
            name="attention", dtype=self.dtype_policy,
        )
        self._make_channel_mlp()

    def build(self, input_shape: Shape) -> None:
        self._check_channels(input_shape)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self._build_channel_mlp(input_shape)

    def call(
        self, inputs: Tensor, padding_mask: Optional[Tensor] = None, training: Optional[bool] = None
    ) -> Tensor:
        attended = self.attention(self.attention_norm(inputs), padding_mask=padding_mask, training=training)
        x = self._residual(inputs, attended, training)
        return self._channel_mlp(x, training)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            relative_positions=self.relative_positions,
            attention_content=self.attention_content,
            causal=self.causal,
            attention_dropout=self.attention_dropout,
        )
        return config


@keras.saving.register_keras_serializable(package="gmlp_tf")
class MixerBlock(_ResidualBlock):
    """An MLP-Mixer block (Tolstikhin et al., 2021), laid out as the gMLP block:

        x = x + DropPath(Dropout(TokenMLP(LayerNorm(x))))
        x = x + DropPath(Dropout(GELU(LayerNorm(x) W_in) W_out))

    The token-mixing MLP acts across positions, shared by all channels:
        TokenMLP(h)[b, i, c] = sum_s W2[s, i] GELU(sum_j W1[j, s] h[b, j, c] + b1[s]) + b2[i]
    with W1 [max_length, d_spatial] and W2 [d_spatial, max_length]. An input of n < max_length
    tokens uses the leading n rows of W1 and columns of W2 and the first n entries of b2, as
    SpatialProjection does. Padded tokens (padding_mask) are zeroed before the token mixing, as
    in the SGU. There is no causal form: every hidden unit reads every token.

    Args:
      d_model: channels of the input and output.
      d_ffn: hidden channels of the channel-mixing MLP.
      d_spatial: hidden width of the token-mixing MLP.
      max_length: the most tokens an input may have.
      causal: must be False.
      dropout: dropout on each branch's output.
      survival_prob: probability that an example keeps a branch in training, in (0, 1].
      layer_norm_eps: epsilon of the two LayerNorms.
      kernel_initializer, bias_initializer: initializers of both MLPs.

    Call args:
      inputs: [batch, n, d_model], n <= max_length.
      padding_mask: optional [batch, n], 1 for real tokens.
      training: enables dropout and stochastic depth.

    Returns:
      [batch, n, d_model].
    """

    def __init__(
        self,
        d_model: int,
        d_ffn: int,
        d_spatial: int,
        max_length: int,
        causal: bool = False,
        dropout: float = 0.0,
        survival_prob: float = 1.0,
        layer_norm_eps: float = 1e-6,
        kernel_initializer: InitializerLike = "glorot_uniform",
        bias_initializer: InitializerLike = "zeros",
        **kwargs: Any,
    ) -> None:
        if causal:
            raise ValueError("MixerBlock has no causal form: its token-mixing MLP reads every token")
        if int(d_spatial) <= 0:
            raise ValueError(f"d_spatial must be positive, got {d_spatial}")
        super().__init__(
            d_model, d_ffn, max_length, dropout, survival_prob, layer_norm_eps,
            kernel_initializer, bias_initializer, **kwargs,
        )
        self.d_spatial = int(d_spatial)
        self.causal = False
        self.token_norm = self._layer_norm("token_norm")
        self._make_channel_mlp()

    def build(self, input_shape: Shape) -> None:
        self._check_channels(input_shape)
        n, s = self.max_length, self.d_spatial
        self.token_norm.build(input_shape)
        # Kernels [in, out] as Dense's: W1 over positions to hidden units, W2 back to positions.
        self.token_in_kernel = self._token_weight("token_in_kernel", (n, s), self.kernel_initializer)
        self.token_in_bias = self._token_weight("token_in_bias", (s,), self.bias_initializer)
        self.token_out_kernel = self._token_weight("token_out_kernel", (s, n), self.kernel_initializer)
        self.token_out_bias = self._token_weight("token_out_bias", (n,), self.bias_initializer)
        self._build_channel_mlp(input_shape)

    def _token_weight(self, name: str, shape: Shape, initializer: keras.initializers.Initializer) -> keras.Variable:
        return self.add_weight(name=name, shape=shape, initializer=_fresh(initializer))

    def token_mixing(self, inputs: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """The token-mixing MLP: [batch, n, d_model] -> [batch, n, d_model]."""
        n = checked_length(inputs, self.max_length, "the token-mixing MLP")
        if padding_mask is not None:
            inputs = inputs * ops.cast(padding_mask, inputs.dtype)[:, :, None]
        dtype = inputs.dtype
        w1, b1 = ops.cast(self.token_in_kernel[:n], dtype), ops.cast(self.token_in_bias, dtype)
        w2, b2 = ops.cast(self.token_out_kernel[:, :n], dtype), ops.cast(self.token_out_bias[:n], dtype)
        hidden = exact_gelu(ops.einsum("bjc,js->bsc", inputs, w1) + b1[None, :, None])
        return ops.einsum("bsc,si->bic", hidden, w2) + b2[None, :, None]

    def call(
        self, inputs: Tensor, padding_mask: Optional[Tensor] = None, training: Optional[bool] = None
    ) -> Tensor:
        x = self._residual(inputs, self.token_mixing(self.token_norm(inputs), padding_mask), training)
        return self._channel_mlp(x, training)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(d_spatial=self.d_spatial, causal=self.causal)
        return config
