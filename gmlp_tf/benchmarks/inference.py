"""Image inference speed of the vision presets: Keras predict and the SavedModel, beside timm.

Each figure is images per second at a fixed batch, read against a float32 matmul timed in the
same process (FLOPs counted as counting.py does) and, when a Python with timm is given, against
timm's PyTorch model on the same machine, run right after.
"""

import dataclasses
import subprocess
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from gmlp_tf import counting
from gmlp_tf.benchmarks.common import best_seconds, matmul_flops_per_second, processor_name
from gmlp_tf.config import GMLPConfig
from gmlp_tf.runtime.flags import option

# Timing code run by the timm interpreter: float32, inference mode, best of 3 timings.
TIMM_SNIPPET = """
import sys, time
try:
    import timm_shim  # A stand-in for torchvision where it cannot be installed.
except ImportError:
    pass
import timm, torch
name, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = timm.create_model(name).eval()
x = torch.rand(batch, 3, 224, 224)
with torch.inference_mode():
    model(x)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        best = min(best, time.perf_counter() - start)
print(batch * repeats / best)
"""


@dataclasses.dataclass
class InferenceBenchmarkSpec:
    """The flags of benchmark_inference.py."""

    presets: str = option("gmlp_s16_224", "Vision presets to time, comma-separated (gmlp_ti16_224, gmlp_s16_224, "
                                          "gmlp_b16_224).")
    batch_size: int = option(32, "Images per batch.")
    repeats: int = option(3, "Batches per timing (the best of 3 timings is reported).")
    saved_model: bool = option(True, "Also time the exported SavedModel's `images` signature.")
    timm_python: Optional[str] = option(None, "A Python interpreter with torch and timm: times timm's model of the "
                                              "same name right after ours, for the ratio.")


def keras_predict_seconds(model: keras.Model, images: np.ndarray, repeats: int) -> float:
    """Seconds per batch of model.predict on one batch of normalised pixels."""
    return best_seconds(lambda: tf.constant(model.predict(images, batch_size=len(images), verbose=0)), repeats)


def saved_model_seconds(model: keras.Model, images: np.ndarray, repeats: int) -> float:
    """Seconds per batch of the exported SavedModel's `images` signature (uint8 in, as served)."""
    from gmlp_tf.export import common as export_common
    from gmlp_tf.export import image as image_export

    with tempfile.TemporaryDirectory() as directory:
        module, signatures, _ = image_export.build(model, model.config, directory)
        export_common.save_quietly(module, directory, signatures)
        serve = tf.saved_model.load(directory).signatures["images"]
        pixels = tf.constant(np.clip(images * 64 + 128, 0, 255).astype(np.uint8))
        return best_seconds(lambda: serve(images=pixels)["logits"], repeats)


