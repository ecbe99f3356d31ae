"""One run_imagenet.py job: gMLP image classification with the paper's ImageNet recipe (Table 7).

Data: TFDS (--tfds_name imagenet2012, prepared beforehand) or an image folder
(--data_dir root with train/<class>/* and val/<class>/*). With neither, the embedded demo:
5,000 real MNIST digits from a PyPI wheel (demo_data.py) and a small gMLP built in code.

Recipe defaults (Table 7): AdamW, peak lr 1e-3 at batch 4096 scaled linearly with the batch
size, (0.9, 0.999), eps 1e-6, weight decay 0.05, 10K warmup steps (at most max_warmup_fraction of
the run) then cosine decay, global-norm clipping 1.0, label smoothing 0.1, AutoAugment's ImageNet
policy (--augment=randaugment for RandAugment), Mixup 0.8 / CutMix 1.0 with one coefficient per
batch, switched with probability 0.5 (DeiT's), stochastic depth from the preset, 300 epochs.
--num_classes other than --init_checkpoint's (a 1000-class run, or a converted timm checkpoint)
warm-starts everything but the classifier head, which starts new. Evaluation: top-1 and (with more than 5 classes) top-5 on the validation
split (centre crop 0.875), written to eval_results.txt and eval_results.json.
"""

import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import keras
import tensorflow as tf
from absl import logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.task_models import build_model
from gmlp_tf.presets import get_preset_config
from gmlp_tf.runtime import checkpointing
from gmlp_tf.runtime import job as runtime
from gmlp_tf.runtime import progress, training
from gmlp_tf.runtime.flags import CommonSpec, option
from gmlp_tf.runtime.optimization import create_optimizer
from gmlp_tf.tasks.imagenet import augment as augmentation
from gmlp_tf.tasks.imagenet import data as imagenet_data
from gmlp_tf.tasks.imagenet import demo_data as digits_demo
from gmlp_tf.tasks.imagenet import metrics

BASE_BATCH_SIZE = 4096
BASE_LEARNING_RATE = 1e-3
NORMALIZATIONS = {
    "imagenet": (imagenet_data.IMAGENET_MEAN, imagenet_data.IMAGENET_STD),
    "timm_gmlp": (imagenet_data.TIMM_GMLP_MEAN, imagenet_data.TIMM_GMLP_STD),
}
DEMO_OUTPUT_DIR = os.path.join("output", "imagenet_demo")


