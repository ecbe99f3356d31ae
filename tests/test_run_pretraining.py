"""run_pretraining.py end to end on small fixtures: a real run, resume, TFDS c4/en, bad input."""

import dataclasses
import math
import os
import subprocess
import sys

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from text_fixtures import fake_sentences

from gmlp_tf import tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import training
from gmlp_tf.tasks.pretraining import task as pretraining_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "run_pretraining.py")
VOCAB = 120
CONFIG_OF_FIXTURE = GMLPConfig(vocab_size=VOCAB, d_model=32, d_ffn=64, num_layers=2, max_seq_length=32)


@pytest.fixture
def fixture_dir(pretraining_files):
    return pretraining_files


def spec(fixture_dir, output_dir=None, **changes):
    values = dict(
        input_file=str(fixture_dir / "train.txt"),
        eval_input_file=str(fixture_dir / "eval.txt"),
        vocab_file=str(fixture_dir / "spm.model"),
        gmlp_config_file=str(fixture_dir / "config.json"),
        output_dir=str(output_dir),
        max_seq_length=32,
        max_predictions_per_seq=5,
        train_batch_size=8,
        eval_batch_size=8,
        learning_rate=5e-3,
        num_train_steps=30,
        num_warmup_steps=3,
        save_checkpoints_steps=10,
        log_every_steps=5,
        shuffle_buffer=256,  # Not the default 40,000 sequences of 32 tokens: filling that takes seconds.
        # Packed examples build twice as fast; the default segment pairs have tests of their own
        # (test_segment_pairs_are_the_default..., test_pretraining_data.py, the fault suite's script runs).
        example_format="packed",
        # The default compiles the step with XLA: seconds per tiny run. The fault suite's script runs keep it,
        # and test_the_train_step_compiles_with_xla_on_one_replica checks the choice.
        jit_compile=False,
    )
    values.update(changes)
    return pretraining_job.JobSpec(**values)


def read_results(output_dir):
    lines = open(os.path.join(output_dir, "eval_results.txt")).read().splitlines()
    return {k: float(v) for k, v in (line.split(" = ") for line in lines)}


def test_tiny_run_learns_and_resumes(fixture_dir, tmp_path, monkeypatch):
    evaluated_at = []
    evaluate = pretraining_job.mlm.evaluate

    def counting_evaluate(*args, **kwargs):
        results = evaluate(*args, **kwargs)
        evaluated_at.append(results["global_step"])
        return results

    monkeypatch.setattr(pretraining_job.mlm, "evaluate", counting_evaluate)
    results = pretraining_job.run(spec(fixture_dir, tmp_path))
    assert results["global_step"] == 30
    assert evaluated_at == [10, 20, 30]  # The final results reuse the evaluation of the last checkpoint.
    # An untrained model scores about the vocabulary size; the fixture's words are drawn at
    # random, so the unigram baseline (also reported) is the best any model can do on it.
    assert results["perplexity"] < VOCAB / 1.3
    assert results["unigram_perplexity"] < VOCAB
    assert read_results(tmp_path)["perplexity"] == pytest.approx(results["perplexity"])
    assert read_results(tmp_path)["loss"] == pytest.approx(math.log(results["perplexity"]), rel=1e-5)
    # TensorBoard by global step: training scalars every 5 steps, held-out ones at each checkpoint.
    train_logs = training.read_scalars(os.path.join(tmp_path, "logs", "train"))
    eval_logs = training.read_scalars(os.path.join(tmp_path, "logs", "eval"))
    assert [step for step, _ in train_logs["masked_lm_accuracy"]] == [5, 10, 15, 20, 25, 30]
    assert [step for step, _ in eval_logs["perplexity"]] == [10, 20, 30]
    assert eval_logs["perplexity"][-1][1] == pytest.approx(results["perplexity"], rel=1e-5)
    assert saved_runs.latest_weights(str(tmp_path)).endswith("ckpt-00000030.weights.h5")
    for name in ("gmlp_config.json", "run_info.json", "vocab.model"):
        assert os.path.exists(tmp_path / name), name
    # Rerunning with a longer schedule continues from step 30 rather than starting again.
    more = pretraining_job.run(spec(fixture_dir, tmp_path, num_train_steps=40))
    assert more["global_step"] == 40


