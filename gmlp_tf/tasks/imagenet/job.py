"""One run_imagenet.py job: gMLP image classification with the paper's ImageNet recipe (Table 7).

Data: TFDS (--tfds_name imagenet2012, prepared beforehand) or an image folder
(--data_dir root with train/<class>/* and val/<class>/*). With neither, the embedded demo:
5,000 real MNIST digits from a PyPI wheel (digits_demo.py) and a small gMLP built in code.

Recipe defaults (Table 7): AdamW, peak lr 1e-3 at batch 4096 scaled linearly with the batch
size, (0.9, 0.999), eps 1e-6, weight decay 0.05, 10K warmup steps (at most max_warmup_fraction of
the run) then cosine decay, global-norm clipping 1.0, label smoothing 0.1, RandAugment (keras-cv
has no AutoAugment), MixUp 0.8 / CutMix 1.0 switched with probability 0.5, stochastic depth from
the preset, 300 epochs. Evaluation: top-1 and top-5 on the validation split (centre crop 0.875),
written to eval_results.txt.
"""

import dataclasses
import math
import os
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gmlp_tf.tasks.imagenet import augment
from gmlp_tf.runtime import checkpointing
from gmlp_tf.tasks.imagenet import demo_data as digits_demo
from gmlp_tf.tasks.imagenet import data as imagenet_data
from gmlp_tf.runtime import training
from gmlp_tf.runtime.flags import CommonSpec
from gmlp_tf.config import GMLPConfig
from gmlp_tf.runtime.distribution import get_strategy
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime.optimization import create_optimizer
from gmlp_tf.presets import get_preset_config

BASE_BATCH_SIZE = 4096
BASE_LEARNING_RATE = 1e-3
NORMALIZATIONS = {
    "imagenet": (imagenet_data.IMAGENET_MEAN, imagenet_data.IMAGENET_STD),
    "timm_gmlp": (imagenet_data.TIMM_GMLP_MEAN, imagenet_data.TIMM_GMLP_STD),
}
RESULTS_NAME = "eval_results.txt"


@dataclasses.dataclass
class JobSpec(CommonSpec):
    """The flags of run_imagenet.py (see the script for their help). None: the recipe's (or demo's) value."""

    preset: str = "gmlp_ti16_224"
    gmlp_config_file: Optional[str] = None
    tfds_name: Optional[str] = None
    tfds_data_dir: Optional[str] = None
    data_dir: Optional[str] = None
    num_classes: Optional[int] = None
    do_train: bool = True
    do_eval: bool = True
    train_batch_size: Optional[int] = None
    eval_batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    weight_decay: float = 0.05
    warmup_steps: Optional[int] = None
    max_warmup_fraction: float = 0.2
    clip_norm: float = 1.0
    num_train_epochs: Optional[float] = None
    num_train_steps: Optional[int] = None
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    mix_switch_prob: float = 0.5
    rand_augment: Optional[bool] = None
    normalization: Optional[str] = None
    crop_fraction: Optional[float] = None
    on_unreadable: str = "skip"
    shuffle_buffer: int = 10000
    random_seed: int = 12345

    @property
    def is_demo(self):
        return not (self.tfds_name or self.data_dir)


@dataclasses.dataclass
class Setup:
    """The resolved recipe (flags over the recipe's or the demo's defaults)."""

    train_batch_size: int = BASE_BATCH_SIZE
    eval_batch_size: int = 256
    learning_rate: Optional[float] = None  # None: BASE_LEARNING_RATE * batch / BASE_BATCH_SIZE.
    warmup_steps: int = 10000
    num_train_epochs: float = 300.0
    rand_augment: bool = True
    normalization: str = "imagenet"
    crop_fraction: float = imagenet_data.DEFAULT_CROP_FRACTION
    crop_area_range: tuple = (0.08, 1.0)
    flip: bool = True


# Digits: no flips (a mirrored 2 is no 2), gentle crops, no RandAugment (it rotates, shears and
# posterises 28 x 28 strokes into other digits), full-frame evaluation; MixUp / CutMix stay on.
DEMO_SETUP = Setup(train_batch_size=64, eval_batch_size=100, learning_rate=2e-3, warmup_steps=200,
                   num_train_epochs=30.0, rand_augment=False, normalization="timm_gmlp", crop_fraction=1.0,
                   crop_area_range=(0.6, 1.0), flip=False)


