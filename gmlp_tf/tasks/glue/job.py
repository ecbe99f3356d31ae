"""One run_classifier.py job: GLUE (or the demo's sentiment set) finetuning, evaluation, prediction.

The script turns its flags into a JobSpec and calls `run`. With several learning rates or seeds
the job finetunes once per (learning rate, seed) in its own subdirectory and reports, per
learning rate, the median over seeds (the paper reports the median of five runs).
"""

import dataclasses
import os
import statistics
from typing import Optional

import keras
from absl import logging

from gmlp_tf import tokenization
from gmlp_tf.runtime import checkpointing
from gmlp_tf.tasks.glue import data as glue
from gmlp_tf.tasks.glue import metrics as glue_metrics
from gmlp_tf.tasks.pretraining import job as pretraining_job
from gmlp_tf.tasks.glue import demo_data as sentiment_demo
from gmlp_tf.runtime import training
from gmlp_tf.tasks.glue.pipeline import classifier_dataset
from gmlp_tf.config import GMLPConfig
from gmlp_tf.runtime.flags import CommonSpec
from gmlp_tf.runtime.distribution import get_strategy
from gmlp_tf.runtime.finetuning import (
    FinetuneSetup,
    compile_classifier,
    finetuning_config,
    finetuning_optimizer,
    load_model_files,
    predictions_from_logits,
)
from gmlp_tf.models.task_models import build_model

DEMO_TASK = "sst2"  # The demo's movie-review sentences are SST-2's task: labels 0 / 1, accuracy.
# A 4-block, 128-wide model learns faster than Table 9's base-size rates allow in 5 epochs.
DEMO_SETUP = FinetuneSetup(max_seq_length=64, learning_rate=5e-4, num_train_epochs=5.0)


@dataclasses.dataclass
class JobSpec(CommonSpec):
    """The flags of run_classifier.py (see the script for their help)."""

    task_name: Optional[str] = None
    data_dir: Optional[str] = None
    use_tfds: bool = False
    tfds_data_dir: Optional[str] = None
    vocab_file: Optional[str] = None
    gmlp_config_file: Optional[str] = None
    do_train: bool = True
    do_eval: bool = True
    do_predict: bool = False
    max_seq_length: Optional[int] = None
    train_batch_size: Optional[int] = None
    eval_batch_size: int = 32
    learning_rate: Optional[float] = None
    learning_rates: Optional[str] = None
    num_seeds: int = 1
    num_train_epochs: Optional[float] = None
    warmup_proportion: Optional[float] = None
    random_seed: int = 12345

    @property
    def is_demo(self):
        return not (self.task_name or self.data_dir or self.use_tfds)


@dataclasses.dataclass
class Job:
    spec: JobSpec
    task: glue.GlueTask
    setup: FinetuneSetup
    config: GMLPConfig
    sp_model: bytes
    output_dir: str
    train: list
    evals: dict  # split name -> examples
    tests: dict  # (task, split) -> examples, for submission files
    learning_rates: tuple


# ---------------------------------------------------------------------------------- resolving
def resolve(spec: JobSpec, demo_output_dir: str, demo_pretraining_dir: str) -> Job:
    """Fills in defaults (the demo's when no task is given), reads the data, checks everything."""
    if spec.is_demo:
        return _resolve_demo(spec, demo_output_dir, demo_pretraining_dir)
    if not spec.task_name:
        raise ValueError("--task_name is required (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli, ax)")
    task = glue.get_task(spec.task_name)
    if task.name != task.model_task:
        raise ValueError(
            f"{task.display_name} has no training data: it is predicted with a {task.model_task} model "
            f"(--task_name={task.model_task} --do_predict)"
        )
    if not spec.output_dir:
        raise ValueError("--output_dir is required")
    if bool(spec.data_dir) == bool(spec.use_tfds):
        raise ValueError("give the data: --data_dir (GLUE TSV files) or --use_tfds, one of them")
    setup = _setup(spec, FinetuneSetup())
    config, sp_model = load_model_files(spec.init_checkpoint, spec.gmlp_config_file, spec.vocab_file)
    _check_length(setup, config)

    def read(t, split):
        if spec.use_tfds:
            return glue.read_tfds_examples(t, split, spec.tfds_data_dir)
        return glue.read_tsv_examples(t, spec.data_dir, split)

    train = read(task, glue.TRAIN) if spec.do_train else []
    evals = {split: read(task, split) for split in glue.eval_splits(task)} if spec.do_eval else {}
    tests = {}
    if spec.do_predict:
        for t in [task] + [t for t in glue.TASKS.values() if t.model_task == task.name and t is not task]:
            for split in glue.test_splits(t):
                try:
                    tests[(t.name, split)] = read(t, split)
                except FileNotFoundError as err:
                    if t is task:
                        raise
                    logging.warning("Not predicting %s: %s", t.display_name, err)
    return Job(spec, task, setup, config, sp_model, spec.output_dir, train, evals, tests, _learning_rates(spec, setup))


