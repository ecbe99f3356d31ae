"""The gMLP image classifier (paper, Table 1), laid out as timm's gmlp_*16_224."""

from typing import Any, Dict, Optional, Union

import keras
import numpy as np
from keras import ops

from gmlp_tf.config import GMLPConfig, as_config
from gmlp_tf.layers import Shape, Tensor
from gmlp_tf.layers.blocks import blocks_from_config


@keras.saving.register_keras_serializable(package="gmlp_tf")
class GMLPVisionClassifier(keras.Model):
    """gMLP-Ti / S / B for images.

    A patch_size x patch_size, stride patch_size convolution (with bias, no norm, no position
    embedding, no class token) turns the image into n = (image_size / patch_size)^2 tokens;
    L gMLP blocks with a dense n x n spatial projection; final LayerNorm; mean over tokens;
    linear head. Initialisation follows timm (W ~ N(0, 1e-6), b = 1; xavier-uniform channel
    projections with N(0, 1e-6) biases; lecun-normal stem; zero head), so that a timm
    checkpoint maps onto it weight for weight (the stem kernel transposed from OIHW to HWIO).

    Args:
      config: an image GMLPConfig or its dict.

    Call args:
      inputs: float [batch, image_size, image_size, num_channels], already normalised.
      training: enables stochastic depth.

    Returns:
      float32 logits [batch, num_classes].
    """

    def __init__(self, config: Union[GMLPConfig, Dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = as_config(config)
        cfg = self.config
        if cfg.modality != "image":
            raise ValueError(f"GMLPVisionClassifier needs an image config, got modality {cfg.modality!r}")
        self.stem = keras.layers.Conv2D(
            cfg.d_model,
            cfg.patch_size,
            strides=cfg.patch_size,
            kernel_initializer="lecun_normal",
            name="stem",
        )
        self.blocks = blocks_from_config(
            cfg,
            kernel_initializer="glorot_uniform",
            bias_initializer=keras.initializers.serialize(keras.initializers.RandomNormal(stddev=1e-6)),
        )
        self.final_norm = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name="final_norm")
        self.head = keras.layers.Dense(cfg.num_classes, kernel_initializer="zeros", name="head")
        if keras.backend.backend() == "tensorflow":
            # predict / evaluate / fit compile with XLA unless compile() says otherwise: Keras'
            # "auto" turns XLA off on CPUs, where it doubles this model's inference speed. (JAX
            # always compiles; on PyTorch it would mean torch.compile.)
            self.jit_compile = True

    def build(self, input_shape: Shape) -> None:
        cfg = self.config
        tokens_shape = (input_shape[0], cfg.seq_length, cfg.d_model)
        self.stem.build(input_shape)
        for block in self.blocks:
            block.build(tokens_shape)
        self.final_norm.build(tokens_shape)
        self.head.build((input_shape[0], cfg.d_model))

    def call(self, inputs: Tensor, training: Optional[bool] = None) -> Tensor:
        cfg = self.config
        expected = (cfg.image_size, cfg.image_size, cfg.num_channels)
        if len(inputs.shape) != 4 or tuple(inputs.shape[1:]) != expected:
            raise ValueError(
                f"images must be [batch, {expected[0]}, {expected[1]}, {expected[2]}], got shape "
                f"{tuple(inputs.shape)}"
            )
        x = self.stem(inputs)  # [batch, h / p, w / p, d_model]
        x = ops.reshape(x, (-1, cfg.seq_length, cfg.d_model))  # Row-major patches, as timm's flatten.
        for block in self.blocks:
            x = block(x, training=training)
        x = ops.mean(self.final_norm(x), axis=1)
        return ops.cast(self.head(x), "float32")

    def predict(self, x: Any, batch_size: Optional[int] = None, verbose: Union[str, int] = "auto",
                steps: Optional[int] = None, callbacks: Any = None) -> np.ndarray:
        """keras.Model.predict, with in-memory images fed by a tf.data pipeline that does not autotune.

        For an array or tensor x, Keras builds a pipeline whose AUTOTUNE map and prefetch start
        tf.data's tuning thread, which takes a core from the model on a small machine: on
        2 cores gMLP-Ti/16 took 0.65 s for most batches of 32 instead of 0.36 s. Datasets and
        generators go to Keras unchanged, as is everything on the JAX and PyTorch backends.
        """
        if keras.backend.backend() != "tensorflow":
            return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)
        import tensorflow as tf

        if isinstance(x, np.ndarray) or tf.is_tensor(x):
            options = tf.data.Options()
            options.autotune.enabled = False
            x = tf.data.Dataset.from_tensor_slices(x).batch(batch_size or 32).with_options(options)
            batch_size = None
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)

    def get_config(self) -> Dict[str, Any]:
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "GMLPVisionClassifier":
        return cls(**config)
