"""SQuAD v1.1 / v2.0 finetuning of a pretrained gMLP / aMLP (BERT's run_squad.py, with Keras fit).

With no flags it finetunes the demo pretraining checkpoint (output/pretraining_demo, pretrained
first if missing) on the 5 real SQuAD v1.1 questions that the allennlp 0.9.0 wheel carries and
scores its predictions of them: a check of the whole path on real data (no QA set of useful size
can be installed from a package registry), not a reading-comprehension result.

At full scale:

  python scripts/run_squad.py --init_checkpoint=gs://BUCKET/amlp_base \
    --train_file=train-v2.0.json --predict_file=dev-v2.0.json --version_2_with_negative \
    --do_train --do_predict --output_dir=gs://BUCKET/amlp_base_squad2 --tpu=local

or --tfds_name=squad/v1.1 | squad/v2.0 instead of the JSON files. Writes predictions.json,
nbest_predictions.json (and, for v2.0, null_odds.json), and, when the prediction file has gold
answers, the official exact match and F1 in eval_results.txt.
"""

import os

from absl import app, flags

from gmlp_tf.runtime import flags as common_flags

common_flags.define_distribution_flags()
common_flags.define_output_flags()

flags.DEFINE_string("vocab_file", None, "SentencePiece model (default: the --init_checkpoint directory's).")
flags.DEFINE_string("gmlp_config_file", None, "Model config JSON (default: the --init_checkpoint directory's).")
flags.DEFINE_string("train_file", None, "SQuAD JSON for training, e.g. train-v1.1.json.")
flags.DEFINE_string("predict_file", None, "SQuAD JSON to predict, e.g. dev-v1.1.json.")
flags.DEFINE_string("tfds_name", None, "squad/v1.1 or squad/v2.0 from TFDS instead of the JSON files.")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data directory.")
flags.DEFINE_bool("version_2_with_negative", False, "SQuAD v2.0: questions may have no answer.")
flags.DEFINE_bool("do_train", False, "Finetune on the training questions.")
flags.DEFINE_bool("do_predict", False, "Predict (and, with gold answers, score) the prediction questions.")
flags.DEFINE_integer("max_seq_length", 512, "Tokens per window (Table 9: 512; BERT: 384).")
flags.DEFINE_integer("doc_stride", 128, "Tokens between the starts of consecutive context windows.")
flags.DEFINE_integer("max_query_length", 64, "Question tokens kept at most.")
flags.DEFINE_integer("train_batch_size", 32, "Training batch size (Table 9: 32).")
flags.DEFINE_integer("predict_batch_size", 8, "Prediction batch size.")
flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate (Table 9: 5e-5).")
flags.DEFINE_integer("num_train_steps", 8000, "Training steps (Table 9: 8K).")
flags.DEFINE_integer("num_warmup_steps", 1000, "Linear warmup steps (Table 9: 1K).")
flags.DEFINE_integer("save_checkpoints_steps", 1000, "Steps between checkpoints.")
flags.DEFINE_integer("n_best_size", 20, "Candidate answers kept per question (nbest_predictions.json).")
flags.DEFINE_integer("max_answer_length", 30, "Longest answer in tokens.")
flags.DEFINE_float("null_score_diff_threshold", 0.0, "v2.0: predict no answer when null score - best span score exceeds it.")
flags.DEFINE_integer("random_seed", 12345, "Seed for shuffling and initialisation.")

FLAGS = flags.FLAGS

DEMO_OUTPUT_DIR = os.path.join("output", "squad_demo")
DEMO_PRETRAINING_DIR = os.path.join("output", "pretraining_demo")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from gmlp_tf.tasks.squad import job as squad_job

    spec = squad_job.JobSpec.from_flags(FLAGS)
    scores = common_flags.run_main("run_squad.py", lambda: squad_job.run(spec, DEMO_OUTPUT_DIR, DEMO_PRETRAINING_DIR))
    for line in squad_job.report_lines(scores):
        print(line)


if __name__ == "__main__":
    app.run(main)
