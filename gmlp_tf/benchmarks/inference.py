"""Image inference speed of the vision presets: Keras predict and the SavedModel, beside timm.

Each figure is images per second at a fixed batch, read against a float32 matmul timed in the
same process (FLOPs counted as counting.py does) and, when a Python with timm is given, against
timm's PyTorch model on the same machine, run right after.
"""

import dataclasses
import subprocess
import tempfile
from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from gmlp_tf import counting
from gmlp_tf.benchmarks.common import best_seconds, matmul_flops_per_second, processor_name
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
    from gmlp_tf.export import image as image_export

    with tempfile.TemporaryDirectory() as directory:
        module, signatures, _ = image_export.build(model, model.config, directory)
        tf.saved_model.save(module, directory, signatures=signatures)
        serve = tf.saved_model.load(directory).signatures["images"]
        pixels = tf.constant(np.clip(images * 64 + 128, 0, 255).astype(np.uint8))
        return best_seconds(lambda: serve(images=pixels)["logits"], repeats)


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
        if timm:
            lines.append(f"  {'timm (PyTorch)':18s} {timm:8.2f} images/s  "
                         f"{100 * timm * flops / matmul:5.1f}% of matmul")
    return lines
