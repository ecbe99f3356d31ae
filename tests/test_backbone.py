"""GMLPBackbone: the encoder as a keras.Model, from a preset and from a pretraining run's directory."""

import keras
import numpy as np
import tensorflow as tf

from gmlp_tf import GMLPBackbone, GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import run_directory


def _features(config, batch=2, n=6, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, n), "int32")
    mask[1, n - 2:] = 0
    return {"input_ids": rng.integers(0, config.vocab_size, (batch, n)).astype("int32"), "input_mask": mask,
            "segment_ids": np.zeros((batch, n), "int32")}


def test_from_preset_has_named_int32_inputs_and_two_outputs():
    backbone = GMLPBackbone.from_preset("gmlp_demo", hidden_dropout_prob=0.1)
    assert backbone.config.d_model == 128 and backbone.config.hidden_dropout_prob == 0.1
    assert [(t.name, t.dtype, tuple(t.shape)) for t in backbone.inputs] == [
        (name, "int32", (None, None)) for name in ("input_ids", "input_mask", "segment_ids")]
    outputs = backbone(_features(backbone.config, n=10))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {"sequence_output": (2, 10, 128),
                                                               "pooled_output": (2, 128)}
    # The pooled output is [CLS]'s final representation, which ClassificationHead pools itself.
    np.testing.assert_array_equal(np.asarray(outputs["pooled_output"]), np.asarray(outputs["sequence_output"])[:, 0])


def test_keras_archive_round_trip(tmp_path):
    backbone = GMLPBackbone(GMLPConfig(vocab_size=50, d_model=16, d_ffn=32, num_layers=1, max_seq_length=8))
    features = _features(backbone.config)
    backbone.save(str(tmp_path / "backbone.keras"))
    restored = keras.models.load_model(str(tmp_path / "backbone.keras"))
    assert isinstance(restored, GMLPBackbone) and restored.config == backbone.config
    np.testing.assert_array_equal(np.asarray(restored(features)["sequence_output"]),
                                  np.asarray(backbone(features)["sequence_output"]))


def _pretraining_dir(output_dir):
    """A run_pretraining.py output directory (config, run info, a step-named checkpoint), written
    by the runtime's own functions from a masked-LM model with random weights (a real run takes
    a minute)."""
    config = GMLPConfig(vocab_size=50, d_model=16, d_ffn=32, num_layers=2, max_seq_length=16, attention_size=4)
    model = build_model(config, "pretraining")
    rng = np.random.default_rng(3)
    for variable in model.weights:
        variable.assign(rng.normal(0.0, 0.3, variable.shape).astype("float32"))
    run_directory.prepare_output_dir(output_dir, config, "pretraining")
    run_directory.save(model, output_dir)


def test_from_pretrained_is_the_runs_encoder_and_takes_a_head(tmp_path):
    output_dir = str(tmp_path / "run")
    _pretraining_dir(output_dir)
    backbone = GMLPBackbone.from_pretrained(output_dir)
    _, task, run_model = saved_runs.load_run_model(output_dir)
    assert task == "pretraining"
    features = _features(backbone.config, n=12)
    expected = np.asarray(run_model.encoder(features)["sequence_output"])
    np.testing.assert_allclose(np.asarray(backbone(features)["sequence_output"]), expected, atol=1e-6)
    # Trained weights, not a fresh initialisation.
    assert not np.allclose(np.asarray(GMLPBackbone(backbone.config)(features)["sequence_output"]), expected)

    # A user's head on top trains: one step moves both the head and the encoder.
    inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in features}
    logits = keras.layers.Dense(3, name="head")(backbone(inputs)["pooled_output"])
    classifier = keras.Model(inputs, logits)
    before = [np.array(w) for w in (classifier.get_layer("head").kernel, backbone.encoder.final_norm.gamma)]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(np.array([0, 2]), classifier(features, training=True))
    grads = tape.gradient(loss, classifier.trainable_variables)
    keras.optimizers.SGD(0.5).apply(grads, classifier.trainable_variables)
    assert np.isfinite(float(loss)) and all(g is not None for g in grads)
    after = [np.array(w) for w in (classifier.get_layer("head").kernel, backbone.encoder.final_norm.gamma)]
    assert all(not np.allclose(a, b) for a, b in zip(before, after))
