"""The GMLPConfig of a timm gMLP checkpoint: inferred from its weight shapes, matched to a preset and
checked against one, and the shapes each config expects (timm_shapes), for timm_convert.py.
"""

import re
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import numpy as np

from gmlp_tf.config import GMLPConfig
from gmlp_tf.presets import get_preset_config, list_presets

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
            parts.append(f"{getattr(config, field)} {words}" if field == "num_layers"
                         else f"{words} {getattr(config, field)}")
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
