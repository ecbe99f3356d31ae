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
warm-starts everything but the classifier head, which starts new. Evaluation: top-1 and (with more
than 5 classes) top-5 on the validation split (centre crop 0.875), written to eval_results.txt and
eval_results.json.
"""

import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Mapping, Optional, Tuple

import keras
import tensorflow as tf
from absl import logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.models.task_models import build_model
from gmlp_tf.presets import get_preset_config
from gmlp_tf.runtime import checks, run_directory, runner
from gmlp_tf.runtime.flags import CommonSpec, option
from gmlp_tf.runtime.optimization import create_optimizer
from gmlp_tf.runtime.task import RunState, Schedule, Task
from gmlp_tf.runtime.training import DatasetLike, EvaluateFn
from gmlp_tf.tasks.imagenet import augment as augmentation
from gmlp_tf.tasks.imagenet import data as imagenet_data
from gmlp_tf.tasks.imagenet import demo_data as digits_demo
from gmlp_tf.tasks.imagenet import metrics
from gmlp_tf.utils import progress

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
class ImageNetRecipe:
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
DEMO_RECIPE = ImageNetRecipe(train_batch_size=64, eval_batch_size=100, learning_rate=2e-3, warmup_steps=200,
                   num_train_epochs=30.0, augment="none", normalization="timm_gmlp", crop_fraction=1.0,
                   crop_area_range=(0.6, 1.0), flip=False)


def check_flags(spec: JobSpec) -> None:
    """The numeric flags given (None: the recipe's), checked before any data is read or file written."""
    checks.check_positive(
        learning_rate=spec.learning_rate, train_batch_size=spec.train_batch_size,
        eval_batch_size=spec.eval_batch_size, num_train_epochs=spec.num_train_epochs,
        num_train_steps=spec.num_train_steps, shuffle_buffer=spec.shuffle_buffer)
    checks.check_non_negative(
        warmup_steps=spec.warmup_steps, weight_decay=spec.weight_decay, clip_norm=spec.clip_norm,
        mixup_alpha=spec.mixup_alpha, cutmix_alpha=spec.cutmix_alpha)
    fractions = {"max_warmup_fraction": spec.max_warmup_fraction, "label_smoothing": spec.label_smoothing,
                 "mix_switch_prob": spec.mix_switch_prob}
    for name, value in fractions.items():
        if not 0 <= value <= 1:
            raise ValueError(f"--{name} must be in [0, 1], got {value}")


def resolve_recipe(spec: JobSpec) -> ImageNetRecipe:
    check_flags(spec)
    base = DEMO_RECIPE if spec.is_demo else ImageNetRecipe()
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
    checks.check_positive(train_batch_size=setup.train_batch_size, eval_batch_size=setup.eval_batch_size)
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
        raise ValueError("the image pipeline makes 3-channel images; the config has num_channels "
                         f"{config.num_channels}")
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
        checks.check_init_checkpoint(spec.init_checkpoint, source_config)
    return config


def init_source_config(init_checkpoint: str, config: GMLPConfig) -> GMLPConfig:
    """`config` with the warm-start source's class count, to check and warm-start the model against.

    A source of another class count warm-starts everything but the classifier head, whose
    weights do not fit (saved_runs.warm_start leaves them new); the model keeps `config`.

    Raises:
      ValueError: the source holds a text model (a config without one is left to the runtime's check).
    """
    path = os.path.join(init_checkpoint, saved_runs.CONFIG_NAME)
    if not tf.io.gfile.exists(path):
        return config
    saved = GMLPConfig.from_json_file(path)
    if saved.modality != "image":
        info_path = os.path.join(init_checkpoint, saved_runs.RUN_INFO_NAME)
        try:
            with tf.io.gfile.GFile(info_path) as f:
                task = f" (a {json.load(f)['task']} run)"
        except (OSError, ValueError, KeyError, TypeError, tf.errors.OpError):  # No task to name.
            task = ""
        raise ValueError(f"--init_checkpoint {init_checkpoint} holds a {saved.modality} model{task}, not an image "
                         "classifier: give an output directory of run_imagenet.py")
    return config.replace(num_classes=saved.num_classes)


def load_sources(spec: JobSpec, setup: ImageNetRecipe) -> Dict[str, Tuple[tf.data.Dataset, imagenet_data.SourceInfo]]:
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
        return {s: imagenet_data.tfds_source(spec.tfds_name, s, spec.tfds_data_dir,
                                             shuffle_files=s == imagenet_data.TRAIN)
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


def epoch_schedule(spec: JobSpec, setup: ImageNetRecipe, num_examples: int) -> Tuple[int, int, int, int]:
    """(epochs, steps_per_epoch, num_steps, warmup_steps)."""
    steps_per_epoch = num_examples // setup.train_batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{num_examples} training examples make no full batch of {setup.train_batch_size}")
    if spec.num_train_steps:
        steps_per_epoch = min(steps_per_epoch, spec.num_train_steps)
        epochs = math.ceil(spec.num_train_steps / steps_per_epoch)
    else:
        epochs = max(1, int(round(setup.num_train_epochs)))
    steps_per_epoch = checks.whole_executions(steps_per_epoch, spec.steps_per_execution)
    num_steps = epochs * steps_per_epoch
    warmup = min(setup.warmup_steps, int(spec.max_warmup_fraction * num_steps))
    return epochs, steps_per_epoch, num_steps, warmup


class ImageNetTask(Task):
    """Image classification with the paper's ImageNet recipe (Table 7), or the digits demo."""

    spec_class = JobSpec
    demo_output_dir = DEMO_OUTPUT_DIR
    model_task = "vision"
    fit_verbose = 2

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(spec)
        self.start_time = time.time()
        self.output_dir = checks.require_output_dir(spec.output_dir or (DEMO_OUTPUT_DIR if spec.is_demo else None))
        if spec.on_unreadable not in imagenet_data.ON_UNREADABLE:
            raise ValueError(f"--on_unreadable must be one of {', '.join(imagenet_data.ON_UNREADABLE)}")
        self.recipe_values = resolve_recipe(spec)
        self.config = resolve_config(spec)
        self.mean, self.std = NORMALIZATIONS[self.recipe_values.normalization]
        self.sources: Dict[str, Tuple[tf.data.Dataset, imagenet_data.SourceInfo]] = {}
        self.eval_data = None

    def prepare(self, strategy: tf.distribute.Strategy) -> None:
        """The sources (after start-up: MultiWorkerMirroredStrategy must come before any TensorFlow op),
        their classes and the schedule, checked before anything is written."""
        self.sources = load_sources(self.spec, self.recipe_values)
        check_classes(self.sources, self.config)
        if self.do_train:
            self.steps = epoch_schedule(self.spec, self.recipe_values,
                                        self.sources[imagenet_data.TRAIN][1].num_examples)
        if self.spec.do_eval:
            source, _ = self.sources[imagenet_data.VALIDATION]
            values = self.recipe_values
            self.eval_data = imagenet_data.eval_dataset(source, self.config.image_size, values.eval_batch_size,
                                                        self.mean, self.std, values.crop_fraction)

    def write_run_files(self, output_dir: str) -> None:
        run_directory.write_image_normalization(output_dir, self.mean, self.std)  # For export_saved_model.py.

    def build_model(self) -> keras.Model:
        return build_model(self.config, "vision")

    def compile_for_training(self, model: keras.Model) -> None:
        """The Table 7 optimizer: AdamW, warmup then cosine decay, global-norm clipping; label-smoothed loss."""
        epochs, steps_per_epoch, num_steps, warmup = self.steps
        logging.info("Training %d epochs x %d steps (batch %d, lr %g, warmup %d)", epochs, steps_per_epoch,
                     self.recipe_values.train_batch_size, self.recipe_values.learning_rate, warmup)
        optimizer = create_optimizer(self.recipe_values.learning_rate, num_steps, warmup,
                                     weight_decay=self.spec.weight_decay, clip_norm=self.spec.clip_norm, decay="cosine")
        model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                      steps_per_execution=self.spec.steps_per_execution)

    def schedule(self) -> Schedule:
        _, steps_per_epoch, num_steps, _ = self.steps
        return Schedule(num_steps, steps_per_epoch)

    def warm_start_config(self) -> GMLPConfig:
        """The model's config with the source's class count: a source of another count warm-starts all but the head."""
        spec = self.spec
        source_config = init_source_config(spec.init_checkpoint, self.config) if spec.init_checkpoint else self.config
        if source_config.num_classes != self.config.num_classes and not saved_runs.latest_weights(self.output_dir):
            logging.warning("--init_checkpoint %s has a %d-class head and the model %d classes: warm-starting all but "
                            "the classifier head, which starts new", spec.init_checkpoint, source_config.num_classes,
                            self.config.num_classes)
        return source_config

    def train_data(self, strategy: tf.distribute.Strategy) -> Callable[[int], DatasetLike]:
        spec, values, config = self.spec, self.recipe_values, self.config
        source, _ = self.sources[imagenet_data.TRAIN]
        batches = imagenet_data.train_dataset(source, config.image_size, values.train_batch_size, spec.shuffle_buffer,
                                              seed=spec.random_seed, area_range=values.crop_area_range,
                                              flip=values.flip)
        aug = augmentation.AugmentConfig(num_classes=config.num_classes, label_smoothing=spec.label_smoothing,
                                         augment=values.augment, mixup_alpha=spec.mixup_alpha,
                                         cutmix_alpha=spec.cutmix_alpha, switch_prob=spec.mix_switch_prob,
                                         mean=self.mean, std=self.std)
        return augmentation.augment_dataset(batches, aug, seed=spec.random_seed).skip

    def checkpoint_evaluator(self) -> Optional[EvaluateFn]:
        if self.eval_data is None:
            return None
        return lambda model: metrics.evaluate(model, self.eval_data, self.config.num_classes)

    def recipe(self) -> Dict[str, Any]:
        _, steps_per_epoch, num_steps, warmup = self.steps
        return dict(dataclasses.asdict(self.recipe_values), num_train_steps=num_steps,
                    save_checkpoints_steps=steps_per_epoch, warmup_steps=warmup)

    def callbacks(self) -> List[keras.callbacks.Callback]:
        info = self.sources[imagenet_data.TRAIN][1]
        return [UnreadableFilesLog(info, "training")] if info.unreadable is not None else []

    def input_errors(self) -> ContextManager[None]:
        return unreadable_files_as_errors()  # Image files are read (and found unreadable) from training on.

    def evaluate(self, model: keras.Model, state: RunState) -> Dict[str, Any]:
        """Top-1 (and top-5) on the validation split beside chance; the training's skipped files and step."""
        results: Dict[str, Any] = {}
        if state.trained:
            results["skipped_unreadable_train_images"] = self.sources[imagenet_data.TRAIN][1].num_unreadable
            results["global_step"] = state.global_step
        if self.spec.do_eval:
            num_classes = self.config.num_classes
            info = self.sources[imagenet_data.VALIDATION][1]
            what = "top-1 / top-5" if num_classes > metrics.TOP_K else "top-1"
            with progress.stage(f"Evaluating {what} on {info.num_examples:,} validation images") as step:
                results.update(metrics.evaluate(model, self.eval_data, num_classes))
                step.result = f"top-1 {100 * results['top_1_accuracy']:.2f}%"
            results["chance_top_1_accuracy"] = 1.0 / num_classes
            results["skipped_unreadable_eval_images"] = _log_unreadable(info, "validation")
        results["wall_time_s"] = round(time.time() - self.start_time, 1)
        return results

    def report_lines(self, results: Dict[str, Any]) -> List[str]:
        return report_lines(results, self.spec)


def run(spec: JobSpec) -> Dict[str, Any]:
    """Trains and / or evaluates; returns the results dict (also written to eval_results.txt / .json)."""
    return runner.run(ImageNetTask(spec))


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


def report_lines(results: Dict[str, Any], spec: JobSpec) -> List[str]:
    """The lines the script prints: the results, then top-1 (and top-5, over 5 classes) beside chance."""
    lines = run_directory.result_lines(results)
    if "top_1_accuracy" in results:
        top5 = f" (top-5 {100 * results['top_5_accuracy']:.1f}%)" if "top_5_accuracy" in results else ""
        lines.append(f"Held-out top-1 {100 * results['top_1_accuracy']:.1f}%{top5} vs chance "
                     f"{100 * results['chance_top_1_accuracy']:.1f}%" + (" on MNIST digits" if spec.is_demo else ""))
    return lines