def test_the_train_step_compiles_with_xla_on_one_replica(fixture_dir, tmp_path, two_replica_strategy):
    job = pretraining_job.PretrainingTask(spec(fixture_dir, tmp_path, jit_compile=True, do_eval=False))
    job.prepare(tf.distribute.get_strategy())
    model = job.build_model()
    job.compile_for_training(model)
    assert job.jit_compile is True and model.jit_compile is True
    job.prepare(two_replica_strategy)  # Keras keeps XLA off under tf.distribute on CPUs and GPUs.
    assert job.jit_compile == "auto"
    off = pretraining_job.PretrainingTask(spec(fixture_dir, tmp_path, jit_compile=False, do_eval=False))
    off.prepare(tf.distribute.get_strategy())
    assert off.jit_compile == "auto"


def test_long_sequences_train_through_the_fft_path(fixture_dir, tmp_path):
    """1024-token packed sequences (the auto implementation takes the FFT from 1024 tokens on) train and evaluate."""
    long_config = CONFIG_OF_FIXTURE.replace(max_seq_length=1024)
    long_config.to_json_file(str(tmp_path / "long.json"))
    long_spec = spec(fixture_dir, tmp_path / "run", gmlp_config_file=str(tmp_path / "long.json"), max_seq_length=1024,
                     max_predictions_per_seq=154, train_batch_size=2, eval_batch_size=None, num_train_steps=6,
                     num_warmup_steps=1, save_checkpoints_steps=6, log_every_steps=3, max_eval_steps=1,
                     shuffle_buffer=4)
    job = pretraining_job.PretrainingTask(long_spec)
    features = next(iter(job.dataset(job.train_source, True, 2)))
    assert features["input_ids"].shape == (2, 1024)
    assert int(tf.reduce_max(tf.reduce_sum(features["input_mask"], axis=1))) == 1024  # Sentences packed to full length.
    model = build_model(long_config, "pretraining")
    projections = [layer for layer in model._flatten_layers() if type(layer).__name__ == "SpatialProjection"]
    assert len(projections) == 2 and all(p.uses_fft(1024) for p in projections)
    results = pretraining_job.run(long_spec)
    assert results["global_step"] == 6 and results["eval_batches"] == 1
    assert math.isfinite(results["perplexity"]) and results["perplexity"] < VOCAB * 1.5


def test_gmlp_long_preset_demo_uses_the_long_recipe_and_its_own_directory(monkeypatch):
    from gmlp_tf.presets import get_preset_config
    from gmlp_tf.tasks.pretraining import demo_data

    corpus = demo_data.DemoCorpus(("train.txt",), ("eval.txt",), "cache")
    monkeypatch.setattr(demo_data, "fetch_demo_corpus", lambda: corpus)
    monkeypatch.setattr(demo_data, "demo_vocab", lambda: "demo.model")
    long_demo = pretraining_job.demo_spec(pretraining_job.JobSpec(preset="gmlp_long"))
    assert long_demo.setup == "long_demo" and long_demo.output_dir == os.path.join("output", "pretraining_gmlp_long")
    setup = pretraining_job.pretraining_recipe(long_demo)
    config = get_preset_config("gmlp_long")
    assert setup.max_seq_length == config.max_seq_length == 4096
    assert config.spatial_kind == "toeplitz" and config.spatial_implementation == "auto"
    default_demo = pretraining_job.demo_spec(pretraining_job.JobSpec())
    assert default_demo.setup == "demo" and default_demo.output_dir == os.path.join("output", "pretraining_demo")


def test_tfds_c4_en_path_through_mock_data(fixture_dir, tmp_path):
    texts = fake_sentences(300, seed=5)

    def as_dataset(self, split, *args, **kwargs):
        rows = texts if split == "train" else texts[:64]
        return tf.data.Dataset.from_tensor_slices({
            "text": rows, "url": ["u"] * len(rows), "content-type": ["t"] * len(rows),
            "content-length": ["1"] * len(rows), "timestamp": ["0"] * len(rows)})

    with tfds.testing.mock_data(num_examples=300, as_dataset_fn=as_dataset):
        results = pretraining_job.run(
            spec(fixture_dir, tmp_path, input_file=None, eval_input_file=None, tfds_name="c4/en",
                 num_train_steps=10, max_eval_steps=4)
        )
    assert results["global_step"] == 10 and results["perplexity"] > 1.0


