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
    name: str, task: Optional[str] = None, num_classes: Optional[int] = None, **kwargs: Any
) -> Union["keras.Model", "GMLPEncoder"]:
    """Builds the model of a preset (see task_models.build_model for task and its arguments).

    Vision presets take num_classes (or, as text models, num_labels): a fresh head of that many
    classes, e.g. build_preset("gmlp_s16_224", num_classes=10) -> logits [batch, 10]; the backbone
    is the preset's.

    Raises:
      ValueError: an unknown preset; num_classes for a text preset; num_classes and num_labels that
        disagree; fewer than 2 classes.
    """
    from gmlp_tf.models.task_models import build_model  # Deferred: reading configs needs no Keras model.

    config = get_preset_config(name)
    if config.modality == "image":
        num_labels = kwargs.pop("num_labels", None)
        if num_classes is not None and num_labels is not None and num_classes != num_labels:
            raise ValueError(f"num_classes={num_classes} and num_labels={num_labels} disagree; give one")
        classes = num_classes if num_classes is not None else num_labels
        if classes is not None:
            if classes < 2:
                raise ValueError(f"num_classes must be at least 2, got {classes}")
            config = config.replace(num_classes=classes)
    elif num_classes is not None:
        raise ValueError(f"{name} is a text preset: give num_labels (classification), not num_classes")
    return build_model(config, task=task, **kwargs)
