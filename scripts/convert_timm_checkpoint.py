"""Converts a timm gMLP checkpoint (gmlp_ti16_224 / gmlp_s16_224 / gmlp_b16_224) to Keras weights.

  python scripts/convert_timm_checkpoint.py --checkpoint=gmlp_s16_224_raa-10536d42.pth \
    --output=output/gmlp_s16_timm

Reads .safetensors or torch.save (.pth / .bin) state dicts without PyTorch (see
gmlp_tf/models/timm_convert.py). --output is either a .weights.h5 file, or an output directory in
the project's layout (gmlp_config.json, run_info.json, preprocessing.json and
checkpoints/latest.weights.h5), which the other scripts can read like a vision run. The model
takes NHWC images normalised with mean = std = 0.5 per channel, as timm's gMLP weights expect.

--num_classes=N (other than the checkpoint's 1000) drops the ImageNet head and writes a model
with a fresh N-way head, for finetuning on another label set:

  python scripts/convert_timm_checkpoint.py --checkpoint=gmlp_s16_224_raa-10536d42.pth \
    --num_classes=10 --output=output/gmlp_s16_timm10
  python scripts/run_imagenet.py --data_dir=IMAGES --init_checkpoint=output/gmlp_s16_timm10 \
    --preset=gmlp_s16_224 --num_classes=10 --normalization=timm_gmlp ...

Bad input ends the script with one line "convert_timm_checkpoint.py: error: ..." and exit 1;
every check runs before anything is written, and the weights file is written atomically.
"""

import dataclasses
import os
import shutil
from typing import Iterable, List, Optional, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402

from gmlp_tf.models import (
    saved_runs,
    timm_convert,  # noqa: E402
)
from gmlp_tf.runtime import flags, run_directory, runner  # noqa: E402
from gmlp_tf.utils import progress

PROG = "convert_timm_checkpoint.py"
WEIGHTS_SUFFIX = ".weights.h5"


@dataclasses.dataclass
class ConvertSpec:
    """The script's flags."""

    checkpoint: Optional[str] = flags.option(
        None, "timm checkpoint: .safetensors, or a torch state dict (.pth / .bin).")
    preset: Optional[str] = flags.option(
        None, "Preset to build (gmlp_ti16_224, gmlp_s16_224, gmlp_b16_224); default: the one matching the "
        "checkpoint's shapes (or a config inferred from them).")
    output: Optional[str] = flags.option(
        None, "A .weights.h5 file, or an output directory (gmlp_config.json + checkpoints/latest.weights.h5).")
    num_classes: Optional[int] = flags.option(
        None, "Classes of the written model's head; other than the checkpoint's, its head is dropped and a "
        "fresh one made (finetuning on another label set). Default: the checkpoint's.")


flags.define_flags(ConvertSpec)


def _weights_path(output_dir: str) -> str:
    return os.path.join(saved_runs.checkpoint_dir(output_dir), saved_runs.WEIGHTS_NAME)


def _check_output(output: str) -> None:
    """Refuses an --output that cannot be written, before the (slow) conversion."""
    if output.endswith(WEIGHTS_SUFFIX):
        if os.path.isdir(output):
            raise ValueError(f"--output {output} is a directory")
        if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
            raise ValueError(f"the directory of --output {output} does not exist")
        return
    if os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"--output {output} is neither a .weights.h5 file nor a directory")
    if os.path.exists(_weights_path(output)):
        raise ValueError(f"{_weights_path(output)} already exists; choose a new --output directory")


def _remove(paths: Iterable[str]) -> None:
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)


def _write_output_dir(output: str, converted: timm_convert.TimmModel) -> str:
    """Writes the project's run layout; returns the weights path.

    If writing fails, what this call created is removed again, so that a failed conversion
    leaves --output as it found it.
    """
    created = not os.path.exists(output)
    ours: List[str] = [os.path.join(output, name) for name in (
        saved_runs.CONFIG_NAME, saved_runs.RUN_INFO_NAME, saved_runs.PREPROCESSING_NAME)]
    ours = [p for p in ours + [saved_runs.checkpoint_dir(output)] if not os.path.exists(p)]
    try:
        run_directory.prepare_output_dir(output, converted.config, "vision")
        # Export and evaluation normalise images as timm's weights expect.
        run_directory.write_image_normalization(output, timm_convert.IMAGE_MEAN, timm_convert.IMAGE_STD)
        os.makedirs(saved_runs.checkpoint_dir(output), exist_ok=True)
        return _save(converted, _weights_path(output))
    except BaseException:
        _remove([output] if created else ours)
        raise


def convert(spec: ConvertSpec) -> Tuple[timm_convert.TimmModel, str]:
    """Converts spec.checkpoint and writes it to spec.output; returns the model and the weights path."""
    if not spec.checkpoint:
        raise ValueError("--checkpoint is required")
    if not spec.output:
        raise ValueError("--output is required (a .weights.h5 file or an output directory)")
    if spec.num_classes is not None and spec.num_classes < 2:
        raise ValueError(f"--num_classes must be at least 2, got {spec.num_classes}")
    _check_output(spec.output)
    converted = timm_convert.load_timm_model(spec.checkpoint, spec.preset, stage=progress.stage,
                                             num_classes=spec.num_classes)
    if spec.output.endswith(WEIGHTS_SUFFIX):
        return converted, _save(converted, spec.output)
    return converted, _write_output_dir(spec.output, converted)


def _save(converted: timm_convert.TimmModel, path: str) -> str:
    """save_keras_weights between stage lines; returns the path."""
    with progress.stage(f"Saving the Keras weights to {path}"):
        return timm_convert.save_keras_weights(converted.model, path)


def report(converted: timm_convert.TimmModel, path: str, spec: ConvertSpec) -> str:
    """The line printed after a conversion: what was converted, where to, and the input format."""
    config = converted.config
    what = converted.preset or (f"an inferred config ({config.num_layers} blocks, width {config.d_model}, "
                                f"{config.image_size}px, patch {config.patch_size})")
    if converted.new_head:
        what += f", with a new {config.num_classes}-class head"
    return f"Converted {spec.checkpoint} ({what}) to {path}; inputs: NHWC images normalised with mean = std = 0.5"


def main(argv: List[str]) -> None:
    runner.refuse_arguments(argv)
    spec = flags.spec_from_flags(ConvertSpec)
    converted, path = runner.run_script(PROG, lambda: convert(spec))
    print(report(converted, path, spec))


if __name__ == "__main__":
    app.run(main)
