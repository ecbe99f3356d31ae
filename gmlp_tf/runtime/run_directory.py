"""A training run's output directory, written: prepared and checked, its recipe, vocabulary,
checkpoints and results.

gmlp_tf.models.saved_runs names the files and reads them; this module writes them, each
atomically (a temporary name, then a rename), through tf.io.gfile since output directories
are often gs:// buckets on TPU.
"""

import json
import os
from typing import Any, List, Mapping, Optional, Sequence

import keras
import tensorflow as tf
from absl import logging

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import checkpoint_format
from gmlp_tf.models.saved_runs import (
    CONFIG_NAME,
    PREPROCESSING_NAME,
    RECIPE_NAME,
    RUN_INFO_NAME,
    VOCAB_NAME,
    check_same_architecture,
    checkpoint_dir,
)

RESULTS_NAME = "eval_results"

def save(model: keras.Model, output_dir: str) -> checkpoint_format.Checkpoint:
    """Checkpoints a model at its optimizer's step, 0 without one (atomically; never non-finite weights)."""
    optimizer = getattr(model, "optimizer", None)
    step = int(keras.ops.convert_to_numpy(optimizer.iterations.value)) if optimizer else 0
    return checkpoint_format.save(model, checkpoint_dir(output_dir), step)


def restore(model: keras.Model, output_dir: str) -> Optional[checkpoint_format.Checkpoint]:
    """Loads weights, optimizer state and RNG states of the newest readable checkpoint; None if none."""
    return checkpoint_format.load_latest(model, checkpoint_dir(output_dir), with_training_state=True)


def prepare_output_dir(output_dir: str, config: Optional[GMLPConfig], task: str,
                       num_labels: Optional[int] = None) -> None:
    """Creates output_dir and writes the config (a task of gMLP models) and run info, or checks those already there.

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
    if config is None:  # A task of its own with another kind of model.
        pass
    elif tf.io.gfile.exists(config_path):
        saved = GMLPConfig.from_json_file(config_path)
        check_same_architecture(saved, config, f"{output_dir} (resuming)", allow=frozenset())
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


def write_text_atomically(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _write_json_atomically(path, data):
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def result_lines(results: Mapping[str, Any]) -> List[str]:
    """BERT's eval_results.txt lines: "key = value", sorted by key."""
    return [f"{key} = {results[key]}" for key in sorted(results)]


def write_results(output_dir: str, results: Mapping[str, Any], name: str = RESULTS_NAME) -> str:
    """Writes NAME.txt ("key = value" lines) and NAME.json (the same numbers); returns the .txt path."""
    path = os.path.join(output_dir, name + ".txt")
    write_text_atomically(path, "".join(line + "\n" for line in result_lines(results)))
    write_text_atomically(os.path.join(output_dir, name + ".json"),
                          json.dumps(dict(results), indent=2, sort_keys=True) + "\n")
    return path
