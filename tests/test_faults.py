"""Fault suite: run_pretraining.py killed (-9) at a random step and inside a checkpoint write, a
second run on the same directory, a diverging run; the resumed run ends as an uninterrupted one."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from test_run_pretraining import ROOT, SCRIPT, spec

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import checkpoint_format, saved_runs
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import run_directory, training
from gmlp_tf.tasks.pretraining import task as pretraining_job

STEPS, INTERVAL = 40, 10
EXAMPLE_FORMAT = "segment_pair"  # The scripts' default: resume is exact on BERT's segment pairs too.
# Runs the script with one fault: SIGKILL (or a long sleep) after optimizer step FAULT_STEP, or
# SIGKILL inside the write of checkpoint FAULT_WRITE (its weights written, not yet renamed).
DRIVER = """
import os, runpy, signal, sys, time
import keras
from gmlp_tf.runtime import training
from gmlp_tf.models import checkpoint_format

step, write, hold = (int(os.environ.get(k, -1)) for k in ("FAULT_STEP", "FAULT_WRITE", "FAULT_HOLD"))

class Fault(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        now = training.global_step(self.model)
        if now == hold:
            print("\\nholding", flush=True)
            time.sleep(120)
        if now == step:
            os.kill(os.getpid(), signal.SIGKILL)

fit = training.fit_resumable
training.fit_resumable = lambda *a, **k: fit(*a, **dict(k, callbacks=list(k.get("callbacks", ())) + [Fault()]))
save_weights = keras.Model.save_weights
def faulty_save_weights(self, path, *args, **kwargs):
    save_weights(self, path, *args, **kwargs)
    if checkpoint_format.weights_name(write).replace(".weights.h5", ".partial") in path:
        os.kill(os.getpid(), signal.SIGKILL)
keras.Model.save_weights = faulty_save_weights
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def script_flags(pretraining_files, output_dir):
    values = spec(pretraining_files, output_dir, num_train_steps=STEPS, save_checkpoints_steps=INTERVAL, do_eval=False,
                  example_format=EXAMPLE_FORMAT)
    names = ("input_file", "vocab_file", "gmlp_config_file", "output_dir", "max_seq_length", "max_predictions_per_seq",
             "train_batch_size", "learning_rate", "num_train_steps", "num_warmup_steps", "save_checkpoints_steps",
             "log_every_steps", "shuffle_buffer", "example_format")
    return [f"--{name}={getattr(values, name)}" for name in names] + ["--nodo_eval"]


def start(flags, **faults):
    env = dict(os.environ, PYTHONPATH=ROOT, **{k: str(v) for k, v in faults.items()})
    return subprocess.Popen([sys.executable, "-c", DRIVER, SCRIPT, *flags], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def weights(path):
    with h5py.File(path, "r") as f:
        values = {}
        f.visititems(lambda name, item: values.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return values


def checkpoint_steps(output_dir):
    return [c.step for c in checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(output_dir))]


def test_killed_runs_resume_to_the_weights_of_an_uninterrupted_run(pretraining_files, tmp_path):
    reference_dir, output_dir = str(tmp_path / "reference"), str(tmp_path / "run")
    pretraining_job.run(spec(pretraining_files, reference_dir, num_train_steps=STEPS, save_checkpoints_steps=INTERVAL,
                             do_eval=False, example_format=EXAMPLE_FORMAT))
    flags = script_flags(pretraining_files, output_dir)
    kill_at = int(np.random.default_rng(time.time_ns()).integers(INTERVAL + 1, 2 * INTERVAL))
    print("killing at step", kill_at)  # Shown when the test fails.

    # 1. A run held at a random step: a second run on its directory is refused; then kill -9.
    first = start(flags, FAULT_HOLD=kill_at)
    assert any(line.strip() == "holding" for line in iter(first.stdout.readline, "")), first.stderr.read()[-3000:]
    with pytest.raises(ValueError, match=f"in use by another run \\(host .*, pid {first.pid}, started "):
        pretraining_job.run(spec(pretraining_files, output_dir, num_train_steps=STEPS, do_eval=False))
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert checkpoint_steps(output_dir) == [INTERVAL]

    # 2. The rerun resumes, and is killed inside the write of the next checkpoint.
    second = start(flags, FAULT_WRITE=2 * INTERVAL)
    _, err = second.communicate(timeout=600)
    assert second.returncode == -signal.SIGKILL, err[-3000:]
    assert "no longer running" in err and f"Resuming at step {INTERVAL}" in err
    leftovers = os.listdir(saved_runs.checkpoint_dir(output_dir))
    assert any(".partial" in name for name in leftovers) and checkpoint_steps(output_dir) == [INTERVAL]

    # 3. The third run finishes: same weights and optimizer state as the uninterrupted run.
    third = subprocess.run([sys.executable, SCRIPT, *flags], env=dict(os.environ, PYTHONPATH=ROOT),
                           capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    assert checkpoint_steps(output_dir) == [STEPS, STEPS - INTERVAL]
    expected = weights(saved_runs.latest_weights(reference_dir))
    resumed = weights(saved_runs.latest_weights(output_dir))
    assert sorted(resumed) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(resumed[name], value, rtol=1e-5, atol=1e-7, err_msg=name)
    assert not os.path.exists(os.path.join(output_dir, "run.lock"))


def test_diverging_run_exits_with_one_line_and_writes_no_results(pretraining_files, tmp_path):
    output_dir = str(tmp_path / "run")
    with pytest.raises(training.NonFiniteLossError) as raised:
        pretraining_job.run(spec(pretraining_files, output_dir, learning_rate=1e6, num_train_steps=20))
    assert "training loss is" in str(raised.value) or "not finite" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not os.path.exists(os.path.join(output_dir, "eval_results.txt"))
    for checkpoint in checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(output_dir)):
        assert all(np.isfinite(v).all() for v in weights(checkpoint.weights).values() if v.dtype.kind == "f")


def test_bad_warm_start_source_is_refused_before_anything_is_written(pretraining_files, tmp_path):
    source = str(tmp_path / "source")
    os.makedirs(source)
    output_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=f"--init_checkpoint {source} holds no checkpoint"):
        pretraining_job.run(spec(pretraining_files, output_dir, init_checkpoint=source))
    assert not output_dir.exists()
    config = GMLPConfig.from_json_file(str(pretraining_files / "config.json"))
    run_directory.prepare_output_dir(source, config, "pretraining")
    saved = run_directory.save(build_model(config, "pretraining"), source)
    with open(saved.weights, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ValueError, match=f"holds no readable checkpoint: checkpoint {saved.weights} has 1000 bytes"):
        pretraining_job.run(spec(pretraining_files, output_dir, init_checkpoint=source))
    assert not output_dir.exists()
