"""SpatialProjection and the Appendix C Toeplitz construction."""

import numpy as np
import pytest
import tensorflow as tf

from gmlp_tf.layers.spatial_projection import SpatialProjection, toeplitz_matrix


def explicit_toeplitz(w, n):
    """T[i, j] = w[j - i + n - 1], written out element by element."""
    return np.array([[w[j - i + n - 1] for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_toeplitz_matches_explicit_construction(n):
    w = np.random.randn(2 * n - 1).astype("float32")
    t = np.asarray(toeplitz_matrix(w, n))
    np.testing.assert_array_equal(t, explicit_toeplitz(w, n))


def test_toeplitz_is_two_directional_not_triangular():
    n = 6
    w = np.arange(1, 2 * n, dtype="float32")  # All weights non-zero.
    t = np.asarray(toeplitz_matrix(w, n))
    assert np.count_nonzero(np.triu(t, 1)) == n * (n - 1) // 2  # Tokens read the future...
    assert np.count_nonzero(np.tril(t, -1)) == n * (n - 1) // 2  # ...and the past.
    assert t[0, n - 1] == w[2 * n - 2] and t[n - 1, 0] == w[0]


def test_toeplitz_with_dynamic_length_in_graph():
    fn = tf.function(toeplitz_matrix, input_signature=[tf.TensorSpec([None]), tf.TensorSpec([], tf.int32)])
    w = np.random.randn(9).astype("float32")
    np.testing.assert_array_equal(fn(w, tf.constant(5)).numpy(), explicit_toeplitz(w, 5))


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_toeplitz_gradient_sums_the_diagonals(n):
    """dL/dw[k] is the sum of dL/dT over the diagonal j - i = k - (n - 1), static and dynamic n."""
    rng = np.random.default_rng(n)
    w = tf.constant(rng.standard_normal(2 * n - 1).astype("float32"))
    upstream = rng.standard_normal((n, n)).astype("float32")
    expected = [sum(upstream[i, i + k] for i in range(n) if 0 <= i + k < n) for k in range(-(n - 1), n)]

    def grad(weights, length):
        with tf.GradientTape() as tape:
            tape.watch(weights)
            loss = tf.reduce_sum(toeplitz_matrix(weights, length) * upstream)
        return tape.gradient(loss, weights)

    np.testing.assert_allclose(grad(w, n).numpy(), expected, rtol=1e-5, atol=1e-5)
    dynamic = tf.function(grad, input_signature=[tf.TensorSpec([None]), tf.TensorSpec([], tf.int32)])
    np.testing.assert_allclose(dynamic(w, tf.constant(n)).numpy(), expected, rtol=1e-5, atol=1e-5)


def _randomized(layer, n_channels=3):
    layer.build((None, None, n_channels))
    layer.kernel.assign(np.random.randn(*layer.kernel.shape).astype("float32"))
    layer.bias.assign(np.random.randn(*layer.bias.shape).astype("float32"))
    return layer


@pytest.mark.parametrize("kind", ["dense", "toeplitz"])
def test_projection_matches_formula(kind):
    layer = _randomized(SpatialProjection(5, kind=kind))
    z = np.random.randn(2, 5, 3).astype("float32")
    w = np.asarray(layer.spatial_matrix())
    expected = np.einsum("ij,bjc->bic", w, z) + np.asarray(layer.bias)[None, :, None]
    np.testing.assert_allclose(np.asarray(layer(z)), expected, rtol=1e-5, atol=1e-5)
    if kind == "toeplitz":
        np.testing.assert_array_equal(w, explicit_toeplitz(np.asarray(layer.kernel), 5))
        assert layer.kernel.shape == (9,)


def test_initialisation_near_zero_weights_unit_bias():
    layer = SpatialProjection(64, kind="dense")
    layer.build((None, 64, 4))
    assert np.abs(np.asarray(layer.kernel)).max() < 1e-4
    np.testing.assert_array_equal(np.asarray(layer.bias), np.ones(64))


@pytest.mark.parametrize("kind", ["dense", "toeplitz"])
def test_shorter_inputs_use_leading_block(kind):
    layer = _randomized(SpatialProjection(6, kind=kind))
    full = np.asarray(layer.spatial_matrix())
    z = np.random.randn(2, 4, 3).astype("float32")
    expected = np.einsum("ij,bjc->bic", full[:4, :4], z) + np.asarray(layer.bias)[None, :4, None]
    np.testing.assert_allclose(np.asarray(layer(z)), expected, rtol=1e-5, atol=1e-5)


def test_longer_inputs_raise_naming_both_lengths():
    layer = SpatialProjection(6)
    with pytest.raises(ValueError, match=r"7 tokens.*at most 6"):
        layer(np.zeros((1, 7, 3), "float32"))


def test_longer_inputs_fail_in_graph_with_dynamic_length():
    layer = SpatialProjection(6)
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, 3])])
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_length 6"):
        fn(tf.zeros((1, 7, 3)))


