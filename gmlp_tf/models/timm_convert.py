"""Converts timm's gMLP image classifiers (gmlp_ti16_224 / gmlp_s16_224 / gmlp_b16_224) to Keras.

timm (PyTorch, timm/models/mlp_mixer.py) names and shapes, with d = d_model, e = d_ffn,
n = (image_size / patch_size)^2 tokens, p = patch_size, C = channels, K = classes:

  stem.proj.weight [d, C, p, p] (OIHW)  -> stem kernel [p, p, C, d] (HWIO)
  stem.proj.bias [d]                    -> stem bias
  blocks.{i}.norm.weight / .bias        -> blocks[i].norm gamma / beta
  blocks.{i}.mlp_channels.fc1.weight [e, d] -> blocks[i].proj_in kernel [d, e] (transposed)
  blocks.{i}.mlp_channels.fc1.bias [e]
  blocks.{i}.mlp_channels.gate.norm.weight / .bias [e / 2] -> blocks[i].sgu.norm gamma / beta
  blocks.{i}.mlp_channels.gate.proj.weight [n, n] -> blocks[i].sgu.proj kernel (NOT transposed:
      both compute out[i] = sum_j W[i, j] z[j] + b[i] over tokens)
  blocks.{i}.mlp_channels.gate.proj.bias [n]
  blocks.{i}.mlp_channels.fc2.weight [d, e / 2] -> blocks[i].proj_out kernel [e / 2, d] (transposed)
  blocks.{i}.mlp_channels.fc2.bias [d]
  norm.weight / .bias                   -> final_norm gamma / beta
  head.weight [K, d] / head.bias [K]    -> head kernel [d, K] (transposed) / bias

timm flattens the NCHW stem output row-major over (H, W); the Keras model reshapes its NHWC stem
output row-major over (H, W) too, so the token order (and hence W) carries over unchanged.
timm's gMLP weights expect images normalised with mean = std = 0.5 per channel (IMAGE_MEAN,
IMAGE_STD below), given to the Keras model as NHWC.

The steps, each a public function:

  read_checkpoint(path)                   -> {timm name: array in torch's layout}
  resolve_config(state_dict, preset)      -> the GMLPConfig (and preset) the checkpoint fits
  to_keras_weights(state_dict, model)     -> {Keras variable path: array in Keras's layout}
  assign_weights(model, weights)          -> the model holds them
  load_timm_model(path, preset)           -> all of the above: a built model with timm's weights
  load_timm_model(path, num_classes=N)    -> the same with a fresh N-way head (finetuning on
                                             another label set): the checkpoint's head is dropped

read_checkpoint lives in timm_readers.py (checkpoints read without PyTorch), resolve_config in
timm_config.py (the GMLPConfig that a checkpoint's shapes fit).
"""

import contextlib
import dataclasses
import os
from typing import Any, Callable, ContextManager, Dict, Iterable, Mapping, Optional, Tuple

import keras
import numpy as np

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.task_models import build_model
from gmlp_tf.models.timm_config import _shape_of, check_matches_checkpoint, infer_preset, resolve_config
from gmlp_tf.models.timm_readers import PathLike, check_finite, read_checkpoint

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)

# The classifier head's parameters, which new_head leaves out.
HEAD_KEYS = ("head.weight", "head.bias")

# Maps a torch array onto the layout of its Keras variable.
Transform = Callable[[np.ndarray], np.ndarray]

# ---------------------------------------------------------------------------------------------
# Mapping timm's names and layouts onto the Keras model.


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _transpose(x: np.ndarray) -> np.ndarray:
    return np.transpose(x)


def _oihw_to_hwio(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (2, 3, 1, 0))


def _block_weight_map(i: int, block: keras.layers.Layer) -> Dict[str, Tuple[keras.Variable, Transform]]:
    b = f"blocks.{i}."
    return {
        b + "norm.weight": (block.norm.gamma, _identity),
        b + "norm.bias": (block.norm.beta, _identity),
        b + "mlp_channels.fc1.weight": (block.proj_in.kernel, _transpose),
        b + "mlp_channels.fc1.bias": (block.proj_in.bias, _identity),
        b + "mlp_channels.gate.norm.weight": (block.sgu.norm.gamma, _identity),
        b + "mlp_channels.gate.norm.bias": (block.sgu.norm.beta, _identity),
        # out[i] = sum_j W[i, j] z[j] + b[i] in both: same orientation as torch's Linear weight.
        b + "mlp_channels.gate.proj.weight": (block.sgu.proj.kernel, _identity),
        b + "mlp_channels.gate.proj.bias": (block.sgu.proj.bias, _identity),
        b + "mlp_channels.fc2.weight": (block.proj_out.kernel, _transpose),
        b + "mlp_channels.fc2.bias": (block.proj_out.bias, _identity),
    }


