"""The run_squad.py task: SQuAD v1.1 / v2.0 finetuning, prediction files and the official scores."""

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.finetuning import FinetuningRecipe, finetuning_config, finetuning_optimizer, load_model_files
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import checks, run_directory, runner
from gmlp_tf.runtime.flags import CommonSpec, option
from gmlp_tf.runtime.task import RunState, Schedule, Task
from gmlp_tf.runtime.training import DatasetLike, EvaluateFn
from gmlp_tf.tasks.squad import answers, demo_data, official_scorer
from gmlp_tf.tasks.squad import data as squad
from gmlp_tf.utils import progress

DEMO_OUTPUT_DIR = os.path.join("output", "squad_demo")
# Table 9: seq 512, batch 32, lr 5e-5, 8K steps, 1K warmup (1K / 8K of the steps).
SQUAD_RECIPE = FinetuningRecipe(max_seq_length=512, train_batch_size=32, learning_rate=5e-5, warmup_proportion=0.125)
NUM_TRAIN_STEPS = 8000


@dataclasses.dataclass
class JobSpec(CommonSpec):
    """The flags of run_squad.py."""

    vocab_file: Optional[str] = option(None, "SentencePiece model (default: the --init_checkpoint directory's).")
    gmlp_config_file: Optional[str] = option(
        None, "Model config JSON (default: the --init_checkpoint directory's).")
    train_file: Optional[str] = option(None, "SQuAD JSON for training, e.g. train-v1.1.json.")
    predict_file: Optional[str] = option(None, "SQuAD JSON to predict, e.g. dev-v1.1.json.")
    tfds_name: Optional[str] = option(None, "squad/v1.1 or squad/v2.0 from TFDS instead of the JSON files.")
    tfds_data_dir: Optional[str] = option(None, "TFDS data directory.")
    version_2_with_negative: bool = option(False, "SQuAD v2.0: questions may have no answer.")
    do_train: bool = option(False, "Finetune on the training questions.")
    do_predict: bool = option(False, "Predict (and, with gold answers, score) the prediction questions.")
    max_seq_length: int = option(512, "Tokens per window (Table 9: 512; BERT: 384).")
    doc_stride: int = option(128, "Tokens between the starts of consecutive context windows.")
    max_query_length: int = option(64, "Question tokens kept at most.")
    train_batch_size: int = option(32, "Training batch size (Table 9: 32).")
    predict_batch_size: int = option(8, "Prediction batch size.")
    learning_rate: float = option(5e-5, "Peak learning rate (Table 9: 5e-5).")
    num_train_steps: int = option(NUM_TRAIN_STEPS, "Training steps (Table 9: 8K).")
    num_warmup_steps: int = option(1000, "Linear warmup steps (Table 9: 1K).")
    save_checkpoints_steps: int = option(1000, "Steps between checkpoints.")
    n_best_size: int = option(20, "Candidate answers kept per question (nbest_predictions.json).")
    max_answer_length: int = option(30, "Longest answer in tokens.")
    null_score_diff_threshold: float = option(
        0.0, "v2.0: predict no answer when null score - best span score exceeds it.")

    @property
    def is_demo(self) -> bool:
        return not (self.train_file or self.predict_file or self.tfds_name)


def demo_spec(spec: JobSpec) -> JobSpec:
    """The embedded default: finetune the demo pretraining checkpoint on the demo's real questions."""
    # The flags the demo keeps, checked before the demo encoder is looked for (or pretrained).
    checks.check_positive(log_every_steps=spec.log_every_steps, steps_per_execution=spec.steps_per_execution)
    init_checkpoint = runner.ensure_demo_run("pretraining", spec.init_checkpoint, spec.strategy)
    path = demo_data.fetch_demo_squad()
    return dataclasses.replace(
        spec, init_checkpoint=init_checkpoint, output_dir=spec.output_dir or DEMO_OUTPUT_DIR,
        train_file=path, predict_file=path, do_train=True,
        do_predict=True, max_seq_length=128, doc_stride=64, max_query_length=32, train_batch_size=4,
        predict_batch_size=4, learning_rate=1e-3, num_train_steps=200, num_warmup_steps=20, save_checkpoints_steps=100,
    )