@pytest.mark.parametrize("kind", ["dense", "toeplitz"])
def test_causal_matrix_is_lower_triangular(kind):
    layer = _randomized(SpatialProjection(5, kind=kind, causal=True))
    w = np.asarray(layer.spatial_matrix())
    assert np.count_nonzero(np.triu(w, 1)) == 0
    assert np.count_nonzero(np.tril(w)) == 15


def test_padding_mask_stops_padding_from_leaking():
    layer = _randomized(SpatialProjection(6))
    z = np.random.randn(1, 6, 3).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0]], "int32")
    z_other = z.copy()
    z_other[:, 4:] = 100.0  # Change only the padding.
    masked = np.asarray(layer(z, padding_mask=mask)), np.asarray(layer(z_other, padding_mask=mask))
    np.testing.assert_allclose(masked[0][:, :4], masked[1][:, :4], rtol=1e-6)
    # Without the mask (the paper's default) padding does reach the real tokens.
    assert not np.allclose(np.asarray(layer(z))[:, :4], np.asarray(layer(z_other))[:, :4])


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="spatial kind"):
        SpatialProjection(4, kind="circulant")


# ------------------------------------------------------------------ the FFT path
def _pair(max_length, causal=False, n_channels=3, seed=0, dtype=None):
    """A matmul and an FFT projection with the same random weights (scaled as after training)."""
    rng = np.random.default_rng(seed)
    kernel = (rng.standard_normal(2 * max_length - 1) / np.sqrt(max_length)).astype("float32")
    bias = rng.standard_normal(max_length).astype("float32")
    layers = []
    for implementation in ("matmul", "fft"):
        layer = SpatialProjection(max_length, kind="toeplitz", causal=causal, implementation=implementation,
                                  dtype=dtype)
        layer.build((None, None, n_channels))
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        layers.append(layer)
    return layers


def _outputs_and_gradients(layer, z, mask=None):
    z = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = layer(z, padding_mask=mask)
        # A loss whose upstream gradient varies by position and channel.
        loss = tf.reduce_sum(tf.cast(out, tf.float32) * tf.sin(tf.cast(out, tf.float32) + 1.0))
    d_z, d_kernel, d_bias = tape.gradient(loss, [z, layer.kernel, layer.bias])
    return [np.asarray(t, np.float32) for t in (out, d_z, d_kernel, d_bias)]


def _assert_relative_close(got, want, tol):
    err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
    assert err < tol, f"relative error {err:.2e} >= {tol}"


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("max_length,n", [(1, 1), (2, 2), (7, 7), (64, 64), (64, 37), (300, 300)])
def test_fft_path_equals_matmul_path(max_length, n, causal):
    """Outputs and the gradients of input, W and b agree within 1e-5 relative in float32,
    two-directional and causal, at full length and on shorter inputs (the central weights)."""
    matmul, fft = _pair(max_length, causal)
    z = np.random.default_rng(1).standard_normal((2, n, 3)).astype("float32")
    for got, want in zip(_outputs_and_gradients(fft, z), _outputs_and_gradients(matmul, z)):
        _assert_relative_close(got, want, 1e-5)


def test_fft_path_with_padding_mask_equals_matmul_path_and_does_not_leak():
    matmul, fft = _pair(32)
    rng = np.random.default_rng(2)
    z = rng.standard_normal((2, 32, 3)).astype("float32")
    mask = np.ones((2, 32), "int32")
    mask[0, 20:] = 0
    mask[1, 9:] = 0
    for got, want in zip(_outputs_and_gradients(fft, z, mask), _outputs_and_gradients(matmul, z, mask)):
        _assert_relative_close(got, want, 1e-5)
    z_other = z.copy()
    z_other[0, 20:] = 100.0
    np.testing.assert_allclose(np.asarray(fft(z, padding_mask=mask))[0, :20],
                               np.asarray(fft(z_other, padding_mask=mask))[0, :20], rtol=1e-5, atol=1e-5)


