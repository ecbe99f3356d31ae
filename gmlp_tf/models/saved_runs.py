"""A training run's output directory, read: its config, vocabulary and newest checkpoint.

An output directory (what the scripts write; gmlp_tf.runtime.run_directory writes it) holds
  gmlp_config.json          the model config (like bert_config.json)
  vocab.model               the SentencePiece model (text models)
  run_info.json             the task the weights belong to ({"task": ..., "num_labels": ...})
  recipe.json               the training flags of the last run (a rerun logs what it changed)
  preprocessing.json        image models: the pixel mean and std they were trained with
  checkpoints/              step-named checkpoints (gmlp_tf.models.checkpoint_format)
Reading lives beside the models, as keras-hub's presets do: GMLPBackbone.from_pretrained, the
export and the analysis read runs without the training runtime. The rule for using them is BERT's
and the Model Garden's: a checkpoint in --output_dir always wins (resume); --init_checkpoint is
read only when there is none (warm start).
"""

import json
import os
from typing import List, Optional, Tuple

import keras
from absl import logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import checkpoint_format
from gmlp_tf.models.task_models import build_model
from gmlp_tf.utils import files

gfile = files.gfile()

CONFIG_NAME = "gmlp_config.json"
PREPROCESSING_NAME = "preprocessing.json"  # Image models: the pixel mean and std they were trained with.
VOCAB_NAME = "vocab.model"  # run_pretraining.py copies its vocabulary here for finetuning and export.
RUN_INFO_NAME = "run_info.json"
RECIPE_NAME = "recipe.json"
CHECKPOINT_DIR = "checkpoints"
# A weights-only checkpoint: what convert_timm_checkpoint.py writes, and runs before step-named checkpoints.
WEIGHTS_NAME = checkpoint_format.LEGACY_WEIGHTS_NAME

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
    found = checkpoint_format.list_checkpoints(checkpoint_dir(output_dir))
    return found[0].weights if found else None


def readable_weights(output_dir: str) -> Optional[str]:
    """The newest checkpoint's weights file whose files check out (warning about each that does not).

    Returns None when output_dir holds no checkpoint.

    Raises:
      ValueError: it holds checkpoints but none whose files are whole (one line naming each).
    """
    found = checkpoint_format.list_checkpoints(checkpoint_dir(output_dir))
    problems = []
    for checkpoint in found:
        problem = checkpoint_format.file_problem(checkpoint)
        if problem is None:
            return checkpoint.weights
        logging.warning("Skipping an unreadable checkpoint: %s", problem)
        problems.append(problem)
    if problems:
        raise ValueError(f"no readable checkpoint in {checkpoint_dir(output_dir)}: {'; '.join(problems)}")
    return None


def load_model_weights(model: keras.Model, output_dir: str,
                       flag: str = "the model directory") -> checkpoint_format.Checkpoint:
    """Loads the weights of the newest readable checkpoint of output_dir; returns that checkpoint.

    Raises:
      ValueError: output_dir holds no checkpoint, or none that reads back.
    """
    loaded = checkpoint_format.load_latest(model, checkpoint_dir(output_dir), with_training_state=False)
    if loaded is None:
        raise ValueError(f"{flag} {output_dir} holds no checkpoint in {CHECKPOINT_DIR}/")
    return loaded


def check_warm_start_source(init_dir: str, config: GMLPConfig) -> Tuple[GMLPConfig, dict]:
    """(config, run info) of a warm-start directory whose checkpoint `config`'s model can take.

    Cheap enough to run before anything is written: files are checked, no weights are loaded.

    Raises:
      ValueError: a file is missing or unreadable, or the architecture differs (naming the fields).
    """
    if not gfile.isdir(init_dir):
        raise ValueError(f"--init_checkpoint {init_dir} is not a directory")
    found = checkpoint_format.list_checkpoints(checkpoint_dir(init_dir))
    config_path = os.path.join(init_dir, CONFIG_NAME)
    if not found or not gfile.exists(config_path):
        raise ValueError(f"--init_checkpoint {init_dir} holds no checkpoint ({CHECKPOINT_DIR}/ and {CONFIG_NAME})")
    saved_config = GMLPConfig.from_json_file(config_path)
    check_same_architecture(saved_config, config, f"--init_checkpoint {init_dir}", allow=COMPATIBLE_FIELDS)
    info_path = os.path.join(init_dir, RUN_INFO_NAME)
    try:
        with gfile.GFile(info_path) as f:
            info = json.load(f)
    except (OSError, ValueError, *files.file_errors()) as err:
        raise ValueError(f"--init_checkpoint {init_dir}: cannot read {RUN_INFO_NAME}: {err}") from None
    problems = [checkpoint_format.file_problem(c) for c in found]
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
    if not gfile.isdir(model_dir):
        raise ValueError(f"model directory not found: {model_dir}")
    for name in (CONFIG_NAME, RUN_INFO_NAME):
        if not gfile.exists(os.path.join(model_dir, name)):
            raise ValueError(f"{model_dir} has no {name}; is it an output directory of a training script?")
    config = GMLPConfig.from_json_file(os.path.join(model_dir, CONFIG_NAME))
    with gfile.GFile(os.path.join(model_dir, RUN_INFO_NAME)) as f:
        info = json.load(f)
    task = info.get("task")
    model = build_model(config, task, num_labels=info.get("num_labels") or 2)
    load_model_weights(model, model_dir)
    return config, task, model


def read_image_normalization(output_dir: str) -> Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]]:
    """(mean, std) recorded by write_image_normalization, or None if the run recorded none."""
    path = os.path.join(output_dir, PREPROCESSING_NAME)
    if not gfile.exists(path):
        return None
    with gfile.GFile(path) as f:
        data = json.load(f)
    return tuple(data["mean"]), tuple(data["std"])


def _relative_path(variable):
    # Drop the task model's own name: "gmlp_for_pretraining/encoder/..." -> "encoder/...".
    return variable.path.split("/", 1)[-1]


def check_same_architecture(saved: GMLPConfig, current: GMLPConfig, where: str, allow: frozenset) -> None:
    """Raises naming each config field (outside `allow`) in which `current` differs from `saved`."""
    saved_dict, current_dict = saved.to_dict(), current.to_dict()
    differing = sorted(k for k in saved_dict if k not in allow and saved_dict[k] != current_dict[k])
    if differing:
        details = ", ".join(f"{k}: checkpoint {saved_dict[k]!r} vs config {current_dict[k]!r}" for k in differing)
        raise ValueError(f"model config does not match {where}: {details}")
