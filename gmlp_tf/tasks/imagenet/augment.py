"""Table 7's batch augmentation: AutoAugment (or RandAugment), label smoothing, Mixup / CutMix.

Per image: AutoAugment's ImageNet policy (autoaugment.py; the paper's choice and the default),
or keras-cv's RandAugment (rand-m9-mstd0.5: 2 operations per image, magnitude 9 / 10, stddev
0.5 / 10, as timm's and DeiT's default recipe), or nothing.

Per batch, as DeiT with timm's Mixup: ONE mixing coefficient lam ~ Beta(alpha, alpha) for the
whole batch, CutMix with probability switch_prob (alpha 1.0) and otherwise Mixup (alpha 0.8);
an alpha of 0 switches that one off. Image i is mixed with image B - 1 - i (the batch flipped).
Mixup: x = lam x + (1 - lam) x_flipped. CutMix: one box of side ratio sqrt(1 - lam), centred
uniformly and clipped to the image, is pasted from x_flipped, and lam becomes the uncovered
fraction. Labels are one-hot with label smoothing 0.1, then lam y + (1 - lam) y_flipped, so every
row sums to one.

Everything runs inside tf.data (Dataset.map on whole batches of [B, s, s, 3] in [0, 255] after
`.batch()`), with stateless randomness seeded by (seed, batch index): a given batch is augmented
the same on every run (the random-resized crops before it are drawn statefully, in data.py).
Normalisation follows (imagenet_data.normalize).
"""

import dataclasses
import random
from typing import Optional, Sequence, Tuple

import tensorflow as tf

from gmlp_tf.tasks.imagenet import autoaugment
from gmlp_tf.tasks.imagenet import data as imagenet_data

AUGMENTATIONS = ("autoaugment", "randaugment", "none")


@dataclasses.dataclass
class AugmentConfig:
    """Table 7's defaults; augment="none" / mixup_alpha=0 / cutmix_alpha=0 switch parts off."""

    num_classes: int = 1000
    label_smoothing: float = 0.1
    augment: str = "autoaugment"  # One of AUGMENTATIONS.
    rand_augment_ops: int = 2
    rand_augment_magnitude: float = 0.9  # timm's m9 on keras-cv's [0, 1] scale.
    rand_augment_magnitude_stddev: float = 0.05
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5  # Probability that a batch gets CutMix instead of Mixup.
    mean: Sequence[float] = imagenet_data.IMAGENET_MEAN
    std: Sequence[float] = imagenet_data.IMAGENET_STD


def smooth_one_hot(labels: tf.Tensor, num_classes: int, label_smoothing: float) -> tf.Tensor:
    """int labels [B] -> float32 [B, num_classes], (1 - eps) on the label plus eps / num_classes."""
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    return one_hot * (1.0 - label_smoothing) + label_smoothing / num_classes