def _resolve_demo(spec, demo_output_dir, demo_pretraining_dir):
    init = spec.init_checkpoint or demo_pretraining_dir
    if not checkpointing.latest_weights(init):
        logging.info("No pretrained checkpoint in %s: running the pretraining demo first", init)
        pretraining_job.run(pretraining_job.JobSpec(output_dir=init), init)
    spec = dataclasses.replace(spec, init_checkpoint=init, output_dir=spec.output_dir or demo_output_dir)
    setup = _setup(spec, DEMO_SETUP)
    config, sp_model = load_model_files(spec.init_checkpoint, spec.gmlp_config_file, spec.vocab_file)
    _check_length(setup, config)
    train, held_out = sentiment_demo.read_examples(sentiment_demo.fetch_sentiment_file())
    task = glue.get_task(DEMO_TASK)
    return Job(spec, task, setup, config, sp_model, spec.output_dir, train if spec.do_train else [],
               {"dev": held_out} if spec.do_eval else {}, {}, _learning_rates(spec, setup))


def _setup(spec, base):
    changes = {
        name: getattr(spec, name)
        for name in ("max_seq_length", "train_batch_size", "learning_rate", "num_train_epochs", "warmup_proportion")
        if getattr(spec, name) is not None
    }
    return dataclasses.replace(base, **changes)


def _learning_rates(spec, setup):
    if spec.learning_rates:
        try:
            rates = tuple(float(x) for x in spec.learning_rates.split(",") if x.strip())
        except ValueError:
            raise ValueError(f"--learning_rates must be comma-separated numbers, got {spec.learning_rates!r}") from None
    else:
        rates = (setup.learning_rate,)
    if not rates or any(r <= 0 for r in rates):
        raise ValueError("learning rates must be positive")
    if spec.num_seeds < 1:
        raise ValueError(f"--num_seeds must be at least 1, got {spec.num_seeds}")
    return rates


def _check_length(setup, config):
    if setup.max_seq_length > config.max_seq_length:
        raise ValueError(
            f"max_seq_length {setup.max_seq_length} exceeds the model config's max_seq_length {config.max_seq_length}"
        )


# ------------------------------------------------------------------------------------ running
def run(spec: JobSpec, demo_output_dir: str, demo_pretraining_dir: str):
    """Runs every (learning rate, seed) of the job; returns the summary dict."""
    job = resolve(spec, demo_output_dir, demo_pretraining_dir)
    keras.mixed_precision.set_global_policy(spec.precision)
    strategy = get_strategy(spec.strategy, spec.tpu, spec.tpu_zone, spec.gcp_project)
    runs = [(lr, spec.random_seed + i) for lr in job.learning_rates for i in range(spec.num_seeds)]
    results = {}
    for lr, seed in runs:
        run_dir = job.output_dir if len(runs) == 1 else os.path.join(job.output_dir, f"lr{lr:g}_seed{seed}")
        results[(lr, seed)] = run_once(job, strategy, lr, seed, run_dir)
    summary = summarize(job, results)
    if job.evals and len(runs) > 1:  # A single run wrote its eval_results.txt already.
        checkpointing.write_text_atomically(
            os.path.join(job.output_dir, "sweep_results.txt"), "".join(f"{k} = {summary[k]}\n" for k in sorted(summary))
        )
    return summary