def timm_weight_map(model: keras.Model) -> Dict[str, Tuple[keras.Variable, Transform]]:
    """{timm parameter name: (Keras variable, transform)} for a built GMLPVisionClassifier;
    transform maps the torch array to the variable's layout (e.g. stem [d, C, p, p] -> [p, p, C, d])."""
    if not getattr(model, "built", False) or not hasattr(model, "stem") or not model.stem.built:
        raise ValueError("the model must be a built GMLPVisionClassifier (gmlp_tf.build_model(config, 'vision'))")
    mapping = {
        "stem.proj.weight": (model.stem.kernel, _oihw_to_hwio),
        "stem.proj.bias": (model.stem.bias, _identity),
    }
    for i, block in enumerate(model.blocks):
        mapping.update(_block_weight_map(i, block))
    mapping.update({
        "norm.weight": (model.final_norm.gamma, _identity),
        "norm.bias": (model.final_norm.beta, _identity),
        "head.weight": (model.head.kernel, _transpose),
        "head.bias": (model.head.bias, _identity),
    })
    return mapping


def _key_list(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _check_architecture(state_dict: Mapping[str, np.ndarray], config: GMLPConfig, preset: Optional[str],
                        new_head: bool = False) -> None:
    try:
        checkpoint_config = infer_preset(state_dict)
    except ValueError:
        return  # Not a complete timm gMLP: the key check says what is wrong.
    check_matches_checkpoint(config, checkpoint_config, preset, new_head)


def _check_keys(state_dict: Mapping[str, np.ndarray], mapping: Mapping[str, Tuple[keras.Variable, Transform]],
                model: keras.Model, new_head: bool = False) -> None:
    """Raises unless the checkpoint's names are exactly the mapped ones and those cover the model."""
    missing = set(mapping) - set(state_dict)
    unexpected = set(state_dict) - set(mapping)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_key_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_key_list(unexpected)}")
        raise ValueError("checkpoint does not match the model: " + "; ".join(parts))
    mapped_ids = {id(var) for var, _ in mapping.values()}
    if new_head:  # The head keeps its fresh initialisation.
        mapped_ids |= {id(model.head.kernel), id(model.head.bias)}
    unmapped = [v.path for v in model.weights if id(v) not in mapped_ids]
    if unmapped:
        raise ValueError(f"the model has weights with no timm counterpart: {', '.join(unmapped)}")


def _torch_shape(keras_shape: Iterable[int], transform: Transform) -> Tuple[int, ...]:
    keras_shape = tuple(keras_shape)
    if transform is _transpose:
        return keras_shape[::-1]
    if transform is _oihw_to_hwio:
        h, w, i, o = keras_shape
        return (o, i, h, w)
    return keras_shape


def _keras_value(key: str, array: np.ndarray, variable: keras.Variable, transform: Transform) -> np.ndarray:
    """One timm array in the layout and dtype of its Keras variable, shape and dtype checked."""
    array = np.asarray(array)
    value = transform(array)
    if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(
            f"shape mismatch for {key}: checkpoint has {list(array.shape)}, the model's {variable.path} "
            f"needs {list(variable.shape)}, i.e. {list(_torch_shape(variable.shape, transform))} in timm's layout"
        )
    if not np.issubdtype(value.dtype, np.floating):
        raise ValueError(f"{key} has dtype {value.dtype}, expected floating point")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{key} holds NaN or infinite values")
    return value.astype(variable.dtype)


def to_keras_weights(state_dict: Mapping[str, np.ndarray], model: keras.Model,
                     preset: Optional[str] = None, new_head: bool = False) -> Dict[str, np.ndarray]:
    """timm's weights as the weights of a built GMLPVisionClassifier, every one checked.

    The checks, in order: the checkpoint's architecture against model.config, then the key sets
    (missing and unexpected keys), then every shape and dtype. Nothing is assigned.

    Args:
      state_dict: {timm name: array in torch's layout}, e.g. from read_checkpoint.
      model: a built GMLPVisionClassifier.
      preset: the preset name the model was built from, for error messages.
      new_head: drop the checkpoint's head (head.weight, head.bias): the model's head, of any
        class count, is left out of the result and keeps its initialisation.

    Returns:
      {Keras variable path: array}, one per variable of the model (but the head with new_head),
      each in its variable's layout
      and dtype: the stem kernel [p, p, C, d], proj_in [d, e], proj_out [e / 2, d], head [d, K]
      and the SGU's spatial kernel [n, n] as in timm.

    Raises:
      ValueError: a mismatched preset/config, missing or unexpected keys, a shape mismatch, or NaN
        or infinite values.
    """
    _check_architecture(state_dict, model.config, preset, new_head)
    mapping = timm_weight_map(model)
    if new_head:
        state_dict = {k: v for k, v in state_dict.items() if k not in HEAD_KEYS}
        mapping = {k: v for k, v in mapping.items() if k not in HEAD_KEYS}
    _check_keys(state_dict, mapping, model, new_head)
    return {variable.path: _keras_value(key, state_dict[key], variable, transform)
            for key, (variable, transform) in mapping.items()}


