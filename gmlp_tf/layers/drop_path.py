"""Stochastic depth (drop path): the residual branch of each example is dropped at random."""

from typing import Any, Dict, Optional

import keras
from keras import ops

from gmlp_tf.layers import Shape, Tensor


@keras.saving.register_keras_serializable(package="gmlp_tf")
class DropPath(keras.layers.Layer):
    """Zeroes the whole input of an example with probability `rate` in training.

    Kept examples are scaled by 1 / (1 - rate), so the expected output equals the input and
    inference (where the layer is the identity) needs no rescaling. Used on a block's residual
    branch, this is the stochastic depth of Huang et al. (2016) as timm and DeiT apply it.

    Args:
      rate: probability of dropping an example's branch, in [0, 1).
      seed: seed of the layer's random draws.

    Call args:
      inputs: [batch, ...].
      training: drop only when True.

    Returns:
      [batch, ...], the same shape.
    """

    def __init__(self, rate: float = 0.0, seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Tensor, training: Optional[bool] = None) -> Tensor:
        if not training or self.rate == 0.0:
            return inputs
        # One draw per example, broadcast over every other axis.
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        keep = ops.cast(keras.random.uniform(shape, seed=self.seed_generator) > self.rate, inputs.dtype)
        return inputs / (1.0 - self.rate) * keep

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
