"""One run_squad.py job: SQuAD v1.1 / v2.0 finetuning, prediction files and the official scores."""

import dataclasses
import os
from typing import Optional

import keras
import numpy as np
from absl import logging

from gmlp_tf.runtime import checkpointing
from gmlp_tf.tasks.squad import data as squad
from gmlp_tf.tasks.squad import evaluation as squad_evaluation
from gmlp_tf.runtime import training
from gmlp_tf.runtime.flags import CommonSpec
from gmlp_tf.runtime.distribution import get_strategy
from gmlp_tf.runtime.finetuning import FinetuneSetup, finetuning_config, finetuning_optimizer, load_model_files
from gmlp_tf.models.task_models import build_model

# Table 9: seq 512, batch 32, lr 5e-5, 8K steps, 1K warmup (1K / 8K of the steps).
SQUAD_SETUP = FinetuneSetup(max_seq_length=512, train_batch_size=32, learning_rate=5e-5, warmup_proportion=0.125)
NUM_TRAIN_STEPS = 8000


@dataclasses.dataclass
class JobSpec(CommonSpec):
    """The flags of run_squad.py (see the script for their help)."""

    vocab_file: Optional[str] = None
    gmlp_config_file: Optional[str] = None
    train_file: Optional[str] = None
    predict_file: Optional[str] = None
    tfds_name: Optional[str] = None
    tfds_data_dir: Optional[str] = None
    version_2_with_negative: bool = False
    do_train: bool = False
    do_predict: bool = False
    max_seq_length: int = 512
    doc_stride: int = 128
    max_query_length: int = 64
    train_batch_size: int = 32
    predict_batch_size: int = 8
    learning_rate: float = 5e-5
    num_train_steps: int = NUM_TRAIN_STEPS
    num_warmup_steps: int = 1000
    save_checkpoints_steps: int = 1000
    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0
    random_seed: int = 12345

    @property
    def is_demo(self):
        return not (self.train_file or self.predict_file or self.tfds_name)


def demo_spec(spec, demo_output_dir, demo_pretraining_dir):
    """The embedded default: finetune the demo pretraining checkpoint on squad_demo's questions."""
    from gmlp_tf.tasks.pretraining import job as pretraining_job
    from gmlp_tf.tasks.squad import demo_data as squad_demo

    init = spec.init_checkpoint or demo_pretraining_dir
    if not checkpointing.latest_weights(init):
        logging.info("No pretrained checkpoint in %s: running the pretraining demo first", init)
        pretraining_job.run(pretraining_job.JobSpec(output_dir=init), init)
    path = squad_demo.fetch_demo_squad()
    return dataclasses.replace(
        spec, init_checkpoint=init, output_dir=spec.output_dir or demo_output_dir, train_file=path,
        predict_file=path, do_train=True, do_predict=True, max_seq_length=128, doc_stride=64,
        max_query_length=32, train_batch_size=4, predict_batch_size=4, learning_rate=1e-3,
        num_train_steps=200, num_warmup_steps=20, save_checkpoints_steps=100,
    )


def read_examples(spec, is_training):
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


def _check(spec, config):
    if not (spec.do_train or spec.do_predict):
        raise ValueError("nothing to do: give --do_train and/or --do_predict")
    if not spec.output_dir:
        raise ValueError("--output_dir is required")
    if spec.max_seq_length > config.max_seq_length:
        raise ValueError(
            f"max_seq_length {spec.max_seq_length} exceeds the model config's max_seq_length {config.max_seq_length}"
        )
    if spec.num_train_steps % spec.save_checkpoints_steps:
        raise ValueError(
            f"num_train_steps ({spec.num_train_steps}) must be a multiple of save_checkpoints_steps "
            f"({spec.save_checkpoints_steps})"
        )


def compile_squad_model(model, setup, num_train_steps, learning_rate, steps_per_execution):
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


def run(spec: JobSpec, demo_output_dir=None, demo_pretraining_dir=None):
    """Trains and/or predicts; returns the evaluation scores (empty without gold answers)."""
    if spec.is_demo:
        spec = demo_spec(spec, demo_output_dir, demo_pretraining_dir)
    config, sp_model = load_model_files(spec.init_checkpoint, spec.gmlp_config_file, spec.vocab_file)
    _check(spec, config)
    setup = dataclasses.replace(
        SQUAD_SETUP, max_seq_length=spec.max_seq_length, train_batch_size=spec.train_batch_size,
        learning_rate=spec.learning_rate, warmup_proportion=spec.num_warmup_steps / spec.num_train_steps,
    )
    convert = dict(sp_model=sp_model, max_seq_length=spec.max_seq_length, doc_stride=spec.doc_stride,
                   max_query_length=spec.max_query_length)
    train_features = predict_examples = None
    if spec.do_train:
        train_features = squad.convert_examples_to_features(read_examples(spec, True)[0], is_training=True, **convert)
    if spec.do_predict:
        predict_examples = read_examples(spec, False)[0]
        predict_features = squad.convert_examples_to_features(predict_examples, is_training=False, **convert)

    keras.utils.set_random_seed(spec.random_seed)
    keras.mixed_precision.set_global_policy(spec.precision)
    strategy = get_strategy(spec.strategy, spec.tpu, spec.tpu_zone, spec.gcp_project)
    model_config = finetuning_config(config, setup)
    checkpointing.prepare_output_dir(spec.output_dir, model_config, "squad")
    checkpointing.write_vocab(spec.output_dir, sp_model)
    with strategy.scope():
        model = build_model(model_config, "squad")
        compile_squad_model(model, setup, spec.num_train_steps, spec.learning_rate, spec.steps_per_execution)
    if spec.init_checkpoint and not checkpointing.latest_weights(spec.output_dir):
        checkpointing.warm_start(model, spec.init_checkpoint, model_config)
    if spec.do_train:
        dataset = squad.features_to_dataset(
            train_features, is_training=True, batch_size=spec.train_batch_size, drop_remainder=True, seed=spec.random_seed
        ).repeat().map(_as_targets)
        training.fit_resumable(model, dataset, spec.output_dir, spec.num_train_steps // spec.save_checkpoints_steps,
                               spec.save_checkpoints_steps)
    if not spec.do_predict:
        return {}
    outputs = model.predict(squad.features_to_dataset(predict_features, False, spec.predict_batch_size), verbose=0)
    predictions, nbest, null_odds = squad.compute_predictions(
        predict_examples, predict_features, np.asarray(outputs["start_logits"]), np.asarray(outputs["end_logits"]),
        n_best_size=spec.n_best_size, max_answer_length=spec.max_answer_length,
        version_2_with_negative=spec.version_2_with_negative, null_score_diff_threshold=spec.null_score_diff_threshold,
    )
    squad.write_predictions(spec.output_dir, predictions, nbest, null_odds if spec.version_2_with_negative else None)
    if not any(e.answers or e.is_impossible for e in predict_examples):
        return {}  # A test file without gold answers: predictions only.
    scores = squad_evaluation.evaluate(predict_examples, predictions, spec.version_2_with_negative)
    checkpointing.write_text_atomically(
        os.path.join(spec.output_dir, "eval_results.txt"), "".join(f"{k} = {scores[k]}\n" for k in sorted(scores))
    )
    return scores


def report_lines(scores):
    return [f"{key} = {scores[key]}" for key in sorted(scores)]

