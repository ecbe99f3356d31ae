"""The spatial projection f_{W,b}(Z) = W Z + b of the Spatial Gating Unit (paper, Eq. 2)."""

from typing import Any, Dict, Optional, Union

import keras
from keras import ops

from gmlp_tf.config import SPATIAL_KINDS
from gmlp_tf.layers import Shape, Tensor


def toeplitz_matrix(weights: Tensor, n: Union[int, Tensor]) -> Tensor:
    """Builds an n x n Toeplitz matrix from 2n - 1 weights with the pad/tile trick of Appendix C.

    The appendix code slices `t[:n]` before the reshape, which cannot work (an erratum): the
    padded, tiled vector holds n(3n - 1) values and the reshape needs n(3n - 2), so the slice
    that works drops the last n values, `t[:-n]`. Row i of the reshaped [n, 3n - 2] matrix
    then starts i places further left in the periodic sequence (w, 0 x n), so each row is the
    previous one shifted right by one: a full two-directional Toeplitz matrix.

    Args:
      weights: [2n - 1] tensor; weights[k + n - 1] is the weight of relative offset k = j - i.
      n: int or scalar int tensor, the matrix size.

    Returns:
      [n, n] tensor T with T[i, j] = weights[j - i + n - 1].
    """
    r = n - 1
    t = ops.pad(weights, [[0, n]])  # [3n - 1]: the weights, then n zeros.
    t = ops.tile(t, [n])  # [n(3n - 1)]
    t = t[:-n]  # [n(3n - 2)]; the appendix's `t[:n]` is the erratum.
    t = ops.reshape(t, (n, 3 * n - 2))
    # The appendix's `t[:, r:-r]`; written with an explicit end so that n = 1 (r = 0) works.
    return t[:, r : r + n]


def checked_length(inputs: Tensor, max_length: int, owner: str = "the spatial projection") -> Union[int, Tensor]:
    """The token count n of `inputs` [batch, n, ...], checked against max_length.

    A static n > max_length raises a ValueError naming both lengths; a dynamic n (traced with an
    unknown length) comes back as a scalar tensor that asserts n <= max_length when it runs.

    Args:
      inputs: [batch, n, ...].
      max_length: the most tokens the weights of `owner` are sized for.
      owner: what the messages name, e.g. "the self-attention".

    Returns:
      n: an int, or a scalar int tensor when the length is dynamic.
    """
    n = inputs.shape[1]
    if n is None:
        # Unknown when traced with a dynamic length: check when it runs.
        n = ops.shape(inputs)[1]
        import tensorflow as tf  # Only the TensorFlow backend traces dynamic lengths here.

        check = tf.debugging.assert_less_equal(
            n,
            max_length,
            message=f"sequence length exceeds {owner}'s max_length {max_length}",
        )
        # Everything downstream reads n, so the check runs before any slicing with it.
        with tf.control_dependencies([check]):
            return tf.identity(n)
    if n > max_length:
        raise ValueError(
            f"input has {n} tokens but {owner} is sized for at most "
            f"{max_length} (max_seq_length); trim the input or use a config with "
            f"max_seq_length >= {n}"
        )
    return n


@keras.saving.register_keras_serializable(package="gmlp_tf")
class SpatialProjection(keras.layers.Layer):
    """Linear projection across tokens, shared by all channels: out[b, i, c] = sum_j W[i, j] z[b, j, c] + b[i].

    W is a dense max_length x max_length matrix or, for `kind="toeplitz"`, a Toeplitz matrix
    with 2 * max_length - 1 free weights (one per relative offset). W starts near zero and b at
    one, so that a gate f(Z) starts at one and its block as a plain FFN.

    An input with n < max_length tokens uses the leading n x n block of W and the first n
    biases (for Toeplitz, the matrix of the 2n - 1 central weights: the same block). An input
    with n > max_length raises a ValueError naming both lengths.

    Args:
      max_length: the most tokens an input may have; W is sized for it.
      kind: "dense" (W [max_length, max_length]) or "toeplitz" (W from [2 * max_length - 1]).
      causal: keep only W's lower triangle, so that token i reads only tokens j <= i.
      kernel_stddev: stddev of W's normal initializer.

    Call args:
      inputs: [batch, n, channels].
      padding_mask: optional [batch, n], 1 for real tokens and 0 for padding. Padded tokens are
        zeroed before the projection so that they do not leak into real ones.

    Returns:
      [batch, n, channels].
    """

    def __init__(
        self,
        max_length: int,
        kind: str = "dense",
        causal: bool = False,
        kernel_stddev: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in SPATIAL_KINDS:
            raise ValueError(f"spatial kind must be one of {', '.join(SPATIAL_KINDS)}; got {kind!r}")
        if int(max_length) <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.max_length = int(max_length)
        self.kind = kind
        self.causal = bool(causal)
        self.kernel_stddev = float(kernel_stddev)

    def build(self, input_shape: Shape) -> None:
        n = self.max_length
        kernel_shape = (n, n) if self.kind == "dense" else (2 * n - 1,)
        self.kernel = self.add_weight(
            name="kernel",
            shape=kernel_shape,
            initializer=keras.initializers.RandomNormal(stddev=self.kernel_stddev),
        )
        self.bias = self.add_weight(name="bias", shape=(n,), initializer="ones")

    def spatial_matrix(self, n: Optional[Union[int, Tensor]] = None) -> Tensor:
        """Returns W for n tokens, [n, n] (n defaults to max_length), causal mask applied."""
        n = self.max_length if n is None else n
        if self.kind == "dense":
            w = self.kernel[:n, :n]
        else:
            centre = self.max_length - 1  # Index of offset 0.
            w = toeplitz_matrix(self.kernel[centre - (n - 1) : centre + n], n)
        if self.causal:
            # Token i may only read tokens j <= i: keep the lower triangle.
            w = w * ops.tril(ops.ones((n, n), dtype=w.dtype))
        return w

    def call(self, inputs: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        n = checked_length(inputs, self.max_length)
        if padding_mask is not None:
            inputs = inputs * ops.cast(padding_mask, inputs.dtype)[:, :, None]
        w = ops.cast(self.spatial_matrix(n), inputs.dtype)
        b = ops.cast(self.bias[:n], inputs.dtype)
        return ops.einsum("ij,bjc->bic", w, inputs) + b[None, :, None]

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            max_length=self.max_length,
            kind=self.kind,
            causal=self.causal,
            kernel_stddev=self.kernel_stddev,
        )
        return config
