"""The run_classifier.py task: GLUE (or the demo's sentiment set) finetuning, evaluation, prediction.

The script turns its flags into a JobSpec and calls `run`. With several learning rates or seeds
the job finetunes once per (learning rate, seed) in its own subdirectory and reports, per
learning rate, the median over seeds (the paper reports the median of five runs).
"""

import collections
import dataclasses
import os
import statistics
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf
from absl import logging

from gmlp_tf import tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.finetuning import (
    FinetuningRecipe,
    compile_classifier,
    finetuning_config,
    finetuning_optimizer,
    load_model_files,
    predictions_from_logits,
)
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import checks, run_directory, runner
from gmlp_tf.runtime.flags import CommonSpec, option
from gmlp_tf.runtime.task import RunState, Schedule, Task
from gmlp_tf.runtime.training import DatasetLike, EvaluateFn
from gmlp_tf.tasks.glue import data as glue
from gmlp_tf.tasks.glue import demo_data, metrics, submission, task_table
from gmlp_tf.tasks.glue.pipeline import classifier_dataset
from gmlp_tf.utils import progress

DEMO_TASK = "sst2"  # The demo's movie-review sentences are SST-2's task: labels 0 / 1, accuracy.
# A 4-block, 128-wide model learns faster than Table 9's base-size rates allow in 5 epochs.
DEMO_RECIPE = FinetuningRecipe(max_seq_length=64, learning_rate=5e-4, num_train_epochs=5.0)
DEMO_OUTPUT_DIR = os.path.join("output", "classifier_demo")
# The shortest max_seq_length that frames a token of each text: [CLS] a [SEP] (and b [SEP]).
SINGLE_FRAMING, PAIR_FRAMING = 3, 5


@dataclasses.dataclass
class JobSpec(CommonSpec):
    """The flags of run_classifier.py. None: Table 9's value (or the demo's)."""

    task_name: Optional[str] = option(
        None, "GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli (ax: predicted with "
        "--task_name=mnli --do_predict); or tsv: your own train.tsv / dev.tsv / test.tsv in --data_dir.")
    data_dir: Optional[str] = option(None, "GLUE data directory with the original TSV files (tsv: your files).")
    use_tfds: bool = option(False, "Read the task from TFDS glue/<task> instead of --data_dir.")
    tfds_data_dir: Optional[str] = option(None, "TFDS data directory.")
    tfds_name: Optional[str] = option(
        None, "Any TFDS text-classification dataset instead of a GLUE task, e.g. imdb_reviews, ag_news_subset.")
    tfds_text_keys: str = option("text", "--tfds_name: the text feature, or two comma-separated for pairs.")
    tfds_label_key: str = option("label", "--tfds_name: the ClassLabel feature.")
    tfds_eval_split: Optional[str] = option(
        None, "--tfds_name: the evaluation split (default: validation, or test where there is none).")
    vocab_file: Optional[str] = option(None, "SentencePiece model (default: the --init_checkpoint directory's).")
    gmlp_config_file: Optional[str] = option(
        None, "Model config JSON (default: the --init_checkpoint directory's).")
    do_train: bool = option(True, "Finetune on the training split.")
    do_eval: bool = option(True, "Evaluate on the dev split(s) (MNLI: matched and mismatched).")
    do_predict: bool = option(False, "Write GLUE submission files for the test split(s).")
    max_seq_length: Optional[int] = option(
        None, "Tokens per example (Table 9: 128; <= the config's length).")
    train_batch_size: Optional[int] = option(None, "Training batch size (Table 9: 32).")
    eval_batch_size: int = option(32, "Evaluation and prediction batch size.")
    learning_rate: Optional[float] = option(None, "Peak learning rate (Table 9: 2e-5 of {1e-5, 2e-5, 3e-5}).")
    learning_rates: Optional[str] = option(None, "Comma-separated learning rates to sweep, e.g. 1e-5,2e-5,3e-5.")
    num_seeds: int = option(1, "Runs per learning rate; the median is reported (the paper: 5).")
    num_train_epochs: Optional[float] = option(None, "Training epochs (Table 9: 5).")
    warmup_proportion: Optional[float] = option(None, "Fraction of steps of linear warmup (Table 9: 0.1).")

    @property
    def is_demo(self) -> bool:
        return not (self.task_name or self.data_dir or self.use_tfds or self.tfds_name)


