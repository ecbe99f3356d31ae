"""One run_squad.py job: SQuAD v1.1 / v2.0 finetuning, prediction files and the official scores."""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import checkpointing
from gmlp_tf.runtime import job as runtime
from gmlp_tf.runtime import progress, training
from gmlp_tf.runtime.finetuning import FinetuneSetup, finetuning_config, finetuning_optimizer, load_model_files
from gmlp_tf.runtime.flags import CommonSpec, option
from gmlp_tf.tasks.squad import data as squad
from gmlp_tf.tasks.squad import demo_data, evaluation

DEMO_OUTPUT_DIR = os.path.join("output", "squad_demo")
# Table 9: seq 512, batch 32, lr 5e-5, 8K steps, 1K warmup (1K / 8K of the steps).
SQUAD_SETUP = FinetuneSetup(max_seq_length=512, train_batch_size=32, learning_rate=5e-5, warmup_proportion=0.125)
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
    runtime.check_positive(log_every_steps=spec.log_every_steps, steps_per_execution=spec.steps_per_execution)
    init_checkpoint = runtime.demo_encoder(spec.init_checkpoint, spec.strategy)
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
    runtime.require_output_dir(spec.output_dir)
    runtime.check_max_seq_length(spec.max_seq_length, config)
    runtime.check_init_checkpoint(spec.init_checkpoint, config)
    runtime.check_positive(doc_stride=spec.doc_stride, max_query_length=spec.max_query_length,
                           train_batch_size=spec.train_batch_size, predict_batch_size=spec.predict_batch_size,
                           learning_rate=spec.learning_rate, num_train_steps=spec.num_train_steps,
                           n_best_size=spec.n_best_size, max_answer_length=spec.max_answer_length)
    runtime.check_non_negative(num_warmup_steps=spec.num_warmup_steps)
    if spec.num_warmup_steps > spec.num_train_steps:
        raise ValueError(
            f"--num_warmup_steps ({spec.num_warmup_steps}) exceeds --num_train_steps ({spec.num_train_steps})")
    runtime.check_checkpoint_interval(spec.num_train_steps, spec.save_checkpoints_steps, spec.steps_per_execution)