def assign_weights(model: keras.Model, weights: Mapping[str, np.ndarray]) -> int:
    """Assigns {Keras variable path: array} (from to_keras_weights) to the model's variables.

    Returns:
      The number of arrays assigned.

    Raises:
      ValueError: a path the model has no variable for (checked before any assignment).
    """
    variables = {v.path: v for v in model.weights}
    unknown = set(weights) - set(variables)
    if unknown:
        raise ValueError(f"the model has no variables {_key_list(unknown)}")
    for path, value in weights.items():
        variables[path].assign(value)
    return len(weights)


def convert_state_dict(state_dict: Mapping[str, np.ndarray], model: keras.Model,
                       preset: Optional[str] = None) -> int:
    """Assigns every weight of a built GMLPVisionClassifier from a timm gMLP state dict.

    to_keras_weights then assign_weights: everything is checked before any variable changes.

    Returns:
      The number of arrays assigned.
    """
    return assign_weights(model, to_keras_weights(state_dict, model, preset))


@dataclasses.dataclass(frozen=True)
class TimmModel:
    """A GMLPVisionClassifier holding a timm checkpoint's weights."""

    model: keras.Model
    config: GMLPConfig
    preset: Optional[str]  # None: no preset has the checkpoint's shapes; config was inferred from them.
    new_head: bool = False  # True: the checkpoint's head was dropped for a fresh config.num_classes-way one.


def load_timm_model(path: PathLike, preset: Optional[str] = None,
                    stage: Callable[[str], ContextManager[Any]] = contextlib.nullcontext,
                    num_classes: Optional[int] = None) -> TimmModel:
    """Reads a timm gMLP checkpoint and builds the Keras model holding its weights.

    Args:
      path: a .safetensors file or a torch.save state dict (read_checkpoint).
      preset: the preset to build; by default the one with the checkpoint's shapes (resolve_config).
      stage: wraps each step, called with its description ("Reading the checkpoint x.pth (78.1 MB)",
        "Building ...", "Converting ...", "Assigning ..."): a context manager factory such as
        gmlp_tf.utils.progress.stage, which logs the steps; by default nothing is logged.
      num_classes: a class count other than the checkpoint's drops its head for a fresh
        num_classes-way one (zero-initialised, as timm's); the same count (or None) keeps it.

    Returns:
      The model (NHWC images normalised with IMAGE_MEAN / IMAGE_STD -> logits [batch, K]), its
      config and preset.

    Raises:
      ValueError: an unreadable checkpoint, one that does not fit the preset, or one with NaN or
        infinite values in a tensor the model takes (the message names the tensor and the file).
    """
    size = os.path.getsize(path) if os.path.isfile(path) else None
    size_text = "" if size is None else f" ({size / 1e6:.1f} MB)" if size >= 1e5 else f" ({size / 1e3:.1f} kB)"
    with stage(f"Reading the checkpoint {os.fspath(path)}{size_text}"):
        state_dict = read_checkpoint(path)
    config, preset = resolve_config(state_dict, preset)
    if num_classes is not None and num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    new_head = num_classes is not None and num_classes != config.num_classes
    what = preset or "a config inferred from the checkpoint"
    if new_head:
        config = config.replace(num_classes=num_classes)
        what += f", a new {num_classes}-class head instead of the checkpoint's {config_classes(state_dict)}"
    check_finite(state_dict, path, skip=HEAD_KEYS if new_head else ())  # Before the (slow) build.
    with stage(f"Building the Keras model ({what})"):
        model = build_model(config, "vision")
    with stage(f"Converting {len(state_dict)} tensors to the Keras layout"):
        weights = to_keras_weights(state_dict, model, preset, new_head)
    with stage(f"Assigning {len(weights)} weights to the Keras model"):
        assign_weights(model, weights)
    return TimmModel(model=model, config=config, preset=preset, new_head=new_head)


def config_classes(state_dict: Mapping[str, np.ndarray]) -> int:
    """The class count of a timm checkpoint's head (head.weight [K, d])."""
    return _shape_of(state_dict, "head.weight", 2)[0]


def save_keras_weights(model: keras.Model, path: PathLike) -> str:
    """model.save_weights(path) atomically: written to a temporary file beside it, then renamed.

    Returns:
      The path written.
    """
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"Keras weights files must end in .weights.h5, got {path}")
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)[: -len('.weights.h5')]}.tmp{os.getpid()}.weights.h5")
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
