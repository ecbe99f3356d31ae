"""Checkpoints in an output directory: resume, warm start, and the config that goes with them.

An output directory holds
  gmlp_config.json          the model config (like bert_config.json)
  vocab.model               the SentencePiece model (text models)
  run_info.json             the task the weights belong to ({"task": ..., "num_labels": ...})
  recipe.json               the training flags of the last run (a rerun logs what it changed)
  checkpoints/              ckpt-<step>.weights.h5: model and optimizer variables (so the step too),
                            and ckpt-<step>.json: its step, size, SHA-256 and the dropout RNG states.
                            The newest KEEP_CHECKPOINTS are kept.
A checkpoint is written to a temporary name and renamed; its JSON is renamed last, so a
checkpoint without one was never finished and is ignored. Loading checks the size and hash and
that the optimizer's step is the recorded one; a checkpoint that fails falls back to the one
before it. Runs before this format (checkpoints/latest.weights.h5 of keras' BackupAndRestore)
are still read.
The rule is BERT's and the Model Garden's: a checkpoint in --output_dir always wins (resume);
--init_checkpoint is read only when there is none (warm start).
"""

import json
import os
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import keras
import tensorflow as tf
from absl import logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.task_models import build_model
from gmlp_tf.runtime import checkpoint_files

CONFIG_NAME = "gmlp_config.json"
PREPROCESSING_NAME = "preprocessing.json"  # Image models: the pixel mean and std they were trained with.
VOCAB_NAME = "vocab.model"  # run_pretraining.py copies its vocabulary here for finetuning and export.
RUN_INFO_NAME = "run_info.json"
RECIPE_NAME = "recipe.json"
CHECKPOINT_DIR = "checkpoints"
# A weights-only checkpoint: what convert_timm_checkpoint.py writes, and runs before step-named checkpoints.
WEIGHTS_NAME = checkpoint_files.LEGACY_WEIGHTS_NAME

# Fields that may differ between a checkpoint and the model it initialises: they change no
# weight shape (regularisation, padding handling).
COMPATIBLE_FIELDS = frozenset(
    {"hidden_dropout_prob", "attention_dropout_prob", "survival_prob", "drop_path_schedule", "sgu_padding_mask",
     "attention_padding_mask"}
)


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, CHECKPOINT_DIR)


def latest_weights(output_dir: str) -> Optional[str]:
    """The newest finished checkpoint's weights file in output_dir, or None (not read: see restore)."""
    found = checkpoint_files.list_checkpoints(checkpoint_dir(output_dir))
    return found[0].weights if found else None


def readable_weights(output_dir: str) -> Optional[str]:
    """The newest checkpoint's weights file whose files check out (warning about each that does not).

    Returns None when output_dir holds no checkpoint.

    Raises:
      ValueError: it holds checkpoints but none whose files are whole (one line naming each).
    """
    found = checkpoint_files.list_checkpoints(checkpoint_dir(output_dir))
    problems = []
    for checkpoint in found:
        problem = checkpoint_files.file_problem(checkpoint)
        if problem is None:
            return checkpoint.weights
        logging.warning("Skipping an unreadable checkpoint: %s", problem)
        problems.append(problem)
    if problems:
        raise ValueError(f"no readable checkpoint in {checkpoint_dir(output_dir)}: {'; '.join(problems)}")
    return None


def save(model: keras.Model, output_dir: str) -> checkpoint_files.Checkpoint:
    """Checkpoints a model at its optimizer's step, 0 without one (atomically; never non-finite weights)."""
    optimizer = getattr(model, "optimizer", None)
    step = int(keras.ops.convert_to_numpy(optimizer.iterations.value)) if optimizer else 0
    return checkpoint_files.save(model, checkpoint_dir(output_dir), step)


def restore(model: keras.Model, output_dir: str) -> Optional[checkpoint_files.Checkpoint]:
    """Loads weights, optimizer state and RNG states of the newest readable checkpoint; None if none."""
    return checkpoint_files.load_latest(model, checkpoint_dir(output_dir), with_training_state=True)


