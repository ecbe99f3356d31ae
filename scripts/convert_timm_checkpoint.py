"""Converts a timm gMLP checkpoint (gmlp_ti16_224 / gmlp_s16_224 / gmlp_b16_224) to Keras weights.

  python scripts/convert_timm_checkpoint.py --checkpoint=gmlp_s16_224_raa-10536d42.pth \
    --output=output/gmlp_s16_timm

Reads .safetensors or torch.save (.pth / .bin) state dicts without PyTorch (see
gmlp_tf/timm_convert.py). --output is either a .weights.h5 file, or an output directory in the
project's layout (gmlp_config.json, run_info.json and checkpoints/latest.weights.h5), which the
other scripts can read like a vision run. The model takes NHWC images normalised with
mean = std = 0.5 per channel, as timm's gMLP weights expect.

Bad input ends the script with one line "convert_timm_checkpoint.py: error: ..." and exit 1;
every check runs before anything is written, and the weights file is written atomically.
"""

import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

PROG = "convert_timm_checkpoint.py"

flags.DEFINE_string("checkpoint", None, "timm checkpoint: .safetensors, or a torch state dict (.pth / .bin).")
flags.DEFINE_string("preset", None, "Preset to build (gmlp_ti16_224, gmlp_s16_224, gmlp_b16_224); default: the "
                    "one matching the checkpoint's shapes (or a config inferred from them).")
flags.DEFINE_string("output", None, "A .weights.h5 file, or an output directory (gmlp_config.json + "
                    "checkpoints/latest.weights.h5).")

FLAGS = flags.FLAGS


def convert(checkpoint, output, preset=None):
    """Returns (config, preset name or None, path of the weights written)."""
    if not checkpoint:
        raise ValueError("--checkpoint is required")
    if not output:
        raise ValueError("--output is required (a .weights.h5 file or an output directory)")
    from gmlp_tf.runtime import checkpointing
    from gmlp_tf.models import timm_convert
    from gmlp_tf.models.task_models import build_model
    from gmlp_tf.presets import get_preset_config

    state_dict = timm_convert.read_state_dict(checkpoint)
    checkpoint_config = timm_convert.infer_preset(state_dict)
    if preset:
        config = get_preset_config(preset)
        timm_convert.check_matches_checkpoint(config, checkpoint_config, preset)
    else:
        preset = timm_convert.matching_preset(checkpoint_config)
        config = get_preset_config(preset) if preset else checkpoint_config

    to_file = output.endswith(".weights.h5")
    if to_file:
        if os.path.isdir(output):
            raise ValueError(f"--output {output} is a directory")
    else:
        if os.path.exists(output) and not os.path.isdir(output):
            raise ValueError(f"--output {output} is neither a .weights.h5 file nor a directory")
        existing = os.path.join(checkpointing.checkpoint_dir(output), checkpointing.WEIGHTS_NAME)
        if os.path.exists(existing):
            raise ValueError(f"{existing} already exists; choose a new --output directory")

    model = build_model(config, "vision")
    timm_convert.convert_state_dict(state_dict, model, preset=preset)

    if to_file:
        parent = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(parent):
            raise ValueError(f"the directory of --output {output} does not exist")
        return config, preset, timm_convert.save_keras_weights(model, output)

    created = not os.path.exists(output)
    ours = [os.path.join(output, checkpointing.CONFIG_NAME), os.path.join(output, checkpointing.RUN_INFO_NAME),
            os.path.join(output, checkpointing.PREPROCESSING_NAME), checkpointing.checkpoint_dir(output)]
    ours = [p for p in ours if not os.path.exists(p)]  # Removed again if the conversion fails.
    try:
        checkpointing.prepare_output_dir(output, config, "vision")
        checkpointing.write_image_normalization(output, timm_convert.IMAGE_MEAN, timm_convert.IMAGE_STD)
        os.makedirs(checkpointing.checkpoint_dir(output), exist_ok=True)
        path = os.path.join(checkpointing.checkpoint_dir(output), checkpointing.WEIGHTS_NAME)
        timm_convert.save_keras_weights(model, path)
    except BaseException:
        if created:
            shutil.rmtree(output, ignore_errors=True)
        else:
            for p in ours:
                if os.path.isdir(p):
                    shutil.rmtree(p, ignore_errors=True)
                elif os.path.exists(p):
                    os.remove(p)
        raise
    return config, preset, path


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        config, preset, path = convert(FLAGS.checkpoint, FLAGS.output, FLAGS.preset)
    except (ValueError, OSError) as err:
        logging.flush()
        sys.exit(f"{PROG}: error: {err}")
    what = preset or (f"an inferred config ({config.num_layers} blocks, width {config.d_model}, "
                      f"{config.image_size}px, patch {config.patch_size})")
    print(f"Converted {FLAGS.checkpoint} ({what}) to {path}; inputs: NHWC images normalised with mean = std = 0.5")


if __name__ == "__main__":
    app.run(main)
