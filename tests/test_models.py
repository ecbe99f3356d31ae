"""Encoder, heads, task models and the vision classifier: shapes, tying, `.keras` round trips."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.task_models import build_model


def text_inputs(config, batch=3, n=None, masked=4):
    n = n or config.max_seq_length
    inputs = {
        "input_ids": np.random.randint(0, config.vocab_size, (batch, n)).astype("int32"),
        "segment_ids": np.concatenate(
            [np.zeros((batch, n // 2), "int32"), np.ones((batch, n - n // 2), "int32")], axis=1
        ),
        "input_mask": np.ones((batch, n), "int32"),
    }
    if masked:
        inputs["masked_lm_positions"] = np.random.randint(0, n, (batch, masked)).astype("int32")
    return inputs


def test_encoder_outputs_and_cls(tiny_text_config):
    encoder = build_model(tiny_text_config, "encoder")
    out = encoder(text_inputs(tiny_text_config))
    assert out["sequence_output"].shape == (3, 8, 16)
    np.testing.assert_array_equal(np.asarray(out["cls_output"]), np.asarray(out["sequence_output"])[:, 0])
    # No position embeddings: token and segment embeddings only.
    assert [w.path.split("/")[-2] for w in encoder.weights[:2]] == ["token_embedding", "segment_embedding"]


def test_segment_ids_change_the_output(tiny_text_config):
    encoder = build_model(tiny_text_config, "encoder")
    inputs = text_inputs(tiny_text_config)
    without = dict(inputs, segment_ids=np.zeros_like(inputs["segment_ids"]))
    assert not np.allclose(
        np.asarray(encoder(inputs)["sequence_output"]), np.asarray(encoder(without)["sequence_output"])
    )


def test_pretraining_head_is_tied_to_token_embeddings(tiny_text_config):
    model = build_model(tiny_text_config, "pretraining")
    inputs = text_inputs(tiny_text_config)
    logits = model(inputs)
    assert logits.shape == (3, 4, 50) and logits.dtype == "float32"
    # Recompute by hand: gather, transform, GELU, LayerNorm, E^T, bias.
    seq = np.asarray(model.encoder(inputs)["sequence_output"])
    gathered = np.take_along_axis(seq, inputs["masked_lm_positions"][:, :, None], axis=1)
    head = model.mlm_head
    h = np.asarray(head.norm(keras.ops.gelu(head.transform(gathered), approximate=False)))
    embeddings = np.asarray(model.encoder.token_embedding.embeddings)
    expected = h @ embeddings.T + np.asarray(head.output_bias)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-5)
    # One embedding matrix, not two.
    assert sum(1 for w in model.weights if w.shape == (50, 16)) == 1
    # Without positions every token is scored.
    no_positions = {k: v for k, v in inputs.items() if k != "masked_lm_positions"}
    assert model(no_positions).shape == (3, 8, 50)


def test_classification_and_regression_heads(tiny_text_config):
    inputs = text_inputs(tiny_text_config, masked=0)
    assert build_model(tiny_text_config, "classification", num_labels=3)(inputs).shape == (3, 3)
    assert build_model(tiny_text_config, "classification", num_labels=1)(inputs).shape == (3, 1)


def test_squad_head_scores_no_answer_at_cls(tiny_text_config):
    model = build_model(tiny_text_config, "squad")
    out = model(text_inputs(tiny_text_config, masked=0))
    assert out["start_logits"].shape == (3, 8) and out["end_logits"].shape == (3, 8)
    np.testing.assert_allclose(
        np.asarray(out["null_score"]), np.asarray(out["start_logits"])[:, 0] + np.asarray(out["end_logits"])[:, 0]
    )


def test_shorter_inputs_run_through_the_model(tiny_text_config):
    model = build_model(tiny_text_config.replace(spatial_kind="dense"), "classification")
    assert model(text_inputs(tiny_text_config, n=5, masked=0)).shape == (3, 2)


def test_longer_inputs_are_rejected(tiny_text_config):
    model = build_model(tiny_text_config, "classification")
    with pytest.raises(ValueError, match=r"9 tokens.*at most 8"):
        model(text_inputs(tiny_text_config, n=9, masked=0))


def _real_positions_when_padding_changes(model, config, spatial_scale=0.0):
    """Encoder outputs at the 5 real tokens for two inputs that differ only in their padded tokens.

    The spatial weights W are set to spatial_scale * noise: 0 leaves the tiny attention as the only
    path between tokens (the SGU's gate is then its bias), other values let the SGU mix tokens.
    The tiny attention's weights get noise of scale 0.5, so that what it reads shows.
    """
    rng = np.random.default_rng(0)
    for variable in model.weights:
        scale = spatial_scale if "/sgu/proj/kernel" in variable.path else 0.5
        if "/sgu/proj/kernel" in variable.path or "/tiny_attention/" in variable.path:
            variable.assign(scale * rng.normal(size=variable.shape).astype("float32"))
    inputs = text_inputs(config, masked=0)
    inputs["input_mask"][:, 5:] = 0
    other = dict(inputs, input_ids=inputs["input_ids"].copy())
    other["input_ids"][:, 5:] = (other["input_ids"][:, 5:] + 1) % config.vocab_size
    return (np.asarray(model(inputs)["sequence_output"])[:, :5],
            np.asarray(model(other)["sequence_output"])[:, :5])


def test_tiny_attention_masks_padding_keys_with_the_sgu_mask_off(tiny_text_config):
    config = tiny_text_config.replace(attention_size=4, spatial_kind="dense")
    assert not config.sgu_padding_mask and config.attention_padding_mask  # The defaults.
    a, b = _real_positions_when_padding_changes(build_model(config, "encoder"), config)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # The check can fail: the same weights without the attention mask let padding through.
    unmasked = config.replace(attention_padding_mask=False)
    a, b = _real_positions_when_padding_changes(build_model(unmasked, "encoder"), unmasked)
    assert np.abs(a - b).max() > 1e-3


def test_sgu_padding_mask_off_lets_padding_in_and_on_isolates_real_tokens(tiny_text_config):
    config = tiny_text_config.replace(attention_size=4, spatial_kind="dense")
    a, b = _real_positions_when_padding_changes(build_model(config, "encoder"), config, spatial_scale=0.5)
    assert np.abs(a - b).max() > 1e-3  # As in the paper: the SGU reads padded tokens.
    both = config.replace(sgu_padding_mask=True)
    a, b = _real_positions_when_padding_changes(build_model(both, "encoder"), both, spatial_scale=0.5)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_vision_classifier_shapes_and_patch_order(tiny_image_config):
    model = build_model(tiny_image_config)
    images = np.random.rand(2, 32, 32, 3).astype("float32")
    assert model(images).shape == (2, 5)
    # The head starts at zero, as timm's.
    np.testing.assert_array_equal(np.asarray(model(images)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"images must be \[batch, 32, 32, 3\]"):
        model(np.zeros((1, 64, 64, 3), "float32"))


def test_vision_predict_takes_arrays_tensors_and_datasets_and_keeps_the_last_partial_batch(tiny_image_config):
    model = build_model(tiny_image_config)
    _perturb(model)
    images = np.random.rand(5, 32, 32, 3).astype("float32")
    expected = np.asarray(model(images))
    np.testing.assert_allclose(model.predict(images, batch_size=2, verbose=0), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(tf.constant(images), verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert model.predict(images, batch_size=2, steps=2, verbose=0).shape == (4, 5)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(3)
    np.testing.assert_allclose(model.predict(dataset, verbose=0), expected, rtol=1e-5, atol=1e-6)


def _perturb(model):
    # Non-trivial weights, so that a round trip that dropped any of them would show.
    for w in model.weights:
        w.assign(np.asarray(w) + np.random.randn(*w.shape).astype("float32") * 0.05)


# The task models (the encoder alone, a layer, goes through tests/test_layers.py).
ROUND_TRIPS = [
    ("pretraining", {}),
    ("classification", {"attention_size": 4}),
    ("squad", {"causal": True, "spatial_kind": "dense"}),
]


@pytest.mark.parametrize("task, changes", ROUND_TRIPS)
def test_keras_archive_round_trip_text(tmp_path, tiny_text_config, task, changes):
    config = tiny_text_config.replace(**changes)
    model = build_model(config, task)
    _perturb(model)
    inputs = text_inputs(config) if task == "pretraining" else text_inputs(config, masked=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), model(inputs), restored(inputs)
    )
    assert restored.config == config


def test_keras_archive_round_trip_vision(tmp_path, tiny_image_config):
    model = build_model(tiny_image_config.replace(survival_prob=0.9))
    _perturb(model)
    images = np.random.rand(2, 32, 32, 3).astype("float32")
    path = os.path.join(tmp_path, "vision.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(restored(images)))


def test_build_model_rejects_unknown_or_mismatched_task(tiny_text_config, tiny_image_config):
    with pytest.raises(ValueError, match="unknown task"):
        build_model(tiny_text_config, "translation")
    with pytest.raises(ValueError, match="does not fit"):
        build_model(tiny_image_config, "pretraining")
    with pytest.raises(ValueError, match="does not fit"):
        build_model(tiny_text_config, "vision")


def test_models_accept_config_dicts(tiny_text_config):
    model = build_model(tiny_text_config.to_dict(), "squad")
    assert isinstance(model.config, GMLPConfig)