@dataclasses.dataclass
class JobSpec(CommonSpec):
    """The flags of run_imagenet.py. None: the recipe's (or the demo's) value."""

    preset: str = option("gmlp_ti16_224", "Model preset: gmlp_ti16_224, gmlp_s16_224 or gmlp_b16_224 "
                                          "(stochastic depth survival 1.00 / 0.95 / 0.80).")
    gmlp_config_file: Optional[str] = option(None, "Model config JSON (instead of --preset).")
    tfds_name: Optional[str] = option(None, "TFDS dataset with image and label features, e.g. imagenet2012 "
                                            "(splits train and validation; never downloaded here).")
    tfds_data_dir: Optional[str] = option(None, "TFDS data directory.")
    data_dir: Optional[str] = option(None, "Image folder root with train/<class>/* and val/<class>/*.")
    num_classes: Optional[int] = option(
        None, "Classes of the head (default: the config's); must match the data. With an --init_checkpoint of "
        "another class count, everything but the head is warm-started and the head is new.")
    do_train: bool = option(True, "Train on the train split.")
    do_eval: bool = option(True, "Evaluate top-1 (and, with more than 5 classes, top-5) on the validation split.")
    train_batch_size: Optional[int] = option(None, "Global training batch size (Table 7: 4096; demo: 64).")
    eval_batch_size: Optional[int] = option(None, "Evaluation batch size (default 256; demo: 100).")
    learning_rate: Optional[float] = option(
        None, "Peak learning rate (default 1e-3 x train_batch_size / 4096, Table 7).")
    weight_decay: float = option(0.05, "AdamW decoupled weight decay (Table 7: 0.05).")
    warmup_steps: Optional[int] = option(
        None, "Linear warmup steps (Table 7: 10000), capped by --max_warmup_fraction.")
    max_warmup_fraction: float = option(0.2, "Warmup is at most this fraction of all training steps.")
    clip_norm: float = option(1.0, "Global-norm gradient clipping (Table 7: 1.0; 0 for none).")
    num_train_epochs: Optional[float] = option(None, "Training epochs (Table 7: 300; demo: 30).")
    num_train_steps: Optional[int] = option(None, "Train this many steps instead (rounded up to whole epochs).")
    label_smoothing: float = option(0.1, "Label smoothing (Table 7: 0.1).")
    mixup_alpha: float = option(0.8, "MixUp alpha (Table 7: 0.8; 0 disables).")
    cutmix_alpha: float = option(1.0, "CutMix alpha (Table 7: 1.0; 0 disables).")
    mix_switch_prob: float = option(0.5, "Probability that a batch gets CutMix instead of Mixup (Table 7: 0.5).")
    augment: Optional[str] = option(
        None, "Per-image augmentation: autoaugment (AutoAugment's ImageNet policy, Table 7; the default), "
        "randaugment (keras-cv RandAugment m9 n2, timm's rand-m9-mstd0.5) or none (the digits demo's default).",
        augmentation.AUGMENTATIONS)
    rand_augment: Optional[bool] = option(
        None, "Older spelling: true is --augment=randaugment, false --augment=none.")
    normalization: Optional[str] = option(
        None, "Pixel mean / std: imagenet (default, training from scratch) or timm_gmlp (0.5 / 0.5, timm's gMLP "
        "weights).", ("imagenet", "timm_gmlp"))
    crop_fraction: Optional[float] = option(None, "Evaluation centre crop fraction (default 0.875; demo 1.0).")
    on_unreadable: str = option("skip", "Image folder files found unreadable as they are read (empty, not an image, "
                                        "truncated): skip, log and count them, or fail naming the file.",
                                ("skip", "fail"))
    shuffle_buffer: int = option(10000, "Training shuffle buffer (examples).")

    @property
    def is_demo(self) -> bool:
        return not (self.tfds_name or self.data_dir)


@dataclasses.dataclass
class Setup:
    """The resolved recipe (flags over the recipe's or the demo's defaults)."""

    train_batch_size: int = BASE_BATCH_SIZE
    eval_batch_size: int = 256
    learning_rate: Optional[float] = None  # None: BASE_LEARNING_RATE * batch / BASE_BATCH_SIZE.
    warmup_steps: int = 10000
    num_train_epochs: float = 300.0
    augment: str = "autoaugment"
    normalization: str = "imagenet"
    crop_fraction: float = imagenet_data.DEFAULT_CROP_FRACTION
    crop_area_range: tuple = (0.08, 1.0)
    flip: bool = True


# Digits: no flips (a mirrored 2 is no 2), gentle crops, no AutoAugment / RandAugment (they rotate,
# shear, invert and posterise 28 x 28 strokes into other digits), full-frame evaluation; Mixup /
# CutMix stay on.
DEMO_SETUP = Setup(train_batch_size=64, eval_batch_size=100, learning_rate=2e-3, warmup_steps=200,
                   num_train_epochs=30.0, augment="none", normalization="timm_gmlp", crop_fraction=1.0,
                   crop_area_range=(0.6, 1.0), flip=False)


def check_flags(spec: JobSpec) -> None:
    """The numeric flags given (None: the recipe's), checked before any data is read or file written."""
    runtime.check_positive(
        learning_rate=spec.learning_rate, train_batch_size=spec.train_batch_size,
        eval_batch_size=spec.eval_batch_size, num_train_epochs=spec.num_train_epochs,
        num_train_steps=spec.num_train_steps, shuffle_buffer=spec.shuffle_buffer)
    runtime.check_non_negative(
        warmup_steps=spec.warmup_steps, weight_decay=spec.weight_decay, clip_norm=spec.clip_norm,
        mixup_alpha=spec.mixup_alpha, cutmix_alpha=spec.cutmix_alpha)
    fractions = {"max_warmup_fraction": spec.max_warmup_fraction, "label_smoothing": spec.label_smoothing,
                 "mix_switch_prob": spec.mix_switch_prob}
    for name, value in fractions.items():
        if not 0 <= value <= 1:
            raise ValueError(f"--{name} must be in [0, 1], got {value}")