def matmul_chain(config: GMLPConfig, batch_size: int) -> Tuple[Callable[[], tf.Tensor], float]:
    """The model's matmuls alone, in its order and shapes, as one XLA function; and its FLOPs per image
    (those counting.py counts for the model).

    The patch embedding, each block's two halves of U, the spatial projection W and V, then the
    head, with only a sum where the model gates (so nothing fuses differently): the share of the
    matmul this reaches is what the model could reach if its LayerNorms, GELUs and gating were
    free, the ceiling for the "% of matmul" figure at this width.
    """
    n = (config.image_size // config.patch_size) ** 2
    patch = config.patch_size**2 * config.num_channels
    d, half = config.d_model, config.d_ffn // 2
    rng = tf.random.stateless_normal
    weights = [rng([patch, d], (0, 0)), rng([d, half], (0, 1)), rng([d, half], (0, 2)),
               rng([n, n], (0, 3)), rng([half, d], (0, 4)), rng([d, config.num_classes], (0, 5))]
    pixels = rng([batch_size, n, patch], (1, 0))
    scale = tf.constant(0.01)  # Keeps the values finite through the blocks.

    @tf.function(jit_compile=True)
    def chain(pixels):
        embed, u1, u2, w, v, head = weights
        x = tf.einsum("bnp,pd->bnd", pixels, embed)
        for _ in range(config.num_layers):
            z1, z2 = tf.einsum("bnd,dh->bnh", x, u1), tf.einsum("bnd,dh->bnh", x, u2)
            gated = z1 + tf.einsum("ij,bjh->bih", w, z2)
            x = x + scale * tf.einsum("bnh,hd->bnd", gated, v)
        return tf.matmul(tf.reduce_mean(x, axis=1), head)

    block = 2 * n * d * 2 * half + 2 * n * n * half + 2 * n * half * d
    flops = 2 * n * patch * d + config.num_layers * block + 2 * d * config.num_classes
    return (lambda: chain(pixels)), float(flops)


def timm_images_per_second(python: str, name: str, batch_size: int, repeats: int) -> float:
    """timm's images/s for the model of the same name, timed by `python` in a separate process."""
    done = subprocess.run([python, "-c", TIMM_SNIPPET, name, str(batch_size), str(repeats)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"timing timm with {python} failed: {done.stderr.strip().splitlines()[-1:]}")
    return float(done.stdout.strip().splitlines()[-1])


def run(spec: InferenceBenchmarkSpec) -> List[Dict[str, float]]:
    """Times every preset; returns one row of figures per preset."""
    import gmlp_tf

    presets = [p.strip() for p in spec.presets.split(",") if p.strip()]
    if not presets or spec.batch_size <= 0 or spec.repeats <= 0:
        raise ValueError("--presets must name at least one preset; --batch_size and --repeats must be positive")
    configs = {name: gmlp_tf.get_preset_config(name) for name in presets}  # Bad names fail before any timing.
    for name, config in configs.items():
        if config.modality != "image":
            raise ValueError(f"preset {name} is not a vision model")
    rows = []
    for name, config in configs.items():
        model = gmlp_tf.build_preset(name)
        images = np.random.default_rng(0).standard_normal(
            (spec.batch_size, config.image_size, config.image_size, config.num_channels)).astype("float32")
        row = {"preset": name, "flops_per_image": counting.count_flops(config),
               "matmul_flops_per_second": matmul_flops_per_second(),
               "keras_seconds": keras_predict_seconds(model, images, spec.repeats)}
        chain, chain_flops = matmul_chain(config, spec.batch_size)
        row["matmul_chain_seconds"] = best_seconds(chain, spec.repeats)
        row["matmul_chain_flops_per_image"] = chain_flops
        if spec.saved_model:
            row["saved_model_seconds"] = saved_model_seconds(model, images, spec.repeats)
        if spec.timm_python:
            row["timm_images_per_second"] = timm_images_per_second(spec.timm_python, name, spec.batch_size,
                                                                   spec.repeats)
        rows.append(row)
    return rows


def report_lines(rows: List[Dict[str, float]], spec: InferenceBenchmarkSpec) -> List[str]:
    lines = [f"image inference, batch {spec.batch_size}, float32; {processor_name()}"]
    for row in rows:
        matmul, flops = row["matmul_flops_per_second"], row["flops_per_image"]
        lines.append(f"{row['preset']}: {flops / 1e9:.2f} GFLOP per image; float32 matmul, same run: "
                     f"{matmul / 1e9:.1f} GFLOP/s")
        timm = row.get("timm_images_per_second")
        for label, key in (("Keras predict", "keras_seconds"), ("SavedModel images", "saved_model_seconds")):
            if key not in row:
                continue
            rate = spec.batch_size / row[key]
            line = f"  {label:18s} {rate:8.2f} images/s  {100 * rate * flops / matmul:5.1f}% of matmul"
            lines.append(line + (f"  {rate / timm:5.2f}x timm" if timm else ""))
        chain_rate = spec.batch_size * row["matmul_chain_flops_per_image"] / row["matmul_chain_seconds"]
        lines.append(f"  {'its matmuls alone':18s} {'':8s}           {100 * chain_rate / matmul:5.1f}% of matmul"
                     "  (the ceiling at this width)")
        if timm:
            lines.append(f"  {'timm (PyTorch)':18s} {timm:8.2f} images/s  "
                         f"{100 * timm * flops / matmul:5.1f}% of matmul")
    return lines
