"""Exports a trained gMLP / aMLP as a SavedModel with raw-input serving signatures.

Takes an output directory of run_pretraining.py (masked LM), run_classifier.py (one run folder:
a sweep's lr*_seed* subfolder) or run_squad.py, or of a vision run, and writes a SavedModel whose
`serving_default` signature takes raw strings (or encoded images), with the SentencePiece
tokenizer inside, plus an `encoded` signature on input_ids / input_mask / segment_ids. See
gmlp_tf/export.py for every signature, its inputs, outputs and limits.

  python scripts/export_saved_model.py --model_dir=output/mnli/lr2e-05_seed12345 \
    --task_name=mnli --export_dir=export/mnli/1

Serving needs only TensorFlow and tensorflow_text (import it before tf.saved_model.load).
"""

import sys

from absl import app, flags, logging

flags.DEFINE_string("model_dir", None, "Output directory of run_pretraining.py, run_classifier.py or run_squad.py.")
flags.DEFINE_string("export_dir", None, "Where to write the SavedModel (must not exist yet; written atomically).")
flags.DEFINE_integer("max_seq_length", None, "Tokens per raw-text input (default and maximum: the config's).")
flags.DEFINE_string("task_name", None, "GLUE task of a classifier (sst2, mnli, ...): names its label list and "
                    "whether serving_default takes sentence pairs.")
flags.DEFINE_integer("top_k", 5, "Masked LM: predictions returned per [MASK].")
flags.DEFINE_integer("max_query_length", None, "SQuAD: question tokens kept (default min(64, (max_seq_length - 3) // 2)).")
flags.DEFINE_integer("max_answer_length", 30, "SQuAD: longest answer span in tokens.")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        from gmlp_tf import export

        info = export.export_saved_model(
            FLAGS.model_dir, FLAGS.export_dir, max_seq_length=FLAGS.max_seq_length, task_name=FLAGS.task_name,
            top_k=FLAGS.top_k, max_query_length=FLAGS.max_query_length, max_answer_length=FLAGS.max_answer_length)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        logging.flush()
        sys.exit(f"export_saved_model.py: error: {err}")
    print(f"Exported the {info['task']} model of {FLAGS.model_dir} to {FLAGS.export_dir}; signatures: "
          f"{', '.join(info['signatures'])}")


if __name__ == "__main__":
    app.run(main)