def resolve_setup(spec: JobSpec) -> Setup:
    check_flags(spec)
    base = DEMO_SETUP if spec.is_demo else Setup()
    changes = {name: getattr(spec, name) for name in (
        "train_batch_size", "eval_batch_size", "learning_rate", "warmup_steps", "num_train_epochs", "augment",
        "normalization", "crop_fraction") if getattr(spec, name) is not None}
    if spec.rand_augment is not None:
        implied = "randaugment" if spec.rand_augment else "none"
        if spec.augment not in (None, implied):
            raise ValueError(f"--rand_augment={spec.rand_augment} contradicts --augment={spec.augment}")
        changes["augment"] = implied
    setup = dataclasses.replace(base, **changes)
    if setup.augment not in augmentation.AUGMENTATIONS:
        raise ValueError(f"--augment must be one of {', '.join(augmentation.AUGMENTATIONS)}, got {setup.augment!r}")
    if setup.learning_rate is None:
        setup.learning_rate = BASE_LEARNING_RATE * setup.train_batch_size / BASE_BATCH_SIZE
    if setup.normalization not in NORMALIZATIONS:
        raise ValueError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}, got {setup.normalization!r}")
    runtime.check_positive(train_batch_size=setup.train_batch_size, eval_batch_size=setup.eval_batch_size)
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
        source_config = init_source_config(spec.init_checkpoint, config)
        if source_config.num_classes != config.num_classes and not spec.do_train:
            raise ValueError(f"--init_checkpoint {spec.init_checkpoint} has a {source_config.num_classes}-class head "
                             f"but the model has {config.num_classes} classes: evaluating needs the same classes "
                             "(train a new head with --do_train)")
        runtime.check_init_checkpoint(spec.init_checkpoint, source_config)
    return config


def init_source_config(init_checkpoint: str, config: GMLPConfig) -> GMLPConfig:
    """`config` with the warm-start source's class count, to check and warm-start the model against.

    A source of another class count warm-starts everything but the classifier head, whose
    weights do not fit (checkpointing.warm_start leaves them new); the model keeps `config`.

    Raises:
      ValueError: the source holds a text model (a config without one is left to the runtime's check).
    """
    path = os.path.join(init_checkpoint, checkpointing.CONFIG_NAME)
    if not tf.io.gfile.exists(path):
        return config
    saved = GMLPConfig.from_json_file(path)
    if saved.modality != "image":
        info_path = os.path.join(init_checkpoint, checkpointing.RUN_INFO_NAME)
        try:
            with tf.io.gfile.GFile(info_path) as f:
                task = f" (a {json.load(f)['task']} run)"
        except (OSError, ValueError, KeyError, TypeError, tf.errors.OpError):  # No task to name.
            task = ""
        raise ValueError(f"--init_checkpoint {init_checkpoint} holds a {saved.modality} model{task}, not an image "
                         "classifier: give an output directory of run_imagenet.py")
    return config.replace(num_classes=saved.num_classes)


def load_sources(spec: JobSpec, setup: Setup) -> Dict[str, Tuple[tf.data.Dataset, imagenet_data.SourceInfo]]:
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


def check_classes(sources: Mapping[str, Tuple[tf.data.Dataset, imagenet_data.SourceInfo]], config: GMLPConfig) -> None:
    for split, (_, info) in sources.items():
        if info.num_classes != config.num_classes:
            raise ValueError(
                f"the {split} data has {info.num_classes} classes but the model config has {config.num_classes}; "
                f"pass --num_classes={info.num_classes} to train a new head (an --init_checkpoint of another class "
                "count warm-starts all but its head)")


def schedule(spec: JobSpec, setup: Setup, num_examples: int) -> Tuple[int, int, int, int]:
    """(epochs, steps_per_epoch, num_steps, warmup_steps)."""
    steps_per_epoch = num_examples // setup.train_batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{num_examples} training examples make no full batch of {setup.train_batch_size}")
    if spec.num_train_steps:
        steps_per_epoch = min(steps_per_epoch, spec.num_train_steps)
        epochs = math.ceil(spec.num_train_steps / steps_per_epoch)
    else:
        epochs = max(1, int(round(setup.num_train_epochs)))
    steps_per_epoch = runtime.whole_executions(steps_per_epoch, spec.steps_per_execution)
    num_steps = epochs * steps_per_epoch
    warmup = min(setup.warmup_steps, int(spec.max_warmup_fraction * num_steps))
    return epochs, steps_per_epoch, num_steps, warmup


