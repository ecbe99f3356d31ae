"""--strategy=multi_worker: two worker processes on localhost (TF_CONFIG), the same flags each.

Pretraining trains as one process with the same global batch, the chief alone writes, both resume;
each finetuning script trains across the workers and the chief alone evaluates and writes, the
results of the cluster's final weights.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from local_ports import free_ports
from test_imagenet import _image_folder, _tiny_config
from test_run_pretraining import ROOT, SCRIPT, spec

from gmlp_tf.models import checkpoint_format, saved_runs
from gmlp_tf.runtime import custom_loop
from gmlp_tf.tasks.glue import task as classifier_job
from gmlp_tf.tasks.imagenet import task as imagenet_job
from gmlp_tf.tasks.pretraining import task as pretraining_job
from gmlp_tf.tasks.squad import task as squad_job


def flags(pretraining_files, output_dir, steps):
    values = spec(pretraining_files, output_dir, num_train_steps=steps, save_checkpoints_steps=10)
    names = ("input_file", "eval_input_file", "vocab_file", "gmlp_config_file", "output_dir", "max_seq_length",
             "max_predictions_per_seq", "train_batch_size", "eval_batch_size", "learning_rate", "num_train_steps",
             "num_warmup_steps", "save_checkpoints_steps", "log_every_steps", "shuffle_buffer", "example_format")
    return [f"--{name}={getattr(values, name)}" for name in names] + ["--strategy=multi_worker"]


def run_cluster(arguments, script=SCRIPT):
    """Both workers with the same command, as a cluster launcher starts them; returns their results."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=ROOT,
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen([sys.executable, script, *arguments], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
    results = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, results):
        assert worker.returncode == 0, err[-3000:]
    return results


# A worker of the custom loop's check: a small regression model, SGD (whose steps scale with the
# gradient, unlike Adam's), each worker taking its half of every global batch of 16.
LOOP_DRIVER = """
import sys
import keras, numpy as np, tensorflow as tf
from gmlp_tf.runtime import custom_loop, training
workers = int(sys.argv[1])
strategy = tf.distribute.MultiWorkerMirroredStrategy() if workers > 1 else tf.distribute.get_strategy()
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = x.sum(1, keepdims=True) ** 2

def dataset_fn(context):
    rows = context.get_per_replica_batch_size(16)
    first = context.input_pipeline_id * rows
    batches = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)
    return batches.map(lambda a, b: (a[first:first + rows], b[first:first + rows]))

with strategy.scope():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", steps_per_execution=2)
data = strategy.distribute_datasets_from_function(dataset_fn)
if workers > 1:
    custom_loop.fit(model, data, epochs=2, steps_per_epoch=6)
else:
    model.fit(data, epochs=2, steps_per_epoch=6, verbose=0)
print("step", training.global_step(model), "weights",
      *np.concatenate([w.ravel() for w in model.get_weights()]).tolist())
"""


