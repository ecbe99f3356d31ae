"""GMLPConfig JSON reading and writing, and the presets."""

import json
import os
import re

import pytest

from gmlp_tf import presets
from gmlp_tf.config import GMLPConfig


def test_json_round_trip(tmp_path):
    config = GMLPConfig(d_model=64, d_ffn=128, num_layers=3, attention_size=16, gating="additive")
    path = os.path.join(tmp_path, "gmlp_config.json")
    config.to_json_file(path)
    assert GMLPConfig.from_json_file(path) == config
    assert json.loads(config.to_json_string())["attention_size"] == 16
    assert not os.path.exists(path + ".tmp")


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"d_model": 64, "hidden_size": 3}', "unknown GMLPConfig field.*hidden_size"),
        ('{"spatial_kind": "circulant"}', "spatial_kind must be one of"),
        ('{"gating": "sum"}', "gating must be one of"),
        ('{"d_ffn": 3}', "d_ffn must be even"),
        ('{"survival_prob": 0.0}', "survival_prob"),
        ('{"num_layers": 0}', "num_layers must be a positive integer"),
        ('{"modality": "image", "image_size": 30, "patch_size": 16}', "not a multiple of patch_size"),
    ],
)
def test_bad_config_files_fail_clearly(tmp_path, content, message):
    path = os.path.join(tmp_path, "bad.json")
    with open(path, "w") as f:
        f.write(content)
    with pytest.raises(ValueError, match=message):
        GMLPConfig.from_json_file(path)


@pytest.mark.parametrize(
    "old, architecture, sgu, attention",
    [(False, "gmlp", False, False), (True, "gmlp", True, True),
     (False, "transformer", False, True), (True, "transformer", True, True)],
)
def test_old_use_padding_mask_files_keep_their_behaviour(tmp_path, old, architecture, sgu, attention):
    # Before the two fields, one flag switched the SGU's and tiny attention's masks together;
    # the transformer masked padded keys whatever it said.
    data = GMLPConfig(architecture=architecture, position_encoding="none").to_dict()
    del data["sgu_padding_mask"], data["attention_padding_mask"]
    data["use_padding_mask"] = old
    path = os.path.join(tmp_path, "old.json")
    with open(path, "w") as f:
        json.dump(data, f)
    config = GMLPConfig.from_json_file(path)
    assert (config.sgu_padding_mask, config.attention_padding_mask) == (sgu, attention)
    written = json.loads(config.to_json_string())
    assert "use_padding_mask" not in written
    assert (written["sgu_padding_mask"], written["attention_padding_mask"]) == (sgu, attention)


def test_old_and_new_padding_fields_together_are_an_error():
    with pytest.raises(ValueError, match="use_padding_mask .* cannot be given with sgu_padding_mask"):
        GMLPConfig.from_dict({"use_padding_mask": True, "sgu_padding_mask": False})
    with pytest.raises(ValueError, match="use_padding_mask must be true or false"):
        GMLPConfig.from_dict({"use_padding_mask": "yes"})


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe{\x00}\x00", "is not UTF-8 JSON"),  # UTF-16 with its byte-order mark.
        ('{"name": "caf\u00e9"}'.encode("latin-1"), "is not UTF-8 JSON"),
        (b"{not json", "is not valid JSON"),
        (b"[1, 2]", "must hold a JSON object"),
        (b'{"hidden_size": 3}', ": unknown GMLPConfig field.*hidden_size"),
        (b'{"num_layers": 0}', ": num_layers must be a positive integer"),
    ],
)
def test_bad_config_file_errors_name_the_file(tmp_path, content, message):
    path = os.path.join(tmp_path, "bad_config.json")
    with open(path, "wb") as f:
        f.write(content)
    separator = "" if message.startswith(":") else " "
    with pytest.raises(ValueError, match=f"^model config file {re.escape(path)}{separator}{message}") as info:
        GMLPConfig.from_json_file(path)
    assert "\n" not in str(info.value)


def test_utf8_config_file_with_a_byte_order_mark_is_read(tmp_path):
    path = os.path.join(tmp_path, "bom.json")
    with open(path, "wb") as f:
        f.write(b"\xef\xbb\xbf" + GMLPConfig(d_model=64).to_json_string().encode())
    assert GMLPConfig.from_json_file(path) == GMLPConfig(d_model=64)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model config file not found"):
        GMLPConfig.from_json_file(os.path.join(tmp_path, "nope.json"))


def test_derived_values():
    image = GMLPConfig(modality="image", image_size=224, patch_size=16, d_ffn=768, spatial_kind="dense")
    assert image.seq_length == 196 and image.gate_width == 384
    assert GMLPConfig(gating="linear", d_ffn=2048).gate_width == 2048
    linear = GMLPConfig(num_layers=5, survival_prob=0.8, drop_path_schedule="linear")
    assert linear.block_survival_probs() == pytest.approx([1.0, 0.95, 0.9, 0.85, 0.8])
    assert GMLPConfig(num_layers=3, survival_prob=0.8).block_survival_probs() == [0.8] * 3


EXPECTED_PRESETS = {
    # name: (modality, L, d_model, d_ffn, n, gating, attention, survival)
    "gmlp_ti16_224": ("image", 30, 128, 768, 196, "split", 0, 1.00),
    "gmlp_s16_224": ("image", 30, 256, 1536, 196, "split", 0, 0.95),
    "gmlp_b16_224": ("image", 30, 512, 3072, 196, "split", 0, 0.80),
    "gmlp_36l_linear": ("text", 36, 512, 2048, 128, "linear", 0, 1.0),
    "gmlp_36l_additive": ("text", 36, 512, 2048, 128, "additive", 0, 1.0),
    "gmlp_36l_multiplicative": ("text", 36, 512, 2048, 128, "multiplicative", 0, 1.0),
    "gmlp_18l": ("text", 18, 512, 3072, 128, "split", 0, 1.0),
    "gmlp_36l": ("text", 36, 512, 3072, 128, "split", 0, 1.0),
    "gmlp_72l": ("text", 72, 512, 3072, 128, "split", 0, 1.0),
    "gmlp_144l": ("text", 144, 512, 3072, 128, "split", 0, 1.0),
    "gmlp_base": ("text", 48, 512, 3072, 512, "split", 0, 1.0),
    "amlp_base": ("text", 36, 512, 3072, 512, "split", 64, 1.0),
    "gmlp_large": ("text", 96, 768, 3072, 512, "split", 0, 1.0),
    "amlp_large": ("text", 72, 768, 3072, 512, "split", 128, 1.0),
    "gmlp_xlarge": ("text", 144, 1024, 4096, 512, "split", 0, 1.0),
}


def test_every_paper_model_is_a_preset():
    assert set(EXPECTED_PRESETS) <= set(presets.list_presets())


@pytest.mark.parametrize("name", sorted(EXPECTED_PRESETS))
def test_preset_matches_the_paper(name):
    c = presets.get_preset_config(name)
    got = (c.modality, c.num_layers, c.d_model, c.d_ffn, c.seq_length, c.gating, c.attention_size, c.survival_prob)
    assert got == EXPECTED_PRESETS[name]
    # The paper restricts W to Toeplitz for MLM; the vision models use a dense W, as timm.
    assert c.spatial_kind == ("dense" if c.modality == "image" else "toeplitz")
    if c.modality == "text":
        assert c.vocab_size == 32000


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="unknown preset 'gmlp_huge'; known presets: amlp_base"):
        presets.get_preset_config("gmlp_huge")