def test_pretraining_from_tfrecords(fixture_dir, tmp_path):
    from gmlp_tf.tasks.pretraining import data as pretraining_data
    from gmlp_tf.tasks.pretraining import sources, tfrecords

    sp_model = tokenization.load_sp_model(str(fixture_dir / "spm.model"))
    for name, is_training in (("train", True), ("eval", False)):
        features = pretraining_data.make_pretraining_dataset(
            sources.TextFilesSource(str(fixture_dir / f"{name}.txt")), is_training=is_training,
            sp_model=sp_model, max_seq_length=32, max_predictions_per_seq=5, batch_size=8, seed=3,
            repeat=False, shuffle_buffer=64, drop_remainder=False,
        )
        assert tfrecords.write_tfrecords(features, str(tmp_path / f"{name}.tfrecord")) > 0
    results = pretraining_job.run(
        spec(fixture_dir, tmp_path / "out", input_file=str(tmp_path / "train.tfrecord"),
             eval_input_file=str(tmp_path / "eval.tfrecord"), input_format="tfrecord", num_train_steps=10)
    )
    assert results["global_step"] == 10 and "unigram_perplexity" not in results
    # A truncated file (its first record whole) is one error naming it, and the new run leaves nothing.
    data = (tmp_path / "train.tfrecord").read_bytes()
    first = 16 + int.from_bytes(data[:8], "little")  # A record: length, its CRC, the data, the data's CRC.
    (tmp_path / "train.tfrecord").write_bytes(data[: first + 20])  # The second record cut short.
    truncated = str(tmp_path / "train.tfrecord")
    with pytest.raises(ValueError, match=f"^{truncated} is a damaged TFRecord file \\(.*truncated"):
        pretraining_job.run(spec(fixture_dir, tmp_path / "again", input_file=truncated, input_format="tfrecord",
                                 eval_input_file=str(tmp_path / "eval.tfrecord"), num_train_steps=40,
                                 save_checkpoints_steps=40))
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"input_file": "/no/such/*.txt"}, "no files match '/no/such/\\*.txt'"),
        ({"input_file": "EMPTY"}, "input file is empty"),
        ({"eval_input_file": "TRAIN"}, "evaluation files are also training files"),
        ({"max_seq_length": 64}, "max_seq_length 64 exceeds the model config's max_seq_length 32"),
        ({"gmlp_config_file": None, "preset": "gmlp_base"},
         "vocabulary size mismatch: .* 120 pieces .* vocab_size 32000"),
        ({"input_file": None, "tfds_name": "c4/nope"}, "unknown TFDS dataset|BuilderConfig nope not found"),
        ({"output_dir": "BLOCKED"}, "is not writable"),
        ({"strategy": "parameter_server"}, "unknown strategy .parameter_server."),
        ({"num_train_steps": 30, "steps_per_execution": 4}, "multiple of --steps_per_execution"),
        ({"preset": "gmlp_huge", "gmlp_config_file": None}, "unknown preset"),
        ({"input_file": "BINARY"}, r"binary.gz is not UTF-8 text \(a binary byte at offset 1\)"),
        ({"eval_input_file": "BINARY"}, r"binary.gz is not UTF-8 text"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(fixture_dir, tmp_path, changes, message):
    output_dir = tmp_path / "out"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    (tmp_path / "binary.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))  # gzip's magic, then bytes.
    aliases = {"EMPTY": str(fixture_dir / "empty.txt"), "TRAIN": str(fixture_dir / "train.txt"),
               "BLOCKED": str(blocker / "out"), "BINARY": str(tmp_path / "binary.gz")}
    changes = {k: aliases.get(v, v) if isinstance(v, str) else v for k, v in changes.items()}
    changes.setdefault("output_dir", str(output_dir))
    with pytest.raises(ValueError, match=message):
        pretraining_job.run(spec(fixture_dir, **changes))
    assert not output_dir.exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"learning_rate": -1.0}, "--learning_rate must be positive, got -1.0"),
        ({"learning_rate": 0.0}, "--learning_rate must be positive, got 0.0"),
        ({"train_batch_size": 0}, "--train_batch_size must be positive, got 0"),
        ({"eval_batch_size": -8}, "--eval_batch_size must be positive, got -8"),
        ({"num_train_steps": 0}, "--num_train_steps must be positive, got 0"),
        ({"save_checkpoints_steps": 0}, "--save_checkpoints_steps must be positive, got 0"),
        ({"save_checkpoints_steps": -10}, "--save_checkpoints_steps must be positive, got -10"),
        ({"num_warmup_steps": -3}, "--num_warmup_steps must be non-negative, got -3"),
        ({"num_warmup_steps": 40}, r"--num_warmup_steps \(40\) exceeds --num_train_steps \(30\)"),
        ({"max_eval_steps": 0}, "--max_eval_steps must be positive, got 0"),
        ({"weight_decay": -0.1}, "--weight_decay must be non-negative, got -0.1"),
        ({"log_every_steps": 0}, "--log_every_steps must be positive, got 0"),
        # The demo (no data flags): refused before the demo corpus is fetched.
        ({"input_file": None, "eval_input_file": None, "save_checkpoints_steps": 0},
         "--save_checkpoints_steps must be positive, got 0"),
    ],
)
def test_bad_numeric_flag_is_one_clear_error_and_writes_nothing(fixture_dir, tmp_path, changes, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        pretraining_job.run(spec(fixture_dir, tmp_path / "out", **changes))
    assert not (tmp_path / "out").exists()


def test_script_save_checkpoints_steps_0_is_one_error_line(tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, "--save_checkpoints_steps=0", f"--output_dir={tmp_path}/out"],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "run_pretraining.py: error: --save_checkpoints_steps must be positive, got 0")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("perplexity, unigram, says", [
    (20.0, 80.0, "(4.0x lower)"),
    (80.0, 20.0, "(4.0x higher)"),
    (50.0, 50.0, "(the same)"),
    (50.0, 51.0, "(1.020x lower)"),
    (float("nan"), 80.0, "(not comparable: a perplexity is not finite and positive)"),
    (float("inf"), 80.0, "(not comparable: a perplexity is not finite and positive)"),
])
def test_report_says_lower_only_when_the_model_beats_the_baseline(perplexity, unigram, says):
    lines = pretraining_job.report_lines({"perplexity": perplexity, "unigram_perplexity": unigram})
    assert lines[-1].startswith("Held-out masked-LM perplexity") and lines[-1].endswith(" " + says)


