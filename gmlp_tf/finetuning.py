"""Finetuning recipe shared by run_classifier.py and run_squad.py (the paper's Table 9)."""

import dataclasses
import math
import os
from typing import List, Optional, Sequence, Tuple, Union

import keras
import numpy as np

from gmlp_tf import tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.runtime.optimization import create_optimizer


@dataclasses.dataclass(frozen=True)
class FinetuningRecipe:
    """Table 9: hidden and attention dropout 0.1, AdamW (0.9, 0.999, 1e-6), weight decay 0.01,
    linear decay, no clipping; GLUE: seq 128, batch {16, 32}, lr {1e-5, 2e-5, 3e-5}, 5 epochs,
    10% warmup; SQuAD: seq 512, batch 32, lr 5e-5, 8K steps, 1K warmup."""

    max_seq_length: int = 128
    train_batch_size: int = 32
    learning_rate: float = 2e-5
    num_train_epochs: float = 5.0
    warmup_proportion: float = 0.1
    hidden_dropout_prob: float = 0.1
    attention_dropout_prob: float = 0.1
    weight_decay: float = 0.01

    def schedule(self, num_examples: int) -> Tuple[int, int, int]:
        """(epochs, steps_per_epoch, num_train_steps) for fit() on a repeating dataset.

        num_train_epochs may be fractional (BERT's 3.0, or 2.5): the run takes
        num_examples / batch * num_train_epochs steps, spread over whole Keras epochs (one
        checkpoint each).
        """
        total = int(num_examples // self.train_batch_size * self.num_train_epochs)
        if total <= 0:
            raise ValueError(
                f"{num_examples} training examples make no batch of {self.train_batch_size} in "
                f"{self.num_train_epochs} epochs"
            )
        epochs = max(1, math.ceil(self.num_train_epochs))
        steps_per_epoch = math.ceil(total / epochs)
        return epochs, steps_per_epoch, epochs * steps_per_epoch

    def num_warmup_steps(self, num_train_steps: int) -> int:
        return int(num_train_steps * self.warmup_proportion)


def finetuning_config(config: GMLPConfig, setup: FinetuningRecipe) -> GMLPConfig:
    """The pretrained model's config with the finetuning dropout."""
    return config.replace(
        hidden_dropout_prob=setup.hidden_dropout_prob, attention_dropout_prob=setup.attention_dropout_prob
    )


def finetuning_optimizer(
    setup: FinetuningRecipe, num_train_steps: int, learning_rate: Optional[float] = None
) -> keras.optimizers.AdamW:
    lr = setup.learning_rate if learning_rate is None else learning_rate
    return create_optimizer(
        lr, num_train_steps, setup.num_warmup_steps(num_train_steps), weight_decay=setup.weight_decay
    )


def compile_classifier(
    model: keras.Model, is_regression: bool, optimizer: keras.optimizers.Optimizer, steps_per_execution: int = 1
) -> None:
    """Cross-entropy (or, for STS-B, mean squared error) with example weights, BERT's losses."""
    if is_regression:
        loss, metrics = keras.losses.MeanSquaredError(), []
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=optimizer, loss=loss, weighted_metrics=metrics, steps_per_execution=steps_per_execution)


def predictions_from_logits(
    logits: np.ndarray, label_list: Optional[Sequence[str]]
) -> Union[List[str], List[float]]:
    """Label strings (argmax) or, for regression (label_list None), float scores."""
    logits = np.asarray(logits)
    if label_list is None:
        return [float(x) for x in logits.reshape(-1)]
    return [label_list[i] for i in np.argmax(logits, axis=-1)]


def load_model_files(
    init_checkpoint: Optional[str] = None, config_file: Optional[str] = None, vocab_file: Optional[str] = None
) -> Tuple[GMLPConfig, bytes]:
    """The model config and SentencePiece model: from the given files, else from init_checkpoint.

    Returns:
      (GMLPConfig, serialized SentencePiece model bytes), checked against each other.

    Raises:
      ValueError: no model given, an image model's config (before its missing vocabulary is looked
        for), or a vocabulary that does not fit the config.
    """
    given_config = config_file
    config_file = config_file or (init_checkpoint and os.path.join(init_checkpoint, saved_runs.CONFIG_NAME))
    vocab_file = vocab_file or (init_checkpoint and os.path.join(init_checkpoint, saved_runs.VOCAB_NAME))
    if not config_file or not vocab_file:
        raise ValueError(
            "give --init_checkpoint (a run_pretraining output directory) or --gmlp_config_file and --vocab_file"
        )
    config = GMLPConfig.from_json_file(config_file)
    if config.modality == "image" and given_config:
        raise ValueError(f"--gmlp_config_file {given_config} is the config of an image model, not a text encoder")
    if config.modality == "image":
        raise ValueError(f"--init_checkpoint {init_checkpoint} holds an image model (a run_imagenet.py run), not a "
                         "text encoder: give an output directory of run_pretraining.py")
    sp_model = tokenization.load_model_vocab(vocab_file, config.vocab_size)
    return config, sp_model
