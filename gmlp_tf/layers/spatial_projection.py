"""The spatial projection f_{W,b}(Z) = W Z + b of the Spatial Gating Unit (paper, Eq. 2)."""

from typing import Any, Dict, Optional, Tuple, Union

import keras
from keras import ops

from gmlp_tf.config import SPATIAL_IMPLEMENTATIONS, SPATIAL_KINDS
from gmlp_tf.layers import Shape, Tensor

# "auto" picks the FFT for Toeplitz inputs of at least this many tokens: below it the n x n
# matmul is faster; at 1024 the FFT is 1.3-1.5x faster without XLA and even with it, at 2048
# 1.5-3.4x faster (forward and backward, 1536 channels, float32, 2-core CPUs;
# scripts/benchmark_spatial_projection.py). Accelerators favour the matmul further.
FFT_MIN_LENGTH = 1024


def toeplitz_matrix(weights: Tensor, n: Union[int, Tensor]) -> Tensor:
    """Builds an n x n Toeplitz matrix from 2n - 1 weights with the pad/tile trick of Appendix C.

    The appendix code slices `t[:n]` before the reshape, which cannot work (an erratum): the
    padded, tiled vector holds n(3n - 1) values and the reshape needs n(3n - 2), so the slice
    that works drops the last n values, `t[:-n]`. Row i of the reshaped [n, 3n - 2] matrix
    then starts i places further left in the periodic sequence (w, 0 x n), so each row is the
    previous one shifted right by one: a full two-directional Toeplitz matrix.

    The gradient is the same construction run backwards (sums along the diagonals), written out
    because XLA lowers the gradient of tile to a reduce-window that is slow on CPUs.

    Args:
      weights: [2n - 1] tensor; weights[k + n - 1] is the weight of relative offset k = j - i.
      n: int or scalar int tensor, the matrix size.

    Returns:
      [n, n] tensor T with T[i, j] = weights[j - i + n - 1].
    """
    r = n - 1

    @ops.custom_gradient
    def build(weights):
        t = ops.pad(weights, [[0, n]])  # [3n - 1]: the weights, then n zeros.
        t = ops.tile(t, [n])  # [n(3n - 1)]
        t = t[:-n]  # [n(3n - 2)]; the appendix's `t[:n]` is the erratum.
        t = ops.reshape(t, (n, 3 * n - 2))
        # The appendix's `t[:, r:-r]`; written with an explicit end so that n = 1 (r = 0) works.

        # Keras' backend-neutral signature: TensorFlow and JAX pass the upstream gradient
        # positionally, PyTorch passes the saved inputs positionally and it as `upstream`.
        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            g = ops.pad(upstream, [[0, 0], [r, n - 1]])  # [n, 3n - 2]: undo the column slice.
            g = ops.pad(ops.reshape(g, (-1,)), [[0, n]])  # [n(3n - 1)]: undo the reshape and t[:-n].
            g = ops.sum(ops.reshape(g, (n, 3 * n - 1)), axis=0)  # Undo the tile: sum over the n copies.
            return g[: 2 * n - 1]  # Undo the pad.

        return t[:, r : r + n], grad

    return build(weights)


def circulant_kernel(weights: Tensor, n: Union[int, Tensor], causal: bool = False) -> Tensor:
    """The first column of the 2n x 2n circulant matrix whose leading n x n block is T.

    With T = toeplitz_matrix(weights, n), out = T z is the first n entries of the circular
    convolution of this kernel with z zero-padded to 2n: no wrapped term reaches them, because
    every offset j - i lies in [-(n - 1), n - 1] and 2n > 2n - 1.

    Args:
      weights: [2n - 1], as toeplitz_matrix takes them.
      n: int or scalar int tensor.
      causal: zero the offsets j - i > 0, as the lower-triangular T does.

    Returns:
      [2n]: kernel[m] = weights[n - 1 - m] for m in [0, n), 0 at m = n, and
      kernel[2n - m] = weights[n - 1 + m] for m in [1, n) (0 when causal).
    """
    past = ops.flip(weights[:n], axis=0)  # Offsets 0, -1, ..., -(n - 1).
    future = ops.flip(weights[n:], axis=0)  # Offsets n - 1, ..., 1, wrapped to the end.
    if causal:
        future = ops.zeros_like(future)
    return ops.concatenate([past, ops.zeros((1,), weights.dtype), future], axis=0)