@runtime.releases_locks
def run(spec: JobSpec) -> Dict[str, Any]:
    """Trains and / or evaluates; returns the results dict (also written to eval_results.txt / .json)."""
    start = time.time()
    output_dir = runtime.require_output_dir(spec.output_dir or (DEMO_OUTPUT_DIR if spec.is_demo else None))
    if spec.on_unreadable not in imagenet_data.ON_UNREADABLE:
        raise ValueError(f"--on_unreadable must be one of {', '.join(imagenet_data.ON_UNREADABLE)}")
    setup = resolve_setup(spec)
    config = resolve_config(spec)
    # The strategy before the sources: MultiWorkerMirroredStrategy must come before any TensorFlow op.
    strategy = runtime.start(spec)
    sources = load_sources(spec, setup)
    check_classes(sources, config)
    mean, std = NORMALIZATIONS[setup.normalization]
    chief = runtime.is_chief(strategy)
    runtime.prepare_output_dir(output_dir, config, "vision", strategy=strategy)
    if chief:
        checkpointing.write_image_normalization(output_dir, mean, std)  # For export_saved_model.py.
    with strategy.scope():
        model = build_model(config, "vision")
    results, data = {}, None
    if spec.do_eval:
        source, info = sources[imagenet_data.VALIDATION]
        data = imagenet_data.eval_dataset(source, config.image_size, setup.eval_batch_size, mean, std,
                                          setup.crop_fraction)
    evaluate_fn = None  # Across workers Keras evaluate cannot run: the chief evaluates after training.
    if data is not None and spec.eval_at_checkpoints and not runtime.is_multi_worker(strategy):
        evaluate_fn = lambda m: metrics.evaluate(m, data, config.num_classes)  # noqa: E731
    with unreadable_files_as_errors():  # Image files are read (and found unreadable) from here on.
        if spec.do_train:
            results.update(train(spec, setup, config, model, strategy, sources[imagenet_data.TRAIN], output_dir,
                                 evaluate_fn))
        elif spec.init_checkpoint or checkpointing.latest_weights(output_dir):
            _load_for_eval(model, output_dir, spec.init_checkpoint, config)
        model = runtime.model_to_evaluate(strategy, model, lambda: build_model(config, "vision"))
        if model is None:  # A worker other than the chief: nothing to report.
            return {}
        if spec.do_eval:
            what = "top-1 / top-5" if config.num_classes > metrics.TOP_K else "top-1"
            with progress.stage(f"Evaluating {what} on {info.num_examples:,} validation images") as step:
                results.update(metrics.evaluate(model, data, config.num_classes))
                step.result = f"top-1 {100 * results['top_1_accuracy']:.2f}%"
            results["chance_top_1_accuracy"] = 1.0 / config.num_classes
            results["skipped_unreadable_eval_images"] = _log_unreadable(info, "validation")
    results["wall_time_s"] = round(time.time() - start, 1)
    runtime.write_results(output_dir, results)
    return results