def read_examples(spec: JobSpec, is_training: bool) -> Tuple[List[squad.SquadExample], int]:
    """SQuAD examples for training or prediction, from JSON files or TFDS; logs skipped answers."""
    path = spec.train_file if is_training else spec.predict_file
    if path:
        examples, skipped = squad.read_squad_json(path, is_training, spec.version_2_with_negative)
        where = path
    elif spec.tfds_name:
        split = "train" if is_training else "validation"
        examples, skipped = squad.read_squad_tfds(spec.tfds_name, split, spec.tfds_data_dir, is_training,
                                                  spec.version_2_with_negative)
        where = f"{spec.tfds_name}:{split}"
    else:
        flag = "--train_file" if is_training else "--predict_file"
        raise ValueError(f"give {flag} (SQuAD JSON) or --tfds_name (squad/v1.1 or squad/v2.0)")
    if skipped:
        logging.warning("Skipped %d training questions of %s whose answer does not match the context", skipped, where)
    if not examples:
        raise ValueError(f"{where} holds no usable questions")
    return examples, skipped


def _check(spec: JobSpec, config: GMLPConfig) -> None:
    if not (spec.do_train or spec.do_predict):
        raise ValueError("nothing to do: give --do_train and/or --do_predict")
    checks.require_output_dir(spec.output_dir)
    checks.check_max_seq_length(spec.max_seq_length, config)
    checks.check_init_checkpoint(spec.init_checkpoint, config)
    checks.check_positive(doc_stride=spec.doc_stride, max_query_length=spec.max_query_length,
                           train_batch_size=spec.train_batch_size, predict_batch_size=spec.predict_batch_size,
                           learning_rate=spec.learning_rate, num_train_steps=spec.num_train_steps,
                           n_best_size=spec.n_best_size, max_answer_length=spec.max_answer_length)
    checks.check_non_negative(num_warmup_steps=spec.num_warmup_steps)
    context = spec.max_seq_length - spec.max_query_length - 3  # [CLS] question [SEP] context [SEP]
    if context < 1:
        raise ValueError(f"--max_query_length {spec.max_query_length} leaves no context tokens in a window of "
                         f"--max_seq_length {spec.max_seq_length} ([CLS] question [SEP] context [SEP])")
    if spec.doc_stride > context:  # Windows would move by less than asked (never skipping text): say so.
        raise ValueError(f"--doc_stride {spec.doc_stride} exceeds a window's {context} context tokens "
                         "(--max_seq_length - --max_query_length - 3)")
    if spec.num_warmup_steps > spec.num_train_steps:
        raise ValueError(
            f"--num_warmup_steps ({spec.num_warmup_steps}) exceeds --num_train_steps ({spec.num_train_steps})")
    checks.check_checkpoint_interval(spec.num_train_steps, spec.save_checkpoints_steps, spec.steps_per_execution)


def compile_squad_model(model: keras.Model, setup: FinetuningRecipe, num_train_steps: int, learning_rate: float,
                        steps_per_execution: int) -> None:
    """BERT's SQuAD loss: the mean of the start and end cross-entropies."""
    cross_entropy = keras.losses.SparseCategoricalCrossentropy
    model.compile(
        optimizer=finetuning_optimizer(setup, num_train_steps, learning_rate),
        loss={"start_logits": cross_entropy(from_logits=True), "end_logits": cross_entropy(from_logits=True)},
        loss_weights={"start_logits": 0.5, "end_logits": 0.5},
        steps_per_execution=steps_per_execution,
    )


def _as_targets(inputs, labels):
    return inputs, {"start_logits": labels["start_positions"], "end_logits": labels["end_positions"]}