@dataclasses.dataclass
class SweepPlan:
    """A JobSpec resolved: the task, its examples, the recipe and the learning rates to sweep."""

    spec: JobSpec
    task: glue.GlueTask
    recipe: FinetuningRecipe
    config: GMLPConfig
    sp_model: bytes
    output_dir: str
    train: list
    evals: dict  # split name -> examples
    tests: dict  # (task, split) -> examples, for submission files
    learning_rates: tuple


# ---------------------------------------------------------------------------------- resolving
def resolve(spec: JobSpec) -> SweepPlan:
    """Fills in defaults (the demo's when no task is given), reads the data, checks everything."""
    check_flags(spec)
    if spec.is_demo:
        return _resolve_demo(spec)
    task, read = _task_and_reader(spec)
    setup = _recipe(spec, FinetuningRecipe())
    config, sp_model = load_model_files(spec.init_checkpoint, spec.gmlp_config_file, spec.vocab_file)
    checks.check_max_seq_length(setup.max_seq_length, config)
    if task.is_pair and setup.max_seq_length < PAIR_FRAMING:
        raise ValueError(f"--max_seq_length must be at least {PAIR_FRAMING} for {task.display_name}'s sentence "
                         f"pairs ([CLS] a [SEP] b [SEP]), got {setup.max_seq_length}")
    checks.check_init_checkpoint(spec.init_checkpoint, config)
    train = read(task, glue.TRAIN) if spec.do_train else []
    evals = {split: read(task, split) for split in task_table.eval_splits(task)} if spec.do_eval else {}
    tests = _test_examples(task, read) if spec.do_predict else {}
    return SweepPlan(spec, task, setup, config, sp_model, spec.output_dir, train, evals, tests,
                     _learning_rates(spec, setup))


def _task_and_reader(spec: JobSpec):
    """The task (GLUE's, or one of your own TSV files or TFDS dataset) and its split reader."""
    is_tsv = (spec.task_name or "").strip().lower() == glue.TSV_TASK
    if spec.tfds_name:
        if spec.task_name or spec.data_dir or spec.use_tfds:
            raise ValueError("--tfds_name is a task of its own: drop --task_name, --data_dir and --use_tfds")
        checks.require_output_dir(spec.output_dir)
        task = glue.tfds_task(spec.tfds_name, spec.tfds_text_keys.split(","), spec.tfds_label_key,
                              spec.tfds_eval_split, spec.tfds_data_dir)
        return task, lambda t, split: glue.read_tfds_classification(t, split, spec.tfds_data_dir)
    if not spec.task_name:
        raise ValueError("--task_name is required (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli, ax, tsv)")
    if is_tsv:
        if not spec.data_dir or spec.use_tfds:
            raise ValueError("--task_name=tsv reads --data_dir (train.tsv, dev.tsv, test.tsv); give it, "
                             "without --use_tfds")
        checks.require_output_dir(spec.output_dir)
        return glue.tsv_task(spec.data_dir), lambda t, split: glue.read_tsv_examples(t, spec.data_dir, split)
    task = glue.get_task(spec.task_name)
    if task.name != task.model_task:
        raise ValueError(
            f"{task.display_name} has no training data: it is predicted with a {task.model_task} model "
            f"(--task_name={task.model_task} --do_predict)"
        )
    checks.require_output_dir(spec.output_dir)
    if bool(spec.data_dir) == bool(spec.use_tfds):
        raise ValueError("give the data: --data_dir (GLUE TSV files) or --use_tfds, one of them")

    def read(t, split):
        if spec.use_tfds:
            return glue.read_tfds_examples(t, split, spec.tfds_data_dir)
        return glue.read_tsv_examples(t, spec.data_dir, split)

    return task, read


def _test_examples(task: glue.GlueTask, read) -> Dict[Tuple[str, str], list]:
    """The test splits to predict: the task's own, and those of tasks predicted with its model (AX)."""
    tests = {}
    for t in [task] + [t for t in task_table.TASKS.values() if t.model_task == task.name and t is not task]:
        for split in task_table.test_splits(t):
            try:
                tests[(t.name, split)] = read(t, split)
            except FileNotFoundError as err:
                if t is task:
                    raise
                logging.warning("Not predicting %s: %s", t.display_name, err)
    return tests