def run_once(job, strategy, learning_rate, seed, run_dir):
    """Finetunes, evaluates and predicts once; returns the evaluation metrics."""
    keras.utils.set_random_seed(seed)
    tokenizer = tokenization.make_tokenizer(job.sp_model)
    task, setup = job.task, job.setup
    label_list = task.label_list
    checkpointing.prepare_output_dir(run_dir, finetuning_config(job.config, setup), "classification", task.num_labels)
    checkpointing.write_vocab(run_dir, job.sp_model)
    with strategy.scope():
        model = build_model(finetuning_config(job.config, setup), "classification", num_labels=task.num_labels)
    if job.train:
        epochs, steps_per_epoch, num_steps = setup.schedule(len(job.train))
        with strategy.scope():
            compile_classifier(model, task.is_regression, finetuning_optimizer(setup, num_steps, learning_rate),
                               job.spec.steps_per_execution)
        if job.spec.init_checkpoint and not checkpointing.latest_weights(run_dir):
            checkpointing.warm_start(model, job.spec.init_checkpoint, finetuning_config(job.config, setup))
        train_data = classifier_dataset(job.train, tokenizer, setup.max_seq_length, setup.train_batch_size,
                                        label_list, is_training=True, seed=seed).repeat()
        training.fit_resumable(model, train_data, run_dir, epochs, steps_per_epoch)
    elif job.spec.init_checkpoint:
        checkpointing.warm_start(model, job.spec.init_checkpoint, finetuning_config(job.config, setup))
    metrics = {}
    for split, examples in job.evals.items():
        predicted = predict(model, examples, tokenizer, setup, job.spec.eval_batch_size, label_list)
        scores = glue_metrics.compute_metrics(task, [e.label for e in examples], predicted)
        prefix = "" if len(job.evals) == 1 else f"{split}_"
        metrics.update({prefix + k: v for k, v in scores.items()})
        if len(job.evals) == 1 and not task.is_regression:
            metrics["majority_baseline_accuracy"] = majority_baseline(job.train, examples)
    for (task_name, split), examples in job.tests.items():
        predicted = predict(model, examples, tokenizer, setup, job.spec.eval_batch_size, label_list)
        path = glue.write_submission(task_name, split, list(zip([e.index for e in examples], predicted)), run_dir)
        logging.info("Wrote %s", path)
    if metrics:
        checkpointing.write_text_atomically(
            os.path.join(run_dir, "eval_results.txt"), "".join(f"{k} = {metrics[k]}\n" for k in sorted(metrics))
        )
    return metrics


def predict(model, examples, tokenizer, setup, batch_size, label_list):
    """Predicted labels (or scores) of examples, in order."""
    dataset = classifier_dataset(examples, tokenizer, setup.max_seq_length, batch_size, label_list, with_labels=False)
    logits = model.predict(dataset, verbose=0)[: len(examples)]
    return predictions_from_logits(logits, label_list)


def majority_baseline(train, examples):
    """Accuracy of always predicting the most frequent training label (or held-out, untrained)."""
    source = train or examples
    labels = [e.label for e in source]
    majority = max(set(labels), key=labels.count)
    return sum(e.label == majority for e in examples) / len(examples)


def summarize(job, results):
    """Per learning rate, the median of each metric over seeds; and the best learning rate."""
    if len(results) == 1:
        return dict(next(iter(results.values())))
    summary = {}
    score = job.task.score_metric
    best = None
    for lr in job.learning_rates:
        runs = [m for (rate, _), m in results.items() if rate == lr]
        for key in runs[0]:
            summary[f"lr{lr:g}_median_{key}"] = statistics.median(m[key] for m in runs)
        key = next((k for k in runs[0] if k.endswith(score)), None)
        if key and (best is None or summary[f"lr{lr:g}_median_{key}"] > best[1]):
            best = (lr, summary[f"lr{lr:g}_median_{key}"])
    if best:
        summary["best_learning_rate"], summary[f"best_median_{score}"] = best
    return summary


def report_lines(summary, is_demo):
    lines = [f"{key} = {summary[key]}" for key in sorted(summary)]
    if is_demo and "accuracy" in summary:
        lines.append(
            f"Held-out accuracy {100 * summary['accuracy']:.1f}% vs majority-class baseline "
            f"{100 * summary['majority_baseline_accuracy']:.1f}%"
        )
    return lines