def load_model_weights(model: keras.Model, output_dir: str,
                       flag: str = "the model directory") -> checkpoint_files.Checkpoint:
    """Loads the weights of the newest readable checkpoint of output_dir; returns that checkpoint.

    Raises:
      ValueError: output_dir holds no checkpoint, or none that reads back.
    """
    loaded = checkpoint_files.load_latest(model, checkpoint_dir(output_dir), with_training_state=False)
    if loaded is None:
        raise ValueError(f"{flag} {output_dir} holds no checkpoint in {CHECKPOINT_DIR}/")
    return loaded


def prepare_output_dir(output_dir: str, config: GMLPConfig, task: str, num_labels: Optional[int] = None) -> None:
    """Creates output_dir and writes the config and run info, or checks those already there.

    Raises:
      ValueError: the directory is not writable, or holds a run of another config or task.
    """
    # tf.io.gfile throughout: output directories are often gs:// buckets on TPU.
    try:
        tf.io.gfile.makedirs(output_dir)
        probe = os.path.join(output_dir, ".write_test")
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as err:
        reason = getattr(err, "strerror", None) or getattr(err, "message", str(err))
        raise ValueError(f"output directory {output_dir} is not writable: {reason}") from None
    config_path = os.path.join(output_dir, CONFIG_NAME)
    if tf.io.gfile.exists(config_path):
        saved = GMLPConfig.from_json_file(config_path)
        _check_same_architecture(saved, config, f"{output_dir} (resuming)", allow=frozenset())
    else:
        config.to_json_file(config_path)
    info = {"task": task, "num_labels": num_labels}
    info_path = os.path.join(output_dir, RUN_INFO_NAME)
    if tf.io.gfile.exists(info_path):
        with tf.io.gfile.GFile(info_path) as f:
            saved_info = json.load(f)
        if saved_info != info:
            raise ValueError(f"{output_dir} holds a {saved_info} run, not {info}; use another --output_dir")
    else:
        _write_json_atomically(info_path, info)


def check_warm_start_source(init_dir: str, config: GMLPConfig) -> Tuple[GMLPConfig, dict]:
    """(config, run info) of a warm-start directory whose checkpoint `config`'s model can take.

    Cheap enough to run before anything is written: files are checked, no weights are loaded.

    Raises:
      ValueError: a file is missing or unreadable, or the architecture differs (naming the fields).
    """
    if not tf.io.gfile.isdir(init_dir):
        raise ValueError(f"--init_checkpoint {init_dir} is not a directory")
    found = checkpoint_files.list_checkpoints(checkpoint_dir(init_dir))
    config_path = os.path.join(init_dir, CONFIG_NAME)
    if not found or not tf.io.gfile.exists(config_path):
        raise ValueError(f"--init_checkpoint {init_dir} holds no checkpoint ({CHECKPOINT_DIR}/ and {CONFIG_NAME})")
    saved_config = GMLPConfig.from_json_file(config_path)
    _check_same_architecture(saved_config, config, f"--init_checkpoint {init_dir}", allow=COMPATIBLE_FIELDS)
    info_path = os.path.join(init_dir, RUN_INFO_NAME)
    try:
        with tf.io.gfile.GFile(info_path) as f:
            info = json.load(f)
    except (OSError, ValueError, tf.errors.OpError) as err:
        raise ValueError(f"--init_checkpoint {init_dir}: cannot read {RUN_INFO_NAME}: {err}") from None
    problems = [checkpoint_files.file_problem(c) for c in found]
    if all(problems):
        raise ValueError(f"--init_checkpoint {init_dir} holds no readable checkpoint: {'; '.join(problems)}")
    return saved_config, info


def warm_start(model: keras.Model, init_dir: str, config: GMLPConfig) -> Tuple[List[str], List[str]]:
    """Copies the weights of a finished or running job in init_dir into `model` by name.

    Variables are matched by their path below the task model (for example
    "encoder/block_3/sgu/proj/kernel"), so an encoder pretrained by run_pretraining.py
    initialises the encoder of any finetuning model. Heads that the checkpoint lacks stay
    freshly initialised.

    Args:
      model: a built task model whose weights to set.
      init_dir: an output directory of run_pretraining.py (or any script of this project).
      config: the GMLPConfig of `model`; must match the checkpoint's architecture.

    Returns:
      (restored, new): lists of variable paths that were copied and that kept their init.
    """
    saved_config, info = check_warm_start_source(init_dir, config)
    source = build_model(saved_config, info["task"], num_labels=info.get("num_labels") or 2)
    load_model_weights(source, init_dir, "--init_checkpoint")
    values = {_relative_path(v): v for v in source.weights}
    restored, new = [], []
    for variable in model.weights:
        key = _relative_path(variable)
        if key in values and tuple(values[key].shape) == tuple(variable.shape):
            variable.assign(values[key])
            restored.append(key)
        else:
            new.append(key)
    logging.info("Warm start from %s: restored %d variables, %d new", init_dir, len(restored), len(new))
    for key in restored:
        logging.info("  restored: %s", key)
    for key in new:
        logging.info("  new:      %s", key)
    return restored, new