def toeplitz_fft_product(weights: Tensor, inputs: Tensor, causal: bool = False) -> Tensor:
    """T z for every channel with FFTs: O(n log n) time and O(n x channels) memory, no n x n matrix.

    Equal to einsum("ij,bjc->bic", T, inputs) with T = toeplitz_matrix(weights, n) (lower
    triangle when causal) up to float32 rounding. The transforms run in float32 whatever the
    input dtype, and the gradient is written out (two transforms instead of the four that
    differentiating through rfft / irfft costs). TensorFlow runs tf.signal's complex FFTs;
    JAX and PyTorch run keras.ops.rfft / irfft, which carry a spectrum as (real, imaginary).

    Args:
      weights: [2n - 1].
      inputs: [batch, n, channels]; n static or dynamic.

    Returns:
      [batch, n, channels], in the dtype of inputs.
    """
    n = ops.shape(inputs)[1]
    kernel = circulant_kernel(ops.cast(weights, "float32"), n, causal)
    # rfft transforms the last axis: tokens go last.
    tokens_last = ops.transpose(ops.cast(inputs, "float32"), (0, 2, 1))
    convolve = _tf_convolution if keras.backend.backend() == "tensorflow" else _ops_convolution
    out = ops.transpose(convolve(kernel, tokens_last, n), (0, 2, 1))
    return ops.cast(out, inputs.dtype)


def _tf_convolution(kernel: Tensor, signal: Tensor, n: Union[int, Tensor]) -> Tensor:
    """The first n values of the circular convolution of kernel [2n] with signal [..., n] padded
    to 2n, with tf.signal: a complex dtype, and dynamic n, which keras.ops' FFTs lack."""
    import tensorflow as tf

    fft_length = [2 * n]

    @tf.custom_gradient
    def convolve(kernel, signal):
        kernel_f = tf.signal.rfft(kernel)
        signal_f = tf.signal.rfft(signal, fft_length)  # Zero-pads to 2n.
        out = tf.signal.irfft(signal_f * kernel_f, fft_length)[..., :n]

        def grad(upstream):
            upstream_f = tf.signal.rfft(upstream, fft_length)
            d_signal = tf.signal.irfft(upstream_f * tf.math.conj(kernel_f), fft_length)[..., :n]
            d_kernel = tf.signal.irfft(tf.reduce_sum(upstream_f * tf.math.conj(signal_f), axis=(0, 1)), fft_length)
            return d_kernel, d_signal

        return out, grad

    return convolve(kernel, signal)


def _complex_product(a: Tuple[Tensor, Tensor], b: Tuple[Tensor, Tensor], conjugate_b: bool = False
                     ) -> Tuple[Tensor, Tensor]:
    """a * b (or a * conj(b)) for spectra held as (real, imaginary) pairs."""
    (a_re, a_im), (b_re, b_im) = a, b
    if conjugate_b:
        b_im = -b_im
    return a_re * b_re - a_im * b_im, a_re * b_im + a_im * b_re


