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
