"""Table 7's batch augmentation with keras-cv layers: RandAugment, label smoothing, MixUp / CutMix.

keras-cv 0.9.0 has no AutoAugment layer (the paper's policy): keras_cv.layers.RandAugment
(Cubuk et al., 2020) stands in for it, as in DeiT's and timm's recipes for gMLP
(rand-m9-mstd0.5-inc1): 2 operations per image, magnitude 9 / 10, magnitude stddev 0.5 / 10.

MixUp (alpha 0.8) and CutMix (alpha 1.0) are keras_cv.layers.MixUp and CutMix; each batch gets
one or the other, CutMix with probability switch_prob (0.5). Labels are one-hot with label
smoothing 0.1 before mixing, so every mixed label row sums to one.

All three layers run inside tf.data (Dataset.map on whole batches) with Keras 3.15 and
TF 2.21: they are called with training=True on a batch in [0, 255] after `.batch()`.
Normalisation follows (imagenet_data.normalize).
"""

import dataclasses
from typing import Optional, Sequence, Tuple

import tensorflow as tf

from gmlp_tf.tasks.imagenet import data as imagenet_data


@dataclasses.dataclass
class AugmentConfig:
    """Table 7's defaults; rand_augment=False / mixup_alpha=0 / cutmix_alpha=0 switch parts off."""

    num_classes: int = 1000
    label_smoothing: float = 0.1
    rand_augment: bool = True
    rand_augment_ops: int = 2
    rand_augment_magnitude: float = 0.9  # timm's m9 on keras-cv's [0, 1] scale.
    rand_augment_magnitude_stddev: float = 0.05
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5  # Probability that a batch gets CutMix instead of MixUp.
    mean: Sequence[float] = imagenet_data.IMAGENET_MEAN
    std: Sequence[float] = imagenet_data.IMAGENET_STD


def smooth_one_hot(labels: tf.Tensor, num_classes: int, label_smoothing: float) -> tf.Tensor:
    """int labels [B] -> float32 [B, num_classes], (1 - eps) on the label plus eps / num_classes."""
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    return one_hot * (1.0 - label_smoothing) + label_smoothing / num_classes


class BatchAugmenter:
    """Callable (images [B, s, s, 3] in [0, 255], int labels [B]) -> (normalised images, soft labels)."""

    def __init__(self, config: AugmentConfig, seed: Optional[int] = None):
        import keras_cv  # Imported here: keras-cv is needed only for training.

        self.config = config
        self.rand_augment = None
        if config.rand_augment:
            self.rand_augment = keras_cv.layers.RandAugment(
                value_range=(0, 255),
                augmentations_per_image=config.rand_augment_ops,
                magnitude=config.rand_augment_magnitude,
                magnitude_stddev=config.rand_augment_magnitude_stddev,
                seed=seed,
            )
        self.mixup = keras_cv.layers.MixUp(alpha=config.mixup_alpha, seed=seed) if config.mixup_alpha > 0 else None
        self.cutmix = keras_cv.layers.CutMix(alpha=config.cutmix_alpha, seed=seed) if config.cutmix_alpha > 0 else None

    def __call__(self, images: tf.Tensor, labels: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        cfg = self.config
        images = tf.cast(images, tf.float32)
        if self.rand_augment is not None:
            images = tf.clip_by_value(self.rand_augment(images, training=True), 0.0, 255.0)
        soft = smooth_one_hot(labels, cfg.num_classes, cfg.label_smoothing)
        images, soft = self._mix(images, soft)
        return imagenet_data.normalize(images, cfg.mean, cfg.std), soft

    def _mix(self, images, labels):
        def apply(layer):
            def fn():
                out = layer({"images": images, "labels": labels}, training=True)
                return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)
            return fn

        if self.mixup is None and self.cutmix is None:
            return images, labels
        if self.cutmix is None:
            return apply(self.mixup)()
        if self.mixup is None:
            return apply(self.cutmix)()
        use_cutmix = tf.random.uniform([]) < self.config.switch_prob
        return tf.cond(use_cutmix, apply(self.cutmix), apply(self.mixup))


def augment_dataset(batches: tf.data.Dataset, config: AugmentConfig, seed: Optional[int] = None) -> tf.data.Dataset:
    """Maps imagenet_data.train_dataset's batches to (normalised images, soft labels)."""
    augmenter = BatchAugmenter(config, seed)
    return batches.map(augmenter, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
