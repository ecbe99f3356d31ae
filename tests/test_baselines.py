"""The Table 3 baselines (transformer, MLP-Mixer): config rules, layer semantics, the encoder.

The generic layer checks (config and `.keras` round trips, mixed precision, shorter inputs) are in
test_layers.py, the parameter and FLOP counts in test_counting.py.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from gmlp_tf.config import GMLPConfig
from gmlp_tf.layers.baseline_blocks import MixerBlock, SelfAttention, TransformerBlock
from gmlp_tf.models.task_models import build_model

VOCAB, D_MODEL, D_FFN, N, HEADS = 50, 16, 32, 8, 2


def _config(**changes):
    base = dict(vocab_size=VOCAB, d_model=D_MODEL, d_ffn=D_FFN, num_layers=2, max_seq_length=N)
    return GMLPConfig(**{**base, **changes})


TRANSFORMER = dict(architecture="transformer", num_attention_heads=HEADS)
ARCHITECTURES = {
    "transformer_none": TRANSFORMER,
    "transformer_absolute": dict(TRANSFORMER, position_encoding="absolute"),
    "transformer_relative": dict(TRANSFORMER, position_encoding="relative"),
    "transformer_relative_no_content": dict(TRANSFORMER, position_encoding="relative", attention_content=False),
    "mlp_mixer": dict(architecture="mlp_mixer", d_spatial=6),
}


def _randomize(layer, scale=0.3):
    # Away from the initial values (zero relative bias, zero biases), so that every term shows.
    rng = np.random.default_rng(0)
    for w in layer.weights:
        w.assign(rng.normal(0.0, scale, w.shape).astype("float32"))
    return layer


def _floats(*shape):
    return np.random.randn(*shape).astype("float32")


def _text_inputs(batch=2, n=N):
    return {
        "input_ids": np.random.randint(0, VOCAB, (batch, n)).astype("int32"),
        "segment_ids": np.zeros((batch, n), "int32"),
        "input_mask": np.ones((batch, n), "int32"),
    }


def _sequence(encoder, inputs):
    return np.asarray(encoder(inputs)["sequence_output"])


# ---------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"architecture": "rnn"}, "architecture must be one of"),
        ({**TRANSFORMER, "position_encoding": "rotary"}, "position_encoding must be one of"),
        ({**TRANSFORMER, "num_attention_heads": 0}, "num_attention_heads must be a positive integer"),
        ({**TRANSFORMER, "num_attention_heads": 3}, "num_attention_heads 3 does not divide d_model 16"),
        ({"position_encoding": "absolute"}, "position_encoding must be 'none' for architecture 'gmlp'"),
        ({"architecture": "mlp_mixer", "d_spatial": 4, "position_encoding": "relative"},
         "position_encoding must be 'none' for architecture 'mlp_mixer'"),
        ({"attention_content": False}, "attention_content"),
        ({**TRANSFORMER, "position_encoding": "absolute", "attention_content": False}, "attention_content"),
        ({"architecture": "mlp_mixer"}, "d_spatial must be positive"),
        ({"d_spatial": -1}, "d_spatial must be a non-negative integer"),
        ({"architecture": "mlp_mixer", "d_spatial": 4, "causal": True}, "causal"),
        ({**TRANSFORMER, "attention_size": 4}, "attention_size"),
        ({"modality": "image", **TRANSFORMER}, "architecture must be 'gmlp' for image"),
    ],
)
def test_config_rules(changes, message):
    with pytest.raises(ValueError, match=message):
        _config(**changes)


def test_config_json_round_trip_with_the_new_fields(tmp_path):
    config = _config(**ARCHITECTURES["transformer_relative_no_content"])
    path = os.path.join(tmp_path, "config.json")
    config.to_json_file(path)
    assert GMLPConfig.from_json_file(path) == config
    mixer = _config(**ARCHITECTURES["mlp_mixer"])
    assert GMLPConfig.from_dict(mixer.to_dict()) == mixer
    # A file written before the fields existed reads as gMLP with the defaults.
    new_fields = ("architecture", "num_attention_heads", "position_encoding", "attention_content", "d_spatial")
    restored = GMLPConfig.from_dict({k: v for k, v in _config().to_dict().items() if k not in new_fields})
    assert (restored.architecture, restored.position_encoding, restored.attention_content) == ("gmlp", "none", True)
    assert restored == _config()


# ---------------------------------------------------------------------------------- layers


def _numpy_attention(layer, x, mask):
    """The reference: the formula of SelfAttention's docstring, from the layer's weights."""
    n, c = x.shape[1], layer.max_length - 1

    def project(p):
        return np.einsum("bnd,dhk->bnhk", x, np.asarray(p.kernel)) + np.asarray(p.bias)

    logits = np.zeros((x.shape[0], layer.num_heads, n, n))
    if layer.content:
        logits += np.einsum("bihk,bjhk->bhij", project(layer.query), project(layer.key)) / np.sqrt(layer.head_size)
    if layer.relative_positions:
        offsets = np.arange(n)[None, :] - np.arange(n)[:, None]  # j - i
        logits += np.asarray(layer.relative_bias)[:, offsets + c][None]
    logits += (1.0 - mask)[:, None, None, :] * -1e9
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = np.einsum("bhij,bjhk->bihk", probs, project(layer.value))
    out = layer.output_projection
    return np.einsum("bihk,hkd->bid", context, np.asarray(out.kernel)) + np.asarray(out.bias)


@pytest.mark.parametrize("content, relative", [(True, False), (True, True), (False, True)])
def test_self_attention_matches_numpy_on_shorter_masked_inputs(content, relative):
    layer = SelfAttention(HEADS, N, relative_positions=relative, content=content)
    layer.build((None, N, D_MODEL))
    _randomize(layer)
    x = _floats(2, 6, D_MODEL)  # 6 < max_length 8: the leading block of the relative bias.
    mask = np.ones((2, 6), "float32")
    mask[1, 4:] = 0
    expected = _numpy_attention(layer, x, mask)
    np.testing.assert_allclose(np.asarray(layer(x, padding_mask=mask)), expected, rtol=1e-4, atol=1e-5)


def test_relative_bias_starts_at_zero_and_is_shift_invariant():
    layer = SelfAttention(HEADS, N, relative_positions=True)
    layer.build((None, N, D_MODEL))
    assert layer.relative_bias.shape == (HEADS, 2 * N - 1)
    np.testing.assert_array_equal(np.asarray(layer.relative_bias), 0.0)
    _randomize(layer)
    r, full = np.asarray(layer.relative_bias), np.asarray(layer.relative_bias_matrix())
    for i in range(N):
        for j in range(N):
            np.testing.assert_array_equal(full[:, i, j], r[:, j - i + N - 1])  # Only j - i counts.
    np.testing.assert_array_equal(np.asarray(layer.relative_bias_matrix(5)), full[:, :5, :5])


def test_attention_without_content_ignores_the_tokens_in_its_pattern():
    layer = SelfAttention(HEADS, N, relative_positions=True, content=False)
    layer.build((None, N, D_MODEL))
    _randomize(layer)
    assert layer.query is None and layer.key is None
    a, b = _floats(2, N, D_MODEL), _floats(2, N, D_MODEL)
    probs = np.asarray(layer.attention_probs(a))
    np.testing.assert_allclose(probs, np.asarray(layer.attention_probs(b)), rtol=1e-6)
    bias = np.asarray(layer.relative_bias_matrix())
    expected = np.exp(bias) / np.exp(bias).sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, np.broadcast_to(expected, probs.shape), rtol=1e-5)
    # The tokens still reach the output, through the values.
    assert not np.allclose(np.asarray(layer(a)), np.asarray(layer(b)))
    with pytest.raises(ValueError, match="needs relative_positions"):
        SelfAttention(HEADS, N, content=False)


def test_transformer_block_is_pre_layer_norm():
    block = TransformerBlock(D_MODEL, D_FFN, HEADS, N, relative_positions=True)
    x = _floats(2, N, D_MODEL)
    block(x)
    _randomize(block)
    h = x + np.asarray(block.attention(block.attention_norm(x)))
    ffn = block.proj_out(keras.ops.gelu(block.proj_in(block.ffn_norm(h)), approximate=False))
    np.testing.assert_allclose(np.asarray(block(x)), h + np.asarray(ffn), rtol=1e-5, atol=1e-5)


def test_causal_transformer_block_never_reads_the_future():
    block = _randomize(TransformerBlock(D_MODEL, D_FFN, HEADS, N, relative_positions=True, causal=True))
    x = _floats(2, N, D_MODEL)
    future = x.copy()
    future[:, 5:] += 3.0
    out, changed = np.asarray(block(x)), np.asarray(block(future))
    np.testing.assert_allclose(out[:, :5], changed[:, :5], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[:, 5:], changed[:, 5:])


def test_mixer_shorter_inputs_use_the_leading_block_of_the_weights():
    block = MixerBlock(D_MODEL, D_FFN, 5, N)
    block(_floats(1, N, D_MODEL))
    _randomize(block)
    h = _floats(2, 6, D_MODEL)
    w1, b1 = np.asarray(block.token_in_kernel), np.asarray(block.token_in_bias)
    w2, b2 = np.asarray(block.token_out_kernel), np.asarray(block.token_out_bias)
    hidden = np.einsum("bjc,js->bsc", h, w1[:6]) + b1[None, :, None]
    hidden = np.asarray(keras.ops.gelu(hidden, approximate=False))
    expected = np.einsum("bsc,si->bic", hidden, w2[:, :6]) + b2[None, :6, None]
    np.testing.assert_allclose(np.asarray(block.token_mixing(h)), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no causal form"):
        MixerBlock(D_MODEL, D_FFN, 5, N, causal=True)


def test_mixer_padding_mask_stops_padding_from_leaking():
    block = _randomize(MixerBlock(D_MODEL, D_FFN, 5, N))
    x = _floats(2, N, D_MODEL)
    mask = np.ones((2, N), "int32")
    mask[:, 6:] = 0
    other = x.copy()
    other[:, 6:] = 50.0
    out, changed = np.asarray(block(x, padding_mask=mask)), np.asarray(block(other, padding_mask=mask))
    np.testing.assert_allclose(out[:, :6], changed[:, :6], rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(block(x))[:, :6], np.asarray(block(other))[:, :6])


# ---------------------------------------------------------------------------------- encoder


def test_transformer_always_masks_padding_keys():
    # sgu_padding_mask stays False: BERT masks padded keys all the same, gMLP does not.
    inputs = _text_inputs()
    inputs["input_mask"][:, 6:] = 0
    other = dict(inputs, input_ids=inputs["input_ids"].copy())
    other["input_ids"][:, 6:] = (other["input_ids"][:, 6:] + 1) % VOCAB
    transformer = build_model(_config(**ARCHITECTURES["transformer_relative"]), "encoder")
    np.testing.assert_allclose(
        _sequence(transformer, inputs)[:, :6], _sequence(transformer, other)[:, :6], rtol=1e-5, atol=1e-5
    )
    gmlp = _randomize(build_model(_config(), "encoder"))
    assert not np.allclose(_sequence(gmlp, inputs)[:, :6], _sequence(gmlp, other)[:, :6], atol=1e-5)


def test_causal_transformer_encoder_never_reads_the_future():
    encoder = build_model(_config(**ARCHITECTURES["transformer_absolute"], causal=True), "encoder")
    inputs = _text_inputs()
    other = dict(inputs, input_ids=inputs["input_ids"].copy())
    other["input_ids"][:, 5:] = (other["input_ids"][:, 5:] + 7) % VOCAB
    np.testing.assert_allclose(
        _sequence(encoder, inputs)[:, :5], _sequence(encoder, other)[:, :5], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name, equivariant", [("transformer_none", True), ("transformer_absolute", False)])
def test_only_position_information_breaks_permutation_equivariance(name, equivariant):
    encoder = build_model(_config(**ARCHITECTURES[name]), "encoder")
    inputs = _text_inputs()
    perm = np.random.default_rng(1).permutation(N)
    permuted = dict(inputs, input_ids=inputs["input_ids"][:, perm])
    same = np.allclose(_sequence(encoder, inputs)[:, perm], _sequence(encoder, permuted), rtol=1e-4, atol=1e-5)
    assert same == equivariant


def test_transformer_variable_paths_and_position_embedding():
    encoder = build_model(_config(**ARCHITECTURES["transformer_absolute"]), "encoder")
    paths = {w.path for w in encoder.weights}
    assert "encoder/position_embedding/embeddings" in paths
    assert {"encoder/block_1/attention/query/kernel", "encoder/block_1/proj_out/bias"} <= paths
    assert encoder.position_embedding.embeddings.shape == (N, D_MODEL)
    # Shorter inputs add the first n position embeddings; longer ones are an error.
    assert _sequence(encoder, _text_inputs(n=5)).shape == (2, 5, D_MODEL)
    with pytest.raises(ValueError, match=r"9 tokens.*at most 8"):
        encoder(_text_inputs(n=9))
    assert not any("position" in p for p in {w.path for w in build_model(_config(), "encoder").weights})


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_builds_and_runs_the_task_models(name):
    config = _config(**ARCHITECTURES[name])
    model = build_model(config, "pretraining")
    inputs = dict(_text_inputs(), masked_lm_positions=np.array([[0, 3], [1, 7]], "int32"))
    assert model(inputs).shape == (2, 2, VOCAB)
    classifier = build_model(config, "classification", num_labels=3)
    assert classifier(_text_inputs(n=5)).shape == (2, 3)


def test_dynamic_length_graph_matches_eager():
    # Exported signatures take [None, None] inputs: every baseline must trace with a dynamic n.
    spec = {key: tf.TensorSpec([None, None], tf.int32) for key in ("input_ids", "segment_ids", "input_mask")}
    inputs = _text_inputs(n=5)
    for name in ("transformer_absolute", "transformer_relative", "mlp_mixer"):
        encoder = _randomize(build_model(_config(**ARCHITECTURES[name]), "encoder"))
        traced = tf.function(lambda x, e=encoder: e(x)["sequence_output"], input_signature=[spec])
        np.testing.assert_allclose(np.asarray(traced(inputs)), _sequence(encoder, inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["transformer_absolute", "transformer_relative_no_content", "mlp_mixer"])
def test_keras_archive_round_trip(tmp_path, name):
    config = _config(**ARCHITECTURES[name])
    model = _randomize(build_model(config, "pretraining"), scale=0.05)
    inputs = dict(_text_inputs(), masked_lm_positions=np.array([[0, 3], [1, 7]], "int32"))
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(model(inputs)), np.asarray(restored(inputs)))
    assert restored.config == config