def resolve_setup(spec: JobSpec) -> Setup:
    base = DEMO_SETUP if spec.is_demo else Setup()
    changes = {name: getattr(spec, name) for name in (
        "train_batch_size", "eval_batch_size", "learning_rate", "warmup_steps", "num_train_epochs", "rand_augment",
        "normalization", "crop_fraction") if getattr(spec, name) is not None}
    setup = dataclasses.replace(base, **changes)
    if setup.learning_rate is None:
        setup.learning_rate = BASE_LEARNING_RATE * setup.train_batch_size / BASE_BATCH_SIZE
    if setup.normalization not in NORMALIZATIONS:
        raise ValueError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}, got {setup.normalization!r}")
    if setup.train_batch_size < 1 or setup.eval_batch_size < 1:
        raise ValueError("batch sizes must be positive")
    if not 0 < setup.crop_fraction <= 1:
        raise ValueError(f"--crop_fraction must be in (0, 1], got {setup.crop_fraction}")
    return setup


def resolve_config(spec: JobSpec) -> GMLPConfig:
    """The model config: the demo's, --gmlp_config_file or --preset; --num_classes overrides the head."""
    if spec.is_demo and not spec.gmlp_config_file:
        config = digits_demo.DEMO_CONFIG
    elif spec.gmlp_config_file:
        config = GMLPConfig.from_json_file(spec.gmlp_config_file)
    else:
        config = get_preset_config(spec.preset)
    if config.modality != "image":
        raise ValueError(f"run_imagenet.py needs an image config, got modality {config.modality!r}")
    if config.num_channels != 3:
        raise ValueError(f"the image pipeline makes 3-channel images; the config has num_channels {config.num_channels}")
    if spec.num_classes is not None:
        if spec.num_classes < 2:
            raise ValueError(f"--num_classes must be at least 2, got {spec.num_classes}")
        config = config.replace(num_classes=spec.num_classes)
    if spec.init_checkpoint:
        path = os.path.join(spec.init_checkpoint, checkpointing.CONFIG_NAME)
        if tf.io.gfile.exists(path):
            saved = GMLPConfig.from_json_file(path)
            if saved.num_classes != config.num_classes:
                raise ValueError(
                    f"--init_checkpoint {spec.init_checkpoint} has a {saved.num_classes}-class head but the model "
                    f"has {config.num_classes} classes")
    return config


def load_sources(spec: JobSpec, setup: Setup):
    """{split: (dataset, SourceInfo)} for the splits the job needs (train, validation)."""
    splits = ([imagenet_data.TRAIN] if spec.do_train else []) + ([imagenet_data.VALIDATION] if spec.do_eval else [])
    if spec.is_demo:
        images, labels = digits_demo.read_digits(digits_demo.fetch_digits_file())
        train, held_out = digits_demo.split_digits(images, labels)
        arrays = {imagenet_data.TRAIN: train, imagenet_data.VALIDATION: held_out}
        return {s: imagenet_data.array_source(*arrays[s], digits_demo.NUM_CLASSES) for s in splits}
    if spec.tfds_name and spec.data_dir:
        raise ValueError("give one source: --tfds_name or --data_dir, not both")
    if spec.tfds_name:
        return {s: imagenet_data.tfds_source(spec.tfds_name, s, spec.tfds_data_dir, shuffle_files=s == imagenet_data.TRAIN)
                for s in splits}
    _, _, class_names = imagenet_data.list_image_folder(spec.data_dir, imagenet_data.TRAIN)
    return {s: imagenet_data.image_folder_source(spec.data_dir, s, class_names, spec.on_unreadable) for s in splits}


def check_classes(sources, config):
    for split, (_, info) in sources.items():
        if info.num_classes != config.num_classes:
            raise ValueError(
                f"the {split} data has {info.num_classes} classes but the model config has {config.num_classes}; "
                f"pass --num_classes={info.num_classes} to train a new head (not with a checkpoint of another class count)")


def schedule(spec: JobSpec, setup: Setup, num_examples: int):
    """(epochs, steps_per_epoch, num_steps, warmup_steps)."""
    steps_per_epoch = num_examples // setup.train_batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{num_examples} training examples make no full batch of {setup.train_batch_size}")
    if spec.num_train_steps:
        steps_per_epoch = min(steps_per_epoch, spec.num_train_steps)
        epochs = math.ceil(spec.num_train_steps / steps_per_epoch)
    else:
        epochs = max(1, int(round(setup.num_train_epochs)))
    num_steps = epochs * steps_per_epoch
    warmup = min(setup.warmup_steps, int(spec.max_warmup_fraction * num_steps))
    return epochs, steps_per_epoch, num_steps, warmup


def evaluate(model, dataset, num_classes):
    """Top-1 / top-5 accuracy over the real (weight 1) examples of an eval_dataset."""
    logits = model.predict(dataset.map(lambda x, y, w: x), verbose=0)
    labels, weights = [], []
    for _, y, w in dataset.as_numpy_iterator():
        labels.append(y)
        weights.append(w)
    labels, weights = np.concatenate(labels), np.concatenate(weights)
    logits = logits[: len(labels)]
    k = min(5, num_classes)
    top1 = keras.metrics.SparseTopKCategoricalAccuracy(k=1)
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=k)
    top1.update_state(labels, logits, sample_weight=weights)
    top5.update_state(labels, logits, sample_weight=weights)
    return {"top_1_accuracy": float(top1.result()), "top_5_accuracy": float(top5.result()),
            "eval_examples": int(weights.sum())}


