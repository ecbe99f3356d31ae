"""export_saved_model.py: SavedModels of the four model families, reloaded in a fresh process.

Tiny output directories are made directly (build_model, random weights, save_weights) rather
than by training, and exported once per module. One subprocess that imports only tensorflow and
tensorflow_text loads every export and runs its signatures; the outputs are compared here with
the Keras models' outputs on the same encoded inputs.
"""

import json
import os
import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from text_fixtures import fake_sentences

from gmlp_tf import export, tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import run_directory
from gmlp_tf.tokenization import CLS_ID, MASK_ID, SEP_ID

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 120
LENGTH = 24
TOL = 1e-5

EDGE_TEXTS = ["", "the king speaks " * 3000, b"\xff\xfe bad \xc3\x28 bytes",
              "emoji \U0001F600\U0001F389\U0001F44D\U0001F3FD",
              "Hamlet speaks to the queen of Denmark."]
MANY_TEXTS = fake_sentences(40, seed=3)
PAIR_B = ["never", "", "\U0001F600", b"\x80\x81", "the castle at night " * 500]
SQUAD_CONTEXTS = ["", "the king speaks to the queen " * 100, b"\xff king \xc3", "\U0001F600 lord lady",
                  "The castle at night, the lord walks slowly."]
MLM_TEXTS = ["the [MASK] speaks to the [MASK].", "", "[MASK]", "no mask here", b"\xff[MASK]\xfe",
             "king [MASK] " * 100, "[MASK][MASK] \U0001F600"]


def _tiny_run(folder, config, task, sp_model, num_labels=None, seed=0):
    model = build_model(config, task, num_labels=num_labels or 2)
    rng = np.random.RandomState(seed)
    for variable in model.weights:  # Random weights, so that outputs are not trivially constant.
        variable.assign(rng.normal(0.0, 0.3, variable.shape).astype("float32"))
    run_directory.prepare_output_dir(str(folder), config, task, num_labels)
    if sp_model is not None:
        run_directory.write_vocab(str(folder), sp_model)
    os.makedirs(saved_runs.checkpoint_dir(str(folder)), exist_ok=True)
    model.save_weights(os.path.join(saved_runs.checkpoint_dir(str(folder)), saved_runs.WEIGHTS_NAME))
    return model


def _texts(values):
    return tf.constant([v.encode() if isinstance(v, str) else v for v in values])


