"""Generates the small timm-format gMLP fixture in tests/fixtures/timm/ (run once, with real timm).

This script is NOT run by the tests and timm/torch are NOT dependencies of gmlp_tf; it needs a
separate environment, for example:

    python3 -m venv timmenv
    timmenv/bin/pip install "torch==2.13.0"   # the CPU build
    timmenv/bin/pip install --no-deps timm safetensors pyyaml huggingface_hub
    timmenv/bin/pip install numpy
    timmenv/bin/python scripts/make_timm_fixture.py [--output_dir tests/fixtures/timm]

The model is timm's MlpMixer with the settings of timm's gmlp_*16_224 (SpatialGatingBlock,
GatedMlp, mlp_ratio 6, LayerNorm eps 1e-6 with the SGU's default 1e-5, exact GELU, mean pool)
at a tiny size: 32 x 32 x 3 images, 8 x 8 patches (16 tokens), 2 blocks of width 16, 5 classes.
All weights are redrawn from a seeded normal distribution (the SGU's spatial weights too, not
timm's near-zero init, and the head, not timm's zero init) so that every weight matters.

Writes tiny_gmlp.safetensors, tiny_gmlp.pth (torch.save of the state dict, zip format),
inputs_nhwc.npy (float32 [2, 32, 32, 3], the images already normalised, as the Keras model
takes them; timm got the NCHW transpose) and logits.npy (float32 [2, 5], timm's output).
"""

import argparse
import enum
import importlib.abc
import importlib.machinery
import os
import sys
import types
from typing import TYPE_CHECKING, Dict

if TYPE_CHECKING:  # torch is imported only once the torchvision stub is in place.
    import torch

SEED = 20240521
CONFIG = dict(img_size=32, patch_size=8, num_blocks=2, embed_dim=16, mlp_ratio=6, num_classes=5)


def _install_torchvision_stub() -> bool:
    """timm imports torchvision at import time (FrozenBatchNorm2d, transforms, datasets), and no
    CPU torchvision build is available here. If the real one is missing, install a minimal stub
    package: every torchvision.* module exists and every attribute is a dummy class. Nothing in
    the MlpMixer / gMLP path uses torchvision."""
    try:
        import torchvision  # noqa: F401

        return False
    except ImportError:
        pass

    class _Dummy:
        def __init__(self, *args, **kwargs):
            pass

    class _InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        NEAREST_EXACT = "nearest-exact"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"
        BOX = "box"
        HAMMING = "hamming"
        LANCZOS = "lanczos"

    def _module_getattr(name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "InterpolationMode":
            return _InterpolationMode
        return type(name, (_Dummy,), {})

    class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            if fullname == "torchvision" or fullname.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            module = types.ModuleType(spec.name)
            module.__path__ = []
            module.__getattr__ = _module_getattr
            module.__version__ = "0.0.0+stub"
            return module

        def exec_module(self, module):
            pass

    sys.meta_path.append(_StubFinder())
    return True


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output_dir",
        default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "timm"),
    )
    return parser.parse_args()


def _build_timm_model() -> "torch.nn.Module":
    """timm's MlpMixer with the settings of gmlp_*16_224 at the tiny size of CONFIG, in eval mode."""
    from functools import partial

    import torch
    from timm.layers import GatedMlp
    from timm.models.mlp_mixer import MlpMixer, SpatialGatingBlock
    from torch import nn

    torch.manual_seed(SEED)  # Before construction: timm's own init draws from the global generator.
    return MlpMixer(
        block_layer=SpatialGatingBlock,
        mlp_layer=GatedMlp,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        act_layer=nn.GELU,
        **CONFIG,
    ).eval()


def _redraw_weights(model: "torch.nn.Module", generator: "torch.Generator") -> None:
    """Redraws every weight so that each one matters (see the module docstring)."""
    import numpy as np
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                # LayerNorm scales around 1 so activations stay of order one.
                param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=generator))
            elif name.endswith("gate.proj.bias"):
                param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=generator))
            elif name.endswith("gate.proj.weight"):
                n = param.shape[0]
                param.copy_(torch.randn(param.shape, generator=generator) / n**0.5)
            elif param.ndim >= 2:
                fan_in = int(np.prod(param.shape[1:]))
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
            else:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


def _save_fixture(output_dir: str, state: Dict[str, "torch.Tensor"], images: "torch.Tensor",
                  logits: "torch.Tensor") -> None:
    """Writes the state dict (.safetensors and .pth), the NHWC inputs and timm's logits."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    os.makedirs(output_dir, exist_ok=True)
    save_file(state, os.path.join(output_dir, "tiny_gmlp.safetensors"))
    torch.save(state, os.path.join(output_dir, "tiny_gmlp.pth"))
    np.save(os.path.join(output_dir, "inputs_nhwc.npy"), images.permute(0, 2, 3, 1).numpy().astype(np.float32))
    np.save(os.path.join(output_dir, "logits.npy"), logits.numpy().astype(np.float32))


def _print_versions_and_shapes(state: Dict[str, "torch.Tensor"], logits: "torch.Tensor", stubbed: bool) -> None:
    import numpy as np
    import safetensors
    import timm
    import torch

    print(f"timm {timm.__version__}, torch {torch.__version__}, safetensors {safetensors.__version__}, "
          f"numpy {np.__version__}, torchvision stub: {stubbed}")
    for k, v in state.items():
        print(f"  {k:40s} {tuple(v.shape)}")
    print("logits:", logits.numpy())


def main() -> None:
    args = _parse_args()
    stubbed = _install_torchvision_stub()  # Before anything imports timm.
    import torch

    model = _build_timm_model()
    # The weights, then the images, come from one seeded generator, in this order.
    generator = torch.Generator().manual_seed(SEED)
    _redraw_weights(model, generator)
    images = torch.randn((2, 3, CONFIG["img_size"], CONFIG["img_size"]), generator=generator)
    with torch.no_grad():
        logits = model(images)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    _save_fixture(args.output_dir, state, images, logits)
    _print_versions_and_shapes(state, logits, stubbed)


if __name__ == "__main__":
    main()
