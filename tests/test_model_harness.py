"""Every model family through the shared model checks of tests/test_case.py (`run_model_test`).

Predict, `.keras` round trip, SavedModel export and one `fit` step, on tiny configs (width 16,
one block, 8 to 16 tokens, a 50-token vocabulary; 16 x 16 images of 8 x 8 patches): the task
models of `gmlp_tf.build_model` (pretraining, classification, SQuAD, vision), `GMLPBackbone`,
aMLP, the Table 3 baselines (transformer, MLP-Mixer) and the FFT spatial projection. What each
model computes is tested in test_models.py, test_backbone.py and test_baselines.py.
"""

import keras
import numpy as np
import pytest
from test_case import run_model_test

import gmlp_tf
from gmlp_tf.layers.spatial_projection import FFT_MIN_LENGTH, SpatialProjection

BATCH, VOCAB, D_MODEL, N, PREDICTIONS, LABELS = 3, 50, 16, 8, 4, 3


def _text_config(**changes):
    base = dict(vocab_size=VOCAB, d_model=D_MODEL, d_ffn=32, num_layers=1, max_seq_length=N)
    return gmlp_tf.GMLPConfig(**{**base, **changes})


def _text_inputs(config, masked_lm_positions=False, seed=0):
    """BERT-style int32 features; the second example has two padded tokens."""
    rng = np.random.default_rng(seed)
    n = config.max_seq_length
    mask = np.ones((BATCH, n), "int32")
    mask[1, n - 2:] = 0
    inputs = {
        "input_ids": rng.integers(0, config.vocab_size, (BATCH, n)).astype("int32"),
        "input_mask": mask,
        "segment_ids": np.concatenate([np.zeros((BATCH, n // 2), "int32"), np.ones((BATCH, n - n // 2), "int32")], 1),
    }
    if masked_lm_positions:
        inputs["masked_lm_positions"] = rng.integers(0, n, (BATCH, PREDICTIONS)).astype("int32")
    return inputs


def _labels(high, shape=(BATCH,), seed=1):
    return np.random.default_rng(seed).integers(0, high, shape).astype("int32")


_CROSS_ENTROPY = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _check_task_model(config, task):
    """Builds `build_model(config, task)` and runs it through `run_model_test` with the task's
    own loss and targets (masked-LM token ids, labels, SQuAD start / end positions)."""
    n = config.max_seq_length
    if task == "pretraining":
        return run_model_test(
            gmlp_tf.build_model(config, "pretraining"),
            _text_inputs(config, masked_lm_positions=True),
            (BATCH, PREDICTIONS, config.vocab_size),
            target_data=_labels(config.vocab_size, (BATCH, PREDICTIONS)),
            loss=_CROSS_ENTROPY,
        )
    if task == "classification":
        return run_model_test(
            gmlp_tf.build_model(config, "classification", num_labels=LABELS),
            _text_inputs(config),
            (BATCH, LABELS),
            target_data=_labels(LABELS),
            loss=_CROSS_ENTROPY,
        )
    assert task == "squad"
    return run_model_test(
        gmlp_tf.build_model(config, "squad"),
        _text_inputs(config),
        {"start_logits": (BATCH, n), "end_logits": (BATCH, n), "null_score": (BATCH,)},
        # null_score is start_logits[:, 0] + end_logits[:, 0]: it needs no loss of its own.
        target_data={"start_logits": _labels(n), "end_logits": _labels(n, seed=2)},
        loss={"start_logits": _CROSS_ENTROPY, "end_logits": _CROSS_ENTROPY},
    )


@pytest.mark.parametrize("task", ["pretraining", "classification", "squad"])
def test_gmlp_text_task_models(task):
    model = _check_task_model(_text_config(), task)
    assert isinstance(model.encoder, gmlp_tf.GMLPEncoder)


def test_amlp_pretraining_model():
    """aMLP: gMLP plus the single-head tiny attention (configs/amlp_*.json: attention_size > 0)."""
    config = _text_config(attention_size=8)
    model = _check_task_model(config, "pretraining")
    attentions = [layer for layer in model._flatten_layers() if isinstance(layer, gmlp_tf.TinyAttention)]
    assert len(attentions) == config.num_layers


# The Table 3 baselines: config.architecture picks the block (gmlp_tf/layers/blocks.py).
BASELINES = {
    "transformer_absolute": (dict(architecture="transformer", num_attention_heads=2, position_encoding="absolute"),
                             gmlp_tf.TransformerBlock),
    "transformer_relative": (dict(architecture="transformer", num_attention_heads=2, position_encoding="relative"),
                             gmlp_tf.TransformerBlock),
    "mlp_mixer": (dict(architecture="mlp_mixer", d_spatial=6), gmlp_tf.MixerBlock),
}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_pretraining_models(name):
    changes, block_cls = BASELINES[name]
    model = _check_task_model(_text_config(**changes), "pretraining")
    assert [type(block) for block in model.encoder.blocks] == [block_cls]


def test_fft_spatial_projection_causal_squad_model():
    """The FFT path of the Toeplitz projection (what configs/gmlp_long.json takes at 4096 tokens,
    from FFT_MIN_LENGTH on), forced at 16 tokens with spatial_implementation "fft", causal so
    that the FFT's causal branch runs too."""
    config = _text_config(max_seq_length=16, spatial_kind="toeplitz", spatial_implementation="fft", causal=True)
    assert config.max_seq_length < FFT_MIN_LENGTH  # "auto" would take the matmul here.
    model = _check_task_model(config, "squad")
    projections = [layer for layer in model._flatten_layers() if isinstance(layer, SpatialProjection)]
    assert len(projections) == config.num_layers
    assert all(p.causal and p.uses_fft(config.max_seq_length) for p in projections)


def test_vision_classifier():
    config = gmlp_tf.GMLPConfig(
        modality="image", image_size=16, patch_size=8, d_model=D_MODEL, d_ffn=32, num_layers=1, num_classes=5,
        spatial_kind="dense",
    )
    images = np.random.default_rng(0).random((BATCH, 16, 16, 3)).astype("float32")
    model = run_model_test(
        gmlp_tf.build_model(config, "vision"), images, (BATCH, 5), target_data=_labels(5), loss=_CROSS_ENTROPY
    )
    assert isinstance(model, gmlp_tf.GMLPVisionClassifier)


def test_backbone():
    """GMLPBackbone (functional, dict in and out) with the harness' default targets and loss:
    zeros and mean squared error on both outputs."""
    config = _text_config(attention_size=4)
    model = run_model_test(
        gmlp_tf.GMLPBackbone(config), _text_inputs(config),
        {"sequence_output": (BATCH, N, D_MODEL), "pooled_output": (BATCH, D_MODEL)},
    )
    assert model.loss == "mse"


# The harness itself must fail on a broken model.


@keras.saving.register_keras_serializable(package="gmlp_tf_tests")
class LosesCausal(gmlp_tf.GMLPForSequenceClassification):
    """Saves its config without `causal`: the same weights, restored into a non-causal model."""

    def get_config(self):
        config = super().get_config()
        config["config"] = dict(config["config"], causal=False)
        return config


def test_harness_catches_a_model_restored_with_other_outputs():
    config = _text_config(causal=True, spatial_kind="dense")
    model = LosesCausal(config, num_labels=LABELS)
    model.build({"input_ids": (None, N)})
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        run_model_test(model, _text_inputs(config), (BATCH, LABELS), run_export_check=False, run_fit_check=False)


def test_harness_catches_a_model_that_cannot_train():
    config = _text_config()
    model = gmlp_tf.build_model(config, "classification", num_labels=LABELS)
    model.trainable = False
    with pytest.raises(AssertionError, match="no trainable weights"):
        run_model_test(model, _text_inputs(config), (BATCH, LABELS), run_predict_check=False,
                       run_saving_check=False, run_export_check=False)