def test_script_reports_errors_in_one_line(fixture_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, SCRIPT, f"--input_file={fixture_dir}/missing.txt", f"--output_dir={tmp_path}/out",
         f"--vocab_file={fixture_dir}/spm.model", f"--gmlp_config_file={fixture_dir}/config.json",
         "--max_seq_length=32"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode != 0
    assert "run_pretraining.py: error: no files match" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_init_checkpoint_warm_starts_only_a_fresh_output_dir(fixture_dir, tmp_path, monkeypatch):
    pretraining_job.run(spec(fixture_dir, tmp_path / "a", num_train_steps=10, do_eval=False))
    calls = []
    real_warm_start = saved_runs.warm_start
    monkeypatch.setattr(saved_runs, "warm_start", lambda *args: calls.append(real_warm_start(*args)))
    warm = spec(fixture_dir, tmp_path / "b", num_train_steps=10, init_checkpoint=str(tmp_path / "a"), do_eval=False)
    pretraining_job.run(warm)
    restored, new = calls[0]
    assert len(restored) == len(build_model(CONFIG_OF_FIXTURE, "pretraining").weights) and not new
    assert saved_runs.latest_weights(str(tmp_path / "b")).endswith("ckpt-00000010.weights.h5")  # Its own steps.
    # b now has a checkpoint: rerunning resumes it and leaves --init_checkpoint alone.
    pretraining_job.run(dataclasses.replace(warm, num_train_steps=20))
    assert saved_runs.latest_weights(str(tmp_path / "b")).endswith("ckpt-00000020.weights.h5") and len(calls) == 1


def test_segment_pairs_are_the_default_and_short_seq_prob_is_checked(fixture_dir, tmp_path):
    assert pretraining_job.JobSpec().example_format == "segment_pair"  # The paper follows BERT's input protocol.
    job = pretraining_job.PretrainingTask(spec(fixture_dir, tmp_path, example_format="segment_pair"))
    # Both segments, and [PAD] in the short ones (the fault suite's script runs train on these).
    batch = next(iter(job.dataset(job.train_source, True, 64)))
    assert (batch["segment_ids"].numpy() == 1).any() and (batch["input_mask"].numpy() == 0).any()
    with pytest.raises(ValueError, match="short_seq_prob must be in \\[0, 1\\], got 2.0"):
        pretraining_job.PretrainingTask(spec(fixture_dir, tmp_path / "x", short_seq_prob=2.0))
    packed = pretraining_job.PretrainingTask(spec(fixture_dir, tmp_path, example_format="packed"))
    batch = next(iter(packed.dataset(packed.train_source, True, 8)))
    assert (batch["segment_ids"].numpy() == 0).all()
