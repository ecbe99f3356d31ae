"""Step-named checkpoint files: written atomically, checked when read, the previous one as fallback.

A checkpoint of step N in a checkpoints/ directory is two files:
  ckpt-<N>.weights.h5   model.save_weights(): model and optimizer variables (the step included)
  ckpt-<N>.json         {"step", "size", "sha256", "rng_states"}: what the weights must match, and
                        the dropout generators' states (not weights to Keras, but needed for a
                        resumed run to draw the same masks as an uninterrupted one)
Both are written under temporary names and renamed, the JSON last: a weights file without its
JSON is an unfinished write and is never read. Loading checks size and SHA-256 before Keras
reads the file and, for a training model, that the optimizer's step is N afterwards.
"""

import dataclasses
import hashlib
import json
import os
import re
from typing import List, Optional

import h5py
import keras
import numpy as np
from absl import logging

from gmlp_tf.utils import files

gfile = files.gfile()

KEEP_CHECKPOINTS = 2
LEGACY_WEIGHTS_NAME = "latest.weights.h5"  # Runs before step-named checkpoints (keras' BackupAndRestore).
_WEIGHTS_FILE = re.compile(r"^ckpt-(\d+)\.weights\.h5$")
_PARTIAL = ".partial"  # Files being written: ckpt-<N>.partial.weights.h5 and ckpt-<N>.json.partial.
# What reading a damaged file raises (h5py's errors are OSError or KeyError/ValueError subclasses).
READ_ERRORS = (OSError, ValueError, KeyError, RuntimeError, *files.file_errors())


class NonFiniteWeightsError(RuntimeError):
    """Raised instead of writing a checkpoint whose weights hold NaN or infinity."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: its step (None for a legacy file, whose step is only in the weights) and files."""

    step: Optional[int]
    weights: str
    metadata: Optional[str]


def weights_name(step: int) -> str:
    return f"ckpt-{step:08d}.weights.h5"


def list_checkpoints(directory: str) -> List[Checkpoint]:
    """The finished checkpoints in `directory`, newest first (a legacy latest.weights.h5 last)."""
    if not gfile.isdir(directory):
        return []
    names = set(gfile.listdir(directory))
    found = []
    for name in names:
        match = _WEIGHTS_FILE.match(name)
        meta = name.replace(".weights.h5", ".json")
        if match and meta in names:
            found.append(Checkpoint(int(match.group(1)), os.path.join(directory, name), os.path.join(directory, meta)))
    found.sort(key=lambda c: -c.step)
    if LEGACY_WEIGHTS_NAME in names:
        found.append(Checkpoint(None, os.path.join(directory, LEGACY_WEIGHTS_NAME), None))
    return found


def save(model: keras.Model, directory: str, step: int, keep: int = KEEP_CHECKPOINTS) -> Checkpoint:
    """Writes the checkpoint of `step` atomically, then deletes all but the newest `keep`.

    Raises:
      NonFiniteWeightsError: a weight is NaN or infinite; nothing is written.
    """
    bad = non_finite_variables(model)
    if bad:
        raise NonFiniteWeightsError(f"non-finite values in {', '.join(bad[:3])}")
    gfile.makedirs(directory)
    final = os.path.join(directory, weights_name(step))
    partial = final.replace(".weights.h5", _PARTIAL + ".weights.h5")
    model.save_weights(partial, overwrite=True)
    meta = {"step": step, "size": gfile.stat(partial).length, "sha256": _sha256(partial),
            "rng_states": [keras.ops.convert_to_numpy(v.value).tolist() for v in rng_state_variables(model)]}
    meta_path = final.replace(".weights.h5", ".json")
    with gfile.GFile(meta_path + _PARTIAL, "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    gfile.rename(partial, final, overwrite=True)
    gfile.rename(meta_path + _PARTIAL, meta_path, overwrite=True)  # The commit point.
    for old in list_checkpoints(directory)[keep:]:
        _remove(old)
    return Checkpoint(step, final, meta_path)


def load(model: keras.Model, checkpoint: Checkpoint, with_training_state: bool) -> None:
    """Loads `checkpoint` into `model` after checking its files.

    Args:
      with_training_state: also check the optimizer's step and restore the dropout RNG states.

    Raises:
      ValueError: naming the file and what is wrong with it.
    """
    problem = file_problem(checkpoint)
    if problem:
        raise ValueError(problem)
    meta = _read_metadata(checkpoint) if checkpoint.metadata else None
    try:
        if with_training_state and getattr(model, "optimizer", None) is not None and not model.optimizer.built:
            with model.distribute_strategy.scope():
                model.optimizer.build(model.trainable_variables)  # Else Keras skips the optimizer's saved state.
        model.load_weights(checkpoint.weights)
    except READ_ERRORS as err:
        raise ValueError(f"cannot read checkpoint {checkpoint.weights}: {_reason(err)}") from None
    if not with_training_state or meta is None or getattr(model, "optimizer", None) is None:
        return
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations.value))
    if step != meta["step"]:
        raise ValueError(f"checkpoint {checkpoint.weights} holds optimizer step {step}, not {meta['step']}")
    variables = rng_state_variables(model)
    if len(variables) == len(meta.get("rng_states", [])):
        for variable, state in zip(variables, meta["rng_states"]):
            variable.assign(np.asarray(state, dtype=variable.dtype))
    else:
        logging.warning("%s has %d dropout RNG states for %d generators: keeping the fresh ones",
                        checkpoint.metadata, len(meta.get("rng_states", [])), len(variables))


