"""The serving signatures of an image classifier ("vision" run): encoded images or pixels in, classes out."""

from typing import Any, Callable, Dict, Sequence, Tuple, Union

import keras
import tensorflow as tf

from gmlp_tf.config import GMLPConfig
from gmlp_tf.export.common import ExportModule, Signatures
from gmlp_tf.models import saved_runs

# timm's gMLP normalisation, for runs that recorded none: x -> (x - 0.5) / 0.5.
IMAGE_MEAN = 0.5
IMAGE_STD = 0.5

ServeFn = Callable[..., Dict[str, tf.Tensor]]


class ImageModule(ExportModule):
    """Serves logits and probabilities of encoded images, uint8 images or normalised pixels."""

    def __init__(self, model: keras.Model, config: GMLPConfig, mean: Union[float, Sequence[float]] = IMAGE_MEAN,
                 std: Union[float, Sequence[float]] = IMAGE_STD) -> None:
        super().__init__(model, config, config.seq_length)
        # The forward pass compiled with XLA (twice as fast on CPU as the op-by-op graph); the
        # decoding and resizing around it stay ordinary ops.
        self._keras_call = tf.function(lambda pixels: model(pixels, training=False), jit_compile=True)
        # Per-channel constants of the run's training normalisation (of [0, 1] pixels).
        self.mean = tf.constant(mean, tf.float32)
        self.std = tf.constant(std, tf.float32)

    def normalize(self, images: tf.Tensor) -> tf.Tensor:
        """float [.., c] pixels in 0..255 -> the normalised pixels the model was trained on."""
        return (images / 255.0 - self.mean) / self.std

    def outputs(self, pixels: tf.Tensor) -> Dict[str, tf.Tensor]:
        """float32 [batch, S, S, c] normalised -> logits, probabilities float32 [batch, num_classes]."""
        logits = self._keras_call(pixels)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def preprocess(self, images: tf.Tensor) -> tf.Tensor:
        """uint8 (or float 0..255) [batch, h, w, c] -> normalised float32 [batch, S, S, c]."""
        size = self.config.image_size
        images = tf.image.resize(tf.cast(images, tf.float32), [size, size], method="bilinear")
        return self.normalize(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes: tf.Tensor) -> Dict[str, tf.Tensor]:
        """image_bytes string [batch] (JPEG / PNG / GIF / BMP) -> `outputs`; undecodable bytes are an error."""
        size, channels = self.config.image_size, self.config.num_channels

        def decode(data: tf.Tensor) -> tf.Tensor:
            image = tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)
            image = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bilinear")
            return tf.ensure_shape(image, [size, size, channels])

        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32))
        return self.outputs(self.normalize(images))

    def serve_images_fn(self) -> ServeFn:
        """The `images` signature: uint8 [batch, h, w, num_channels] -> `outputs`."""
        # Made per module: the channel count of the input signature comes from the config.
        channels = self.config.num_channels

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")])
        def serve_images(images: tf.Tensor) -> Dict[str, tf.Tensor]:
            return self.outputs(self.preprocess(images))

        return serve_images

    def serve_encoded_fn(self) -> ServeFn:
        """The `encoded` signature: pixel_values float32 [batch, S, S, num_channels], normalised -> `outputs`."""
        cfg = self.config

        @tf.function(input_signature=[tf.TensorSpec([None, cfg.image_size, cfg.image_size, cfg.num_channels],
                                                    tf.float32, name="pixel_values")])
        def serve_encoded(pixel_values: tf.Tensor) -> Dict[str, tf.Tensor]:
            return self.outputs(pixel_values)

        return serve_encoded


def build(model: keras.Model, config: GMLPConfig, model_dir: str) -> Tuple[ImageModule, Signatures, Dict[str, Any]]:
    """The image module, its signatures and its export info (image size, normalisation)."""
    # The run's own normalisation (run_imagenet.py, convert_timm_checkpoint.py record it);
    # timm's gMLP one (mean = std = 0.5) for runs that recorded none.
    channels = config.num_channels
    mean, std = saved_runs.read_image_normalization(model_dir) or ((IMAGE_MEAN,) * channels, (IMAGE_STD,) * channels)
    module = ImageModule(model, config, mean, std)
    # Attributes of the module, so that the saved object tracks the functions made per config.
    module.serve_images = module.serve_images_fn()
    module.serve_pixels = module.serve_encoded_fn()
    signatures = {"serving_default": module.serve_bytes, "images": module.serve_images,
                  "encoded": module.serve_pixels}
    export_info = {"image_size": config.image_size, "image_mean": list(mean), "image_std": list(std)}
    return module, signatures, export_info
