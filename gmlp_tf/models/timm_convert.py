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

Checkpoints are read without PyTorch: safetensors files through the safetensors library's NumPy
API, and torch.save zip files (.pth / .bin / .pt), whose pickle is read by a restricted
unpickler that rebuilds tensors as NumPy arrays and never calls any function of the file's choosing.
"""

import collections
import contextlib
import dataclasses
import os
import pickle
import re
import zipfile
from typing import IO, Any, Callable, ContextManager, Dict, Iterable, Mapping, Optional, Tuple, Union

import keras
import ml_dtypes  # Registers NumPy's "bfloat16", without which safetensors' NumPy API cannot read BF16.
import numpy as np
from safetensors import SafetensorError, safe_open

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.task_models import build_model
from gmlp_tf.presets import get_preset_config, list_presets

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)

# The classifier head's parameters, which new_head leaves out.
HEAD_KEYS = ("head.weight", "head.bias")

# Presets that a timm gMLP checkpoint can map onto.
TIMM_PRESETS = ("gmlp_ti16_224", "gmlp_s16_224", "gmlp_b16_224")

# The config fields that fix the weight shapes of a vision gMLP, with words for error messages.
_SHAPE_FIELDS = (
    ("num_layers", "blocks"),
    ("d_model", "width"),
    ("d_ffn", "d_ffn"),
    ("patch_size", "patch size"),
    ("image_size", "image size"),
    ("num_channels", "channels"),
    ("num_classes", "classes"),
)

PathLike = Union[str, "os.PathLike[str]"]
StateDict = Dict[str, np.ndarray]
# Maps a torch array onto the layout of its Keras variable.
Transform = Callable[[np.ndarray], np.ndarray]

# ---------------------------------------------------------------------------------------------
# Reading checkpoints.


def _bf16_to_f32(raw_uint16: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) to float32: they are the top half of a float32."""
    return (raw_uint16.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path: PathLike) -> StateDict:
    """Reads a .safetensors file with the safetensors library's NumPy API.

    Returns:
      {tensor name: array of the tensor's shape}, bfloat16 tensors as float32 (exactly: a
      bfloat16 is the top half of a float32), other dtypes (float16, float32, ...) as stored.

    Raises:
      ValueError: the file is not a safetensors file, or holds a dtype NumPy cannot represent.
    """
    tensors = {}
    try:
        with safe_open(os.fspath(path), framework="np") as f:
            for name in f.keys():
                try:
                    tensors[name] = f.get_tensor(name)
                except TypeError as err:  # A dtype unknown to NumPy (and ml_dtypes).
                    raise ValueError(f"{path}: tensor {name!r} has an unsupported dtype ({err})") from None
    except SafetensorError as err:
        raise ValueError(f"{path} is not a safetensors file: {err}") from None
    # NumPy has no bfloat16 arithmetic of its own, and the model's variables are float32.
    return {name: a.astype(np.float32) if a.dtype == ml_dtypes.bfloat16 else a for name, a in tensors.items()}


# torch storage class names -> element dtype (little-endian; byteorder fixed up per file).
_TORCH_STORAGES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "UntypedStorage": "u1",
}


class _Storage:
    """A torch storage as a flat NumPy array."""

    def __init__(self, array: np.ndarray):
        self.array = array


class _StorageType:
    def __init__(self, name: str):
        self.name = name


class _Opaque:
    """Stands in for any class the checkpoint names that a state dict does not need (training
    arguments, optimizer state...). Never calls anything; just absorbs its arguments."""

    _global_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self):
        return f"<unloaded {self._global_name}>"


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    if not isinstance(storage, _Storage):
        raise ValueError("malformed torch checkpoint: a tensor without a storage")
    array = storage.array
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise ValueError("malformed torch checkpoint: tensor size and stride differ in rank")
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=array.dtype)
    last = int(storage_offset) + sum((n - 1) * s for n, s in zip(size, stride))
    if storage_offset < 0 or any(s < 0 for s in stride) or last >= array.size:
        raise ValueError("malformed torch checkpoint: a tensor reaches beyond its storage")
    view = np.lib.stride_tricks.as_strided(
        array[int(storage_offset) :], shape=size, strides=tuple(s * array.itemsize for s in stride), writeable=False
    )
    return np.array(view)