def _ops_convolution(kernel: Tensor, signal: Tensor, n: int) -> Tensor:
    """_tf_convolution with keras.ops.rfft / irfft (JAX, PyTorch): the same two-transform gradient."""
    length = 2 * n

    @ops.custom_gradient
    def convolve(kernel, signal):
        kernel_f = ops.rfft(kernel)
        signal_f = ops.rfft(signal, fft_length=length)  # Zero-pads to 2n.
        out = ops.irfft(_complex_product(signal_f, kernel_f), fft_length=length)[..., :n]

        def grad(*args, upstream=None):  # Backend-neutral: see toeplitz_matrix.
            upstream = args[0] if upstream is None else upstream
            upstream_f = ops.rfft(upstream, fft_length=length)
            d_signal = ops.irfft(_complex_product(upstream_f, kernel_f, conjugate_b=True), fft_length=length)
            cross = _complex_product(upstream_f, signal_f, conjugate_b=True)
            d_kernel = ops.irfft(tuple(ops.sum(part, axis=(0, 1)) for part in cross), fft_length=length)
            return d_kernel, d_signal[..., :n]

        return out, grad

    return convolve(kernel, signal)


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
        if keras.backend.backend() != "tensorflow":
            return n  # JAX and PyTorch trace static shapes; only tf.function leaves n unknown.
        import tensorflow as tf

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
      implementation: how a Toeplitz W is applied: "matmul" (build the n x n matrix with the
        pad/tile construction: the reference), "fft" (toeplitz_fft_product: O(n log n), no
        n x n matrix) or "auto" (the FFT from FFT_MIN_LENGTH tokens on, judged by the static
        input length, or by max_length when the length is dynamic). A dense W is always a
        matmul; it takes "auto" or "matmul".

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
        implementation: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in SPATIAL_KINDS:
            raise ValueError(f"spatial kind must be one of {', '.join(SPATIAL_KINDS)}; got {kind!r}")
        if implementation not in SPATIAL_IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {', '.join(SPATIAL_IMPLEMENTATIONS)}; "
                             f"got {implementation!r}")
        if kind == "dense" and implementation == "fft":
            raise ValueError("implementation 'fft' needs kind 'toeplitz': a dense W has no FFT form")
        if int(max_length) <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.max_length = int(max_length)
        self.kind = kind
        self.causal = bool(causal)
        self.kernel_stddev = float(kernel_stddev)
        self.implementation = implementation

    def build(self, input_shape: Shape) -> None:
        n = self.max_length
        kernel_shape = (n, n) if self.kind == "dense" else (2 * n - 1,)
        self.kernel = self.add_weight(
            name="kernel",
            shape=kernel_shape,
            initializer=keras.initializers.RandomNormal(stddev=self.kernel_stddev),
        )
        self.bias = self.add_weight(name="bias", shape=(n,), initializer="ones")

    def toeplitz_weights(self, n: Union[int, Tensor]) -> Tensor:
        """The 2n - 1 central weights of a Toeplitz W (offsets -(n - 1) ... n - 1), [2n - 1]."""
        centre = self.max_length - 1  # Index of offset 0.
        return self.kernel[centre - (n - 1) : centre + n]

    def spatial_matrix(self, n: Optional[Union[int, Tensor]] = None) -> Tensor:
        """Returns W for n tokens, [n, n] (n defaults to max_length), causal mask applied."""
        n = self.max_length if n is None else n
        if self.kind == "dense":
            w = self.kernel[:n, :n]
        else:
            w = toeplitz_matrix(self.toeplitz_weights(n), n)
        if self.causal:
            # Token i may only read tokens j <= i: keep the lower triangle.
            w = w * ops.tril(ops.ones((n, n), dtype=w.dtype))
        return w

    def uses_fft(self, n: Union[int, Tensor]) -> bool:
        """Whether an input of n tokens goes through the FFT path."""
        if self.kind != "toeplitz" or self.implementation == "matmul":
            return False
        if self.implementation == "fft":
            return True
        length = n if isinstance(n, int) else self.max_length  # Dynamic: judge by the longest.
        return length >= FFT_MIN_LENGTH

    def call(self, inputs: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        n = checked_length(inputs, self.max_length)
        if padding_mask is not None:
            inputs = inputs * ops.cast(padding_mask, inputs.dtype)[:, :, None]
        b = ops.cast(self.bias[:n], inputs.dtype)
        if self.uses_fft(n):
            out = toeplitz_fft_product(self.toeplitz_weights(n), inputs, self.causal)
        else:
            w = ops.cast(self.spatial_matrix(n), inputs.dtype)
            # W broadcast over the batch (batch x n^2 values, small beside batch x n x channels)
            # makes a batched matmul whose result is already [batch, n, channels]: "ij,bjc->bic"
            # lowers to one big matmul with transposes around it, 20-30% slower on CPUs.
            out = ops.matmul(ops.broadcast_to(w, (ops.shape(inputs)[0], n, n)), inputs)
        return out + b[None, :, None]

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            max_length=self.max_length,
            kind=self.kind,
            causal=self.causal,
            kernel_stddev=self.kernel_stddev,
            implementation=self.implementation,
        )
        return config
