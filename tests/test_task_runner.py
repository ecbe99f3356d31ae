"""The runner is general: a Task defined here, regression on synthetic data, gets the whole lifecycle.

RegressionTask says only what is its own (its flags, model, data, evaluation); from
gmlp_tf.runtime.runner it gets, without a line of its own for any of them: exact resume after a
kill, the NaN stop, the output-directory lock, checkpoints, and training on two localhost workers
with the chief alone writing. docs/architecture.md walks through this task.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
from typing import Any, Callable, Dict, List

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import logging
from local_ports import free_ports

from gmlp_tf.models import checkpoint_format, saved_runs
from gmlp_tf.runtime import checks, locking, runner, training
from gmlp_tf.runtime.flags import CommonSpec, option
from gmlp_tf.runtime.task import RunState, Schedule, Task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


@dataclasses.dataclass
class RegressionSpec(CommonSpec):
    """The flags of the task: its own fields beside the shared ones (output_dir, strategy, seed...)."""

    num_train_steps: int = option(12, "Training steps.")
    save_checkpoints_steps: int = option(4, "Steps between checkpoints.")
    learning_rate: float = option(0.02, "SGD learning rate.")
    batch_size: int = option(8, "Global batch size.")
    dropout: float = option(0.1, "Dropout rate (its masks are part of what resumes exactly).")
    finite_data: bool = option(False, "One pass over the examples instead of repeating them.")
    do_train: bool = option(True, "Train.")


class RegressionTask(Task):
    """y = sum(x)^2 from 4 features with a small MLP, on 64 fixed synthetic examples."""

    spec_class = RegressionSpec
    model_task = "regression"

    def __init__(self, spec: RegressionSpec) -> None:
        super().__init__(spec)
        checks.require_output_dir(spec.output_dir)
        checks.check_checkpoint_interval(spec.num_train_steps, spec.save_checkpoints_steps, spec.steps_per_execution)
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(64, 4)).astype("float32")
        self.y = (self.x.sum(1, keepdims=True) ** 2).astype("float32")

    def build_model(self) -> keras.Model:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dropout(self.spec.dropout), keras.layers.Dense(1)])
        model.compile(loss="mse")
        return model

    def compile_for_training(self, model: keras.Model) -> None:
        model.compile(optimizer=keras.optimizers.SGD(self.spec.learning_rate), loss="mse",
                      steps_per_execution=self.spec.steps_per_execution)

    def schedule(self) -> Schedule:
        return Schedule(self.spec.num_train_steps, self.spec.save_checkpoints_steps)

    def train_data(self, strategy: tf.distribute.Strategy) -> Callable[[int], tf.data.Dataset]:
        data = tf.data.Dataset.from_tensor_slices((self.x, self.y)).shuffle(64, seed=self.seed)
        data = data if self.spec.finite_data else data.repeat()
        return data.batch(self.spec.batch_size, drop_remainder=True).skip

    def callbacks(self) -> List[keras.callbacks.Callback]:
        # The test's fault, not the task's: the process kills itself after a given step.
        step = int(os.environ.get("KILL_AFTER_STEP", "-1"))
        return [KillAfterStep(step)] if step > 0 else []

    def evaluate(self, model: keras.Model, state: RunState) -> Dict[str, Any]:
        mse = float(np.mean((model.predict(self.x, verbose=0) - self.y) ** 2))
        return {"mse": mse, "global_step": state.global_step}


class KillAfterStep(keras.callbacks.Callback):
    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if training.global_step(self.model) == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main(values: Dict[str, Any]) -> None:
    """A process of this test: runs the task with the given spec fields and prints its results as JSON."""
    logging.set_verbosity(logging.INFO)  # As a script's absl app.run does: the runner's progress lines.
    print("RESULTS " + json.dumps(runner.run(RegressionTask(RegressionSpec(**values)))), flush=True)


def run_process(values: Dict[str, Any], **env: str) -> subprocess.CompletedProcess:
    code = f"import sys; sys.path.insert(0, {TESTS!r}); import test_task_runner as t; t.main({values!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT, **env))


def results_of(process: subprocess.CompletedProcess) -> Dict[str, Any]:
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULTS ")]
    assert process.returncode == 0 and lines, process.stderr[-3000:]
    return json.loads(lines[-1][len("RESULTS "):])


def test_a_run_killed_mid_interval_resumes_to_the_uninterrupted_result(tmp_path):
    reference = results_of(run_process(dict(output_dir=str(tmp_path / "reference"))))
    killed_dir = str(tmp_path / "killed")
    killed = run_process(dict(output_dir=killed_dir), KILL_AFTER_STEP="6")
    assert killed.returncode == -signal.SIGKILL
    steps = [c.step for c in checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(killed_dir))]
    assert steps == [4]  # The interval's checkpoint; steps 5-6 were lost with the process.
    resumed = run_process(dict(output_dir=killed_dir))
    assert "Resuming at step 4" in resumed.stderr
    assert results_of(resumed) == reference and reference["global_step"] == 12
    assert json.load(open(os.path.join(killed_dir, "eval_results.json"))) == reference


def test_a_diverging_run_stops_with_only_finite_checkpoints_and_frees_its_directory(tmp_path):
    output_dir = str(tmp_path / "run")
    spec = RegressionSpec(output_dir=output_dir, learning_rate=1e30, num_train_steps=8, save_checkpoints_steps=2)
    with pytest.raises(training.NonFiniteLossError, match="training loss is (nan|inf)"):
        runner.run(RegressionTask(spec))
    for checkpoint in checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(output_dir)):
        model = RegressionTask(spec).build_model()
        model.load_weights(checkpoint.weights)
        assert all(np.isfinite(w).all() for w in model.get_weights())
    assert not os.path.exists(os.path.join(output_dir, "eval_results.txt"))
    locking.acquire(output_dir)  # The failed run let go of its lock.
    locking.release_all()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_directory_behind(tmp_path):
    output_dir = str(tmp_path / "run")
    spec = RegressionSpec(output_dir=output_dir, learning_rate=1e30, num_train_steps=8, save_checkpoints_steps=4)
    with pytest.raises(training.NonFiniteLossError, match="No checkpoint had been written"):
        runner.run(RegressionTask(spec))
    assert not os.path.exists(output_dir)
    os.makedirs(output_dir)  # A directory the run did not create is left as it was.
    with pytest.raises(training.NonFiniteLossError):
        runner.run(RegressionTask(spec))
    assert sorted(os.listdir(output_dir)) == ["recipe.json", "run_info.json"]


def test_a_busy_output_directory_is_refused_before_anything_is_written(tmp_path):
    output_dir = str(tmp_path / "run")
    hold = ("import sys, time; from gmlp_tf.runtime import locking; locking.acquire(sys.argv[1]); "
            "print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold, output_dir], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=f"{output_dir} is in use by another run"):
            runner.run(RegressionTask(RegressionSpec(output_dir=output_dir)))
        assert sorted(os.listdir(output_dir)) == ["run.lock"]
    finally:
        holder.kill()
        holder.wait()




def test_two_localhost_workers_train_as_one_process_and_the_chief_alone_writes(tmp_path):
    single = results_of(run_process(dict(output_dir=str(tmp_path / "one"), dropout=0.0)))
    cluster_dir = str(tmp_path / "two")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    code = (f"import sys; sys.path.insert(0, {TESTS!r}); import test_task_runner as t; "
            f"t.main({dict(output_dir=cluster_dir, strategy='multi_worker', dropout=0.0)!r})")
    workers = [subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))) for index in range(2)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    chief, other = (json.loads([x for x in out.splitlines() if x.startswith("RESULTS ")][-1][8:])
                    for out, _ in outputs)
    assert other == {} and chief["global_step"] == 12, [err[-2000:] for _, err in outputs]
    assert chief["mse"] == pytest.approx(single["mse"], rel=1e-4)  # SGD on the same global batches.
    steps = [c.step for c in checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(cluster_dir))]
    assert steps == [12, 8]
    assert not os.path.exists(os.path.join(cluster_dir, "run.lock"))


def test_training_that_runs_out_of_data_fails_naming_the_step_and_reports_nothing(tmp_path):
    output_dir = str(tmp_path / "run")
    with pytest.raises(runner.TrainingIncompleteError, match="^training stopped at step 8 of 12: the training data "):
        # 64 examples make 8 batches; an epoch (a checkpoint interval) of 12 steps runs out of them.
        runner.run(RegressionTask(RegressionSpec(output_dir=output_dir, finite_data=True, save_checkpoints_steps=12)))
    assert not os.path.exists(os.path.join(output_dir, "eval_results.txt"))


def test_a_rerun_onto_unreadable_checkpoints_is_refused_before_the_recipe_is_rewritten(tmp_path):
    output_dir = str(tmp_path / "run")
    runner.run(RegressionTask(RegressionSpec(output_dir=output_dir, num_train_steps=4)))
    for checkpoint in checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(output_dir)):
        with open(checkpoint.weights, "r+b") as f:
            f.truncate(100)
    recipe = open(os.path.join(output_dir, saved_runs.RECIPE_NAME)).read()
    with pytest.raises(ValueError, match="^no readable checkpoint in "):
        runner.run(RegressionTask(RegressionSpec(output_dir=output_dir, num_train_steps=8, learning_rate=0.01)))
    assert open(os.path.join(output_dir, saved_runs.RECIPE_NAME)).read() == recipe


def test_evaluating_untrained_weights_says_so_loudly(tmp_path, caplog):
    results = runner.run(RegressionTask(RegressionSpec(output_dir=str(tmp_path / "run"), do_train=False)))
    assert results["global_step"] == 0
    assert any("EVALUATING UNTRAINED WEIGHTS" in r.getMessage() for r in caplog.records)