def _rebuild_parameter(data, *unused):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], zip_file: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self._zip = zip_file
        self._prefix = prefix
        self._byteorder = "<" if byteorder == "little" else ">"
        self._storages = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        if module in ("torch", "torch.storage") and name in _TORCH_STORAGES:
            return _StorageType(name)
        # Anything else: an inert placeholder, never the real class or function.
        return type(name, (_Opaque,), {"_global_name": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id in torch checkpoint: {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if key in self._storages:
            return self._storages[key]
        if isinstance(storage_type, _StorageType):
            code = _TORCH_STORAGES[storage_type.name]
        else:
            # Newer torch may give a dtype object instead of a storage class: not supported here.
            raise pickle.UnpicklingError(f"unsupported storage type in torch checkpoint: {storage_type!r}")
        try:
            raw = self._zip.read(f"{self._prefix}data/{key}")
        except KeyError:
            raise pickle.UnpicklingError(f"torch checkpoint lacks the data of storage {key}") from None
        if code == "bf16":
            array = np.frombuffer(raw, dtype=np.dtype(self._byteorder + "u2"))
            if array.size < numel:
                raise pickle.UnpicklingError(f"storage {key} is shorter than its {numel} elements")
            array = _bf16_to_f32(array[:numel].astype("=u2"))
        else:
            dtype = np.dtype(code).newbyteorder(self._byteorder) if np.dtype(code).itemsize > 1 else np.dtype(code)
            array = np.frombuffer(raw, dtype=dtype)
            if array.size < numel:
                raise pickle.UnpicklingError(f"storage {key} is shorter than its {numel} elements")
            array = array[:numel].astype(dtype.newbyteorder("="))
        storage = _Storage(array)
        self._storages[key] = storage
        return storage


def read_torch_checkpoint(path: PathLike) -> Any:
    """Reads a torch.save zip file (torch >= 1.6) into Python objects with NumPy arrays for tensors."""
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a torch zip checkpoint (the legacy pre-1.6 torch format is not supported); "
            f"re-save it with a recent torch or convert it to safetensors"
        )
    with zipfile.ZipFile(path) as zf:
        pickles = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pickles:
            raise ValueError(f"{path} is a zip file but not a torch checkpoint (no data.pkl)")
        pkl = min(pickles, key=len)
        prefix = pkl[: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in zf.namelist():
            byteorder = zf.read(f"{prefix}byteorder").decode("ascii").strip()
        with zf.open(pkl) as f:
            try:
                return _RestrictedUnpickler(f, zf, prefix, byteorder).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, IndexError) as err:
                raise ValueError(f"cannot read torch checkpoint {path}: {err}") from None


def _find_state_dict(obj: Any, path: PathLike) -> StateDict:
    """The {name: array} inside a loaded torch checkpoint (plain, or under "state_dict"/"model")."""
    if isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "state_dict_ema", "model_ema"):
            if key in obj and isinstance(obj[key], dict):
                return _find_state_dict(obj[key], path)
        tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
        if tensors:
            return tensors
    raise ValueError(f"{path} holds no state dict of tensors")


def read_checkpoint(path: PathLike) -> StateDict:
    """Reads a timm checkpoint: .safetensors, or a torch.save state dict (.pth / .bin / .pt).

    PyTorch is not needed. A torch checkpoint may be a bare state dict or a training checkpoint
    holding one under "state_dict" or "model"; a "module." prefix (DataParallel) is dropped.

    Returns:
      {timm parameter name: NumPy array in torch's layout}, e.g. "stem.proj.weight": [d, C, p, p]
      and "head.weight": [K, d] (see the module docstring for all of them); bfloat16 tensors as
      float32.

    Raises:
      ValueError: the file is missing or not a readable checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(4)
    if path.endswith(".safetensors") or (magic != b"PK\x03\x04" and not path.endswith((".pth", ".pt", ".bin"))):
        state = read_safetensors(path)
    else:
        state = _find_state_dict(read_torch_checkpoint(path), path)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


# ---------------------------------------------------------------------------------------------
# Architecture.


def _vision_config(**fields: Any) -> GMLPConfig:
    base = dict(modality="image", spatial_kind="dense", gating="split", attention_size=0, causal=False,
                layer_norm_eps=1e-6, sgu_layer_norm_eps=1e-5)
    base.update(fields)
    return GMLPConfig(**base)


def _shape_of(state_dict: Mapping[str, np.ndarray], key: str, ndim: int) -> Tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"not a timm gMLP checkpoint: no {key}")
    shape = tuple(int(s) for s in np.shape(state_dict[key]))
    if len(shape) != ndim:
        raise ValueError(f"not a timm gMLP checkpoint: {key} has shape {list(shape)}, expected rank {ndim}")
    return shape


def _num_blocks(keys: Iterable[str]) -> int:
    """The number of blocks.{i} in the checkpoint; they must be numbered 0, 1, ... without gaps."""
    indices = sorted({int(m.group(1)) for k in keys for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
    if not indices:
        raise ValueError("not a timm gMLP checkpoint: no blocks.{i}.* weights")
    if indices != list(range(len(indices))):
        missing = sorted(set(range(indices[-1] + 1)) - set(indices))
        raise ValueError(f"checkpoint block indices are not contiguous: blocks {missing} are missing")
    return len(indices)


def infer_preset(state_dict: Mapping[str, np.ndarray]) -> GMLPConfig:
    """The GMLPConfig a timm gMLP state dict was made for, from its weight shapes.

    d_model, channels and patch size come from stem.proj.weight [d, C, p, p], d_ffn from
    fc1.weight [e, d], the number of blocks from the blocks.{i}.* keys, the token count n (hence
    image_size = sqrt(n) * p) from gate.proj.weight [n, n] and the classes from head.weight
    [K, d]. Other fields are timm's (dense SGU, split gating, LayerNorm eps 1e-6 and 1e-5 in the SGU).

    Raises:
      ValueError: the state dict lacks those keys or their shapes are not a timm gMLP's.
    """
    d_model, channels, ph, pw = _shape_of(state_dict, "stem.proj.weight", 4)
    if ph != pw:
        raise ValueError(f"stem.proj.weight has non-square {ph}x{pw} patches; only square patches are supported")
    num_layers = _num_blocks(state_dict)
    d_ffn, _ = _shape_of(state_dict, "blocks.0.mlp_channels.fc1.weight", 2)
    n, _ = _shape_of(state_dict, "blocks.0.mlp_channels.gate.proj.weight", 2)
    side = int(round(n**0.5))
    if side * side != n:
        raise ValueError(f"the spatial projection has {n} tokens, not a square grid of patches")
    num_classes, _ = _shape_of(state_dict, "head.weight", 2)
    return _vision_config(
        d_model=d_model, d_ffn=d_ffn, num_layers=num_layers, patch_size=ph,
        image_size=side * ph, num_channels=channels, num_classes=num_classes,
    )


def _shape_fields(config: GMLPConfig) -> Dict[str, Any]:
    return {field: getattr(config, field) for field, _ in _SHAPE_FIELDS}


def matching_preset(config: GMLPConfig) -> Optional[str]:
    """The name of the timm preset whose weight shapes are those of `config`, or None."""
    for name in TIMM_PRESETS:
        if name in list_presets() and _shape_fields(get_preset_config(name)) == _shape_fields(config):
            return name
    return None


def _describe(config: GMLPConfig, fields: Iterable[str]) -> str:
    parts = []
    for field, words in _SHAPE_FIELDS:
        if field in fields:
            parts.append(f"{getattr(config, field)} {words}" if field == "num_layers" else f"{words} {getattr(config, field)}")
    return ", ".join(parts)


def _check_timm_kind(config: GMLPConfig, what: str) -> None:
    """Raises unless `config` is, like timm's, a dense, split-gated image gMLP without attention."""
    problems = []
    if config.modality != "image":
        problems.append(f"{what} is a {config.modality} model, not an image classifier")
    if config.spatial_kind != "dense":
        problems.append(f"{what} has a {config.spatial_kind} spatial projection; timm's is dense")
    if config.gating != "split":
        problems.append(f"{what} has {config.gating} gating; timm's is split")
    if config.attention_size:
        problems.append(f"{what} is an aMLP (tiny attention); timm's gMLP has none")
    if problems:
        raise ValueError("; ".join(problems))


def check_matches_checkpoint(config: GMLPConfig, checkpoint_config: GMLPConfig, name: Optional[str] = None,
                             new_head: bool = False) -> None:
    """Raises a ValueError naming every shape-determining difference between a model config and
    the config inferred from a checkpoint, e.g. "checkpoint has 30 blocks of width 256
    (gmlp_s16_224) but the preset gmlp_ti16_224 has width 128". new_head: the class counts may
    differ (the head is not taken from the checkpoint). Regularisation (survival_prob, its
    uniform or linear schedule) changes no weight and is not compared."""
    what = f"the preset {name}" if name else "the model config"
    _check_timm_kind(config, what)
    differing = [f for f, _ in _SHAPE_FIELDS if getattr(config, f) != getattr(checkpoint_config, f)
                 and not (new_head and f == "num_classes")]
    if differing:
        known = matching_preset(checkpoint_config)
        ckpt = f"checkpoint has {checkpoint_config.num_layers} blocks of width {checkpoint_config.d_model}"
        if known:
            ckpt += f" ({known})"
        extra = [f for f in differing if f not in ("num_layers", "d_model")]
        if extra:
            ckpt += f" and {_describe(checkpoint_config, extra)}"
        raise ValueError(f"{ckpt} but {what} has {_describe(config, differing)}")


def resolve_config(state_dict: Mapping[str, np.ndarray],
                   preset: Optional[str] = None) -> Tuple[GMLPConfig, Optional[str]]:
    """The config to build for a checkpoint, and its preset name.

    With `preset`, that preset's config, checked against the checkpoint's shapes. Without, the
    timm preset whose shapes the checkpoint has, or else (preset None) the config inferred from
    the shapes (infer_preset).

    Raises:
      ValueError: an unknown preset, or one whose shapes are not the checkpoint's.
    """
    checkpoint_config = infer_preset(state_dict)
    if preset:
        config = get_preset_config(preset)
        check_matches_checkpoint(config, checkpoint_config, preset)
        return config, preset
    preset = matching_preset(checkpoint_config)
    return (get_preset_config(preset) if preset else checkpoint_config), preset


def timm_shapes(config: GMLPConfig) -> Dict[str, Tuple[int, ...]]:
    """{timm parameter name: torch shape} of the timm gMLP of `config` (no checkpoint needed)."""
    d, e, n, p, c, k = (config.d_model, config.d_ffn, config.seq_length, config.patch_size,
                        config.num_channels, config.num_classes)
    shapes = {"stem.proj.weight": (d, c, p, p), "stem.proj.bias": (d,)}
    for i in range(config.num_layers):
        b = f"blocks.{i}."
        shapes.update({
            b + "norm.weight": (d,), b + "norm.bias": (d,),
            b + "mlp_channels.fc1.weight": (e, d), b + "mlp_channels.fc1.bias": (e,),
            b + "mlp_channels.gate.norm.weight": (e // 2,), b + "mlp_channels.gate.norm.bias": (e // 2,),
            b + "mlp_channels.gate.proj.weight": (n, n), b + "mlp_channels.gate.proj.bias": (n,),
            b + "mlp_channels.fc2.weight": (d, e // 2), b + "mlp_channels.fc2.bias": (d,),
        })
    shapes.update({"norm.weight": (d,), "norm.bias": (d,), "head.weight": (k, d), "head.bias": (k,)})
    return shapes


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
      ValueError: a mismatched preset/config, missing or unexpected keys, or a shape mismatch.
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
        gmlp_tf.runtime.progress.stage, which logs the steps; by default nothing is logged.
      num_classes: a class count other than the checkpoint's drops its head for a fresh
        num_classes-way one (zero-initialised, as timm's); the same count (or None) keeps it.

    Returns:
      The model (NHWC images normalised with IMAGE_MEAN / IMAGE_STD -> logits [batch, K]), its
      config and preset.

    Raises:
      ValueError: an unreadable checkpoint, or one that does not fit the preset.
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