class SquadTask(Task):
    """SQuAD v1.1 / v2.0: finetuning, prediction files and the official scores."""

    spec_class = JobSpec
    demo_output_dir = DEMO_OUTPUT_DIR
    model_task = "squad"

    def __init__(self, spec: JobSpec) -> None:
        """Fills in the demo, checks every input and cuts the questions into windows."""
        spec = demo_spec(spec) if spec.is_demo else spec
        super().__init__(spec)
        config, self.vocabulary = load_model_files(spec.init_checkpoint, spec.gmlp_config_file, spec.vocab_file)
        _check(spec, config)
        self.recipe_values = dataclasses.replace(
            SQUAD_RECIPE, max_seq_length=spec.max_seq_length, train_batch_size=spec.train_batch_size,
            learning_rate=spec.learning_rate, warmup_proportion=spec.num_warmup_steps / spec.num_train_steps,
        )
        self.config = finetuning_config(config, self.recipe_values)
        convert = dict(sp_model=self.vocabulary, max_seq_length=spec.max_seq_length, doc_stride=spec.doc_stride,
                       max_query_length=spec.max_query_length)
        self.train_features = self.predict_examples = self.predict_features = None
        if spec.do_train:
            self.train_features = _windows(read_examples(spec, True)[0], "training", is_training=True, **convert)
        if spec.do_predict:
            self.predict_examples = read_examples(spec, False)[0]
            self.predict_features = _windows(self.predict_examples, "prediction", is_training=False, **convert)

    def build_model(self) -> keras.Model:
        return build_model(self.config, "squad")

    def compile_for_training(self, model: keras.Model) -> None:
        spec, recipe = self.spec, self.recipe_values
        compile_squad_model(model, recipe, spec.num_train_steps, spec.learning_rate, spec.steps_per_execution)

    def schedule(self) -> Schedule:
        return Schedule(self.spec.num_train_steps, self.spec.save_checkpoints_steps)

    def train_data(self, strategy: tf.distribute.Strategy) -> Callable[[int], DatasetLike]:
        spec = self.spec
        dataset = squad.features_to_dataset(self.train_features, is_training=True, batch_size=spec.train_batch_size,
                                            drop_remainder=True, seed=spec.random_seed)
        return dataset.repeat().map(_as_targets).skip

    def checkpoint_evaluator(self) -> Optional[EvaluateFn]:
        """EM / F1 of the prediction file at every checkpoint, when it has gold answers."""
        if not _has_answers(self.predict_examples):
            return None
        examples, features = self.predict_examples, self.predict_features
        return lambda model: _score(self.spec, examples, *predict(self.spec, model, examples, features))

    def recipe(self) -> Dict[str, Any]:
        return {name: getattr(self.spec, name) for name in (
            "learning_rate", "train_batch_size", "num_train_steps", "num_warmup_steps", "save_checkpoints_steps")}

    def evaluate(self, model: keras.Model, state: RunState) -> Dict[str, Any]:
        if not self.spec.do_predict:
            return {}
        return predict_and_score(self.spec, model, self.predict_examples, self.predict_features)


def run(spec: JobSpec) -> Dict[str, float]:
    """Trains and/or predicts; returns the evaluation scores (empty without gold answers)."""
    return runner.run(SquadTask(spec))


def _windows(examples: List[squad.SquadExample], what: str, **convert: Any) -> List[squad.SquadFeature]:
    """convert_examples_to_features with stage lines: "Cutting 10,570 prediction questions into windows"."""
    with progress.stage(f"Cutting {len(examples):,} {what} questions into windows") as step:
        features = squad.convert_examples_to_features(examples, **convert)
        step.result = f"{len(features):,} windows"
    return features


def _has_answers(examples: Optional[List[squad.SquadExample]]) -> bool:
    return bool(examples) and any(e.answers or e.is_impossible for e in examples)


def predict(spec: JobSpec, model: keras.Model, examples: List[squad.SquadExample],
            features: List[squad.SquadFeature]) -> Tuple[Dict[str, str], Dict[str, Any], Dict[str, float]]:
    """(predictions, n-best lists, null odds) of the questions, as BERT's run_squad.py writes them."""
    outputs = progress.predict(model, squad.features_to_dataset(features, False, spec.predict_batch_size),
                               f"Predicting {len(features):,} windows of {len(examples):,} questions")
    with progress.stage(f"Decoding the {spec.n_best_size}-best answers of {len(examples):,} questions"):
        predictions, nbest, null_odds = answers.compute_predictions(
            examples, features, np.asarray(outputs["start_logits"]), np.asarray(outputs["end_logits"]),
            n_best_size=spec.n_best_size, max_answer_length=spec.max_answer_length,
            version_2_with_negative=spec.version_2_with_negative,
            null_score_diff_threshold=spec.null_score_diff_threshold,
        )
    return predictions, nbest, null_odds


def predict_and_score(spec: JobSpec, model: keras.Model, examples: List[squad.SquadExample],
                      features: List[squad.SquadFeature]) -> Dict[str, float]:
    """Writes the prediction files; returns their scores when the questions have gold answers (else {})."""
    predictions, nbest, null_odds = predict(spec, model, examples, features)
    with progress.stage(f"Writing the prediction files to {spec.output_dir}"):
        answers.write_predictions(spec.output_dir, predictions, nbest,
                                null_odds if spec.version_2_with_negative else None)
    if not _has_answers(examples):
        return {}  # A test file without gold answers: predictions only.
    return _score(spec, examples, predictions, nbest, null_odds)


def _score(spec: JobSpec, examples: List[squad.SquadExample], predictions: Dict[str, str], nbest: Dict[str, Any],
           null_odds: Dict[str, float]) -> Dict[str, float]:
    """The official scores; v2.0 with null_odds.json as the na_probs (best_exact, best_f1 and thresholds)."""
    na_probs = null_odds if spec.version_2_with_negative else None  # In the order null_odds.json has.
    return official_scorer.evaluate(examples, predictions, spec.version_2_with_negative, na_probs=na_probs)


def report_lines(scores: Dict[str, float], spec: Optional[JobSpec] = None) -> List[str]:
    return run_directory.result_lines(scores)
