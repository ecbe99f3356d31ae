"""The SGU, its Table 3 variants, tiny attention and the gMLP block."""

import math

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from gmlp_tf.layers.activations import exact_gelu
from gmlp_tf.layers.gmlp_block import GMLPBlock
from gmlp_tf.layers.spatial_gating import SpatialGatingUnit
from gmlp_tf.layers.tiny_attention import TinyAttention

D_MODEL, D_FFN, N = 8, 16, 6


def _inputs(batch=2, n=N, width=D_MODEL):
    return np.random.randn(batch, n, width).astype("float32")


def test_sgu_split_gates_first_half_by_second():
    sgu = SpatialGatingUnit(N)
    z = _inputs(width=D_FFN)
    out = np.asarray(sgu(z))
    assert out.shape == (2, N, D_FFN // 2)
    gate = np.asarray(sgu.proj(sgu.norm(z[..., D_FFN // 2 :])))
    np.testing.assert_allclose(out, z[..., : D_FFN // 2] * gate, rtol=1e-5, atol=1e-6)
    # At initialisation W ~ 0 and b = 1: the gate is one, so s(Z) = Z1.
    np.testing.assert_allclose(gate, np.ones_like(gate), atol=1e-4)


@pytest.mark.parametrize(
    "gating, expected",
    [
        ("multiplicative", lambda z: z),  # Z * f(Z), f ~ 1.
        ("additive", lambda z: z + 1.0),  # Z + f(Z).
        ("linear", lambda z: np.ones_like(z)),  # f(Z).
    ],
)
def test_table3_variants_at_initialisation(gating, expected):
    sgu = SpatialGatingUnit(N, gating=gating)
    z = _inputs(width=D_FFN)
    out = np.asarray(sgu(z))
    assert out.shape == (2, N, D_FFN)
    np.testing.assert_allclose(out, expected(z), atol=1e-4)


def test_attention_output_is_added_to_the_gate():
    sgu = SpatialGatingUnit(N)
    z = _inputs(width=D_FFN)
    extra = np.random.randn(2, N, D_FFN // 2).astype("float32")
    sgu(z)
    gate = np.asarray(sgu.proj(sgu.norm(z[..., D_FFN // 2 :])))
    np.testing.assert_allclose(
        np.asarray(sgu(z, attention_output=extra)), z[..., : D_FFN // 2] * (gate + extra), rtol=1e-5, atol=1e-5
    )


def test_block_starts_as_plain_ffn():
    block = GMLPBlock(D_MODEL, D_FFN, N)
    x = _inputs()
    out = np.asarray(block(x))
    z = ops.gelu(block.proj_in(block.norm(x)), approximate=False)
    ffn = x + np.asarray(block.proj_out(z[..., : D_FFN // 2]))
    np.testing.assert_allclose(out, ffn, atol=1e-4)
    # ...so tokens do not yet talk to each other: changing token 5 leaves token 0 nearly as it was.
    x2 = x.copy()
    x2[:, 5] += 10.0
    np.testing.assert_allclose(np.asarray(block(x2))[:, 0], out[:, 0], atol=1e-4)


def test_exact_gelu_is_the_erf_formula_and_equals_tensorflows():
    x = np.linspace(-12.0, 12.0, 4001).astype("float32")
    exact = 0.5 * x.astype("float64") * (1 + np.vectorize(math.erf)(x.astype("float64") / math.sqrt(2.0)))
    np.testing.assert_allclose(np.asarray(exact_gelu(x)), exact, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(exact_gelu(x)), np.asarray(ops.gelu(x, approximate=False)), atol=1e-6)
    # Not the tanh approximation, which differs by up to ~5e-4 near |x| = 2.
    assert np.abs(np.asarray(exact_gelu(x)) - np.asarray(ops.gelu(x, approximate=True))).max() > 1e-4


@pytest.mark.parametrize("attention_size", [0, 4])
@pytest.mark.parametrize("masked", [False, True])
def test_block_halves_equal_the_sliced_product(attention_size, masked):
    """call's two matmuls for Z1 and Z2 give what slicing GELU(LN(x) U) in the SGU gives."""
    block = GMLPBlock(D_MODEL, D_FFN, N, attention_size=attention_size)
    x = _inputs()
    mask = np.array([[1, 1, 1, 1, 0, 0], [1] * N], "int32") if masked else None
    block(x)
    for w in block.weights:  # Away from initialisation, where the gate is one.
        w.assign(np.random.randn(*w.shape).astype("float32") * 0.3)
    h = block.norm(x)
    attention = None if not attention_size else block.attention(h, padding_mask=mask)
    s = block.sgu(exact_gelu(block.proj_in(h)), attention_output=attention, padding_mask=mask)
    expected = x + np.asarray(block.proj_out(s))
    np.testing.assert_allclose(np.asarray(block(x, padding_mask=mask)), expected, rtol=1e-5, atol=1e-5)


def _randomize_spatial(block, scale=0.5):
    for w in block.sgu.proj.weights:
        w.assign(np.random.randn(*w.shape).astype("float32") * scale)


def _jacobian_by_token(block, n=N):
    """influence[i, j] = sum |d y_i / d x_j| over channels (row by row: pfor cannot trace MHA)."""
    x = tf.constant(_inputs(batch=1, n=n))
    probe = tf.constant(np.random.randn(1, D_MODEL).astype("float32"))
    rows = []
    for i in range(n):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(block(x)[:, i] * probe)
        rows.append(np.abs(np.asarray(tape.gradient(y, x))[0]).sum(axis=-1))
    return np.stack(rows)


@pytest.mark.parametrize("kind", ["dense", "toeplitz"])
@pytest.mark.parametrize("attention_size", [0, 4])
def test_causal_block_never_reads_the_future(kind, attention_size):
    block = GMLPBlock(D_MODEL, D_FFN, N, spatial_kind=kind, attention_size=attention_size, causal=True)
    block(_inputs())
    _randomize_spatial(block)
    influence = _jacobian_by_token(block)
    assert np.all(influence[np.triu_indices(N, 1)] == 0.0)  # Output i, input j > i.
    assert np.all(influence[np.tril_indices(N, -1)] > 0.0)  # The past is read.


def test_non_causal_block_reads_both_directions():
    block = GMLPBlock(D_MODEL, D_FFN, N, spatial_kind="toeplitz")
    block(_inputs())
    _randomize_spatial(block)
    influence = _jacobian_by_token(block)
    assert np.all(influence > 0.0)


def test_tiny_attention_shapes_masks_and_size():
    attention = TinyAttention(4, D_FFN // 2)
    x = _inputs()
    out = attention(x)
    assert out.shape == (2, N, D_FFN // 2)
    # q, k, v: d -> a each; output: a -> d_ffn / 2.
    assert attention.count_params() == 3 * (D_MODEL * 4 + 4) + 4 * (D_FFN // 2) + D_FFN // 2
    mask = np.array([[1, 1, 1, 0, 0, 0]] * 2)
    x2 = x.copy()
    x2[:, 3:] = 50.0
    np.testing.assert_allclose(
        np.asarray(attention(x, padding_mask=mask))[:, :3],
        np.asarray(attention(x2, padding_mask=mask))[:, :3],
        atol=1e-5,
    )


def test_amlp_block_attention_reads_normalised_input_and_changes_output():
    plain = GMLPBlock(D_MODEL, D_FFN, N)
    hybrid = GMLPBlock(D_MODEL, D_FFN, N, attention_size=4)
    x = _inputs()
    hybrid(x)
    h = hybrid.norm(x)
    z = ops.gelu(hybrid.proj_in(h), approximate=False)
    expected = x + np.asarray(hybrid.proj_out(hybrid.sgu(z, attention_output=hybrid.attention(h))))
    np.testing.assert_allclose(np.asarray(hybrid(x)), expected, rtol=1e-5, atol=1e-5)
    plain(x)
    assert hybrid.count_params() - plain.count_params() == 3 * (D_MODEL * 4 + 4) + 4 * 8 + 8


def test_stochastic_depth_drops_whole_examples_in_training_only():
    block = GMLPBlock(D_MODEL, D_FFN, N, survival_prob=0.5)
    x = _inputs(batch=64)
    out = np.asarray(block(x, training=True))
    dropped = np.all(np.isclose(out, x), axis=(1, 2))
    assert 10 < dropped.sum() < 54  # About half the examples skip the branch.
    kept = ~dropped
    branch = np.asarray(block(x, training=False)) - x
    # Survivors are rescaled by 1 / survival_prob, so inference needs no rescaling.
    np.testing.assert_allclose(out[kept] - x[kept], branch[kept] / 0.5, rtol=1e-4, atol=1e-5)


def test_block_rejects_wrong_width():
    with pytest.raises(ValueError, match="expects 8 channels"):
        GMLPBlock(D_MODEL, D_FFN, N)(_inputs(width=5))
