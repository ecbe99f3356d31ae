"""gmlp_tf.analysis: spatial weights, Toeplitz scores, tiny attention maps, figures, plot_spatial_weights.py.

Run directories are made directly (build_model, chosen weights, save_weights, as the runtime lays
them out) rather than by training.
"""

import io
import json
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
from absl import flags as absl_flags
from PIL import Image
from text_fixtures import fake_sentences

from gmlp_tf import tokenization
from gmlp_tf.analysis import figures, report, spatial_weights
from gmlp_tf.config import GMLPConfig
from gmlp_tf.layers.spatial_projection import toeplitz_matrix
from gmlp_tf.layers.tiny_attention import TinyAttention
from gmlp_tf.models import saved_runs
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import flags as spec_flags
from gmlp_tf.runtime import run_directory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 777
LENGTH = 32  # i.i.d. noise scores about 2 / 33 = 0.06 at this length.
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _text_config(**changes):
    fields = dict(vocab_size=120, d_model=16, d_ffn=32, num_layers=3, max_seq_length=LENGTH, spatial_kind="dense")
    return GMLPConfig(**{**fields, **changes})


def _image_config():
    return GMLPConfig(modality="image", image_size=32, patch_size=4, d_model=8, d_ffn=16, num_layers=2,
                      num_classes=3, spatial_kind="dense")


def _toeplitz(n, rng):
    return np.asarray(toeplitz_matrix(rng.normal(size=2 * n - 1).astype("float32"), n))


def _make_run(folder, config, task, sp_model=None):
    """A run directory as a job leaves it; W set to Toeplitz plus a little noise (a 'trained' W).

    Returns the W each block started from (the model built right after seeding with SEED).
    """
    keras.utils.set_random_seed(SEED)  # As gmlp_tf.runtime.runner.start, before the job builds its model.
    model = build_model(config, task)
    initial = [np.asarray(block.sgu.proj.spatial_matrix()) for block in _blocks(model)]
    rng = np.random.default_rng(0)
    n = config.seq_length
    for block in _blocks(model):
        block.sgu.proj.kernel.assign(_toeplitz(n, rng) + 0.05 * rng.normal(size=(n, n)).astype("float32"))
    run_directory.prepare_output_dir(str(folder), config, task)
    if sp_model is not None:
        run_directory.write_vocab(str(folder), sp_model)
    os.makedirs(saved_runs.checkpoint_dir(str(folder)), exist_ok=True)
    model.save_weights(os.path.join(saved_runs.checkpoint_dir(str(folder)), saved_runs.WEIGHTS_NAME))
    return initial


def _blocks(model):
    return getattr(model, "encoder", model).blocks


def _spec(model_dir, output_dir, **changes):
    return report.SpatialWeightsSpec(model_dir=str(model_dir), output_dir=str(output_dir), random_seed=SEED,
                                     **changes)


def _check_png(path):
    data = open(path, "rb").read()
    assert data.startswith(PNG_MAGIC) and len(data) < figures.MAX_PNG_BYTES, (path, len(data))
    Image.open(io.BytesIO(data)).verify()


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    (root / "corpus.txt").write_text("\n".join(fake_sentences(300, seed=1)) + "\n")
    tokenization.train_sentencepiece([str(root / "corpus.txt")], str(root / "spm"), vocab_size=120,
                                     character_coverage=1.0)
    return tokenization.load_sp_model(str(root / "spm.model"))


# ------------------------------------------------------------------------------ Toeplitz score
def test_toeplitz_score_is_one_for_toeplitz_near_zero_for_noise_and_between_for_a_mix():
    rng = np.random.default_rng(1)
    t = _toeplitz(128, rng)
    noise = rng.normal(size=(128, 128))
    assert spatial_weights.toeplitz_score(t) == pytest.approx(1.0, abs=1e-9)
    assert spatial_weights.toeplitz_score(np.tril(t)) == pytest.approx(1.0, abs=1e-9)  # Causal W.
    assert spatial_weights.toeplitz_score(noise) < 0.1
    assert spatial_weights.toeplitz_score(noise) == pytest.approx(spatial_weights.noise_toeplitz_score(128), abs=0.01)
    mix = spatial_weights.toeplitz_score(t + noise)
    assert 0.2 < mix < 0.9
    assert spatial_weights.toeplitz_score(np.full((5, 5), 0.3)) == 1.0  # Constant: defined as 1.
    assert spatial_weights.toeplitz_score(np.ones((1, 1))) == 1.0
    for bad in (np.ones((2, 3)), np.ones(4), np.zeros((0, 0))):
        with pytest.raises(ValueError, match="square matrix"):
            spatial_weights.toeplitz_score(bad)
    with pytest.raises(ValueError, match="finite"):
        spatial_weights.toeplitz_score(np.array([[0.0, np.nan], [1.0, 2.0]]))


