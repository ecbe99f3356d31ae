"""Masked-LM pretraining with Keras fit: the setups of Table 8, the compiled model, train and evaluate."""

import dataclasses
import warnings
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import keras
import tensorflow as tf
from absl import logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import job as runtime
from gmlp_tf.runtime import checkpointing, progress, training
from gmlp_tf.runtime.optimization import create_optimizer
from gmlp_tf.tasks.pretraining.metrics import MASKED_LM_LOSS, masked_lm_loss, masked_lm_metrics

LABEL_FEATURES = ("masked_lm_ids", "masked_lm_weights")


@dataclasses.dataclass(frozen=True)
class PretrainingSetup:
    """Data and optimisation hyperparameters of one pretraining recipe."""

    max_seq_length: int
    max_predictions_per_seq: int
    train_batch_size: int
    learning_rate: float
    num_train_steps: int
    num_warmup_steps: int


# Table 8: the ablation setup (C4/RealNews) and the full setup (C4/English); AdamW
# (0.9, 0.999, 1e-6), weight decay 0.01, linear decay, no clipping, dropout 0 in both.
# "demo" is the embedded default: a few minutes on a 2-core CPU. "long_demo" is the demo of
# the gmlp_long preset: 4096-token sequences (15% masked) in batches of 2, about the demo's tokens
# per step, through the FFT spatial projection.
SETUPS = {
    "ablation": PretrainingSetup(128, 20, 2048, 7e-4, 125_000, 10_000),
    "full": PretrainingSetup(512, 80, 256, 1e-4, 1_000_000, 10_000),
    "demo": PretrainingSetup(128, 20, 32, 2e-3, 1_500, 150),
    "long_demo": PretrainingSetup(4096, 615, 2, 5e-4, 500, 50),
}


def split_features(features: Mapping[str, tf.Tensor]) -> Tuple[Dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
    """BERT features -> (inputs, masked_lm_ids, masked_lm_weights) for Keras fit and evaluate."""
    inputs = {k: v for k, v in features.items() if k not in LABEL_FEATURES}
    return inputs, features["masked_lm_ids"], features["masked_lm_weights"]


def build_pretraining_model(
    config: GMLPConfig,
    setup: PretrainingSetup,
    steps_per_execution: int = 1,
    weight_decay: float = 0.01,
    jit_compile: Union[bool, str] = "auto",
) -> keras.Model:
    """Builds and compiles the masked-LM model (call inside strategy.scope())."""
    model = build_model(config, "pretraining")
    model.compile(
        optimizer=create_optimizer(
            setup.learning_rate, setup.num_train_steps, setup.num_warmup_steps, weight_decay=weight_decay
        ),
        loss=masked_lm_loss(),
        weighted_metrics=masked_lm_metrics(),
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


def evaluation_model(config: GMLPConfig, output_dir: str) -> Tuple[keras.Model, int]:
    """(model, step): the masked-LM model with output_dir's newest checkpoint (of that step),
    compiled for evaluate() only."""
    model = build_model(config, "pretraining")
    step = checkpointing.load_model_weights(model, output_dir).step or 0
    model.compile(loss=masked_lm_loss(), weighted_metrics=masked_lm_metrics())
    return model, step


def train(
    model: keras.Model,
    train_dataset: Callable[[int], training.DatasetLike],
    output_dir: str,
    num_train_steps: int,
    save_checkpoints_steps: int,
    verbose: Union[int, str] = 1,
    log_every_steps: int = 100,
    evaluate_fn: Optional[training.EvaluateFn] = None,
) -> keras.callbacks.History:
    """Runs fit() with a checkpoint every save_checkpoints_steps steps; resumes exactly from output_dir.

    Args:
      model: the compiled pretraining model.
      train_dataset: skip -> repeating dataset (or DistributedDataset) of (inputs, ids, weights)
        without its first `skip` batches (see training.fit_resumable).
      output_dir: where checkpoints and TensorBoard logs go.
      num_train_steps: total optimizer steps.
      save_checkpoints_steps: steps between checkpoints.
      verbose: as for fit().
      log_every_steps: steps between the TensorBoard training scalars.
      evaluate_fn: model -> held-out metrics, run at every checkpoint (TensorBoard eval/).

    Returns:
      The keras History of this call (empty when the run was already complete).
    """
    runtime.check_checkpoint_interval(num_train_steps, save_checkpoints_steps, model.steps_per_execution)
    return training.fit_resumable(
        model, train_dataset, output_dir, num_train_steps, save_checkpoints_steps, verbose,
        log_every_steps=log_every_steps, evaluate_fn=evaluate_fn,
    )


def evaluate(
    model: keras.Model,
    eval_dataset: Union[tf.data.Dataset, tf.distribute.DistributedDataset],
    max_eval_steps: Optional[int] = None,
    verbose: Union[int, str] = 0,
) -> Dict[str, float]:
    """Evaluates on held-out data: one pass over all of it, or over exactly max_eval_steps batches.

    Returns:
      dict with "loss" (the mean masked-LM cross-entropy over every masked token, so that
      perplexity = exp(loss)), "masked_lm_accuracy", "perplexity", "eval_batches" (batches read)
      and "global_step". When the held-out set ends before max_eval_steps batches, all of it is
      evaluated and a warning says how much that was.
    """
    counter = _BatchCounter()
    callbacks = [counter] + ([] if verbose else [progress.logging_callback("Evaluating the held-out data")])
    with warnings.catch_warnings(), progress.stage("Evaluating the held-out data") as step:
        # A held-out set is read to its end; Keras warns that it "ran out of data".
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        results = model.evaluate(
            eval_dataset, steps=max_eval_steps, return_dict=True, verbose=verbose, callbacks=callbacks
        )
        step.result = f"{counter.batches} batches"
    if not counter.batches:
        raise ValueError("the held-out data gives no full evaluation batch: lower --eval_batch_size or add "
                         "held-out text")
    results = {k: float(v) for k, v in results.items()}
    # Keras' "loss" averages per-batch means; the token-weighted mean is the one exp() turns into perplexity.
    results["loss"] = results.pop(MASKED_LM_LOSS)
    results["eval_batches"] = counter.batches
    if max_eval_steps and counter.batches < max_eval_steps:
        logging.warning("The held-out set has %d batches, fewer than --max_eval_steps=%d: evaluated all of them",
                        counter.batches, max_eval_steps)
    results["global_step"] = training.global_step(model)
    return results


class _BatchCounter(keras.callbacks.Callback):
    """Counts the evaluation batches actually read (a callback sees the last step of each execution)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def on_test_batch_end(self, batch: int, logs: Optional[Dict[str, float]] = None) -> None:
        self.batches = batch + 1


current_step = training.global_step
