"""gmlp_tf.utils.progress: stage lines, periodic loop lines, prediction progress, and the steps that log them."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from text_fixtures import fake_sentences

from gmlp_tf import export, tokenization
from gmlp_tf.models import saved_runs, timm_convert
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import run_directory
from gmlp_tf.utils import progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMM_SAFETENSORS = os.path.join(ROOT, "tests", "fixtures", "timm", "tiny_gmlp.safetensors")


class FakeClock:
    """A clock for tests: each call returns `now` and then advances it by `step`; tests may move `now` too."""

    def __init__(self, step=0.0):
        self.now, self.step = 100.0, step

    def __call__(self):
        now = self.now
        self.now += self.step
        return now


class Recorder:
    """Stands in for absl logging in gmlp_tf.utils.progress: records (level name, text).

    (Not caplog: in a process whose absl flags were never parsed, as pytest's, absl's logger is at
    WARNING again after tf.saved_model.save, which would hide the export's later lines.)
    """

    def __init__(self):
        self.lines = []

    def info(self, message, *args):
        self.lines.append(("INFO", message % args))

    def warning(self, message, *args):
        self.lines.append(("WARNING", message % args))


@pytest.fixture
def lines(monkeypatch):
    """A function returning what gmlp_tf.utils.progress has logged so far, as (level name, text)."""
    recorder = Recorder()
    monkeypatch.setattr(progress, "logging", recorder)
    return lambda: list(recorder.lines)


def test_stage_logs_start_and_done_lines(lines):
    clock = FakeClock()
    with progress.stage("Reading the checkpoint x.pth (1.0 MB)", clock=clock) as step:
        clock.now += 12.34
        step.result = "26 tensors"
    assert lines() == [("INFO", "Reading the checkpoint x.pth (1.0 MB) ..."),
                       ("INFO", "Reading the checkpoint x.pth (1.0 MB): done in 12.3 s (26 tensors)")]


def test_failed_stage_logs_the_failure_and_reraises(lines):
    clock = FakeClock()
    with pytest.raises(ValueError, match="bad checkpoint"):
        with progress.stage("Converting", clock=clock):
            clock.now += 1.5
            raise ValueError("bad checkpoint")
    assert lines() == [("INFO", "Converting ..."), ("WARNING", "Converting: failed after 1.5 s")]
    assert not any("done" in text for _, text in lines())


def test_log_every_yields_every_item_and_logs_at_most_every_interval(lines):
    clock = FakeClock(step=3.0)  # Every clock call is 3 s later: a line at most every 4 calls (10 s).
    items = [object() for _ in range(10)]
    assert list(progress.log_every(items, "Decoding answers", interval_s=10, clock=clock)) == items
    logged = [text for _, text in lines()]
    # The start (t=100) and then one call per item: lines at t=112 (item 4) and t=124 (item 8), then the last.
    assert [text.split(" (")[0] for text in logged] == [
        "Decoding answers: 4/10", "Decoding answers: 8/10", "Decoding answers: 10/10"]
    assert logged[0] == "Decoding answers: 4/10 (0.33/s, ETA 18.0 s)"
    assert logged[-1] == "Decoding answers: 10/10 (0.30/s)"  # At t=133: 10 items in 33 s.


def test_log_every_is_quiet_for_a_short_loop_and_counts_without_a_total(lines):
    assert list(progress.log_every(iter(range(5)), "Fast", interval_s=10, clock=FakeClock(step=1.0))) == list(range(5))
    assert lines() == []
    list(progress.log_every((i for i in range(3)), "Sentences", interval_s=1, clock=FakeClock(step=1.0)))
    assert [text for _, text in lines()] == ["Sentences: 1 (1.00/s)", "Sentences: 2 (1.00/s)", "Sentences: 3 (1.00/s)"]


def test_formats():
    assert progress.format_duration(12.34) == "12.3 s"
    assert progress.format_duration(245) == "4 min 05 s"
    assert progress.format_duration(3725) == "1 h 02 min"
    assert progress.format_bytes(512) == "512 B"
    assert progress.format_bytes(5_200_000) == "5.2 MB"
    assert progress.progress_line("Windows", 1200, 10000, 100.0, "batches") == (
        "Windows: 1,200/10,000 batches (12/s, ETA 12 min 13 s)")


def test_predict_logs_batches_when_not_in_a_terminal(lines):
    # pytest captures stdout, so this is the log-file case: no Keras bar, periodic lines instead.
    assert not progress.interactive() and progress.keras_verbosity() == 0
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    data = tf.data.Dataset.from_tensor_slices(np.ones((10, 3), np.float32)).batch(2)
    outputs = progress.predict(model, data, "Predicting 10 rows", interval_s=10, clock=FakeClock(step=6.0))
    assert outputs.shape == (10, 2)
    logged = [text for _, text in lines()]
    assert logged[0] == "Predicting 10 rows ..." and logged[-1].startswith("Predicting 10 rows: done in ")
    batches = [text.split(" (")[0] for text in logged[1:-1]]
    assert batches and batches[-1] == "Predicting 10 rows: 5/5 batches"
    assert all(b.startswith("Predicting 10 rows: ") and b.endswith("/5 batches") for b in batches)


def test_keras_bar_only_in_a_terminal_keras_prints_to(monkeypatch):
    class Terminal:
        def isatty(self):
            return True

    monkeypatch.setattr(progress.sys, "stdout", Terminal())
    assert progress.keras_verbosity() == 1
    keras.config.disable_interactive_logging()  # Keras then writes its bar lines to absl logging.
    try:
        assert progress.keras_verbosity() == 0
    finally:
        keras.config.enable_interactive_logging()


def test_timm_conversion_logs_its_stages(lines):
    converted = timm_convert.load_timm_model(TIMM_SAFETENSORS, stage=progress.stage)
    assert converted.config.num_layers == 2
    logged = [text for _, text in lines()]
    started = [text[: -len(" ...")] for text in logged if text.endswith(" ...")]
    size = os.path.getsize(TIMM_SAFETENSORS) / 1e3  # A small fixture: kB.
    assert started == [f"Reading the checkpoint {TIMM_SAFETENSORS} ({size:.1f} kB)",
                       "Building the Keras model (a config inferred from the checkpoint)",
                       "Converting 26 tensors to the Keras layout", "Assigning 26 weights to the Keras model"]
    assert [text.split(": done in ")[0] for text in logged if ": done in " in text] == started


def test_vocabulary_training_logs_its_stage_and_what_it_read(lines, tmp_path):
    tokenization.train_sentencepiece(None, str(tmp_path / "v"), vocab_size=100, character_coverage=1.0,
                                     sentence_iterator=iter(fake_sentences(300)), input_sentence_size=1000)
    logged = [text for _, text in lines()]
    description = ("Training a 100-piece unigram SentencePiece vocabulary on the given sentences "
                   "(at most 1,000 sentences sampled)")
    assert logged[0] == description + " ..."
    assert logged[-1].startswith(description + ": done in ")
    num_bytes = sum(len(s.encode("utf-8")) for s in fake_sentences(300))
    assert logged[-1].endswith(f"(read 300 sentences, {progress.format_bytes(num_bytes)})")


def test_export_logs_its_stages(lines, tmp_path, tiny_image_config):
    run = str(tmp_path / "run")
    model = build_model(tiny_image_config, "vision")
    run_directory.prepare_output_dir(run, tiny_image_config, "vision")
    os.makedirs(saved_runs.checkpoint_dir(run))
    model.save_weights(os.path.join(saved_runs.checkpoint_dir(run), saved_runs.WEIGHTS_NAME))
    export.export_saved_model(run, str(tmp_path / "export"))
    logged = [text for _, text in lines()]
    started = [text[: -len(" ...")] for text in logged if text.endswith(" ...")]
    assert started == [
        f"Loading the vision model from {saved_runs.latest_weights(run)}", "Building the vision serving module",
        f"Tracing the signatures encoded, images, serving_default and writing the SavedModel to {tmp_path / 'export'}"]
    assert [text.split(": done in ")[0] for text in logged if ": done in " in text] == started