# ------------------------------------------------------------------------------ model reading
@pytest.mark.parametrize("kind", ["dense", "toeplitz"])
def test_spatial_matrices_are_the_layers_spatial_matrix(kind):
    for model in (build_model(_text_config(spatial_kind=kind, causal=True), "encoder"),
                  build_model(_image_config(), "vision")):
        for variable in model.weights:
            variable.assign(np.random.default_rng(2).normal(size=variable.shape).astype("float32"))
        matrices = spatial_weights.spatial_matrices(model)
        assert len(matrices) == len(_blocks(model))
        for w, block in zip(matrices, _blocks(model)):
            n = model.config.seq_length
            assert w.shape == (n, n) and w.dtype == np.float32
            np.testing.assert_array_equal(w, np.asarray(block.sgu.proj.spatial_matrix()))


def test_models_without_spatial_weights_are_refused():
    baseline = types.SimpleNamespace(config=types.SimpleNamespace(architecture="transformer"))
    with pytest.raises(ValueError, match="'transformer' model has no spatial weights"):
        spatial_weights.spatial_matrices(baseline)
    with pytest.raises(ValueError, match="no tiny attention"):
        spatial_weights.attention_maps(build_model(_text_config(), "encoder"), {"input_ids": np.ones((1, 4), "int32")})


def test_initial_matrices_redraw_the_seeded_initialisation():
    config = _text_config()
    keras.utils.set_random_seed(SEED)
    expected = spatial_weights.spatial_matrices(build_model(config, "pretraining"))
    build_model(config, "pretraining")  # Other draws in between change nothing.
    again = spatial_weights.initial_matrices(config, "pretraining", SEED)
    for w, w0 in zip(again, expected):
        np.testing.assert_array_equal(w, w0)
    other = spatial_weights.initial_matrices(config, "pretraining", SEED + 1)
    assert not np.array_equal(other[0], expected[0])
    assert max(spatial_weights.toeplitz_score(w) for w in again) < 0.2  # Dense W starts as noise.


# ------------------------------------------------------------------------------ tiny attention
def test_tiny_attention_scores_leave_the_output_unchanged_and_are_probabilities():
    layer = TinyAttention(8, 12, causal=True)
    x = np.random.default_rng(3).normal(size=(2, 6, 16)).astype("float32")
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], "int32")
    plain = layer(x, padding_mask=mask)
    output, probabilities = layer(x, padding_mask=mask, return_attention_scores=True)
    np.testing.assert_allclose(np.asarray(output), np.asarray(plain), rtol=1e-5, atol=1e-6)
    p = np.asarray(probabilities)
    assert p.shape == (2, 6, 6)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(p, 1) == 0) and np.all(p[1, :, 4:] == 0)  # Causal; padded keys unread.
    symbolic = layer(keras.Input((6, 16)), return_attention_scores=True)
    assert [tuple(s.shape) for s in symbolic] == [(None, 6, 12), (None, 6, 6)]
    default = layer(keras.Input((6, 16)), padding_mask=keras.Input((6,), dtype="int32"))
    assert tuple(default.shape) == (None, 6, 12)  # As before the argument.
    assert keras.backend.standardize_dtype(default.dtype) == keras.backend.standardize_dtype(plain.dtype)
    assert TinyAttention.from_config(layer.get_config()).get_config() == layer.get_config()


