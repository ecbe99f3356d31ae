"""Trains a cased SentencePiece vocabulary with the fixed special ids ([PAD]=0 ... [MASK]=4).

  python scripts/create_vocab.py                      # the demo: 8000 pieces on the Shakespeare corpus
  python scripts/create_vocab.py --input_file='corpus/*.txt' --output_prefix=vocab/spm32k
  python scripts/create_vocab.py --tfds_name=c4/en --tfds_data_dir=gs://bucket/tfds \\
      --max_sentences=10000000 --output_prefix=vocab/c4_32k     # the paper's 32K cased vocabulary

Writes PREFIX.model (the --vocab_file of the other scripts) and PREFIX.vocab (for reading).
"""

import sys

from absl import app, flags

flags.DEFINE_string("input_file", None, "Text files, comma-separated globs; one sentence per line.")
flags.DEFINE_string("tfds_name", None, "TFDS dataset with a text feature instead, e.g. c4/en.")
flags.DEFINE_string("tfds_split", "train", "TFDS split.")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir.")
flags.DEFINE_string("tfds_text_key", "text", "TFDS text feature.")
flags.DEFINE_bool("tfds_download", False, "Let TFDS download and prepare the dataset.")
flags.DEFINE_integer("max_sentences", 1_000_000,
                     "Train on at most this many sentences (lines), sampled from input files or "
                     "the first ones of a TFDS split.")
flags.DEFINE_string("output_prefix", None,
                    "Output path without extension; the demo cache folder if no input is given.")
flags.DEFINE_integer("vocab_size", 32000, "Pieces, special ones included (the paper: 32K cased). "
                     "The demo uses 8000 unless set.")
flags.DEFINE_enum("model_type", "unigram", ["unigram", "bpe", "char", "word"], "SentencePiece model type.")
flags.DEFINE_float("character_coverage", 0.9995,
                   "Fraction of characters covered; the rest map to [UNK] (1.0 for small clean text).")

FLAGS = flags.FLAGS
PROG = "create_vocab.py"


def main(argv):
    from gmlp_tf.runtime import runner  # Imports the package (TensorFlow): after absl has parsed the flags.

    runner.refuse_arguments(argv)
    try:
        path = create_vocab()
    except (ValueError, OSError, RuntimeError) as err:
        sys.exit(f"{PROG}: error: {err}")
    from gmlp_tf import tokenization

    print(f"wrote {path} ({tokenization.vocab_size(path)} pieces) and "
          f"{path[:-len('.model')]}.vocab")


def create_vocab() -> str:
    from gmlp_tf import tokenization
    from gmlp_tf.tasks.pretraining import demo_data as demo_corpus
    from gmlp_tf.tasks.pretraining import sources
    from gmlp_tf.utils import progress

    if FLAGS.input_file and FLAGS.tfds_name:
        raise ValueError("give --input_file or --tfds_name, not both")
    if FLAGS.max_sentences <= 0:
        raise ValueError(f"--max_sentences must be positive, got {FLAGS.max_sentences}")
    options = dict(vocab_size=FLAGS.vocab_size, model_type=FLAGS.model_type,
                   character_coverage=FLAGS.character_coverage,
                   input_sentence_size=FLAGS.max_sentences)
    if FLAGS.input_file:
        if not FLAGS.output_prefix:
            raise ValueError("--output_prefix is required with --input_file")
        files = sources.expand_patterns(FLAGS.input_file)
        return tokenization.train_sentencepiece(files, FLAGS.output_prefix, **options)
    if FLAGS.tfds_name:
        if not FLAGS.output_prefix:
            raise ValueError("--output_prefix is required with --tfds_name")
        source = sources.TfdsSource(
            FLAGS.tfds_name, FLAGS.tfds_split, FLAGS.tfds_data_dir, FLAGS.tfds_text_key,
            download=FLAGS.tfds_download)
        lines = sources.text_lines(source, FLAGS.max_sentences)
        with progress.stage(f"Opening TFDS {FLAGS.tfds_name} split {FLAGS.tfds_split}"):
            first = next(lines, None)  # surfaces a bad dataset name before training starts
        if first is None:
            raise ValueError(f"TFDS dataset {FLAGS.tfds_name} split {FLAGS.tfds_split} has no text")
        return tokenization.train_sentencepiece(
            None, FLAGS.output_prefix, sentence_iterator=_chain(first, lines), **options)
    # No input: the demo vocabulary on the demo corpus' training files.
    corpus = demo_corpus.fetch_demo_corpus()
    if not FLAGS["vocab_size"].present:
        options["vocab_size"] = demo_corpus.DEMO_VOCAB_SIZE
    if not FLAGS["character_coverage"].present:
        options["character_coverage"] = 1.0  # plain ASCII text: cover every character
    prefix = FLAGS.output_prefix or demo_corpus.demo_vocab_prefix(vocab_size=options["vocab_size"])
    print(f"demo corpus: {len(corpus.train_files)} training files in {corpus.directory}")
    return tokenization.train_sentencepiece(list(corpus.train_files), prefix, **options)


def _chain(first, rest):
    yield first
    yield from rest


if __name__ == "__main__":
    app.run(main)
