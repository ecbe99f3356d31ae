"""timm gMLP checkpoints -> Keras (gmlp_tf/models/timm_readers.py, timm_config.py, timm_convert.py,
scripts/convert_timm_checkpoint.py).

The fixture in tests/fixtures/timm/ was made once with real timm by scripts/make_timm_fixture.py
(see its README): a tiny gMLP (32 x 32 images, 8 x 8 patches, 2 blocks of width 16, 5 classes)
with random weights, a fixed input batch and timm's logits. timm and torch are not needed here.
"""

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs, timm_config, timm_convert, timm_readers
from gmlp_tf.models.task_models import build_model
from gmlp_tf.presets import get_preset_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "timm")
SAFETENSORS = os.path.join(FIXTURES, "tiny_gmlp.safetensors")
PTH = os.path.join(FIXTURES, "tiny_gmlp.pth")
SCRIPT = os.path.join(ROOT, "scripts", "convert_timm_checkpoint.py")
PROG = "convert_timm_checkpoint.py"

TINY = GMLPConfig(modality="image", d_model=16, d_ffn=96, num_layers=2, spatial_kind="dense", gating="split",
                  image_size=32, patch_size=8, num_channels=3, num_classes=5)


@pytest.fixture(scope="module")
def state_dict():
    return timm_readers.read_checkpoint(SAFETENSORS)


@pytest.fixture(scope="module")
def inputs_and_logits():
    return np.load(os.path.join(FIXTURES, "inputs_nhwc.npy")), np.load(os.path.join(FIXTURES, "logits.npy"))


def _max_logit_diff(model, inputs_and_logits):
    inputs, expected = inputs_and_logits
    return float(np.max(np.abs(np.asarray(model(inputs)) - expected)))


@pytest.mark.parametrize("path", [SAFETENSORS, PTH], ids=["safetensors", "pth"])
def test_converted_fixture_matches_timm_logits(path, inputs_and_logits):
    model = build_model(TINY, "vision")
    assert timm_convert.convert_state_dict(timm_readers.read_checkpoint(path), model) == 26
    assert _max_logit_diff(model, inputs_and_logits) < 1e-4