def test_attention_maps_follow_the_encoder():
    model = build_model(_text_config(attention_size=8, sgu_padding_mask=True), "classification", num_labels=3)
    for variable in model.weights:
        variable.assign(np.random.default_rng(4).normal(0.0, 0.3, size=variable.shape).astype("float32"))
    rng = np.random.default_rng(5)
    inputs = {"input_ids": rng.integers(5, 120, size=(2, LENGTH)).astype("int32"),
              "segment_ids": np.zeros((2, LENGTH), "int32"), "input_mask": np.ones((2, LENGTH), "int32")}
    inputs["input_mask"][1, 20:] = 0
    maps = spatial_weights.attention_maps(model, inputs)
    assert len(maps) == 3 and all(m.shape == (2, LENGTH, LENGTH) for m in maps)
    for m in maps:
        np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-5)
        assert np.all(m[1, :, 20:] == 0)
    # The embedding steps mirror GMLPEncoder.call: blocks and final norm give its output.
    x, padding_mask = spatial_weights._block_input(model, inputs)
    for block in model.encoder.blocks:
        x = block(x, padding_mask=padding_mask)
    expected = model.encoder(inputs)["sequence_output"]
    np.testing.assert_allclose(np.asarray(model.encoder.final_norm(x)), np.asarray(expected), atol=1e-5)


# ------------------------------------------------------------------------------ figures
def test_line_plot_writes_a_small_png_and_checks_its_series(tmp_path):
    path = str(tmp_path / "curves.png")
    steps = list(range(0, 1000, 100))
    figures.line_plot(path, {"gmlp": (steps, [50.0 / (s + 10) + 4 for s in steps]),
                             "amlp": (steps, [40.0 / (s + 10) + 3.5 for s in steps])},
                      "training step", "held-out perplexity", "Ablation", logy=True)
    _check_png(path)
    with pytest.raises(ValueError, match="at least one series"):
        figures.line_plot(path, {}, "x", "y", "t")
    with pytest.raises(ValueError, match="'a' needs equally many"):
        figures.line_plot(path, {"a": ([1, 2], [1])}, "x", "y", "t")
    with pytest.raises(ValueError, match="logarithmic"):
        figures.line_plot(path, {"a": ([1, 2], [1, 0])}, "x", "y", "t", logy=True)


def test_large_noisy_figures_stay_under_the_size_limit(tmp_path):
    rng = np.random.default_rng(6)
    matrices = {i: rng.normal(size=(128, 128)) for i in range(36)}  # Noise: the hardest to compress.
    figures.spatial_matrix_grid(str(tmp_path / "grid.png"), matrices)
    _check_png(str(tmp_path / "grid.png"))


# ------------------------------------------------------------------------------ the script
def test_text_run_gives_figures_4_and_9_and_the_scores(tmp_path):
    initial = _make_run(tmp_path / "run", _text_config(), "pretraining")
    results = report.run(_spec(tmp_path / "run", tmp_path / "out"))
    assert sorted(os.listdir(tmp_path / "out")) == sorted([report.FIGURE4, report.FIGURE9, report.RESULTS_NAME])
    for name in (report.FIGURE4, report.FIGURE9):
        _check_png(str(tmp_path / "out" / name))
    saved = json.loads((tmp_path / "out" / report.RESULTS_NAME).read_text())
    assert saved == results
    assert saved["spatial_kind"] == "dense" and saved["seed"] == SEED and saved["num_tokens"] == LENGTH
    assert [e["layer"] for e in saved["layers"]] == [0, 1, 2]
    for entry, w0 in zip(saved["layers"], initial):
        assert entry["toeplitz_score"] > 0.9
        assert entry["initial_toeplitz_score"] == pytest.approx(spatial_weights.toeplitz_score(w0), abs=1e-12)
        assert entry["initial_toeplitz_score"] < 0.2
    assert saved["mean_initial_toeplitz_score"] < 0.2 < 0.9 < saved["mean_toeplitz_score"]
    lines = report.report_lines(results, _spec(tmp_path / "run", tmp_path / "out"))
    assert lines[1].split() == ["layer", "trained", "initial"] and lines[-1].endswith(report.RESULTS_NAME)


