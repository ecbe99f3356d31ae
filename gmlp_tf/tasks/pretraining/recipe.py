"""Masked-LM pretraining: the recipes of Table 8, the compiled model, and its held-out evaluation."""

import dataclasses
import warnings
from typing import Dict, Mapping, Optional, Tuple, Union

import keras
import tensorflow as tf
from absl import logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import training
from gmlp_tf.runtime.optimization import create_optimizer
from gmlp_tf.tasks.pretraining.metrics import MASKED_LM_LOSS, masked_lm_loss, masked_lm_metrics
from gmlp_tf.utils import progress

LABEL_FEATURES = ("masked_lm_ids", "masked_lm_weights")


@dataclasses.dataclass(frozen=True)
class PretrainingRecipe:
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
    "ablation": PretrainingRecipe(128, 20, 2048, 7e-4, 125_000, 10_000),
    "full": PretrainingRecipe(512, 80, 256, 1e-4, 1_000_000, 10_000),
    "demo": PretrainingRecipe(128, 20, 32, 2e-3, 1_500, 150),
    "long_demo": PretrainingRecipe(4096, 615, 2, 5e-4, 500, 50),
}


def split_features(features: Mapping[str, tf.Tensor]) -> Tuple[Dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
    """BERT features -> (inputs, masked_lm_ids, masked_lm_weights) for Keras fit and evaluate."""
    inputs = {k: v for k, v in features.items() if k not in LABEL_FEATURES}
    return inputs, features["masked_lm_ids"], features["masked_lm_weights"]


def build_pretraining_model(
    config: GMLPConfig,
    recipe: PretrainingRecipe,
    steps_per_execution: int = 1,
    weight_decay: float = 0.01,
    jit_compile: Union[bool, str] = "auto",
) -> keras.Model:
    """Builds and compiles the masked-LM model for training (call inside strategy.scope())."""
    model = build_model(config, "pretraining")
    compile_for_training(model, recipe, steps_per_execution, weight_decay, jit_compile)
    return model


def compile_for_training(model: keras.Model, recipe: PretrainingRecipe, steps_per_execution: int = 1,
                         weight_decay: float = 0.01, jit_compile: Union[bool, str] = "auto") -> None:
    """AdamW with the recipe's warmup and linear decay, the masked-LM loss and metrics."""
    model.compile(
        optimizer=create_optimizer(
            recipe.learning_rate, recipe.num_train_steps, recipe.num_warmup_steps, weight_decay=weight_decay
        ),
        loss=masked_lm_loss(),
        weighted_metrics=masked_lm_metrics(),
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )


def evaluation_model(config: GMLPConfig) -> keras.Model:
    """The masked-LM model compiled for evaluate() only (loss and metrics, no optimizer)."""
    model = build_model(config, "pretraining")
    model.compile(loss=masked_lm_loss(), weighted_metrics=masked_lm_metrics())
    return model


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