def train(spec: JobSpec, setup: Setup, config: GMLPConfig, model: keras.Model, strategy: tf.distribute.Strategy,
          train_source: Tuple[tf.data.Dataset, Any], output_dir: str,
          evaluate_fn: Optional[training.EvaluateFn] = None) -> Dict[str, int]:
    """Compiles with the Table 7 optimizer, warm-starts unless resuming, fits with augmentation."""
    source, info = train_source
    epochs, steps_per_epoch, num_steps, warmup = schedule(spec, setup, info.num_examples)
    logging.info("Training %d epochs x %d steps (batch %d, lr %g, warmup %d)", epochs, steps_per_epoch,
                 setup.train_batch_size, setup.learning_rate, warmup)
    with strategy.scope():
        optimizer = create_optimizer(setup.learning_rate, num_steps, warmup, weight_decay=spec.weight_decay,
                                     clip_norm=spec.clip_norm, decay="cosine")
        model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                      steps_per_execution=spec.steps_per_execution)
    source_config = init_source_config(spec.init_checkpoint, config) if spec.init_checkpoint else config
    if source_config.num_classes != config.num_classes and not checkpointing.latest_weights(output_dir):
        logging.warning("--init_checkpoint %s has a %d-class head and the model %d classes: warm-starting all but "
                        "the classifier head, which starts new", spec.init_checkpoint, source_config.num_classes,
                        config.num_classes)
    runtime.warm_start_unless_resuming(model, spec.init_checkpoint, output_dir, source_config)
    if runtime.is_chief(strategy):
        checkpointing.record_recipe(output_dir, dict(dataclasses.asdict(setup), num_train_steps=num_steps,
                                                     save_checkpoints_steps=steps_per_epoch, warmup_steps=warmup))
    batches = imagenet_data.train_dataset(source, config.image_size, setup.train_batch_size, spec.shuffle_buffer,
                                          seed=spec.random_seed, area_range=setup.crop_area_range, flip=setup.flip)
    mean, std = NORMALIZATIONS[setup.normalization]
    aug = augmentation.AugmentConfig(num_classes=config.num_classes, label_smoothing=spec.label_smoothing,
                                augment=setup.augment, mixup_alpha=spec.mixup_alpha,
                                cutmix_alpha=spec.cutmix_alpha, switch_prob=spec.mix_switch_prob, mean=mean, std=std)
    callbacks = [UnreadableFilesLog(info, "training")] if info.unreadable is not None else []
    training.fit_resumable(model, augmentation.augment_dataset(batches, aug, seed=spec.random_seed).skip, output_dir,
                           num_steps, steps_per_epoch, verbose=2, callbacks=callbacks,
                           log_every_steps=spec.log_every_steps, evaluate_fn=evaluate_fn)
    return {"skipped_unreadable_train_images": info.num_unreadable,
            "global_step": int(model.optimizer.iterations.numpy())}


class UnreadableFilesLog(keras.callbacks.Callback):
    """Logs at each epoch end how many image files the training data has skipped so far."""

    def __init__(self, info: imagenet_data.SourceInfo, split: str) -> None:
        super().__init__()
        self.info, self.split = info, split

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        _log_unreadable(self.info, self.split, " so far")


def _log_unreadable(info: imagenet_data.SourceInfo, split: str, when: str = "") -> int:
    """Logs the count of unreadable files of a source (if any); returns it."""
    count = info.num_unreadable
    if count:
        logging.warning("Unreadable %s image files skipped%s: %d (named in the log above)", split, when, count)
    return count


@contextlib.contextmanager
def unreadable_files_as_errors() -> Iterator[None]:
    """--on_unreadable=fail's error (a TF error from the input pipeline) -> ValueError naming the file.

    The script prints a ValueError as one line instead of a traceback.
    """
    try:
        yield
    except tf.errors.InvalidArgumentError as err:
        message = imagenet_data.unreadable_file_message(err)
        if message is None:
            raise
        raise ValueError(f"{message}; --on_unreadable=skip skips such files") from None


def _load_for_eval(model: keras.Model, output_dir: str, init_checkpoint: Optional[str], config: GMLPConfig) -> None:
    if checkpointing.latest_weights(output_dir):
        checkpointing.warm_start(model, output_dir, config)
    else:
        checkpointing.warm_start(model, init_checkpoint, config)


def report_lines(results: Dict[str, Any], spec: JobSpec) -> List[str]:
    """The lines the script prints: the results, then top-1 (and top-5, over 5 classes) beside chance."""
    lines = runtime.result_lines(results)
    if "top_1_accuracy" in results:
        top5 = f" (top-5 {100 * results['top_5_accuracy']:.1f}%)" if "top_5_accuracy" in results else ""
        lines.append(f"Held-out top-1 {100 * results['top_1_accuracy']:.1f}%{top5} vs chance "
                     f"{100 * results['chance_top_1_accuracy']:.1f}%" + (" on MNIST digits" if spec.is_demo else ""))
    return lines