def _resolve_demo(spec: JobSpec) -> SweepPlan:
    spec = dataclasses.replace(
        spec, init_checkpoint=runner.ensure_demo_run("pretraining", spec.init_checkpoint, spec.strategy),
        output_dir=spec.output_dir or DEMO_OUTPUT_DIR)
    setup = _recipe(spec, DEMO_RECIPE)
    config, sp_model = load_model_files(spec.init_checkpoint, spec.gmlp_config_file, spec.vocab_file)
    checks.check_max_seq_length(setup.max_seq_length, config)
    train, held_out = demo_data.read_examples(demo_data.fetch_sentiment_file())
    task = glue.get_task(DEMO_TASK)
    return SweepPlan(spec, task, setup, config, sp_model, spec.output_dir, train if spec.do_train else [],
               {"dev": held_out} if spec.do_eval else {}, {}, _learning_rates(spec, setup))


def _recipe(spec: JobSpec, base: FinetuningRecipe) -> FinetuningRecipe:
    changes = {
        name: getattr(spec, name)
        for name in ("max_seq_length", "train_batch_size", "learning_rate", "num_train_epochs", "warmup_proportion")
        if getattr(spec, name) is not None
    }
    return dataclasses.replace(base, **changes)


def check_flags(spec: JobSpec) -> None:
    """The numeric flags given (None: Table 9's), checked before the demo encoder or any data is read."""
    checks.check_positive(
        learning_rate=spec.learning_rate, train_batch_size=spec.train_batch_size,
        eval_batch_size=spec.eval_batch_size, num_train_epochs=spec.num_train_epochs,
        max_seq_length=spec.max_seq_length, log_every_steps=spec.log_every_steps,
        steps_per_execution=spec.steps_per_execution)
    if spec.warmup_proportion is not None and not 0 <= spec.warmup_proportion <= 1:
        raise ValueError(f"--warmup_proportion must be in [0, 1], got {spec.warmup_proportion}")
    if spec.max_seq_length is not None and spec.max_seq_length < SINGLE_FRAMING:
        raise ValueError(
            f"--max_seq_length must be at least {SINGLE_FRAMING} ([CLS] text [SEP]), got {spec.max_seq_length}")
    if spec.num_seeds < 1:
        raise ValueError(f"--num_seeds must be at least 1, got {spec.num_seeds}")
    _swept_rates(spec)