def compile_squad_model(model: keras.Model, setup: FinetuneSetup, num_train_steps: int, learning_rate: float,
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


@runtime.releases_locks
def run(spec: JobSpec) -> Dict[str, float]:
    """Trains and/or predicts; returns the evaluation scores (empty without gold answers)."""
    if spec.is_demo:
        spec = demo_spec(spec)
    config, sp_model = load_model_files(spec.init_checkpoint, spec.gmlp_config_file, spec.vocab_file)
    _check(spec, config)
    setup = dataclasses.replace(
        SQUAD_SETUP, max_seq_length=spec.max_seq_length, train_batch_size=spec.train_batch_size,
        learning_rate=spec.learning_rate, warmup_proportion=spec.num_warmup_steps / spec.num_train_steps,
    )
    convert = dict(sp_model=sp_model, max_seq_length=spec.max_seq_length, doc_stride=spec.doc_stride,
                   max_query_length=spec.max_query_length)
    train_features = predict_examples = predict_features = None
    if spec.do_train:
        train_features = _windows(read_examples(spec, True)[0], "training", is_training=True, **convert)
    if spec.do_predict:
        predict_examples = read_examples(spec, False)[0]
        predict_features = _windows(predict_examples, "prediction", is_training=False, **convert)

    strategy = runtime.start(spec)
    model_config = finetuning_config(config, setup)
    runtime.prepare_output_dir(spec.output_dir, model_config, "squad", sp_model=sp_model, strategy=strategy)
    with strategy.scope():
        model = build_model(model_config, "squad")
        compile_squad_model(model, setup, spec.num_train_steps, spec.learning_rate, spec.steps_per_execution)
    runtime.warm_start_unless_resuming(model, spec.init_checkpoint, spec.output_dir, model_config)
    if spec.do_train:
        _train(spec, model, strategy, train_features, predict_examples, predict_features)
    model = runtime.model_to_evaluate(strategy, model, lambda: build_model(model_config, "squad"))
    if model is None or not spec.do_predict:
        return {}
    return predict_and_score(spec, model, predict_examples, predict_features)


def _train(spec: JobSpec, model: keras.Model, strategy: tf.distribute.Strategy,
           train_features: List[squad.SquadFeature], predict_examples: Optional[List[squad.SquadExample]],
           predict_features: Optional[List[squad.SquadFeature]]) -> None:
    evaluate_fn = None  # Across workers Keras predict cannot run: the chief scores after training.
    if not runtime.is_multi_worker(strategy):
        evaluate_fn = _checkpoint_scorer(spec, predict_examples, predict_features)
    if runtime.is_chief(strategy):
        checkpointing.record_recipe(spec.output_dir, {name: getattr(spec, name) for name in (
            "learning_rate", "train_batch_size", "num_train_steps", "num_warmup_steps", "save_checkpoints_steps")})
    dataset = squad.features_to_dataset(
        train_features, is_training=True, batch_size=spec.train_batch_size, drop_remainder=True, seed=spec.random_seed
    ).repeat().map(_as_targets)
    training.fit_resumable(model, dataset.skip, spec.output_dir, spec.num_train_steps, spec.save_checkpoints_steps,
                           log_every_steps=spec.log_every_steps, evaluate_fn=evaluate_fn)


def _windows(examples: List[squad.SquadExample], what: str, **convert: Any) -> List[squad.SquadFeature]:
    """convert_examples_to_features with stage lines: "Cutting 10,570 prediction questions into windows"."""
    with progress.stage(f"Cutting {len(examples):,} {what} questions into windows") as step:
        features = squad.convert_examples_to_features(examples, **convert)
        step.result = f"{len(features):,} windows"
    return features


def _has_answers(examples: Optional[List[squad.SquadExample]]) -> bool:
    return bool(examples) and any(e.answers or e.is_impossible for e in examples)


def _checkpoint_scorer(spec: JobSpec, examples: Optional[List[squad.SquadExample]],
                       features: Optional[List[squad.SquadFeature]]) -> Optional[training.EvaluateFn]:
    """EM / F1 of the prediction file at every checkpoint, when it has gold answers."""
    if not (spec.eval_at_checkpoints and _has_answers(examples)):
        return None
    return lambda model: _score(spec, examples, *predict(spec, model, examples, features))


def predict(spec: JobSpec, model: keras.Model, examples: List[squad.SquadExample],
            features: List[squad.SquadFeature]) -> Tuple[Dict[str, str], Dict[str, Any], Dict[str, float]]:
    """(predictions, n-best lists, null odds) of the questions, as BERT's run_squad.py writes them."""
    outputs = progress.predict(model, squad.features_to_dataset(features, False, spec.predict_batch_size),
                               f"Predicting {len(features):,} windows of {len(examples):,} questions")
    with progress.stage(f"Decoding the {spec.n_best_size}-best answers of {len(examples):,} questions"):
        predictions, nbest, null_odds = squad.compute_predictions(
            examples, features, np.asarray(outputs["start_logits"]), np.asarray(outputs["end_logits"]),
            n_best_size=spec.n_best_size, max_answer_length=spec.max_answer_length,
            version_2_with_negative=spec.version_2_with_negative,
            null_score_diff_threshold=spec.null_score_diff_threshold,
        )
    return predictions, nbest, null_odds


def predict_and_score(spec: JobSpec, model: keras.Model, examples: List[squad.SquadExample],
                      features: List[squad.SquadFeature]) -> Dict[str, float]:
    """Writes the prediction files; scores them (eval_results) when the questions have gold answers."""
    predictions, nbest, null_odds = predict(spec, model, examples, features)
    with progress.stage(f"Writing the prediction files to {spec.output_dir}"):
        squad.write_predictions(spec.output_dir, predictions, nbest,
                                null_odds if spec.version_2_with_negative else None)
    if not _has_answers(examples):
        return {}  # A test file without gold answers: predictions only.
    scores = _score(spec, examples, predictions, nbest, null_odds)
    runtime.write_results(spec.output_dir, scores)
    return scores


def _score(spec: JobSpec, examples: List[squad.SquadExample], predictions: Dict[str, str], nbest: Dict[str, Any],
           null_odds: Dict[str, float]) -> Dict[str, float]:
    """The official scores; v2.0 with null_odds.json as the na_probs (best_exact, best_f1 and thresholds)."""
    na_probs = null_odds if spec.version_2_with_negative else None  # In the order null_odds.json has.
    return evaluation.evaluate(examples, predictions, spec.version_2_with_negative, na_probs=na_probs)


def report_lines(scores: Dict[str, float], spec: Optional[JobSpec] = None) -> List[str]:
    return runtime.result_lines(scores)