def load_latest(model: keras.Model, directory: str, with_training_state: bool) -> Optional[Checkpoint]:
    """Loads the newest checkpoint in `directory` that reads back, warning about each that does not.

    Returns:
      The checkpoint loaded, or None when the directory holds none.

    Raises:
      ValueError: there are checkpoints but none of them is readable (one line naming each).
    """
    problems = []
    for checkpoint in list_checkpoints(directory):
        try:
            load(model, checkpoint, with_training_state)
        except ValueError as err:
            logging.warning("Skipping an unreadable checkpoint: %s", err)
            problems.append(str(err))
            continue
        if problems:
            logging.warning("Fell back to the previous checkpoint %s", checkpoint.weights)
        return checkpoint
    if problems:
        raise ValueError(f"no readable checkpoint in {directory}: {'; '.join(problems)}")
    return None


def file_problem(checkpoint: Checkpoint) -> Optional[str]:
    """What is wrong with a checkpoint's files (None: they are whole), without building a model.

    A step-named checkpoint must match the size and SHA-256 in its JSON; a legacy one must open as HDF5.
    """
    try:
        if checkpoint.metadata is None:  # A legacy file has no hash: it must open as HDF5.
            with h5py.File(gfile.GFile(checkpoint.weights, "rb"), "r"):
                return None
        meta = _read_metadata(checkpoint)
        size = gfile.stat(checkpoint.weights).length
        if size != meta["size"] or _sha256(checkpoint.weights) != meta["sha256"]:
            return (f"checkpoint {checkpoint.weights} has {size} bytes that do not match the {meta['size']} bytes "
                    "and SHA-256 it was written with")
        return None
    except ValueError as err:
        return str(err)
    except READ_ERRORS as err:
        return f"cannot read checkpoint {checkpoint.weights}: {_reason(err)}"


def non_finite_variables(model: keras.Model) -> List[str]:
    """Paths of the model's float weights that hold NaN or infinity."""
    bad = []
    for variable in model.weights:
        if "float" in str(variable.dtype) and not bool(keras.ops.all(keras.ops.isfinite(variable.value))):
            bad.append(variable.path)
    return bad


def rng_state_variables(model: keras.Model) -> list:
    """The model's random generators' states (dropout, stochastic depth), in a fixed order."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights and v.path.endswith("seed_generator_state")]


def _read_metadata(checkpoint):
    try:
        with gfile.GFile(checkpoint.metadata) as f:
            meta = json.load(f)
        if not isinstance(meta, dict) or not {"step", "size", "sha256"} <= set(meta):
            raise ValueError("it lacks step, size or sha256")
        return meta
    except READ_ERRORS as err:
        raise ValueError(f"cannot read checkpoint metadata {checkpoint.metadata}: {_reason(err)}") from None


def _sha256(path):
    digest = hashlib.sha256()
    with gfile.GFile(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _remove(checkpoint):
    for path in (checkpoint.metadata, checkpoint.weights):  # JSON first: never a JSON without its weights.
        if path and gfile.exists(path):
            gfile.remove(path)


def _reason(err):
    text = getattr(err, "message", None) or str(err) or type(err).__name__
    return text.strip().splitlines()[0]
