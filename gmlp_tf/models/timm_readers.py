"""Reads timm checkpoints into {timm name: NumPy array} state dicts, for timm_convert.py.

Checkpoints are read without PyTorch: safetensors files through the safetensors library's NumPy
API, and torch.save zip files (.pth / .bin / .pt), whose pickle is read by a restricted
unpickler that rebuilds tensors as NumPy arrays and never calls any function of the file's choosing.
"""

import collections
import os
import pickle
import zipfile
from typing import IO, Any, Dict, Iterable, Union

import ml_dtypes  # Registers NumPy's "bfloat16", without which safetensors' NumPy API cannot read BF16.
import numpy as np
from safetensors import SafetensorError, safe_open

PathLike = Union[str, "os.PathLike[str]"]
StateDict = Dict[str, np.ndarray]

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


def check_finite(state_dict: Dict[str, np.ndarray], path: PathLike, skip: Iterable[str] = ()) -> None:
    """Refuses NaN or infinite values in the floating-point tensors of a checkpoint (but those in skip).

    Raises:
      ValueError: naming the first such tensor (its timm key), how many of its values are bad, and the file.
    """
    skip = frozenset(skip)
    for key in sorted(state_dict):
        array = np.asarray(state_dict[key])
        if key in skip or not np.issubdtype(array.dtype, np.inexact):
            continue
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ValueError(f"{os.fspath(path)}: tensor {key!r} holds NaN or infinite values ({bad} of "
                             f"{array.size}); a checkpoint with them is not converted")


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
