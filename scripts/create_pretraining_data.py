"""Writes masked-LM pretraining examples to TFRecord files, with BERT's feature names.

  python scripts/create_pretraining_data.py --input_file='corpus/*.txt' --blank_line_documents \\
      --vocab_file=vocab/spm32k.model --output_file=data/train.tfrecord
  python scripts/create_pretraining_data.py --tfds_name=c4/en --tfds_split=validation \\
      --vocab_file=vocab/c4_32k.model --output_file=data/c4_eval.tfrecord --max_examples=10000
  python scripts/create_pretraining_data.py --tfds_name=c4/en --vocab_file=vocab/c4_32k.model \
      --output_file=data/c4_train.tfrecord --num_shards=256   # c4_train.tfrecord-00000-of-00256, ...

Examples are BERT's segment pairs by default ([CLS] A [SEP] B [SEP], segment_ids 0 then 1, 10% of
them shorter); --example_format=packed writes one packed segment per example instead.
With --num_shards=N the examples are dealt round-robin to N files OUTPUT-0000i-of-0000N
(run_pretraining reads them with --input_file='OUTPUT-*').

The masks are drawn once, from --random_seed (static masking, as BERT's script); run_pretraining
reads the file with the same feature spec. Feeding text directly to run_pretraining masks anew
on every pass instead (dynamic masking).
"""

import sys

from absl import app, flags

flags.DEFINE_string("input_file", None, "Input text files, comma-separated globs.")
flags.DEFINE_bool("blank_line_documents", False,
                  "Documents are separated by blank lines (else: one document per line).")
flags.DEFINE_string("tfds_name", None, "TFDS dataset with a text feature instead, e.g. c4/en.")
flags.DEFINE_string("tfds_split", "train", "TFDS split.")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir.")
flags.DEFINE_string("tfds_text_key", "text", "TFDS text feature.")
flags.DEFINE_bool("tfds_download", False, "Let TFDS download and prepare the dataset.")
flags.DEFINE_string("vocab_file", None, "The SentencePiece .model file (scripts/create_vocab.py).")
flags.DEFINE_string("output_file", None, "Output TFRecord file.")
flags.DEFINE_integer("max_seq_length", 128, "Tokens per example, [CLS] and [SEP] included.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum masked-LM predictions per example.")
flags.DEFINE_integer("random_seed", 12345, "Seed of the masking.")
flags.DEFINE_integer("max_examples", None, "Write at most this many examples.")
flags.DEFINE_bool("pack", True, "Pack consecutive documents into full sequences (else trim each).")
flags.DEFINE_enum("example_format", "segment_pair", ["segment_pair", "packed"],
                  "segment_pair: BERT's [CLS] A [SEP] B [SEP] (segment_ids 0 then 1); packed: one segment.")
flags.DEFINE_float("short_seq_prob", None,
                   "Share of examples with a shorter target length, drawn in [2, max]; default 0.1 for "
                   "segment_pair (BERT's), 0 for packed.")
flags.DEFINE_integer("num_shards", 1, "Output files: 1 writes --output_file; N > 1 writes "
                                      "OUTPUT-00000-of-0000N ... in parallel.")

FLAGS = flags.FLAGS
PROG = "create_pretraining_data.py"
# Examples masked per step of the pipeline; the last batch may be smaller (nothing is dropped).
BATCH_SIZE = 256


def main(argv):
    from gmlp_tf.runtime import runner  # Imports the package (TensorFlow): after absl has parsed the flags.

    runner.refuse_arguments(argv)
    import tensorflow as tf

    try:
        count = create_pretraining_data()
    except (ValueError, OSError, tf.errors.OpError) as err:
        sys.exit(f"{PROG}: error: {err}")
    if FLAGS.num_shards == 1:
        print(f"wrote {count} examples to {FLAGS.output_file}")
    else:
        print(f"wrote {count} examples to {FLAGS.num_shards} files {FLAGS.output_file}-*-of-{FLAGS.num_shards:05d}")


def create_pretraining_data() -> int:
    import tensorflow as tf

    from gmlp_tf import tokenization
    from gmlp_tf.runtime.checks import check_positive
    from gmlp_tf.tasks.pretraining import data as pretraining_data
    from gmlp_tf.tasks.pretraining import packing, sources, tfrecords

    if bool(FLAGS.input_file) == bool(FLAGS.tfds_name):
        raise ValueError("give exactly one of --input_file and --tfds_name")
    if not FLAGS.vocab_file:
        raise ValueError("--vocab_file is required")
    if not FLAGS.output_file:
        raise ValueError("--output_file is required")
    check_positive(max_seq_length=FLAGS.max_seq_length, max_predictions_per_seq=FLAGS.max_predictions_per_seq,
                   max_examples=FLAGS.max_examples, num_shards=FLAGS.num_shards)
    packing.check_example_format(FLAGS.example_format, FLAGS.short_seq_prob, FLAGS.max_seq_length)
    tfrecords.check_output_file(FLAGS.output_file)  # Before the corpus is read.
    if FLAGS.input_file:
        sources.expand_patterns(FLAGS.input_file)  # missing or empty files: fail first
        source = sources.TextFilesSource(FLAGS.input_file, FLAGS.blank_line_documents)
    else:
        source = sources.TfdsSource(
            FLAGS.tfds_name, FLAGS.tfds_split, FLAGS.tfds_data_dir, FLAGS.tfds_text_key,
            download=FLAGS.tfds_download)
    sp_model = tokenization.load_sp_model(FLAGS.vocab_file)
    dataset = pretraining_data.make_pretraining_dataset(
        source, sp_model=sp_model, is_training=False, seed=FLAGS.random_seed,
        max_seq_length=FLAGS.max_seq_length, max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        batch_size=BATCH_SIZE, repeat=False, pack=FLAGS.pack, drop_remainder=False,
        example_format=FLAGS.example_format, short_seq_prob=FLAGS.short_seq_prob)
    if FLAGS.num_shards == 1:
        return tfrecords.write_tfrecords(
            dataset.as_numpy_iterator(), FLAGS.output_file, FLAGS.max_examples)
    # Serialized in tf.data's parallel map; the writers only append the records.
    serialized = dataset.map(tfrecords.serialize_examples, num_parallel_calls=tf.data.AUTOTUNE)
    return tfrecords.write_tfrecord_shards(
        serialized.as_numpy_iterator(), FLAGS.output_file, FLAGS.num_shards, FLAGS.max_examples)


if __name__ == "__main__":
    app.run(main)
