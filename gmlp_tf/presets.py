"""The models the paper names, as presets read from the JSON files in configs/."""

import functools
import os
from typing import TYPE_CHECKING, Any, Optional, Tuple, Union

from gmlp_tf.config import GMLPConfig

if TYPE_CHECKING:  # Annotations only: reading configs needs no Keras model.
    import keras

    from gmlp_tf.models.encoder import GMLPEncoder

_SOURCE_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def config_dir() -> str:
    """The folder of preset JSON files: the installed gmlp_tf.configs package data, or, in a
    source checkout that is not installed, the repository's top-level configs/."""
    try:
        from gmlp_tf import configs  # Installed by setup.py from configs/.

        return list(configs.__path__)[0]  # A namespace package: data files only.
    except ImportError:
        return _SOURCE_CONFIG_DIR


@functools.lru_cache(maxsize=1)
def list_presets() -> Tuple[str, ...]:
    """Names of all presets, sorted (each is configs/<name>.json)."""
    names = [f[: -len(".json")] for f in os.listdir(config_dir()) if f.endswith(".json")]
    return tuple(sorted(names))


def get_preset_config(name: str) -> GMLPConfig:
    """Returns the GMLPConfig of a preset; an unknown name raises a ValueError listing the names."""
    if name not in list_presets():
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(list_presets())}")
    return GMLPConfig.from_json_file(os.path.join(config_dir(), name + ".json"))


def build_preset(
    name: str, task: Optional[str] = None, **kwargs: Any
) -> Union["keras.Model", "GMLPEncoder"]:
    """Builds the model of a preset (see modeling.build_model for task and its arguments)."""
    from gmlp_tf.models.task_models import build_model  # Deferred: reading configs needs no Keras model.

    return build_model(get_preset_config(name), task=task, **kwargs)
