"""The model side on JAX and PyTorch gives TensorFlow's numbers, and runs where TensorFlow is absent.

tests/backend_parity.py does the work: its cases run here under TensorFlow to write the weights
and the reference numbers, then in a subprocess per backend (KERAS_BACKEND is read once, when
Keras is imported), whose figures these tests judge.
"""

import json
import os
import subprocess
import sys

import backend_parity
import numpy as np
import pytest

_TESTS = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_TESTS)
# float32 rounding through different kernels; a wrong gradient or a lost mask is far above it.
_TOLERANCE = 1e-5


def _run(code_or_script: list, backend: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join([_REPO, _TESTS]),
               TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, *code_or_script], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    directory = tmp_path_factory.mktemp("backend_parity")
    backend_parity.write_references(str(directory))
    return directory


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_layers_and_models_match_tensorflow(references, backend):
    result = _run([backend_parity.__file__, str(references)], backend)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(references / f"{backend}.json") as figures:
        report = json.load(figures)
    assert report["backend"] == backend
    assert list(report["cases"]) == list(backend_parity.CASES)
    for name, case in report["cases"].items():
        # Every TensorFlow-written weight was loaded and every gradient compared.
        assert case["gradients_compared"] == case["gradients_expected"] > 0, name
        checks = ["output", "gradient", "keras_round_trip"]
        if name in backend_parity.MODEL_CASES:
            checks += ["predict", "tensorflow_keras_file"]
            np.testing.assert_allclose(case["fit_losses"], case["fit_losses_tensorflow"], rtol=_TOLERANCE,
                                       err_msg=f"{backend} {name}: fit")
        for check in checks:
            assert case[check] <= _TOLERANCE, f"{backend} {name}: {check} differs by {case[check]:.3g} (relative)"
    assert set(report["benchmark_seconds"]) == {"matmul", "fft", "fft_autodiff"}


@pytest.fixture(scope="module")
def tensorflow_run(tmp_path_factory):
    """An output directory as the training scripts write it, after a step of Adam under TensorFlow,
    and its backbone's outputs as TensorFlow computes them."""
    import keras

    import gmlp_tf
    from gmlp_tf.runtime import run_directory

    output_dir = str(tmp_path_factory.mktemp("tensorflow_run"))
    config = backend_parity._text_config(attention_size=8)
    model = gmlp_tf.build_model(config, task="pretraining")
    backend_parity.perturb(model, "run")
    data = backend_parity._text_data("run", backend_parity.MAX_LENGTH, pretraining=True)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data, np.ones((backend_parity.BATCH, 5), "int32"), verbose=0)
    run_directory.prepare_output_dir(output_dir, config, "pretraining")
    run_directory.save(model, output_dir)
    del data["masked_lm_positions"]
    outputs = gmlp_tf.GMLPBackbone.from_pretrained(output_dir)(data)
    np.savez(os.path.join(output_dir, "expected.npz"), **data,
             **{key: keras.ops.convert_to_numpy(value) for key, value in outputs.items()})
    return output_dir


_WITHOUT_TENSORFLOW = """
import json, os, sys, tempfile
sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError.
try:
    import tensorflow
    blocked = False
except ImportError:
    blocked = True
import keras, numpy as np
import gmlp_tf
from gmlp_tf import counting

rng = np.random.default_rng(0)
text = gmlp_tf.build_preset("gmlp_demo", task="classification", num_labels=3)
ids = rng.integers(1, 8000, (4, 128)).astype("int32")
inputs = {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids)}
text.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = text.fit(inputs, np.array([0, 1, 2, 1]), batch_size=2, epochs=2, verbose=0)
vision = gmlp_tf.build_preset("gmlp_ti16_224", num_classes=4)
logits = vision.predict(rng.normal(size=(2, 224, 224, 3)).astype("float32"), verbose=0)
config_file = os.path.join(tempfile.mkdtemp(), "gmlp_config.json")
text.config.to_json_file(config_file)
run_dir = sys.argv[1]
expected = dict(np.load(os.path.join(run_dir, "expected.npz")))
backbone = gmlp_tf.GMLPBackbone.from_pretrained(run_dir)
outputs = backbone({k: expected[k] for k in ("input_ids", "input_mask", "segment_ids")})
print(json.dumps({
    "backend": keras.backend.backend(),
    "tensorflow_blocked": blocked,
    "text_logits": list(text.predict(inputs, verbose=0).shape),
    "losses": history.history["loss"],
    "vision_logits": list(logits.shape),
    "config_round_trip": gmlp_tf.GMLPConfig.from_json_file(config_file) == text.config,
    "counts_match": [counting.count_parameters(m.config, task, num_labels=3) == m.count_params()
                     for m, task in ((text, "classification"), (vision, None))],
    "run_difference": max(float(np.max(np.abs(np.asarray(outputs[k]) - expected[k])) / np.max(np.abs(expected[k])))
                          for k in ("sequence_output", "pooled_output")),
    "tensorflow_modules": sorted(m for m, v in sys.modules.items() if m.startswith("tensorflow") and v is not None),
}))
"""


def test_model_side_runs_without_tensorflow(tensorflow_run):
    result = _run(["-c", _WITHOUT_TENSORFLOW, tensorflow_run], "jax")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax" and report["tensorflow_blocked"]
    assert report["tensorflow_modules"] == []
    assert report["text_logits"] == [4, 3] and report["vision_logits"] == [2, 4]
    assert all(np.isfinite(report["losses"])) and report["config_round_trip"]
    assert report["counts_match"] == [True, True]  # counting.py's closed forms, beside the built models.
    # A TensorFlow-trained run directory (its checkpoint carries Adam's state too) loads on JAX.
    assert report["run_difference"] <= _TOLERANCE