def load_run_model(model_dir: str) -> Tuple[GMLPConfig, str, keras.Model]:
    """(config, task, model) of an output directory: its config, run info task and latest weights.

    The model is build_model(config, task) (num_labels from run_info.json) with the newest
    readable checkpoint loaded.

    Raises:
      ValueError: model_dir is empty or not a directory, lacks gmlp_config.json, run_info.json or
        the checkpoint, or its checkpoint does not fit its config; the message names the path.
    """
    if not model_dir:
        raise ValueError("a model directory is required")
    if not tf.io.gfile.isdir(model_dir):
        raise ValueError(f"model directory not found: {model_dir}")
    for name in (CONFIG_NAME, RUN_INFO_NAME):
        if not tf.io.gfile.exists(os.path.join(model_dir, name)):
            raise ValueError(f"{model_dir} has no {name}; is it an output directory of a training script?")
    config = GMLPConfig.from_json_file(os.path.join(model_dir, CONFIG_NAME))
    with tf.io.gfile.GFile(os.path.join(model_dir, RUN_INFO_NAME)) as f:
        info = json.load(f)
    task = info.get("task")
    model = build_model(config, task, num_labels=info.get("num_labels") or 2)
    load_model_weights(model, model_dir)
    return config, task, model


def record_recipe(output_dir: str, recipe: Mapping[str, Any]) -> List[str]:
    """Writes recipe.json; a rerun logs and returns each value that differs from the recorded run.

    The step count does not depend on it (it is the optimizer's), so a changed --num_train_steps
    or --save_checkpoints_steps is honoured exactly; a changed learning rate or batch takes effect
    from the resumed step.
    """
    path = os.path.join(output_dir, RECIPE_NAME)
    recipe = json.loads(json.dumps(dict(recipe)))  # As it reads back (tuples become lists).
    changes = []
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            recorded = json.load(f)
        for key in sorted(set(recorded) | set(recipe)):
            if recorded.get(key) != recipe.get(key):
                changes.append(f"{key}: {recorded.get(key)!r} -> {recipe.get(key)!r}")
                logging.warning("Changed since the recorded run in %s: %s", output_dir, changes[-1])
    _write_json_atomically(path, recipe)
    return changes


def write_vocab(output_dir: str, sp_model: bytes) -> None:
    """Writes the serialized SentencePiece model beside the checkpoint (if not there yet)."""
    path = os.path.join(output_dir, VOCAB_NAME)
    if not tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
            f.write(sp_model)
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def write_image_normalization(output_dir: str, mean: Sequence[float], std: Sequence[float]) -> None:
    """Records the per-channel pixel mean and std (of [0, 1] pixels) an image model expects."""
    _write_json_atomically(os.path.join(output_dir, PREPROCESSING_NAME), {"mean": list(mean), "std": list(std)})


def read_image_normalization(output_dir: str) -> Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]]:
    """(mean, std) recorded by write_image_normalization, or None if the run recorded none."""
    path = os.path.join(output_dir, PREPROCESSING_NAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        data = json.load(f)
    return tuple(data["mean"]), tuple(data["std"])


def write_text_atomically(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _write_json_atomically(path, data):
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _relative_path(variable):
    # Drop the task model's own name: "gmlp_for_pretraining/encoder/..." -> "encoder/...".
    return variable.path.split("/", 1)[-1]


def _check_same_architecture(saved, current, where, allow):
    saved_dict, current_dict = saved.to_dict(), current.to_dict()
    differing = sorted(k for k in saved_dict if k not in allow and saved_dict[k] != current_dict[k])
    if differing:
        details = ", ".join(f"{k}: checkpoint {saved_dict[k]!r} vs config {current_dict[k]!r}" for k in differing)
        raise ValueError(f"model config does not match {where}: {details}")
