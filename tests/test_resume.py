"""Exact, crash-safe resume and the NaN stop of training.fit_resumable (in process, tiny model)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_pretraining import CONFIG, SETUP, counting_features

from gmlp_tf.models import checkpoint_format, saved_runs
from gmlp_tf.runtime import run_directory, training
from gmlp_tf.tasks.pretraining import recipe as pretraining

DROPOUT_CONFIG = CONFIG.replace(hidden_dropout_prob=0.1)  # Resume must also restore the dropout RNG.


def shuffled_data(skip):
    """A seeded, reshuffled stream: a resumed run must not see its first batches again."""
    ds = tf.data.Dataset.from_tensor_slices(counting_features(96)).shuffle(96, seed=7).repeat()
    return ds.batch(8, drop_remainder=True).map(pretraining.split_features).skip(skip)


def new_model(learning_rate=SETUP.learning_rate, config=DROPOUT_CONFIG):
    keras.utils.set_random_seed(1234)  # As a fresh process with the same --random_seed would.
    return pretraining.build_pretraining_model(config, SETUP.__class__(**{**SETUP.__dict__,
                                                                         "learning_rate": learning_rate}))


class Interrupt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt (as a kill would stop the process) after optimizer step `at`."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if training.global_step(self.model) >= self.at:
            raise KeyboardInterrupt


def train(model, output_dir, steps=40, interval=10, callbacks=()):
    return training.fit_resumable(model, shuffled_data, output_dir, steps, interval, verbose=0,
                                  callbacks=callbacks, log_every_steps=5)


def test_checkpoint_segments():
    assert training.checkpoint_segments(0, 100, 10) == [(10, 10)]
    assert training.checkpoint_segments(20, 100, 30) == [(10, 1), (30, 2), (10, 1)]
    assert training.checkpoint_segments(0, 25, 10) == [(10, 2), (5, 1)]
    assert training.checkpoint_segments(25, 25, 10) == []


def test_interrupted_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    whole = new_model()
    train(whole, str(tmp_path / "whole"))
    resumed_dir = str(tmp_path / "resumed")
    rng = np.random.default_rng(0)
    at = int(rng.integers(11, 29))  # A random step between checkpoints.
    with pytest.raises(KeyboardInterrupt):
        train(new_model(), resumed_dir, callbacks=[Interrupt(at)])
    # A fresh model (another process) resumes with another checkpoint interval.
    resumed = new_model()
    train(resumed, resumed_dir, interval=15)
    assert training.global_step(resumed) == 40
    for a, b in zip(whole.weights, resumed.weights):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7, err_msg=a.path)
    steps = [c.step for c in checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(resumed_dir))]
    assert steps == [40, 30]  # Multiples of the new interval and the last step; the newest two kept.
    # A finished run trains no more, whatever it is given.
    again = new_model()
    assert train(again, resumed_dir, interval=7).history == {} and training.global_step(again) == 40


def test_nan_loss_stops_without_saving_and_keeps_the_last_good_checkpoint(tmp_path):
    output_dir = str(tmp_path)
    train(new_model(), output_dir, steps=10)
    good = checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(output_dir))
    assert [c.step for c in good] == [10]
    before = open(good[0].weights, "rb").read()
    with pytest.raises(training.NonFiniteLossError) as raised:
        train(new_model(learning_rate=1e6), output_dir, steps=40)  # Resumes step 10, then diverges.
    message = str(raised.value)
    assert "training loss is nan at step" in message or "not finite" in message, message
    assert good[0].weights in message and "\n" not in message
    assert [c.step for c in checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(output_dir))] == [10]
    assert open(good[0].weights, "rb").read() == before
    # The good checkpoint still resumes.
    model = new_model()
    assert run_directory.restore(model, output_dir).step == 10 and training.global_step(model) == 10


def test_nan_before_the_first_checkpoint_says_there_is_none(tmp_path):
    with pytest.raises(training.NonFiniteLossError, match="No checkpoint had been written"):
        train(new_model(learning_rate=1e6), str(tmp_path), steps=40, interval=40)
    assert checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(str(tmp_path))) == []


def test_non_finite_weights_are_never_written(tmp_path):
    model = new_model()
    model.optimizer.build(model.trainable_variables)
    model.encoder.blocks[0].proj_in.kernel.assign(np.full(model.encoder.blocks[0].proj_in.kernel.shape, np.nan))
    with pytest.raises(checkpoint_format.NonFiniteWeightsError, match="proj_in/kernel"):
        run_directory.save(model, str(tmp_path))
    assert not os.path.exists(saved_runs.checkpoint_dir(str(tmp_path))) or not os.listdir(
        saved_runs.checkpoint_dir(str(tmp_path)))


def test_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
    output_dir = str(tmp_path)
    train(new_model(), output_dir, steps=20)
    directory = saved_runs.checkpoint_dir(output_dir)
    newest, previous = checkpoint_format.list_checkpoints(directory)
    with open(newest.weights, "r+b") as f:  # Same size, one byte changed: only the hash sees it.
        f.seek(os.path.getsize(newest.weights) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    # An unfinished write (weights renamed, JSON not) and leftover partial files are ignored.
    open(os.path.join(directory, checkpoint_format.weights_name(30)), "wb").write(b"half")
    open(os.path.join(directory, "ckpt-00000040.partial.weights.h5"), "wb").write(b"half")
    model = new_model()
    assert run_directory.restore(model, output_dir) == previous
    assert training.global_step(model) == 10
    assert "do not match" in caplog.text and "Fell back" in caplog.text
    # Nothing readable: one line naming each file.
    with open(previous.weights, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match=r"^no readable checkpoint in .*ckpt-00000020.*ckpt-00000010[^\n]*$"):
        run_directory.restore(new_model(), output_dir)


def test_truncated_legacy_checkpoint_is_one_line(tmp_path):
    directory = saved_runs.checkpoint_dir(str(tmp_path))
    os.makedirs(directory)
    open(os.path.join(directory, saved_runs.WEIGHTS_NAME), "wb").write(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=r"cannot read checkpoint .*latest\.weights\.h5"):
        saved_runs.load_model_weights(new_model(), str(tmp_path))


def test_checkpoint_json_records_step_hash_and_rng_states(tmp_path):
    model = new_model()
    train(model, str(tmp_path), steps=10)
    (checkpoint,) = checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(str(tmp_path)))
    meta = json.load(open(checkpoint.metadata))
    assert meta["step"] == 10 and meta["size"] == os.path.getsize(checkpoint.weights)
    states = checkpoint_format.rng_state_variables(model)
    assert len(states) == len(meta["rng_states"]) > 0
    assert meta["rng_states"] == [np.asarray(v.value).tolist() for v in states]


def test_a_rerun_logs_each_recipe_change(tmp_path, caplog):
    assert run_directory.record_recipe(str(tmp_path), {"learning_rate": 1e-3, "train_batch_size": 32}) == []
    changes = run_directory.record_recipe(str(tmp_path), {"learning_rate": 5e-4, "train_batch_size": 32,
                                                          "save_checkpoints_steps": 10})
    assert changes == ["learning_rate: 0.001 -> 0.0005", "save_checkpoints_steps: None -> 10"]
    assert "Changed since the recorded run" in caplog.text and "learning_rate: 0.001 -> 0.0005" in caplog.text
    assert json.load(open(tmp_path / saved_runs.RECIPE_NAME))["learning_rate"] == 5e-4
