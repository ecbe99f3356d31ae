"""Every preset of `gmlp_tf.list_presets()` (as timm's tests run over `list_models()`): its config
loads and round-trips through JSON, and a model of its architecture builds and runs.

The full presets (up to gMLP_xlarge: 144 blocks of width 1024, 941M parameters) are too big to
build here, so each is built SHRUNK (`_shrink`):

  kept:    modality, architecture (block type), spatial_kind, gating, causal, the padding-mask
           fields, whether there is a tiny attention (aMLP), position_encoding /
           attention_content, whether the spatial projection takes the FFT path at the preset's
           own length, vocab_size / type_vocab_size, patch_size, num_channels, num_classes;
  shrunk:  num_layers to 1; d_model to 16 (a multiple of num_attention_heads for a transformer);
           d_ffn to 32; attention_size to at most 8; d_spatial to at most 8; max_seq_length to 16
           (text); image_size to 2 x patch_size, i.e. 4 patches (image); dropout and stochastic
           depth off. A preset whose projection takes the FFT at its full length (gmlp_long:
           Toeplitz, "auto", 4096 tokens) gets spatial_implementation "fft", since "auto" would
           take the matmul at 16 tokens.

The full-size parameter counts are checked against the paper in test_counting.py; here the shrunk
model's real count must equal the closed form of `gmlp_tf.counting`, and the full count must be
that closed form's positive integer, linear in depth.
"""

import json
import os

import numpy as np
import pytest

import gmlp_tf
from gmlp_tf import counting, presets
from gmlp_tf.config import GMLPConfig
from gmlp_tf.layers.baseline_blocks import MixerBlock, TransformerBlock
from gmlp_tf.layers.gmlp_block import GMLPBlock
from gmlp_tf.layers.spatial_projection import SpatialProjection
from gmlp_tf.layers.tiny_attention import TinyAttention

PRESETS = gmlp_tf.list_presets()
BATCH, TEXT_LENGTH, PREDICTIONS = 2, 16, 3
BLOCK_CLASSES = {"gmlp": GMLPBlock, "transformer": TransformerBlock, "mlp_mixer": MixerBlock}


def _full_uses_fft(config: GMLPConfig) -> bool:
    """Whether the preset's spatial projection takes the FFT path at its full length (asked of the
    layer itself, unbuilt: no weights are made)."""
    if config.architecture != "gmlp":
        return False
    projection = SpatialProjection(
        config.seq_length, kind=config.spatial_kind, causal=config.causal,
        implementation=config.spatial_implementation,
    )
    return projection.uses_fft(config.seq_length)