SERVE_SCRIPT = textwrap.dedent("""
    import pickle, sys
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    requests = pickle.load(open(sys.argv[1], "rb"))
    results = {}
    for key, (path, signature, inputs) in requests.items():
        loaded = tf.saved_model.load(path)
        fn = loaded.signatures[signature]
        out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        results[key] = {k: v.numpy() for k, v in out.items()}
        results[key + "/signature"] = {k: (s.dtype.name, s.shape.as_list())
                                       for k, s in fn.structured_input_signature[1].items()}
    results["gmlp_tf_imported"] = any(m.startswith("gmlp_tf") for m in sys.modules)
    pickle.dump(results, open(sys.argv[2], "wb"))
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    (root / "corpus.txt").write_text("\n".join(fake_sentences(300, seed=1)) + "\n")
    tokenization.train_sentencepiece([str(root / "corpus.txt")], str(root / "spm"), vocab_size=VOCAB,
                                     character_coverage=1.0)
    sp_model = tokenization.load_sp_model(str(root / "spm.model"))
    text_config = GMLPConfig(vocab_size=VOCAB, d_model=16, d_ffn=32, num_layers=2, max_seq_length=LENGTH)
    amlp_config = text_config.replace(attention_size=8, spatial_kind="dense")
    image_config = GMLPConfig(modality="image", image_size=32, patch_size=8, d_model=16, d_ffn=32, num_layers=2,
                              num_classes=5, spatial_kind="dense")
    runs = {
        "classifier": (_tiny_run(root / "mnli", amlp_config, "classification", sp_model, 3, seed=1), "mnli"),
        "squad": (_tiny_run(root / "squad", text_config, "squad", sp_model, seed=2), None),
        "mlm": (_tiny_run(root / "mlm", text_config, "pretraining", sp_model, seed=3), None),
        "vision": (_tiny_run(root / "vision", image_config, "vision", None, seed=4), None),
    }
    dirs = {"classifier": root / "mnli", "squad": root / "squad", "mlm": root / "mlm", "vision": root / "vision"}
    exports = {}
    for name, (_, task_name) in runs.items():
        exports[name] = str(root / "exports" / name)
        export.export_saved_model(str(dirs[name]), exports[name], task_name=task_name, top_k=3)

    rng = np.random.RandomState(0)
    ids = rng.randint(5, VOCAB, size=(3, LENGTH)).astype(np.int32)
    ids[:, 0] = CLS_ID
    mask = np.ones_like(ids)
    mask[1, 15:] = 0
    ids[1, 15:] = 0
    segments = np.zeros_like(ids)
    segments[:, 10:] = 1
    encoded = {"input_ids": ids, "input_mask": mask, "segment_ids": segments}
    images = rng.randint(0, 256, size=(2, 40, 50, 3)).astype(np.uint8)
    pngs = np.array([tf.io.encode_png(image).numpy() for image in images], dtype=object)
    pixels = rng.uniform(-1, 1, size=(2, 32, 32, 3)).astype(np.float32)

    many_b = list(reversed(MANY_TEXTS))
    requests = {
        "classifier/encoded": (exports["classifier"], "encoded", encoded),
        "classifier/edge": (exports["classifier"], "serving_default",
                            {"text_a": _texts(EDGE_TEXTS).numpy(), "text_b": _texts(PAIR_B).numpy()}),
        "classifier/one": (exports["classifier"], "serving_default",
                           {"text_a": _texts(["\U0001F600"]).numpy(), "text_b": _texts([""]).numpy()}),
        "classifier/many": (exports["classifier"], "serving_default",
                            {"text_a": _texts(MANY_TEXTS).numpy(), "text_b": _texts(many_b).numpy()}),
        "squad/encoded": (exports["squad"], "encoded", encoded),
        "squad/text": (exports["squad"], "serving_default",
                       {"question": _texts(EDGE_TEXTS).numpy(), "context": _texts(SQUAD_CONTEXTS).numpy()}),
        "squad/one": (exports["squad"], "serving_default",
                      {"question": _texts(["who"]).numpy(), "context": _texts(["the king"]).numpy()}),
        "mlm/encoded": (exports["mlm"], "encoded", encoded),
        "mlm/text": (exports["mlm"], "serving_default", {"text": _texts(MLM_TEXTS).numpy()}),
        "mlm/one": (exports["mlm"], "serving_default", {"text": _texts([""]).numpy()}),
        "vision/bytes": (exports["vision"], "serving_default", {"image_bytes": pngs}),
        "vision/images": (exports["vision"], "images", {"images": images}),
        "vision/encoded": (exports["vision"], "encoded", {"pixel_values": pixels}),
    }
    with open(root / "requests.pkl", "wb") as f:
        pickle.dump(requests, f)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # The serving process must not be able to import gmlp_tf.
    result = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, str(root / "requests.pkl"), str(root / "out.pkl")],
                            capture_output=True, text=True, env=env, cwd=str(root), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(root / "out.pkl", "rb") as f:
        served = pickle.load(f)
    models = {name: model for name, (model, _) in runs.items()}
    return dict(root=root, dirs=dirs, exports=exports, models=models, task_names={k: v[1] for k, v in runs.items()},
                served=served, encoded=encoded, images=images, pixels=pixels, sp_model=sp_model, many_b=many_b)


def _module(setup, name):
    """An export module, rebuilt only for its in-graph encoder (the reference inputs of the Keras model).

    Built inside the test: keras.utils.set_random_seed (the autouse fixture) clears TensorFlow's eager
    kernel cache, which destroys the kernel-owned SentencePiece resources of tokenizers made before.
    """
    return export.build_export_module(str(setup["dirs"][name]), task_name=setup["task_names"][name], top_k=3)[0]


def _max_diff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def test_serving_process_imports_only_tensorflow(setup):
    assert setup["served"]["gmlp_tf_imported"] is False


def test_classifier_round_trip_pair_task(setup):
    served, model, module = setup["served"], setup["models"]["classifier"], _module(setup, "classifier")
    keras_logits = model(setup["encoded"], training=False).numpy()
    assert _max_diff(served["classifier/encoded"]["logits"], keras_logits) <= TOL
    assert served["classifier/edge/signature"] == {"text_a": ("string", [None]), "text_b": ("string", [None])}
    for key, a, b in (("classifier/edge", EDGE_TEXTS, PAIR_B), ("classifier/many", MANY_TEXTS, setup["many_b"]),
                      ("classifier/one", ["\U0001F600"], [""])):
        out = served[key]
        inputs = module.encode(_texts(a), _texts(b))
        expected = model(inputs, training=False).numpy()
        assert out["logits"].shape == (len(a), 3)
        assert _max_diff(out["logits"], expected) <= TOL
        assert _max_diff(out["probabilities"], tf.nn.softmax(expected).numpy()) <= TOL
        labels = np.array(["entailment", "neutral", "contradiction"])[expected.argmax(-1)]
        assert [x.decode() for x in out["labels"]] == labels.tolist()
    edge = module.encode(_texts(EDGE_TEXTS), _texts(PAIR_B))
    assert edge["input_ids"].shape == (5, LENGTH)  # The long text is truncated to the model's length.
    assert edge["input_mask"].numpy()[1].all() and edge["input_mask"].numpy()[4].all()


def test_squad_round_trip_and_one_window_answer(setup):
    served, model, module = setup["served"], setup["models"]["squad"], _module(setup, "squad")
    keras_out = model(setup["encoded"], training=False)
    for name in ("start_logits", "end_logits", "null_score"):
        assert _max_diff(served["squad/encoded"][name], keras_out[name].numpy()) <= TOL
    out = served["squad/text"]
    inputs, first, last = module.encode(_texts(EDGE_TEXTS), _texts(SQUAD_CONTEXTS))
    expected = model(inputs, training=False)
    assert _max_diff(out["start_logits"], expected["start_logits"].numpy()) <= TOL
    assert _max_diff(out["end_logits"], expected["end_logits"].numpy()) <= TOL
    ids = inputs["input_ids"].numpy()
    first, last = first.numpy(), last.numpy()
    assert out["answer_text"][0] == b"" and out["start_index"][0] == -1  # Empty context: no span.
    assert out["score"][0] == export.NO_SPAN_SCORE
    processor_ids = tokenization.make_tokenizer(setup["sp_model"])
    for row in range(1, len(EDGE_TEXTS)):
        s, e = out["start_index"][row], out["end_index"][row]
        assert first[row] <= s <= e <= last[row] and e - s < 30
        start, end = expected["start_logits"].numpy()[row], expected["end_logits"].numpy()[row]
        best = max(start[i] + end[j] for i in range(first[row], last[row] + 1)
                   for j in range(i, min(last[row], i + 29) + 1))
        assert abs(out["score"][row] - best) <= TOL
        text = processor_ids.detokenize(tf.constant([ids[row, s:e + 1].tolist()])).numpy()[0].strip()
        assert out["answer_text"][row] == text
    assert served["squad/one"]["answer_text"].shape == (1,)


def test_masked_lm_round_trip_and_mask_joining(setup):
    served, model, module = setup["served"], setup["models"]["mlm"], _module(setup, "mlm")
    keras_logits = model(setup["encoded"], training=False).numpy()
    assert _max_diff(served["mlm/encoded"]["logits"], keras_logits) <= TOL
    tokenizer = tokenization.make_tokenizer(setup["sp_model"])
    pieces = [tokenizer.tokenize(tf.constant([p])).to_list()[0] for p in ("the ", " speaks to the ", ".")]
    joined = module.encode(tf.constant(["the [MASK] speaks to the [MASK]."]))["input_ids"].numpy()[0]
    expected_ids = [CLS_ID] + pieces[0] + [MASK_ID] + pieces[1] + [MASK_ID] + pieces[2] + [SEP_ID]
    assert joined[:len(expected_ids)].tolist() == expected_ids
    out = served["mlm/text"]
    inputs = module.encode(_texts(MLM_TEXTS))
    all_logits = model(inputs, training=False).numpy()
    ids = inputs["input_ids"].numpy()
    assert out["num_masked"].tolist() == [(row == MASK_ID).sum() for row in ids]
    assert out["num_masked"].tolist()[:5] == [2, 0, 1, 0, 1]
    assert out["num_masked"][5] == (LENGTH - 2) // 2 and out["num_masked"][6] == 2  # Truncated; adjacent masks.
    worst = 0.0
    for row in range(len(MLM_TEXTS)):
        positions = np.flatnonzero(ids[row] == MASK_ID)
        for m, position in enumerate(positions):
            probs = tf.nn.softmax(all_logits[row, position]).numpy()
            top = np.argsort(-probs)[:3]
            assert out["masked_positions"][row, m] == position
            worst = max(worst, _max_diff(out["top_k_scores"][row, m], probs[top]))
            assert out["top_k_ids"][row, m].tolist() == top.tolist()
        assert (out["top_k_ids"][row, len(positions):] == -1).all()
        assert (out["top_k_tokens"][row, len(positions):] == b"").all()
    assert worst <= TOL
    assert out["top_k_tokens"].dtype == object and out["top_k_tokens"][0, 0, 0] != b""
    assert served["mlm/one"]["top_k_ids"].shape == (1, 0, 3)


def test_vision_round_trip(setup):
    served, model = setup["served"], setup["models"]["vision"]
    assert _max_diff(served["vision/encoded"]["logits"], model(setup["pixels"], training=False).numpy()) <= TOL
    resized = tf.image.resize(tf.cast(setup["images"], tf.float32), [32, 32], method="bilinear") / 255.0
    expected = model((resized - 0.5) / 0.5, training=False).numpy()
    for key in ("vision/bytes", "vision/images"):
        assert _max_diff(served[key]["logits"], expected) <= TOL
        assert _max_diff(served[key]["probabilities"], tf.nn.softmax(expected).numpy()) <= TOL
    assert served["vision/images/signature"] == {"images": ("uint8", [None, None, None, 3])}


def test_export_info_and_signatures(setup):
    info = json.load(open(os.path.join(setup["exports"]["classifier"], "assets.extra", "export_info.json")))
    assert info["label_list"] == ["entailment", "neutral", "contradiction"]
    assert info["signatures"] == ["encoded", "serving_default"]
    vision = json.load(open(os.path.join(setup["exports"]["vision"], "assets.extra", "export_info.json")))
    assert vision["signatures"] == ["encoded", "images", "serving_default"]


def test_classifier_without_task_name_has_single_and_pair_signatures(setup, tmp_path):
    info = export.export_saved_model(str(setup["dirs"]["classifier"]), str(tmp_path / "out"), max_seq_length=16)
    assert info["signatures"] == ["encoded", "serving_default", "text_pair"] and info["label_list"] is None
    loaded = tf.saved_model.load(str(tmp_path / "out"))
    single = loaded.signatures["serving_default"](text_a=tf.constant(["the king", ""]))
    pair = loaded.signatures["text_pair"](text_a=tf.constant(["the king"]), text_b=tf.constant(["speaks"]))
    assert set(single) == {"logits", "probabilities", "class_ids"} and single["logits"].shape == (2, 3)
    assert pair["probabilities"].shape == (1, 3)


def test_failed_export_leaves_nothing_behind(setup, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        os.makedirs(args[1])
        open(os.path.join(args[1], "saved_model.pb"), "w").write("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(str(setup["dirs"]["squad"]), str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="already exists"):
        export.export_saved_model(str(setup["dirs"]["squad"]), setup["exports"]["squad"])
    with pytest.raises(ValueError, match="has 2 labels but the model .* has 3"):
        export.export_saved_model(str(setup["dirs"]["classifier"]), str(tmp_path / "x"), task_name="sst2")
    with pytest.raises(ValueError, match="exceeds the model config's max_seq_length"):
        export.export_saved_model(str(setup["dirs"]["classifier"]), str(tmp_path / "x"), max_seq_length=LENGTH + 1)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_hdf5"])
def test_unreadable_checkpoint_is_one_error_naming_the_file(tmp_path, damage):
    config = GMLPConfig(modality="image", image_size=16, patch_size=8, d_model=8, d_ffn=16, num_layers=1,
                        num_classes=3, spatial_kind="dense")
    _tiny_run(tmp_path / "run", config, "vision", None)
    weights = saved_runs.latest_weights(str(tmp_path / "run"))
    data = open(weights, "rb").read()
    with open(weights, "wb") as f:
        f.write({"truncated": data[: len(data) // 2], "empty": b"", "not_hdf5": b"not a checkpoint " * 64}[damage])
    with pytest.raises(ValueError,
                       match=f"^no readable checkpoint in .*: cannot read checkpoint {re.escape(weights)}: ") as error:
        export.export_saved_model(str(tmp_path / "run"), str(tmp_path / "export"))
    assert "\n" not in str(error.value) and not (tmp_path / "export").exists()


def test_script_error_line_on_missing_model_dir(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "export_saved_model.py"), f"--model_dir={tmp_path}/nope",
         f"--export_dir={tmp_path}/export"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert result.returncode != 0
    assert f"export_saved_model.py: error: model directory not found: {tmp_path}/nope" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []


def test_script_exports_a_model_directory(setup, tmp_path):
    target = tmp_path / "squad_export"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "export_saved_model.py"),
         f"--model_dir={setup['dirs']['squad']}", f"--export_dir={target}"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (target / "saved_model.pb").exists() and (target / "variables").is_dir()
    assert sorted(os.listdir(tmp_path)) == ["squad_export"]  # No temporary directory left behind.


def test_vision_export_uses_the_runs_recorded_normalization(tmp_path):
    config = GMLPConfig(modality="image", image_size=16, patch_size=8, d_model=8, d_ffn=16, num_layers=1,
                        num_classes=3, spatial_kind="dense")
    model = _tiny_run(tmp_path / "run", config, "vision", None, seed=5)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    run_directory.write_image_normalization(str(tmp_path / "run"), mean, std)
    export.export_saved_model(str(tmp_path / "run"), str(tmp_path / "export"))
    images = np.random.RandomState(1).randint(0, 256, size=(2, 16, 16, 3)).astype(np.uint8)
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["images"](images=tf.constant(images))
    expected = model((images / 255.0 - np.array(mean)) / np.array(std), training=False).numpy()
    assert _max_diff(served["logits"].numpy(), expected) <= 1e-5


def test_saving_drops_only_the_line_that_lists_every_captured_variable(tmp_path):
    import logging

    from absl import logging as absl_logging

    from gmlp_tf.export import common

    class Recorder(logging.Handler):
        def __init__(self):
            super().__init__(logging.INFO)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    config = GMLPConfig(modality="image", image_size=16, patch_size=8, d_model=8, d_ffn=16, num_layers=1,
                        num_classes=3, spatial_kind="dense")
    _tiny_run(tmp_path / "run", config, "vision", None)
    module, signatures, _, _ = export.build_export_module(str(tmp_path / "run"))
    logger, recorder, verbosity = absl_logging.get_absl_logger(), Recorder(), absl_logging.get_verbosity()
    logger.addHandler(recorder)
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        tf.saved_model.save(module, str(tmp_path / "plain"), signatures=signatures)
        plain, recorder.messages = recorder.messages, []
        common.save_quietly(module, str(tmp_path / "quiet"), signatures)
    finally:
        logger.removeHandler(recorder)
        absl_logging.set_verbosity(verbosity)
    renamed = [m for m in plain if "which will be renamed" in m]
    assert renamed and len(renamed[0]) > 200  # TensorFlow's line names each captured variable.
    assert not [m for m in recorder.messages if "which will be renamed" in m]
    assert [m for m in recorder.messages if "Writing fingerprint" in m]  # Other lines still pass.
    assert not logger.filters and not tf.get_logger().filters
    assert tf.saved_model.load(str(tmp_path / "quiet")).signatures.keys() == set(signatures)


# ------------------------------------------------------------------------------ Keras model.export()
def _int32_features(n, batch=2, seed=0):
    rng = np.random.RandomState(seed)
    mask = np.ones((batch, n), np.int32)
    mask[0, n - 3:] = 0
    return {"input_ids": rng.randint(0, VOCAB, (batch, n)).astype(np.int32), "input_mask": mask,
            "segment_ids": np.concatenate([np.zeros((batch, n // 2), np.int32),
                                           np.ones((batch, n - n // 2), np.int32)], axis=1)}


def test_keras_export_of_a_fresh_classifier(tmp_path):
    # model.export(path) works on a model never called (build_preset builds the same way), and
    # serves named int32 inputs of any length up to max_seq_length.
    model = build_model(GMLPConfig(vocab_size=VOCAB, d_model=16, d_ffn=32, num_layers=1, max_seq_length=LENGTH),
                        "classification", num_labels=3)
    model.export(str(tmp_path / "classifier"), verbose=False)
    signature = tf.saved_model.load(str(tmp_path / "classifier")).signatures["serving_default"]
    _, specs = signature.structured_input_signature
    assert sorted(specs) == ["input_ids", "input_mask", "segment_ids"]
    assert all(spec.dtype == tf.int32 and spec.shape.as_list() == [None, None] for spec in specs.values())
    features = _int32_features(20)
    served = signature(**{k: tf.constant(v) for k, v in features.items()})
    assert _max_diff(next(iter(served.values())).numpy(), model(features, training=False).numpy()) <= TOL


def test_keras_export_of_the_masked_lm_model_serves_its_positions(tmp_path):
    model = build_model(GMLPConfig(vocab_size=VOCAB, d_model=16, d_ffn=32, num_layers=1, max_seq_length=LENGTH),
                        "pretraining")
    inputs = dict(_int32_features(LENGTH), masked_lm_positions=np.array([[1, 4], [0, 7]], np.int32))
    model.export(str(tmp_path / "mlm"), verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "mlm"))
    _, specs = reloaded.signatures["serving_default"].structured_input_signature
    assert sorted(specs) == sorted(inputs) and {s.dtype for s in specs.values()} == {tf.int32}
    served = reloaded.serve(inputs).numpy()
    assert served.shape == (2, 2, VOCAB) and _max_diff(served, model(inputs).numpy()) <= TOL