def run(spec: JobSpec, demo_output_dir: str):
    """Trains and / or evaluates; returns the results dict (also written to eval_results.txt)."""
    start = time.time()
    output_dir = spec.output_dir or (demo_output_dir if spec.is_demo else None)
    if not output_dir:
        raise ValueError("--output_dir is required")
    if spec.on_unreadable not in imagenet_data.ON_UNREADABLE:
        raise ValueError(f"--on_unreadable must be one of {', '.join(imagenet_data.ON_UNREADABLE)}")
    setup = resolve_setup(spec)
    config = resolve_config(spec)
    sources = load_sources(spec, setup)
    check_classes(sources, config)
    mean, std = NORMALIZATIONS[setup.normalization]
    keras.mixed_precision.set_global_policy(spec.precision)
    keras.utils.set_random_seed(spec.random_seed)
    strategy = get_strategy(spec.strategy, spec.tpu, spec.tpu_zone, spec.gcp_project)
    checkpointing.prepare_output_dir(output_dir, config, "vision")
    checkpointing.write_image_normalization(output_dir, mean, std)  # For export_saved_model.py.
    with strategy.scope():
        model = build_model(config, "vision")
    results = {}
    if spec.do_train:
        source, info = sources[imagenet_data.TRAIN]
        epochs, steps_per_epoch, num_steps, warmup = schedule(spec, setup, info.num_examples)
        logging.info("Training %d epochs x %d steps (batch %d, lr %g, warmup %d)", epochs, steps_per_epoch,
                     setup.train_batch_size, setup.learning_rate, warmup)
        with strategy.scope():
            optimizer = create_optimizer(setup.learning_rate, num_steps, warmup, weight_decay=spec.weight_decay,
                                         clip_norm=spec.clip_norm, decay="cosine")
            model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                          metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                          steps_per_execution=spec.steps_per_execution)
        if spec.init_checkpoint and not checkpointing.latest_weights(output_dir):
            checkpointing.warm_start(model, spec.init_checkpoint, config)
        batches = imagenet_data.train_dataset(source, config.image_size, setup.train_batch_size, spec.shuffle_buffer,
                                              seed=spec.random_seed, area_range=setup.crop_area_range, flip=setup.flip)
        aug = augment.AugmentConfig(num_classes=config.num_classes, label_smoothing=spec.label_smoothing,
                                    rand_augment=setup.rand_augment, mixup_alpha=spec.mixup_alpha,
                                    cutmix_alpha=spec.cutmix_alpha, switch_prob=spec.mix_switch_prob, mean=mean, std=std)
        training.fit_resumable(model, augment.augment_dataset(batches, aug, seed=spec.random_seed), output_dir,
                               epochs, steps_per_epoch, verbose=2)
        results["skipped_unreadable_train_images"] = len(info.skipped)
        results["global_step"] = int(model.optimizer.iterations.numpy())
    elif spec.init_checkpoint or checkpointing.latest_weights(output_dir):
        _load_for_eval(model, output_dir, spec.init_checkpoint, config)
    if spec.do_eval:
        source, info = sources[imagenet_data.VALIDATION]
        data = imagenet_data.eval_dataset(source, config.image_size, setup.eval_batch_size, mean, std,
                                          setup.crop_fraction)
        results.update(evaluate(model, data, config.num_classes))
        results["chance_top_1_accuracy"] = 1.0 / config.num_classes
        results["skipped_unreadable_eval_images"] = len(info.skipped)
    results["wall_time_s"] = round(time.time() - start, 1)
    checkpointing.write_text_atomically(os.path.join(output_dir, RESULTS_NAME),
                                        "".join(f"{k} = {results[k]}\n" for k in sorted(results)))
    return results


def _load_for_eval(model, output_dir, init_checkpoint, config):
    if checkpointing.latest_weights(output_dir):
        checkpointing.warm_start(model, output_dir, config)
    else:
        checkpointing.warm_start(model, init_checkpoint, config)


def report_lines(results, is_demo):
    lines = [f"{key} = {results[key]}" for key in sorted(results)]
    if "top_1_accuracy" in results:
        lines.append(f"Held-out top-1 {100 * results['top_1_accuracy']:.1f}% (top-5 "
                     f"{100 * results['top_5_accuracy']:.1f}%) vs chance {100 * results['chance_top_1_accuracy']:.1f}%"
                     + (" on MNIST digits" if is_demo else ""))
    return lines