def test_read_safetensors_returns_the_fixtures_arrays():
    # What the file's own header says, read independently of the safetensors library.
    with open(SAFETENSORS, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    header.pop("__metadata__", None)
    read = timm_readers.read_safetensors(SAFETENSORS)
    assert set(read) == set(header) == set(timm_config.timm_shapes(TINY))
    for name, info in header.items():
        assert info["dtype"] == "F32"
        assert read[name].dtype == np.float32, name
        assert read[name].shape == tuple(info["shape"]) == timm_config.timm_shapes(TINY)[name], name
    assert read["stem.proj.weight"].shape == (16, 3, 8, 8)  # [d, C, p, p]
    assert read["blocks.1.mlp_channels.gate.proj.weight"].shape == (16, 16)  # [n, n]


def test_to_keras_weights_then_assign_weights(state_dict, inputs_and_logits):
    model = build_model(TINY, "vision")
    before = [np.array(v) for v in model.weights]
    weights = timm_convert.to_keras_weights(state_dict, model)
    assert all(np.array_equal(b, np.array(v)) for b, v in zip(before, model.weights))  # Nothing assigned yet.
    assert set(weights) == {v.path for v in model.weights}
    for variable in model.weights:
        assert weights[variable.path].shape == tuple(variable.shape), variable.path
        assert weights[variable.path].dtype == np.float32, variable.path
    np.testing.assert_array_equal(weights[model.stem.kernel.path],
                                  np.transpose(state_dict["stem.proj.weight"], (2, 3, 1, 0)))
    np.testing.assert_array_equal(weights[model.head.kernel.path], state_dict["head.weight"].T)
    np.testing.assert_array_equal(weights[model.blocks[0].sgu.proj.kernel.path],
                                  state_dict["blocks.0.mlp_channels.gate.proj.weight"])
    assert timm_convert.assign_weights(model, weights) == 26
    assert _max_logit_diff(model, inputs_and_logits) < 1e-4
    with pytest.raises(ValueError, match="no variables nope/kernel"):
        timm_convert.assign_weights(model, {"nope/kernel": np.zeros(1, np.float32)})


def test_load_timm_model_infers_the_fixtures_config(inputs_and_logits):
    converted = timm_convert.load_timm_model(PTH)
    assert converted.preset is None
    assert (converted.config.d_model, converted.config.num_layers, converted.config.image_size) == (16, 2, 32)
    assert _max_logit_diff(converted.model, inputs_and_logits) < 1e-4
    with pytest.raises(ValueError, match="but the preset gmlp_ti16_224 has 30 blocks, width 128"):
        timm_convert.load_timm_model(SAFETENSORS, "gmlp_ti16_224")


def test_pth_and_safetensors_hold_the_same_arrays(state_dict):
    from_pth = timm_readers.read_checkpoint(PTH)
    assert set(from_pth) == set(state_dict)
    for key, value in state_dict.items():
        assert value.dtype == np.float32 and from_pth[key].dtype == np.float32
        np.testing.assert_array_equal(from_pth[key], value)


def test_infer_preset_on_the_fixture(state_dict):
    config = timm_config.infer_preset(state_dict)
    for field in ("d_model", "d_ffn", "num_layers", "patch_size", "image_size", "num_channels", "num_classes",
                  "spatial_kind", "gating", "modality", "layer_norm_eps", "sgu_layer_norm_eps"):
        assert getattr(config, field) == getattr(TINY, field), field
    assert config.seq_length == 16
    assert timm_config.matching_preset(config) is None


def test_mismatched_preset_is_one_clear_error():
    with pytest.raises(ValueError) as err:
        timm_config.check_matches_checkpoint(
            get_preset_config("gmlp_ti16_224"), get_preset_config("gmlp_s16_224"), "gmlp_ti16_224")
    message = str(err.value)
    assert message.startswith("checkpoint has 30 blocks of width 256 (gmlp_s16_224)")
    assert "but the preset gmlp_ti16_224 has width 128" in message
    assert "\n" not in message


def test_mismatched_model_config_is_refused_before_any_assignment(state_dict):
    model = build_model(TINY.replace(d_model=32), "vision")
    before = [np.array(v) for v in model.weights]
    with pytest.raises(ValueError, match="checkpoint has 2 blocks of width 16 but the model config has width 32$"):
        timm_convert.convert_state_dict(state_dict, model)
    assert all(np.array_equal(b, np.array(v)) for b, v in zip(before, model.weights))
    with pytest.raises(ValueError, match="toeplitz spatial projection"):
        timm_convert.convert_state_dict(state_dict, build_model(TINY.replace(spatial_kind="toeplitz"), "vision"))


def test_missing_unexpected_and_misshapen_keys(state_dict):
    model = build_model(TINY, "vision")
    before = [np.array(v) for v in model.weights]

    broken = dict(state_dict)
    del broken["blocks.1.mlp_channels.fc2.bias"]
    with pytest.raises(ValueError, match=r"missing keys: blocks\.1\.mlp_channels\.fc2\.bias"):
        timm_convert.convert_state_dict(broken, model)

    broken = dict(state_dict)
    del broken["head.weight"]  # Also a key infer_preset needs: still the missing-key error.
    with pytest.raises(ValueError, match=r"missing keys: head\.weight"):
        timm_convert.convert_state_dict(broken, model)

    broken = dict(state_dict, **{"pos_embed": np.zeros((1, 16, 16), np.float32)})
    with pytest.raises(ValueError, match=r"unexpected keys: pos_embed"):
        timm_convert.convert_state_dict(broken, model)

    broken = dict(state_dict)
    broken["blocks.0.mlp_channels.fc2.weight"] = np.zeros((16, 47), np.float32)
    with pytest.raises(ValueError, match=r"shape mismatch for blocks\.0\.mlp_channels\.fc2\.weight: checkpoint "
                                         r"has \[16, 47\].*needs \[48, 16\], i\.e\. \[16, 48\] in timm's layout"):
        timm_convert.convert_state_dict(broken, model)
    assert all(np.array_equal(b, np.array(v)) for b, v in zip(before, model.weights))


def _write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, (dtype, array_bytes, shape) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(array_bytes)]}
        blobs.append(array_bytes)
        offset += len(array_bytes)
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_safetensors_half_and_bfloat16(tmp_path, state_dict):
    weight = state_dict["blocks.0.mlp_channels.fc1.weight"]
    bf16_bits = (weight.view(np.uint32) >> 16).astype("<u2")
    path = str(tmp_path / "mixed.safetensors")
    _write_safetensors(path, {
        "a": ("F16", weight.astype("<f2").tobytes(), weight.shape),
        "b": ("BF16", bf16_bits.tobytes(), weight.shape),
        "c": ("F32", weight.astype("<f4").tobytes(), weight.shape),
    })
    read = timm_readers.read_checkpoint(path)
    np.testing.assert_array_equal(read["a"], weight.astype(np.float16))
    np.testing.assert_array_equal(read["b"], (bf16_bits.astype(np.uint32) << 16).view(np.float32))
    np.testing.assert_allclose(read["b"], weight, rtol=1e-2, atol=1e-6)
    np.testing.assert_array_equal(read["c"], weight)


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        timm_readers.read_checkpoint(str(tmp_path / "nope.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(ValueError, match="not a safetensors file"):
        timm_readers.read_checkpoint(str(bad))
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a torch zip checkpoint"):
        timm_readers.read_checkpoint(str(legacy))


def test_torch_reader_never_calls_the_files_globals(tmp_path):
    marker = tmp_path / "pwned"
    payload = b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(f"touch {marker}")) + \
        f"touch {marker}".encode() + b"\x85R."
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", payload)
    with pytest.raises(ValueError, match="holds no state dict"):
        timm_readers.read_checkpoint(str(path))
    assert not marker.exists()


def test_training_checkpoint_wrapper_and_module_prefix(tmp_path, state_dict):
    # A torch zip whose pickle nests the fixture's state dict under "state_dict" with "module."
    # names and carries an unrelated object: rebuilt from the fixture's own data.pkl.
    with zipfile.ZipFile(PTH) as src, zipfile.ZipFile(tmp_path / "train.pth", "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("data.pkl"):
                # {"epoch": 3, "args": argparse.Namespace(), "state_dict": <original dict>}, protocol 2.
                inner = data[2:-1]  # Strip PROTO 2 and STOP.
                data = (b"\x80\x02}(X\x05\x00\x00\x00epochK\x03X\x04\x00\x00\x00argscargparse\nNamespace\n)\x81"
                        b"X\x0a\x00\x00\x00state_dict" + inner + b"u.")
            dst.writestr(name, data)
    read = timm_readers.read_checkpoint(str(tmp_path / "train.pth"))
    assert set(read) == set(state_dict)


@pytest.mark.parametrize("preset", ["gmlp_ti16_224", "gmlp_s16_224"])
def test_preset_keys_and_shapes_match_the_keras_model(preset):
    config = get_preset_config(preset)
    model = build_model(config, "vision")
    mapping = timm_convert.timm_weight_map(model)
    shapes = timm_config.timm_shapes(config)
    assert set(mapping) == set(shapes)
    assert len(mapping) == 2 + 10 * config.num_layers + 4 == len(model.weights)
    for key, (variable, transform) in mapping.items():
        assert tuple(transform(np.zeros(shapes[key], np.float32)).shape) == tuple(variable.shape), key
    assert timm_config.matching_preset(timm_config.infer_preset(
        {k: np.zeros(s, np.float32) for k, s in shapes.items()})) == preset


def test_preset_parameter_counts_are_timms():
    counts = {name: sum(int(np.prod(s)) for s in timm_config.timm_shapes(get_preset_config(name)).values())
              for name in timm_config.TIMM_PRESETS}
    assert counts == {"gmlp_ti16_224": 5_867_328, "gmlp_s16_224": 19_422_656, "gmlp_b16_224": 73_075_392}


def _run_script(*flags):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True, env=env, timeout=300)


def test_script_writes_an_output_directory(tmp_path, inputs_and_logits):
    out = tmp_path / "run"
    result = _run_script(f"--checkpoint={PTH}", f"--output={out}")
    assert result.returncode == 0, result.stderr
    weights = out / saved_runs.CHECKPOINT_DIR / saved_runs.WEIGHTS_NAME
    assert weights.exists()
    config = GMLPConfig.from_json_file(str(out / saved_runs.CONFIG_NAME))
    assert (config.d_model, config.num_layers, config.image_size, config.num_classes) == (16, 2, 32, 5)
    model = build_model(config, "vision")
    model.load_weights(str(weights))
    assert _max_logit_diff(model, inputs_and_logits) < 1e-4
    assert sorted(os.listdir(out)) == sorted([saved_runs.CONFIG_NAME, saved_runs.RUN_INFO_NAME,
                                              saved_runs.PREPROCESSING_NAME, saved_runs.CHECKPOINT_DIR])
    # timm's gMLP weights expect pixels normalised with mean = std = 0.5; export reads this.
    assert saved_runs.read_image_normalization(str(out)) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_script_refuses_a_mismatched_preset_and_writes_nothing(tmp_path):
    out = tmp_path / "w.weights.h5"
    result = _run_script(f"--checkpoint={SAFETENSORS}", "--preset=gmlp_ti16_224", f"--output={out}")
    assert result.returncode != 0
    # Other stderr lines are TensorFlow's C++ start-up logging, printed before Python runs.
    errors = [line for line in result.stderr.splitlines() if PROG in line or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith(f"{PROG}: error: checkpoint has 2 blocks of width 16")
    assert "the preset gmlp_ti16_224 has 30 blocks, width 128" in errors[0]
    assert os.listdir(tmp_path) == []


def _corrupted_copy(tmp_path, key, value, index=(0, 1)):
    """The fixture with one value of tensor `key` replaced, saved with safetensors' NumPy API."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(SAFETENSORS)
    tensors[key] = tensors[key].copy()
    tensors[key][index] = value
    path = tmp_path / f"bad_{key.replace('.', '_')}.safetensors"
    save_file(tensors, str(path))
    return str(path)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_values_are_refused_naming_tensor_and_file(tmp_path, value):
    key = "blocks.1.mlp_channels.gate.proj.weight"
    path = _corrupted_copy(tmp_path, key, value)
    with pytest.raises(ValueError, match=rf"^{path}: tensor '{key}' holds NaN or infinite values \(1 of \d+\)"):
        timm_convert.load_timm_model(path)
    # A state dict given directly is checked too (no file to name).
    model = build_model(TINY, "vision")
    with pytest.raises(ValueError, match=f"{key} holds NaN or infinite values"):
        timm_convert.to_keras_weights(timm_readers.read_checkpoint(path), model)


def test_non_finite_values_in_a_dropped_head_are_not_an_error(tmp_path):
    path = _corrupted_copy(tmp_path, "head.weight", np.nan)
    with pytest.raises(ValueError, match="tensor 'head.weight' holds NaN"):
        timm_convert.load_timm_model(path)
    converted = timm_convert.load_timm_model(path, num_classes=3)  # The head is replaced.
    assert converted.new_head and all(np.all(np.isfinite(np.asarray(w))) for w in converted.model.weights)


def test_script_refuses_non_finite_values_and_writes_nothing(tmp_path):
    key = "stem.proj.weight"
    path = _corrupted_copy(tmp_path, key, np.nan, index=(0, 0, 0, 0))
    result = _run_script(f"--checkpoint={path}", f"--output={tmp_path / 'out'}")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if PROG in line or "Traceback" in line]
    assert errors == [f"{PROG}: error: {path}: tensor '{key}' holds NaN or infinite values (1 of 3072); "
                      "a checkpoint with them is not converted"], result.stderr
    assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_save_keras_weights_is_atomic_and_loadable(tmp_path, state_dict, inputs_and_logits):
    model = build_model(TINY, "vision")
    timm_convert.convert_state_dict(state_dict, model)
    path = timm_convert.save_keras_weights(model, str(tmp_path / "tiny.weights.h5"))
    assert os.listdir(tmp_path) == ["tiny.weights.h5"]
    fresh = build_model(TINY, "vision")
    fresh.load_weights(path)
    assert _max_logit_diff(fresh, inputs_and_logits) < 1e-4
    with pytest.raises(ValueError, match="must end in .weights.h5"):
        timm_convert.save_keras_weights(model, str(tmp_path / "tiny.h5"))


def test_new_head_for_another_class_count(state_dict, inputs_and_logits):
    full = timm_convert.load_timm_model(SAFETENSORS)
    converted = timm_convert.load_timm_model(SAFETENSORS, num_classes=3)
    assert converted.new_head and not full.new_head and converted.config.num_classes == 3
    model = converted.model
    assert tuple(model.head.kernel.shape) == (16, 3) and tuple(model.head.bias.shape) == (3,)
    np.testing.assert_array_equal(model.head.kernel.numpy(), 0.0)  # Fresh (timm's zero init), not the checkpoint's.
    backbone = [(a, b) for a, b in zip(model.weights, full.model.weights) if "head" not in a.path]
    assert len(backbone) == 24
    for ours, theirs in backbone:
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    # The same class count keeps the head: the logits are timm's.
    same = timm_convert.load_timm_model(SAFETENSORS, num_classes=5)
    assert not same.new_head and _max_logit_diff(same.model, inputs_and_logits) < 1e-4
    weights = timm_convert.to_keras_weights(state_dict, build_model(TINY.replace(num_classes=7), "vision"),
                                            new_head=True)
    assert len(weights) == 24
    with pytest.raises(ValueError, match="classes"):  # Without new_head, another class count is refused.
        timm_convert.to_keras_weights(state_dict, build_model(TINY.replace(num_classes=7), "vision"))
    with pytest.raises(ValueError, match="num_classes must be at least 2, got 1"):
        timm_convert.load_timm_model(SAFETENSORS, num_classes=1)


def test_linear_drop_path_schedule_is_accepted(state_dict, inputs_and_logits):
    model = build_model(TINY.replace(drop_path_schedule="linear", survival_prob=0.8), "vision")
    assert timm_convert.convert_state_dict(state_dict, model) == 26
    assert _max_logit_diff(model, inputs_and_logits) < 1e-4  # Stochastic depth is off at inference.
