"""GLUE finetuning of a pretrained gMLP / aMLP (BERT's run_classifier.py, with Keras fit).

With no flags it finetunes the demo pretraining checkpoint (output/pretraining_demo, pretrained
first if missing) on real movie-review sentences with sentiment labels (fetched once from the
PyPI source archive vaderSentiment==3.3.2) and reports held-out accuracy beside the
majority-class baseline.

A GLUE task, with the paper's recipe (Table 9) and a sweep over its learning rates, median of 5
seeds as in the paper:

  python scripts/run_classifier.py --task_name=mnli --data_dir=glue_data \
    --init_checkpoint=gs://BUCKET/amlp_base --output_dir=gs://BUCKET/amlp_base_mnli \
    --learning_rates=1e-5,2e-5,3e-5 --num_seeds=5 --do_train --do_eval --do_predict --tpu=local
"""

import os

from absl import app, flags

from gmlp_tf.runtime import flags as common_flags

common_flags.define_distribution_flags()
common_flags.define_output_flags()

flags.DEFINE_string("task_name", None, "GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli (ax: "
                    "predicted with --task_name=mnli --do_predict).")
flags.DEFINE_string("data_dir", None, "GLUE data directory with the original TSV files.")
flags.DEFINE_bool("use_tfds", False, "Read the task from TFDS glue/<task> instead of --data_dir.")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data directory.")
flags.DEFINE_string("vocab_file", None, "SentencePiece model (default: the --init_checkpoint directory's).")
flags.DEFINE_string("gmlp_config_file", None, "Model config JSON (default: the --init_checkpoint directory's).")
flags.DEFINE_bool("do_train", True, "Finetune on the training split.")
flags.DEFINE_bool("do_eval", True, "Evaluate on the dev split(s) (MNLI: matched and mismatched).")
flags.DEFINE_bool("do_predict", False, "Write GLUE submission files for the test split(s).")
flags.DEFINE_integer("max_seq_length", None, "Tokens per example (Table 9: 128; <= the config's length).")
flags.DEFINE_integer("train_batch_size", None, "Training batch size (Table 9: 32).")
flags.DEFINE_integer("eval_batch_size", 32, "Evaluation and prediction batch size.")
flags.DEFINE_float("learning_rate", None, "Peak learning rate (Table 9: 2e-5 of {1e-5, 2e-5, 3e-5}).")
flags.DEFINE_string("learning_rates", None, "Comma-separated learning rates to sweep, e.g. 1e-5,2e-5,3e-5.")
flags.DEFINE_integer("num_seeds", 1, "Runs per learning rate; the median is reported (the paper: 5).")
flags.DEFINE_float("num_train_epochs", None, "Training epochs (Table 9: 5).")
flags.DEFINE_float("warmup_proportion", None, "Fraction of steps of linear warmup (Table 9: 0.1).")
flags.DEFINE_integer("random_seed", 12345, "Seed of the first run; run i uses random_seed + i.")

FLAGS = flags.FLAGS

DEMO_OUTPUT_DIR = os.path.join("output", "classifier_demo")
DEMO_PRETRAINING_DIR = os.path.join("output", "pretraining_demo")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from gmlp_tf.tasks.glue import job as classifier_job

    spec = classifier_job.JobSpec.from_flags(FLAGS)
    summary = common_flags.run_main("run_classifier.py", lambda: classifier_job.run(spec, DEMO_OUTPUT_DIR, DEMO_PRETRAINING_DIR))
    for line in classifier_job.report_lines(summary, spec.is_demo):
        print(line)


if __name__ == "__main__":
    app.run(main)