def _swept_rates(spec: JobSpec) -> Optional[Tuple[float, ...]]:
    """The --learning_rates list (None when not given), each rate positive."""
    if not spec.learning_rates:
        return None
    try:
        rates = tuple(float(x) for x in spec.learning_rates.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--learning_rates must be comma-separated numbers, got {spec.learning_rates!r}") from None
    if not rates or any(not r > 0 for r in rates):
        raise ValueError(f"--learning_rates must be positive numbers, got {spec.learning_rates!r}")
    return rates


def _learning_rates(spec: JobSpec, setup: FinetuningRecipe) -> Tuple[float, ...]:
    return _swept_rates(spec) or (setup.learning_rate,)


# ------------------------------------------------------------------------------------ running
class ClassifierTask(Task):
    """One finetuning run of a sweep: one learning rate and seed, in its own output directory."""

    spec_class = JobSpec
    demo_output_dir = DEMO_OUTPUT_DIR
    model_task = "classification"

    def __init__(self, plan: SweepPlan, learning_rate: float, seed: int, output_dir: str) -> None:
        super().__init__(plan.spec)
        self.plan, self.learning_rate, self._seed, self.output_dir = plan, learning_rate, seed, output_dir
        self.config = finetuning_config(plan.config, plan.recipe)
        self.num_labels = plan.task.num_labels
        self.vocabulary = plan.sp_model
        self.tokenizer = None

    @property
    def do_train(self) -> bool:
        return bool(self.plan.train)

    @property
    def seed(self) -> int:
        return self._seed

    def prepare(self, strategy: tf.distribute.Strategy) -> None:
        self.tokenizer = tokenization.make_tokenizer(self.plan.sp_model)  # A TensorFlow op: after start-up.
        if self.do_train:
            epochs, steps_per_epoch, _ = self.plan.recipe.schedule(len(self.plan.train))
            self.steps_per_epoch = checks.whole_executions(steps_per_epoch, self.spec.steps_per_execution)
            self.num_steps = epochs * self.steps_per_epoch

    def build_model(self) -> keras.Model:
        return build_model(self.config, "classification", num_labels=self.num_labels)

    def compile_for_training(self, model: keras.Model) -> None:
        optimizer = finetuning_optimizer(self.plan.recipe, self.num_steps, self.learning_rate)
        compile_classifier(model, self.plan.task.is_regression, optimizer, self.spec.steps_per_execution)

    def schedule(self) -> Schedule:
        return Schedule(self.num_steps, self.steps_per_epoch)

    def train_data(self, strategy: tf.distribute.Strategy) -> Callable[[int], DatasetLike]:
        plan = self.plan
        recipe = plan.recipe
        dataset = classifier_dataset(plan.train, self.tokenizer, recipe.max_seq_length, recipe.train_batch_size,
                                     plan.task.label_list, is_training=True, seed=self.seed)
        return dataset.repeat().skip

    def checkpoint_evaluator(self) -> Optional[EvaluateFn]:
        if not self.plan.evals:
            return None
        return lambda model: evaluate(self.plan, model, self.tokenizer)

    def recipe(self) -> Dict[str, Any]:
        return dict(dataclasses.asdict(self.plan.recipe), learning_rate=self.learning_rate,
                    num_train_steps=self.num_steps, save_checkpoints_steps=self.steps_per_epoch)

    def evaluate(self, model: keras.Model, state: RunState) -> Dict[str, Any]:
        """The dev metrics; with --do_predict, the submission files of the test splits."""
        plan = self.plan
        scores = evaluate(plan, model, self.tokenizer)
        for (task_name, split), examples in plan.tests.items():
            predicted = predict(model, examples, self.tokenizer, plan.recipe, plan.spec.eval_batch_size,
                                plan.task.label_list, what=f"{task_name} {split} examples")
            task = plan.task if task_name == plan.task.name else task_name  # your own task is in no table
            path = submission.write_submission(task, split, list(zip([e.index for e in examples], predicted)),
                                         self.output_dir)
            logging.info("Wrote %s", path)
        return scores


def run(spec: JobSpec) -> Dict[str, Any]:
    """Runs every (learning rate, seed) of the job; returns the summary dict."""
    plan = resolve(spec)
    runs = [(lr, plan.spec.random_seed + i) for lr in plan.learning_rates for i in range(plan.spec.num_seeds)]
    tasks = [ClassifierTask(plan, lr, seed, plan.output_dir if len(runs) == 1 else
                            os.path.join(plan.output_dir, f"lr{lr:g}_seed{seed}")) for lr, seed in runs]
    return runner.run_sweep(tasks, plan.output_dir, lambda results: summarize(plan, dict(zip(runs, results))))


def evaluate(job: SweepPlan, model: keras.Model, tokenizer: Any) -> Dict[str, float]:
    """The task's metrics on each dev split (prefixed by the split when there are several)."""
    scores = {}
    for split, examples in job.evals.items():
        predicted = predict(model, examples, tokenizer, job.recipe, job.spec.eval_batch_size, job.task.label_list,
                            what=f"{split} examples")
        values = metrics.compute_metrics(job.task, [e.label for e in examples], predicted)
        prefix = "" if len(job.evals) == 1 else f"{split}_"
        scores.update({prefix + k: v for k, v in values.items()})
        if len(job.evals) == 1 and not job.task.is_regression:
            scores["majority_baseline_accuracy"] = majority_baseline(job.train, examples)
    return scores


def predict(model: keras.Model, examples: Sequence[glue.InputExample], tokenizer: Any, setup: FinetuningRecipe,
            batch_size: int, label_list: Optional[Sequence[str]], what: str = "examples") -> list:
    """Predicted labels (or scores) of examples, in order; logs progress ("Predicting 9,815 <what>")."""
    dataset = classifier_dataset(examples, tokenizer, setup.max_seq_length, batch_size, label_list, with_labels=False)
    logits = progress.predict(model, dataset, f"Predicting {len(examples):,} {what}")[: len(examples)]
    return predictions_from_logits(logits, label_list)


def majority_baseline(train: Sequence[glue.InputExample], examples: Sequence[glue.InputExample]) -> float:
    """Accuracy of always predicting the most frequent training label (or held-out, untrained)."""
    source = train or examples
    # A tie goes to the label seen first (not to set order, which changes with the string hash seed).
    majority = collections.Counter(e.label for e in source).most_common(1)[0][0]
    return sum(e.label == majority for e in examples) / len(examples)


def summarize(job: SweepPlan, results: Dict[Tuple[float, int], Dict[str, float]]) -> Dict[str, Any]:
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


def report_lines(summary: Dict[str, Any], spec: JobSpec) -> List[str]:
    """The lines the script prints: the results, and for the demo the accuracy beside the baseline."""
    lines = run_directory.result_lines(summary)
    if spec.is_demo and "accuracy" in summary:
        lines.append(
            f"Held-out accuracy {100 * summary['accuracy']:.1f}% vs majority-class baseline "
            f"{100 * summary['majority_baseline_accuracy']:.1f}%"
        )
    return lines
