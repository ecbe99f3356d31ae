"""tf.io.gfile where TensorFlow is installed, and its local-file part where it is not.

Run directories and checkpoints are read and written through gfile so that gs:// paths work on
TPU hosts. The model side also runs on JAX and PyTorch without TensorFlow (docs/backends.md):
there `gfile()` returns LocalFiles, the same calls on local paths, and a gs:// path gets an error
saying that it needs TensorFlow.
"""

import os
from types import ModuleType
from typing import IO, Any, List, Tuple, Type, Union


class _Stat:
    def __init__(self, length: int) -> None:
        self.length = length


def _local(path: str) -> str:
    if "://" in str(path):
        raise ValueError(f"{path}: paths with a file-system scheme need TensorFlow's gfile; install tensorflow")
    return path


class LocalFiles:
    """The calls of tf.io.gfile the library makes, on local paths only."""

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.exists(_local(path))

    @staticmethod
    def isdir(path: str) -> bool:
        return os.path.isdir(_local(path))

    @staticmethod
    def listdir(path: str) -> List[str]:
        return os.listdir(_local(path))

    @staticmethod
    def makedirs(path: str) -> None:
        os.makedirs(_local(path), exist_ok=True)

    @staticmethod
    def stat(path: str) -> _Stat:
        return _Stat(os.stat(_local(path)).st_size)

    @staticmethod
    def GFile(path: str, mode: str = "r") -> IO[Any]:  # gfile's name
        return open(_local(path), mode)

    @staticmethod
    def rename(source: str, target: str, overwrite: bool = False) -> None:
        if not overwrite and os.path.exists(_local(target)):
            raise FileExistsError(f"{target} exists")
        os.replace(_local(source), target)

    @staticmethod
    def remove(path: str) -> None:
        os.remove(_local(path))


def gfile() -> Union[ModuleType, Type[LocalFiles]]:
    """tf.io.gfile, or LocalFiles where TensorFlow cannot be imported."""
    try:
        import tensorflow as tf
    except ImportError:
        return LocalFiles
    return tf.io.gfile


def file_errors() -> Tuple[Type[BaseException], ...]:
    """What a failed read raises: OSError, and TensorFlow's OpError where TensorFlow is installed."""
    try:
        import tensorflow as tf
    except ImportError:
        return (OSError,)
    return (OSError, tf.errors.OpError)