def test_vision_run_gives_figure_3(tmp_path):
    _make_run(tmp_path / "run", _image_config(), "vision")
    results = report.run(_spec(tmp_path / "run", tmp_path / "out"))
    assert results["figures"] == [report.FIGURE3] and len(results["layers"]) == 2
    _check_png(str(tmp_path / "out" / report.FIGURE3))
    assert results["num_tokens"] == 64 and results["mean_initial_toeplitz_score"] < 0.2


def test_amlp_run_gives_figure_10(tmp_path, sp_model):
    _make_run(tmp_path / "run", _text_config(attention_size=8), "pretraining", sp_model)
    results = report.run(_spec(tmp_path / "run", tmp_path / "out", max_layers=2))  # The built-in sentences.
    assert results["figures"] == [report.FIGURE4, report.FIGURE9, report.FIGURE10]
    _check_png(str(tmp_path / "out" / report.FIGURE10))


def test_text_flag_splits_sentences_on_bars():
    sentences = report._check_spec(_spec("run", "out", text="The king speaks, slowly. | |Hamlet walks.|"))
    assert sentences == ["The king speaks, slowly.", "Hamlet walks."]
    assert report._check_spec(_spec("run", "out")) == []
    with pytest.raises(ValueError, match="--text holds no sentence"):
        report._check_spec(_spec("run", "out", text=" | "))
    with pytest.raises(ValueError, match="at most 8"):
        report._check_spec(_spec("run", "out", text="|".join(["a"] * 9)))
    with pytest.raises(ValueError, match="--max_layers must be >= 0"):
        report._check_spec(_spec("run", "out", max_layers=-1))


def test_bad_run_directories_are_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match=f"model directory not found: {tmp_path / 'nope'}"):
        report.run(_spec(tmp_path / "nope", tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no gmlp_config.json"):
        report.run(_spec(tmp_path / "empty", tmp_path / "out"))
    _make_run(tmp_path / "gmlp", _text_config(), "pretraining")
    with pytest.raises(ValueError, match="tiny attention of an aMLP text model"):
        report.run(_spec(tmp_path / "gmlp", tmp_path / "out", text="A sentence."))
    os.remove(os.path.join(saved_runs.checkpoint_dir(str(tmp_path / "gmlp")), saved_runs.WEIGHTS_NAME))
    with pytest.raises(ValueError, match="holds no checkpoint"):
        report.run(_spec(tmp_path / "gmlp", tmp_path / "out"))
    with pytest.raises(ValueError, match="--output_dir is required"):
        report.run(report.SpatialWeightsSpec(model_dir=str(tmp_path / "gmlp")))
    baseline = _text_config(architecture="transformer", num_attention_heads=2)
    run_directory.prepare_output_dir(str(tmp_path / "bert"), baseline, "pretraining")
    os.makedirs(saved_runs.checkpoint_dir(str(tmp_path / "bert")))
    build_model(baseline, "pretraining").save_weights(
        os.path.join(saved_runs.checkpoint_dir(str(tmp_path / "bert")), saved_runs.WEIGHTS_NAME))
    with pytest.raises(ValueError, match=f"{tmp_path / 'bert'}: a 'transformer' model has no spatial weights"):
        report.run(_spec(tmp_path / "bert", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_flags_make_the_spec_and_the_script_fails_in_one_line(tmp_path):
    flag_values = absl_flags.FlagValues()
    spec_flags.define_flags(report.SpatialWeightsSpec, flag_values, module_name="plot_spatial_weights")
    flag_values(["prog", "--model_dir=runs/a", "--output_dir=figs", "--text=One.|Two.", "--max_layers=4"])
    spec = spec_flags.spec_from_flags(report.SpatialWeightsSpec, flag_values)
    assert spec == report.SpatialWeightsSpec(model_dir="runs/a", output_dir="figs", text="One.|Two.", max_layers=4,
                                             random_seed=12345)  # The jobs' default seed.
    script = os.path.join(ROOT, "scripts", "plot_spatial_weights.py")
    bad = subprocess.run([sys.executable, script, f"--model_dir={tmp_path / 'nope'}", f"--output_dir={tmp_path / 'x'}"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert f"plot_spatial_weights.py: error: model directory not found: {tmp_path / 'nope'}" in bad.stderr
    assert not (tmp_path / "x").exists()