def test_custom_loop_on_two_workers_steps_as_fit_in_one_process():
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [subprocess.Popen([sys.executable, "-c", LOOP_DRIVER, "2"], stdout=subprocess.PIPE, text=True,
                                stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=ROOT, TF_CONFIG=json.dumps(
                                    {"cluster": cluster, "task": {"type": "worker", "index": i}})))
               for i in range(2)]
    one = subprocess.run([sys.executable, "-c", LOOP_DRIVER, "1"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    outputs = [w.communicate(timeout=300) for w in workers]
    lines = [out.strip().splitlines()[-1].split() for out, _ in outputs] + [one.stdout.strip().splitlines()[-1].split()]
    assert all(line[:2] == ["step", "12"] for line in lines), [err[-2000:] for _, err in outputs]
    values = [np.array(line[3:], dtype=float) for line in lines]
    np.testing.assert_array_equal(values[0], values[1])  # The workers hold one model.
    np.testing.assert_allclose(values[0], values[2], rtol=1e-5, atol=1e-6)  # And it is fit()'s.


def test_two_workers_pretrain_as_one_process_chief_writes_and_both_resume(pretraining_files, tmp_path):
    reference_dir, cluster_dir = str(tmp_path / "one"), str(tmp_path / "two")
    single = pretraining_job.run(spec(pretraining_files, reference_dir, num_train_steps=20, save_checkpoints_steps=10))
    run_cluster(flags(pretraining_files, cluster_dir, 10) + ["--nodo_eval"])
    # Rerun with more steps: both workers resume from the chief's step-10 checkpoint.
    (chief_out, chief_err), (worker_out, worker_err) = run_cluster(flags(pretraining_files, cluster_dir, 20))
    assert "Resuming at step 10" in chief_err and "Resuming at step 10" in worker_err
    assert "perplexity = " in chief_out and "perplexity = " not in worker_out  # Results come from the chief alone.
    steps = [c.step for c in checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(cluster_dir))]
    assert steps == [20, 10]
    assert not os.path.exists(os.path.join(cluster_dir, "run.lock"))
    results = dict(line.split(" = ")
                   for line in open(os.path.join(cluster_dir, "eval_results.txt")).read().splitlines())
    assert int(results["global_step"]) == 20
    # The same global batches, but each replica divides its loss by its own masked-token count
    # (as BERT does per TPU core), and Adam's steps hardly depend on the gradient's size: close,
    # not equal (the SGD check above is exact).
    print(f"perplexity: two workers {float(results['perplexity']):.2f}, one process {single['perplexity']:.2f}")
    assert abs(float(results["perplexity"]) - single["perplexity"]) < 0.05 * single["perplexity"]


@pytest.fixture(scope="module")
def pretrained(pretraining_files, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("multi_worker") / "pretrained")
    pretraining_job.run(spec(pretraining_files, output_dir, num_train_steps=10, do_eval=False))
    return output_dir


def finetuning_cases(pretrained, pretraining_files, tmp_path):
    """(script, job module, flags) of a tiny run of each finetuning script."""
    glue_dir = os.path.join(ROOT, "tests", "fixtures", "glue")
    squad_file = os.path.join(ROOT, "tests", "fixtures", "squad", "sample-v1.1.json")
    images = _image_folder(tmp_path / "images", corrupt=False)
    return {
        "classifier": ("run_classifier.py", classifier_job, dict(
            task_name="sst2", data_dir=glue_dir, init_checkpoint=pretrained, max_seq_length=32, train_batch_size=2,
            eval_batch_size=3, learning_rate=1e-3, num_train_epochs=2.0, do_predict=True)),
        "squad": ("run_squad.py", squad_job, dict(
            vocab_file=str(pretraining_files / "spm.model"), gmlp_config_file=str(pretraining_files / "config.json"),
            train_file=squad_file, predict_file=squad_file, do_train=True, do_predict=True, max_seq_length=32,
            doc_stride=8, max_query_length=8, train_batch_size=4, predict_batch_size=4, learning_rate=3e-3,
            num_train_steps=4, num_warmup_steps=1, save_checkpoints_steps=2, max_answer_length=10)),
        "imagenet": ("run_imagenet.py", imagenet_job, dict(
            data_dir=images, gmlp_config_file=_tiny_config(tmp_path / "image_config.json"), train_batch_size=4,
            eval_batch_size=4, num_train_epochs=2.0, shuffle_buffer=16, rand_augment=False)),
    }


@pytest.mark.parametrize("case", ["classifier", "squad", "imagenet"])
def test_finetuning_on_two_workers_chief_evaluates_the_trained_weights(case, pretrained, pretraining_files, tmp_path):
    script, job, values = finetuning_cases(pretrained, pretraining_files, tmp_path)[case]
    output_dir = str(tmp_path / "run")
    arguments = [f"--{name}={value}" if not isinstance(value, bool) else f"--{'' if value else 'no'}{name}"
                 for name, value in values.items()]
    (chief_out, chief_err), (worker_out, worker_err) = run_cluster(
        arguments + [f"--output_dir={output_dir}", "--strategy=multi_worker"], os.path.join(ROOT, "scripts", script))
    assert " = " in chief_out and " = " not in worker_out  # Results come from the chief alone.
    assert not os.path.exists(os.path.join(output_dir, "run.lock"))
    steps = [c.step for c in checkpoint_format.list_checkpoints(saved_runs.checkpoint_dir(output_dir))]
    assert steps and steps[0] == {"classifier": 4, "squad": 4, "imagenet": 6}[case]
    reported = json.load(open(os.path.join(output_dir, "eval_results.json")))
    # The same job in one process on the finished directory trains no more and evaluates the
    # cluster's final checkpoint: the chief's results are those of the trained weights.
    again = job.run(job.JobSpec(output_dir=output_dir, **values))
    for key, value in reported.items():
        if key != "wall_time_s":
            assert again[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_distribute_gives_each_replica_its_rows_of_every_global_batch(two_replica_strategy):
    rows = np.arange(24, dtype="float32").reshape(12, 2)
    batches = tf.data.Dataset.from_tensor_slices((rows, rows[:, 0])).batch(4, drop_remainder=True)
    data = custom_loop.distribute(two_replica_strategy, batches)
    seen = [[two_replica_strategy.experimental_local_results(part) for part in batch] for batch in data]
    assert len(seen) == 3
    for index, ((x0, x1), (y0, y1)) in enumerate(seen):
        np.testing.assert_array_equal(np.concatenate([x0, x1]), rows[4 * index:4 * index + 4])  # In replica order.
        np.testing.assert_array_equal(np.concatenate([y0, y1]), rows[4 * index:4 * index + 4, 0])
        assert x0.shape == (2, 2)  # Static shapes kept: Keras layers need them.
    with pytest.raises(ValueError, match="a batch of 3 does not divide among 2 replicas"):
        custom_loop.distribute(two_replica_strategy,
                               tf.data.Dataset.from_tensor_slices(rows).batch(3, drop_remainder=True))


def test_a_demo_across_workers_needs_its_pretrained_encoder(tmp_path):
    with pytest.raises(ValueError, match="holds no pretrained checkpoint: run scripts/run_pretraining.py first"):
        classifier_job.run(classifier_job.JobSpec(init_checkpoint=str(tmp_path / "none"), strategy="multi_worker"))