def _shrink(config: GMLPConfig) -> GMLPConfig:
    """The preset's architecture at a size that builds in well under a second (module docstring)."""
    heads = config.num_attention_heads
    changes = dict(
        num_layers=1,
        d_model=heads * max(1, 16 // heads) if config.architecture == "transformer" else 16,
        d_ffn=32,
        attention_size=min(config.attention_size, 8),
        d_spatial=min(config.d_spatial, 8),
        hidden_dropout_prob=0.0,
        attention_dropout_prob=0.0,
        survival_prob=1.0,
    )
    if config.modality == "image":
        changes["image_size"] = 2 * config.patch_size
    else:
        changes["max_seq_length"] = TEXT_LENGTH
    if _full_uses_fft(config):
        changes["spatial_implementation"] = "fft"
    return config.replace(**changes)


def test_there_are_presets_of_every_kind():
    """The parametrized test below covers the text and image models, aMLP and the FFT path."""
    configs = [presets.get_preset_config(name) for name in PRESETS]
    assert len(PRESETS) >= 10 and list(PRESETS) == sorted(PRESETS)
    assert {"gmlp_base", "amlp_base", "gmlp_long", "gmlp_ti16_224"} <= set(PRESETS)
    assert {c.modality for c in configs} == {"text", "image"}
    assert any(c.is_amlp for c in configs) and any(_full_uses_fft(c) for c in configs)
    assert {c.gating for c in configs} == {"split", "multiplicative", "additive", "linear"}
    with pytest.raises(ValueError, match="unknown preset"):
        presets.get_preset_config("gmlp_nonexistent")


@pytest.mark.parametrize("name", PRESETS)
def test_preset_config_round_trips_through_json(name, tmp_path):
    config = presets.get_preset_config(name)
    assert isinstance(config, GMLPConfig)
    # The file on disk is the config: a field it spells wrong would have been an error.
    with open(os.path.join(presets.config_dir(), name + ".json")) as f:
        on_disk = json.load(f)
    assert {key: getattr(config, key) for key in on_disk} == on_disk
    text = config.to_json_string()
    assert GMLPConfig.from_dict(json.loads(text)) == config
    path = str(tmp_path / "config.json")
    config.to_json_file(path)
    assert GMLPConfig.from_json_file(path) == config
    with open(path) as f:
        assert f.read() == text


def _text_features(config: GMLPConfig, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = config.max_seq_length
    mask = np.ones((BATCH, n), "int32")
    mask[1, n - 3:] = 0
    return {
        "input_ids": rng.integers(0, config.vocab_size, (BATCH, n)).astype("int32"),
        "input_mask": mask,
        "segment_ids": np.concatenate([np.zeros((BATCH, n // 2), "int32"), np.ones((BATCH, n - n // 2), "int32")], 1),
        "masked_lm_positions": rng.integers(0, n, (BATCH, PREDICTIONS)).astype("int32"),
    }


def _assert_architecture_kept(model, full: GMLPConfig, shrunk: GMLPConfig) -> None:
    """The built blocks are the preset's: block type, gating, causality, tiny attention, FFT path."""
    blocks = model.encoder.blocks if full.modality == "text" else model.blocks
    assert [type(block) for block in blocks] == [BLOCK_CLASSES[full.architecture]]
    layers = list(model._flatten_layers())
    attentions = [layer for layer in layers if isinstance(layer, TinyAttention)]
    assert len(attentions) == (1 if full.is_amlp else 0)
    if full.architecture == "gmlp":
        (block,) = blocks
        assert (block.gating, block.spatial_kind, block.causal) == (full.gating, full.spatial_kind, full.causal)
        (projection,) = [layer for layer in layers if isinstance(layer, SpatialProjection)]
        assert projection.uses_fft(shrunk.seq_length) == _full_uses_fft(full)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_architecture_builds_and_runs_shrunk(name):
    full = presets.get_preset_config(name)
    shrunk = _shrink(full)
    for field in ("modality", "architecture", "spatial_kind", "gating", "causal", "sgu_padding_mask",
                  "attention_padding_mask", "position_encoding", "attention_content", "vocab_size",
                  "type_vocab_size", "patch_size", "num_channels", "num_classes"):
        assert getattr(shrunk, field) == getattr(full, field), field
    assert shrunk.is_amlp == full.is_amlp

    if full.modality == "image":
        model = gmlp_tf.build_model(shrunk)
        assert isinstance(model, gmlp_tf.GMLPVisionClassifier)
        images = np.random.default_rng(0).random((BATCH, shrunk.image_size, shrunk.image_size,
                                                  shrunk.num_channels)).astype("float32")
        logits = np.asarray(model(images))
        assert logits.shape == (BATCH, full.num_classes) and logits.dtype == np.float32
        assert np.all(np.isfinite(logits))
    else:
        model = gmlp_tf.build_model(shrunk, "pretraining")
        features = _text_features(shrunk)
        logits = np.asarray(model(features))
        assert logits.shape == (BATCH, PREDICTIONS, full.vocab_size) and logits.dtype == np.float32
        assert np.all(np.isfinite(logits)) and np.ptp(logits) > 0
        # The encoder alone, as the preset's backbone gives it.
        backbone = gmlp_tf.GMLPBackbone.from_preset(name, **{k: v for k, v in shrunk.to_dict().items()
                                                             if getattr(full, k) != v})
        assert backbone.config == shrunk
        outputs = backbone({k: v for k, v in features.items() if k != "masked_lm_positions"})
        sequence = np.asarray(outputs["sequence_output"])
        assert sequence.shape == (BATCH, TEXT_LENGTH, shrunk.d_model) and np.all(np.isfinite(sequence))
        np.testing.assert_array_equal(np.asarray(outputs["pooled_output"]), sequence[:, 0])
    assert model.config == shrunk
    _assert_architecture_kept(model, full, shrunk)

    # Parameter counts: the real shrunk build is the closed form; the full count is that closed
    # form's, a positive integer linear in depth.
    assert model.count_params() == counting.count_parameters(shrunk)
    full_count = counting.count_parameters(full)
    assert isinstance(full_count, int) and full_count > model.count_params()
    one_block = counting.count_parameters(full.replace(num_layers=1))
    assert full_count == one_block + (full.num_layers - 1) * counting.block_parameters(full)