def sample_beta(alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """One draw of Beta(alpha, alpha) (float32 scalar), from two stateless Gamma(alpha) draws."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    a = tf.random.stateless_gamma([], seeds[0], alpha)
    b = tf.random.stateless_gamma([], seeds[1], alpha)
    return a / tf.maximum(a + b, 1e-12)


def cutmix_box(height: tf.Tensor, width: tf.Tensor, lam: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """int32 [4] (y1, y2, x1, x2): a box of side ratio sqrt(1 - lam), centre uniform, clipped (timm's rule)."""
    ratio = tf.sqrt(1.0 - lam)
    cut_h = tf.cast(tf.cast(height, tf.float32) * ratio, tf.int32)
    cut_w = tf.cast(tf.cast(width, tf.float32) * ratio, tf.int32)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    cy = tf.random.stateless_uniform([], seeds[0], 0, height, dtype=tf.int32)
    cx = tf.random.stateless_uniform([], seeds[1], 0, width, dtype=tf.int32)
    y1, y2 = tf.clip_by_value(cy - cut_h // 2, 0, height), tf.clip_by_value(cy + cut_h // 2, 0, height)
    x1, x2 = tf.clip_by_value(cx - cut_w // 2, 0, width), tf.clip_by_value(cx + cut_w // 2, 0, width)
    return tf.stack([y1, y2, x1, x2])


def mixup(images: tf.Tensor, labels: tf.Tensor, lam: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """images [B, H, W, C], soft labels [B, K], scalar lam -> each row mixed with the flipped batch."""
    return (lam * images + (1.0 - lam) * tf.reverse(images, [0]),
            lam * labels + (1.0 - lam) * tf.reverse(labels, [0]))


def cutmix(images: tf.Tensor, labels: tf.Tensor, lam: tf.Tensor, seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """images [B, H, W, C], soft labels [B, K]: one box (the same for all rows) from the flipped batch.

    The label weight of the flipped batch is the box's exact share of the image.
    """
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    y1, y2, x1, x2 = tf.unstack(cutmix_box(height, width, lam, seed))
    rows = tf.logical_and(tf.range(height) >= y1, tf.range(height) < y2)
    cols = tf.logical_and(tf.range(width) >= x1, tf.range(width) < x2)
    box = tf.logical_and(rows[:, None], cols[None, :])[None, :, :, None]
    mixed = tf.where(box, tf.reverse(images, [0]), images)
    area = tf.cast((y2 - y1) * (x2 - x1), tf.float32) / tf.cast(height * width, tf.float32)
    lam = 1.0 - area
    return mixed, lam * labels + (1.0 - lam) * tf.reverse(labels, [0])


def mix_batch(images: tf.Tensor, labels: tf.Tensor, mixup_alpha: float, cutmix_alpha: float,
              switch_prob: float, seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """DeiT's per-batch mixing: images [B, H, W, C] float, soft labels [B, K], seed [2] int.

    CutMix with probability switch_prob when both alphas are positive, else the one that is;
    one lam for the whole batch. Both alphas 0: returned unchanged.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, labels
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 4)
    if cutmix_alpha <= 0:
        return mixup(images, labels, sample_beta(mixup_alpha, seeds[0]))
    if mixup_alpha <= 0:
        return cutmix(images, labels, sample_beta(cutmix_alpha, seeds[1]), seeds[2])
    use_cutmix = tf.random.stateless_uniform([], seeds[3]) < switch_prob
    return tf.cond(use_cutmix,
                   lambda: cutmix(images, labels, sample_beta(cutmix_alpha, seeds[1]), seeds[2]),
                   lambda: mixup(images, labels, sample_beta(mixup_alpha, seeds[0])))


class BatchAugmenter:
    """Callable (images [B, s, s, 3] in [0, 255], int labels [B], seed [2]) -> (normalised images, soft labels)."""

    def __init__(self, config: AugmentConfig, seed: Optional[int] = None):
        if config.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {config.augment!r}")
        self.config = config
        self.rand_augment = None
        if config.augment == "randaugment":
            import keras_cv  # Imported here: only RandAugment needs keras-cv.

            self.rand_augment = keras_cv.layers.RandAugment(
                value_range=(0, 255),
                augmentations_per_image=config.rand_augment_ops,
                magnitude=config.rand_augment_magnitude,
                magnitude_stddev=config.rand_augment_magnitude_stddev,
                seed=seed,
            )

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        cfg = self.config
        images = tf.cast(images, tf.float32)
        image_seed, mix_seed = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 2))
        if cfg.augment == "autoaugment":
            images = autoaugment.apply_policy(images, image_seed)
        elif self.rand_augment is not None:
            images = tf.clip_by_value(self.rand_augment(images, training=True), 0.0, 255.0)
        soft = smooth_one_hot(labels, cfg.num_classes, cfg.label_smoothing)
        images, soft = mix_batch(images, soft, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.switch_prob, mix_seed)
        return imagenet_data.normalize(images, cfg.mean, cfg.std), soft


def augment_dataset(batches: tf.data.Dataset, config: AugmentConfig, seed: Optional[int] = None) -> tf.data.Dataset:
    """Maps imagenet_data.train_dataset's batches to (normalised images, soft labels).

    Batch i draws its randomness from (seed, i); seed None draws one at random.
    """
    augmenter = BatchAugmenter(config, seed)
    base = tf.constant(random.randrange(2**31) if seed is None else seed, tf.int64)

    def fn(index, batch):
        images, labels = batch
        return augmenter(images, labels, tf.stack([base, index]))

    return batches.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