def test_fft_path_under_mixed_precision_transforms_in_float32():
    """bfloat16 inputs give bfloat16 outputs as close to the float32 matmul result as the
    rounding of the bfloat16 input and output allows."""
    matmul, _ = _pair(128, n_channels=8)
    _, fft = _pair(128, n_channels=8, dtype="mixed_bfloat16")
    z = np.random.default_rng(3).standard_normal((2, 128, 8)).astype("float32")
    got = fft(z)
    assert got.dtype == tf.bfloat16 and fft.kernel.dtype == tf.float32
    # The float32 product of the same bfloat16-rounded input: only the output's rounding differs.
    reference = np.asarray(matmul(tf.cast(tf.cast(z, tf.bfloat16), tf.float32)))
    _assert_relative_close(np.asarray(tf.cast(got, tf.float32)), reference, 2**-8)
    _assert_relative_close(reference, np.asarray(matmul(z)), 2**-7)
    grads = _outputs_and_gradients(fft, z)
    assert all(np.isfinite(g).all() for g in grads)


def test_fft_path_with_dynamic_length_in_graph():
    matmul, fft = _pair(16)
    fn = tf.function(fft, input_signature=[tf.TensorSpec([None, None, 3])])
    z = np.random.default_rng(4).standard_normal((1, 11, 3)).astype("float32")
    _assert_relative_close(fn(z).numpy(), np.asarray(matmul(z)), 1e-5)


def test_fft_path_under_xla():
    matmul, fft = _pair(64, causal=True)
    z = np.random.default_rng(5).standard_normal((2, 64, 3)).astype("float32")

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fft(x) ** 2)
        return tape.gradient(loss, [x, fft.kernel])

    d_z, d_kernel = step(tf.constant(z))
    with tf.GradientTape() as tape:
        x = tf.constant(z)
        tape.watch(x)
        loss = tf.reduce_sum(matmul(x) ** 2)
    want_z, want_kernel = tape.gradient(loss, [x, matmul.kernel])
    _assert_relative_close(d_z.numpy(), want_z.numpy(), 1e-5)
    _assert_relative_close(d_kernel.numpy(), want_kernel.numpy(), 1e-5)


def test_fft_path_builds_no_n_by_n_matrix():
    """The traced FFT graph holds no tensor with n x n elements (the matmul graph does)."""
    n = 96

    def largest_tensor(layer):
        fn = tf.function(lambda x: layer(x)).get_concrete_function(tf.TensorSpec([1, n, 2]))
        sizes = [int(np.prod(out.shape.as_list())) for op in fn.graph.get_operations()
                 for out in op.outputs if out.shape.rank is not None and out.shape.is_fully_defined()]
        return max(sizes)

    matmul, fft = _pair(n, n_channels=2)
    assert largest_tensor(matmul) >= n * n
    assert largest_tensor(fft) <= 4 * n * 2


@pytest.mark.parametrize("n,expected", [(1023, False), (1024, True)])
def test_auto_picks_fft_from_the_crossover_length(n, expected):
    from gmlp_tf.layers.spatial_projection import FFT_MIN_LENGTH

    assert FFT_MIN_LENGTH == 1024
    layer = SpatialProjection(1024, kind="toeplitz")
    assert layer.uses_fft(n) is expected
    assert layer.uses_fft(tf.constant(n)) is True  # Dynamic: judged by max_length 1024.
    assert SpatialProjection(1024, kind="dense").uses_fft(2048) is False
    assert SpatialProjection(1024, kind="toeplitz", implementation="matmul").uses_fft(2048) is False


def test_fft_needs_toeplitz_and_unknown_implementations_are_rejected():
    with pytest.raises(ValueError, match="needs kind 'toeplitz'"):
        SpatialProjection(4, kind="dense", implementation="fft")
    with pytest.raises(ValueError, match="implementation must be one of"):
        SpatialProjection(4, kind="toeplitz", implementation="conv")
