"""AdamW with warmup and decay, as in BERT and the paper's Tables 7 to 9."""

from typing import Any, Dict, Optional

import keras
import tensorflow as tf
from keras import ops

# Variables whose names match are not weight-decayed: biases and LayerNorm scales and offsets.
NO_DECAY_NAMES = ("bias", "gamma", "beta")


@keras.saving.register_keras_serializable(package="gmlp_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to the peak rate over warmup_steps, then `after_warmup`.

    Args:
      peak_learning_rate: the rate reached at the end of the warmup.
      warmup_steps: number of warmup steps (0 for none).
      after_warmup: a LearningRateSchedule evaluated at (step - warmup_steps).
    """

    def __init__(
        self,
        peak_learning_rate: float,
        warmup_steps: int,
        after_warmup: keras.optimizers.schedules.LearningRateSchedule,
    ):
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.after_warmup = after_warmup

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = ops.cast(step, "float32")
        warmup = self.peak_learning_rate * step / max(self.warmup_steps, 1)
        decayed = self.after_warmup(ops.maximum(step - self.warmup_steps, 0.0))
        return ops.where(step < self.warmup_steps, warmup, ops.cast(decayed, "float32"))

    def get_config(self) -> Dict[str, Any]:
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "after_warmup": keras.saving.serialize_keras_object(self.after_warmup),
        }

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "WarmupSchedule":
        config = dict(config)
        config["after_warmup"] = keras.saving.deserialize_keras_object(config["after_warmup"])
        return cls(**config)


def learning_rate_schedule(
    peak_learning_rate: float, num_train_steps: int, num_warmup_steps: int, decay: str = "linear"
) -> WarmupSchedule:
    """Warmup, then linear (BERT, Tables 8 and 9) or cosine (Table 7) decay to zero at num_train_steps."""
    if num_warmup_steps > num_train_steps:
        raise ValueError(f"num_warmup_steps ({num_warmup_steps}) exceeds num_train_steps ({num_train_steps})")
    decay_steps = max(num_train_steps - num_warmup_steps, 1)
    if decay == "linear":
        after = keras.optimizers.schedules.PolynomialDecay(peak_learning_rate, decay_steps, 0.0, power=1.0)
    elif decay == "cosine":
        after = keras.optimizers.schedules.CosineDecay(peak_learning_rate, decay_steps, alpha=0.0)
    else:
        raise ValueError(f"unknown learning-rate decay {decay!r}; expected 'linear' or 'cosine'")
    return WarmupSchedule(peak_learning_rate, num_warmup_steps, after)


def create_optimizer(
    learning_rate: float,
    num_train_steps: int,
    num_warmup_steps: int,
    weight_decay: float = 0.01,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    clip_norm: Optional[float] = None,
    decay: str = "linear",
) -> keras.optimizers.AdamW:
    """keras.optimizers.AdamW with the warmup schedule; biases and LayerNorm are not decayed.

    Args:
      learning_rate: peak learning rate.
      num_train_steps, num_warmup_steps: schedule length and warmup.
      weight_decay: decoupled weight decay (0.01 for MLM and finetuning, 0.05 for ImageNet).
      beta_1, beta_2, epsilon: Adam constants (the paper: 0.9, 0.999, 1e-6).
      clip_norm: global-norm gradient clipping, or None / 0 for none (the paper clips only ImageNet).
      decay: "linear" or "cosine".
    """
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate_schedule(learning_rate, num_train_steps, num_warmup_steps, decay),
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=clip_norm or None,
    )
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
    return optimizer
