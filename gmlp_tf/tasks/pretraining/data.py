"""The masked-LM input pipeline: text -> SentencePiece ids -> packed, masked, padded BERT features.

Everything runs in tf.data on the host (tensorflow_text ops are host ops), batched and in
parallel, so the accelerator step only sees fixed-shape int32 / float32 tensors.

Sources, each a small dataclass:
  TextFilesSource  local (or gs://) text files by glob: one document per line, or blank-line
                   separated documents (BERT's create_pretraining_data layout, and the demo corpus)
  TfdsSource       any TFDS dataset with a text feature, e.g. c4/en (the paper's corpus)
  TFRecordSource   features already made by scripts/create_pretraining_data.py (BERT's format)

From text to features (`make_pretraining_dataset`):
  1. Documents are tokenized in batches of DOCS_PER_BATCH.
  2. Packing (default): the token stream of consecutive documents of one file, with [SEP]
     between documents (RoBERTa's "full sentences"), is cut into pieces of max_seq_length - 2
     tokens; a document longer than that continues in the next sequence, so no text is lost.
     With pack=False each document is one sequence, trimmed to max_seq_length - 2 tokens.
  3. Framing, by example_format:
     packed (the library's default): [CLS] tokens [SEP], one segment, segment_ids all 0.
     segment_pair (the scripts' default: the paper follows BERT's input protocol): pieces of
       max_seq_length - 3 tokens, each cut at a uniformly drawn point into A and B and framed as
       [CLS] A [SEP] B [SEP], segment_ids 0 for [CLS] A [SEP] and 1 for B [SEP]. B is always the
       text that follows A: with no next-sentence head a random B would only put unrelated
       context beside the masked tokens, and the pair still trains the segment-B embedding.
     short_seq_prob (BERT's; default 0.1 for segment_pair, 0 for packed): that share of pieces
     gets a target length drawn uniformly in [2, full]; packing then starts the next piece where
     the short one ends, so no text is lost. These draws hash (seed, the text of the documents'
     batch, the piece's index), so they too are the same on every run of a seed.
  4. Masking as BERT: 15% of the non-special tokens of each sequence (rounded up, at most
     max_predictions_per_seq) are predicted; of those 80% become [MASK], 10% a random
     non-special token, 10% stay unchanged. Special tokens are never selected.
  5. Padding with [PAD] to max_seq_length, and of the predictions to max_predictions_per_seq
     (position 0, id 0, weight 0.0).

Features (BERT's names), per example; a batch adds a leading [batch] dimension:
  input_ids            int32   [max_seq_length]
  input_mask           int32   [max_seq_length]            1 on real tokens, 0 on [PAD]
  segment_ids          int32   [max_seq_length]            0 (segment_pair: 1 on B [SEP]; 0 on [PAD])
  masked_lm_positions  int32   [max_predictions_per_seq]
  masked_lm_ids        int32   [max_predictions_per_seq]   the original ids at those positions
  masked_lm_weights    float32 [max_predictions_per_seq]   1.0 real, 0.0 padding

Masking is reproducible and does not depend on batching: every random draw is a hash of (the
dataset seed, the input pipeline id, the example's index in the stream, the token's position).
So a seeded dataset masks the same way on every run (evaluation perplexity does not change from
run to run), and, within one input pipeline, the same examples get the same masks whatever the
batch size or the number of replicas it feeds (the unigram baseline and create_pretraining_data.py
see exactly the model's masked tokens). A repeating dataset keeps counting examples, so each pass masks anew; a training
dataset without a seed draws a fresh base seed. tensorflow_text's RandomItemSelector and
MaskValuesChooser draw from TensorFlow's stateful global generator, which can only be seeded
globally and depends on batch composition and thread timing; so the selector gets a hashing
shuffle_fn and the chooser is a subclass drawing from the same hash.
"""

import dataclasses
import os
import random
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from gmlp_tf import tokenization
from gmlp_tf.tokenization import CLS_ID, MASK_ID, NUM_SPECIAL_TOKENS, PAD_ID, SEP_ID

FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids",
                 "masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
MASKED_LM_RATE = 0.15
MASK_TOKEN_RATE = 0.8
RANDOM_TOKEN_RATE = 0.1
# An evaluation dataset without a seed still masks the same way on every run.
DEFAULT_EVAL_SEED = 0
# Documents tokenized (and packed) together. The last sequence of each such batch can be short,
# so larger is less padding; 512 short documents are still only a few hundred KB of text.
DOCS_PER_BATCH = 512
# The default training shuffle buffer, in tokens.
SHUFFLE_BUFFER_TOKENS = 10_000 * 128
FILE_CYCLE_LENGTH = 8
# packed: one segment of running text per example; segment_pair: BERT's [CLS] A [SEP] B [SEP].
EXAMPLE_FORMATS = ("packed", "segment_pair")
# BERT's share of examples with a shorter target length (create_pretraining_data.py's
# short_seq_prob), the default of the segment_pair format; the packed format's default is 0.
BERT_SHORT_SEQ_PROB = 0.1
# Paragraph separator used internally for blank-line documents (ASCII record separator).
_RECORD_SEPARATOR = "\x1e"

Patterns = Union[str, Sequence[str]]


# ------------------------------------------------------------------------------------- sources
@dataclasses.dataclass(frozen=True)
class TextFilesSource:
    """Text files by glob pattern(s): a list, or one string of comma-separated patterns.

    blank_line_documents=False: every non-empty line is a document (e.g. one web page per line).
    blank_line_documents=True: documents are separated by blank lines and the lines inside one
    are joined with spaces. In this mode each file is read whole into memory, so keep files to a
    few hundred MB (split bigger corpora, or use one document per line).
    """

    patterns: Patterns
    blank_line_documents: bool = False


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A TFDS dataset with a text feature, e.g. TfdsSource("c4/en", "train").

    download=False reads data already prepared in data_dir (fails at once if there is none);
    download=True lets TFDS download and prepare it first.
    """

    name: str
    split: str = "train"
    data_dir: Optional[str] = None
    text_key: str = "text"
    download: bool = False


@dataclasses.dataclass(frozen=True)
class TFRecordSource:
    """TFRecord files of tf.train.Examples with BERT's pretraining features (write_tfrecords)."""

    patterns: Patterns


Source = Union[TextFilesSource, TfdsSource, TFRecordSource]


def expand_patterns(patterns: Patterns) -> List[str]:
    """Comma-separated glob pattern(s) -> the sorted, de-duplicated files they match.

    Raises:
      ValueError: no pattern given, a pattern that matches no file, or an empty file.
    """
    if isinstance(patterns, str):
        patterns = patterns.split(",")
    patterns = [p.strip() for p in patterns if p and p.strip()]
    if not patterns:
        raise ValueError("no input file pattern given")
    files, seen = [], set()
    for pattern in patterns:
        matched = [f for f in sorted(tf.io.gfile.glob(pattern)) if not tf.io.gfile.isdir(f)]
        if not matched:
            raise ValueError(f"no files match {pattern!r}")
        for path in matched:
            if tf.io.gfile.stat(path).length == 0:
                raise ValueError(f"input file is empty: {path}")
            if path not in seen:
                seen.add(path)
                files.append(path)
    return files


# ------------------------------------------------------------------------------- main entry point
def make_pretraining_dataset(
    source: Source,
    *,
    is_training: bool,
    sp_model: Optional[bytes] = None,
    max_seq_length: int = 128,
    max_predictions_per_seq: int = 20,
    batch_size: int = 32,
    seed: Optional[int] = None,
    input_context: Optional[tf.distribute.InputContext] = None,
    shuffle_buffer: Optional[int] = None,
    repeat: Optional[bool] = None,
    pack: bool = True,
    drop_remainder: bool = True,
    example_format: str = "packed",
    short_seq_prob: Optional[float] = None,
) -> tf.data.Dataset:
    """The masked-LM dataset: batches of BERT's pretraining features (see the module docstring).

    Args:
      source: a TextFilesSource, TfdsSource or TFRecordSource.
      is_training: shuffle files and sequences (and repeat, unless `repeat` says otherwise).
      sp_model: the serialized SentencePiece model (`tokenization.load_sp_model`); needed for
        text sources, ignored for TFRecords (which are already tokenized and masked).
      max_seq_length: length of input_ids, [CLS] and [SEP] included.
      max_predictions_per_seq: length of the masked-LM features; at most this many tokens of an
        example are predicted.
      batch_size: the global batch size; with an input_context, each pipeline makes batches of
        input_context.get_per_replica_batch_size(batch_size).
      seed: makes shuffling and masking reproducible. Evaluation datasets without one use
        DEFAULT_EVAL_SEED, so their masks are the same on every run.
      input_context: from tf.distribute's distribute_datasets_from_function. Each of its
        num_input_pipelines pipelines reads a disjoint part of the data: whole files when there
        are at least as many files as pipelines, else every n-th sequence (TFDS: an even split).
      shuffle_buffer: sequences (or TFRecord examples) in the training shuffle buffer; by default
        as many as hold SHUFFLE_BUFFER_TOKENS tokens (10,000 sequences of 128), so that long
        sequences do not make the buffer repeat a small corpus many times before the first step.
      repeat: repeat forever; defaults to is_training.
      pack: pack consecutive documents into full sequences (default) or trim each document.
      drop_remainder: drop a last partial batch, so every batch has the same static shape (as
        TPUs need). create_pretraining_data.py sets it False to write every example.
      example_format: "packed" (one segment, segment_ids all 0) or "segment_pair" (BERT's
        [CLS] A [SEP] B [SEP], segment_ids 0 then 1); see the module docstring. Text sources only:
        TFRecords hold the format they were written with.
      short_seq_prob: the share of sequences given a target length drawn uniformly in
        [2, the full length] (BERT's short_seq_prob). None: BERT_SHORT_SEQ_PROB for
        segment_pair, 0 for packed.

    Returns:
      A tf.data.Dataset of dicts of FEATURE_NAMES: int32 [batch, max_seq_length] and
      [batch, max_predictions_per_seq], masked_lm_weights float32.
    """
    _check_lengths(max_seq_length, max_predictions_per_seq, batch_size)
    if shuffle_buffer is None:
        shuffle_buffer = max(batch_size, SHUFFLE_BUFFER_TOKENS // max_seq_length)
    _check_positive("shuffle_buffer", shuffle_buffer)
    short_seq_prob = check_example_format(example_format, short_seq_prob, max_seq_length)
    if repeat is None:
        repeat = is_training
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        num_pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    else:
        num_pipelines, pipeline_id = 1, 0
    if seed is None and not is_training:
        seed = DEFAULT_EVAL_SEED
    # Training without a seed: shuffles are unseeded and masking gets a fresh random base seed.
    mask_seed = seed if seed is not None else random.SystemRandom().getrandbits(62)
    deterministic = None if seed is not None else False
    shard = _Shard(num_pipelines, pipeline_id)

    if isinstance(source, TFRecordSource):
        return _tfrecord_dataset(source, shard, is_training, seed, deterministic, repeat,
                                 shuffle_buffer, batch_size, drop_remainder,
                                 max_seq_length, max_predictions_per_seq)
    if not isinstance(source, (TextFilesSource, TfdsSource)):
        raise TypeError(f"source must be a TextFilesSource, TfdsSource or TFRecordSource, got "
                        f"{type(source).__name__}")
    if sp_model is None:
        raise ValueError("sp_model (the serialized SentencePiece model) is needed for text sources")
    tokenizer = tokenization.make_tokenizer(sp_model)
    vocab_size = tokenization.vocab_size(sp_model)

    from_documents = (segment_pairs_from_documents if example_format == "segment_pair"
                      else sequences_from_documents)

    def to_sequences(documents):
        return from_documents(documents, tokenizer, max_seq_length, pack,
                              short_seq_prob=short_seq_prob, seed=mask_seed)

    if isinstance(source, TextFilesSource):
        sequences = _text_file_sequences(source, to_sequences, shard, is_training, seed, deterministic)
    else:
        sequences = _tfds_sequences(source, to_sequences, shard, is_training, seed)
    if repeat:
        sequences = sequences.repeat()
    if is_training:
        sequences = sequences.shuffle(shuffle_buffer, seed=_offset(seed, 1),
                                      reshuffle_each_iteration=True)
    # Each example's index in the stream keys its masking (counted after repeat: each pass of a
    # repeated dataset masks anew).
    examples = tf.data.Dataset.zip((sequences, tf.data.Dataset.counter()))
    batches = examples.ragged_batch(batch_size, drop_remainder=drop_remainder)
    masker = _Masker(vocab_size, max_seq_length, max_predictions_per_seq, mask_seed, pipeline_id,
                     batch_size=batch_size if drop_remainder else None)
    if example_format == "segment_pair":  # Elements are ((ids, segment_ids), index).
        masker = (lambda mask: lambda pair, index: mask(pair[0], index, pair[1]))(masker)
    batches = batches.map(masker, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return batches.prefetch(tf.data.AUTOTUNE)


def _check_lengths(max_seq_length, max_predictions_per_seq, batch_size):
    _check_positive("max_seq_length", max_seq_length)
    _check_positive("max_predictions_per_seq", max_predictions_per_seq)
    _check_positive("batch_size", batch_size)
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be >= 3 ([CLS], a token, [SEP]), got {max_seq_length}")
    if max_predictions_per_seq > max_seq_length - 2:
        raise ValueError(f"max_predictions_per_seq {max_predictions_per_seq} exceeds the "
                         f"max_seq_length - 2 = {max_seq_length - 2} tokens of a sequence")


def check_example_format(example_format: str, short_seq_prob: Optional[float],
                         max_seq_length: int) -> float:
    """The short_seq_prob to use (None: the format's default), after checking the three.

    Raises:
      ValueError: an unknown format, a probability outside [0, 1], or a max_seq_length too short
        for two segments ([CLS] a [SEP] b [SEP] needs 5).
    """
    if example_format not in EXAMPLE_FORMATS:
        raise ValueError(f"unknown example format {example_format!r}; use one of {', '.join(EXAMPLE_FORMATS)}")
    if short_seq_prob is None:
        short_seq_prob = BERT_SHORT_SEQ_PROB if example_format == "segment_pair" else 0.0
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob!r}")
    if example_format == "segment_pair" and max_seq_length < 5:
        raise ValueError(f"the segment_pair format needs max_seq_length >= 5 ([CLS] a [SEP] b [SEP]), "
                         f"got {max_seq_length}")
    return float(short_seq_prob)


# ------------------------------------------------------------------------------- text -> sequences
def sequences_from_documents(documents: tf.data.Dataset, tokenizer: tf_text.SentencepieceTokenizer,
                             max_seq_length: int, pack: bool = True, *, short_seq_prob: float = 0.0,
                             seed: int = 0) -> tf.data.Dataset:
    """Scalar string documents -> int32 sequences [length <= max_seq_length], [CLS] ... [SEP].

    Consecutive documents are packed together (pack=True) or each is trimmed (pack=False); see
    the module docstring. With short_seq_prob > 0 that share of sequences gets a shorter target
    length, drawn (like every draw here) from a hash of seed and the documents' text. Documents
    with no tokens give no sequence.
    """
    body = max_seq_length - 2

    def tokenize_and_frame(texts):
        rows = _token_rows(texts, tokenizer, body, pack, short_seq_prob, (seed, _batch_key(texts)))
        num_rows = rows.nrows()
        return tf.concat([tf.fill([num_rows, 1], CLS_ID), rows, tf.fill([num_rows, 1], SEP_ID)],
                         axis=1)

    return (documents.batch(DOCS_PER_BATCH)
            .map(tokenize_and_frame, num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch())


def segment_pairs_from_documents(documents: tf.data.Dataset, tokenizer: tf_text.SentencepieceTokenizer,
                                 max_seq_length: int, pack: bool = True, *,
                                 short_seq_prob: float = BERT_SHORT_SEQ_PROB,
                                 seed: int = 0) -> tf.data.Dataset:
    """Scalar string documents -> BERT's pairs ([CLS] A [SEP] B [SEP], segment ids 0...0 1...1).

    The text is cut into pieces of at most max_seq_length - 3 tokens as sequences_from_documents
    does (packed or trimmed, short_seq_prob of them shorter); each piece of 2 tokens or more is
    split at a uniformly drawn point into A and B, so B is the text that follows A. Pieces of one
    token give no example.

    Returns:
      A dataset of (input ids int32 [length], segment ids int32 [length]), length <= max_seq_length.
    """
    body = max_seq_length - 3

    def tokenize_and_split(texts):
        key = (seed, _batch_key(texts))
        rows = _token_rows(texts, tokenizer, body, pack, short_seq_prob, key)
        rows = tf.gather(rows, tf.where(rows.row_lengths() >= 2)[:, 0])
        first, second = split_segments(rows, key)
        ids, segment_ids = tf_text.combine_segments([first, second], CLS_ID, SEP_ID)
        return tf.cast(ids, tf.int32), tf.cast(segment_ids, tf.int32)

    return (documents.batch(DOCS_PER_BATCH)
            .map(tokenize_and_split, num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch())


def split_segments(rows: tf.RaggedTensor, seed: Sequence[Union[int, tf.Tensor]]):
    """Rows [rows, (>= 2 tokens)] -> (A, B): each row cut after a drawn 1 <= a < length tokens.

    A document-separating [SEP] at the cut (last of A or first of B) is dropped, since the
    framing puts one there; A and B keep at least their outer tokens, which are never [SEP].
    """
    lengths = rows.row_lengths()
    draw = hash_uint64(*seed, _SPLIT_STREAM, tf.range(rows.nrows()))
    cut = tf.cast(draw % tf.cast(lengths - 1, tf.uint64), tf.int64)[:, None] + 1  # [rows, 1]
    position = tf.ragged.range(lengths)
    is_sep = tf.equal(rows, tf.cast(SEP_ID, rows.dtype))
    keep_first = (position < cut) & ~(is_sep & tf.equal(position, cut - 1))
    keep_second = (position >= cut) & ~(is_sep & tf.equal(position, cut))
    return tf.ragged.boolean_mask(rows, keep_first), tf.ragged.boolean_mask(rows, keep_second)


def _batch_key(texts: tf.Tensor) -> tf.Tensor:
    """An int64 hash of a batch of documents' text: what keys the draws of their sequences, so
    they do not depend on file order, sharding or threads."""
    return tf.strings.to_hash_bucket_fast(tf.strings.reduce_join(texts, separator=_RECORD_SEPARATOR),
                                          (1 << 63) - 1)


def _token_rows(texts, tokenizer, length, pack, short_seq_prob, seed):
    """Documents [docs] -> the non-empty token rows [rows, (<= length)] of sequences, unframed."""
    tokens = tokenizer.tokenize(texts)  # [docs, (tokens)] int32
    if pack:
        rows = pack_tokens(tokens, length, short_seq_prob=short_seq_prob, seed=seed)
    elif short_seq_prob > 0:
        targets = target_lengths(tokens.nrows(), length, short_seq_prob, seed)
        rows = tf.ragged.boolean_mask(tokens, tf.ragged.range(tokens.row_lengths()) < targets[:, None])
    else:
        rows = tokens[:, :length]
    return tf.gather(rows, tf.where(rows.row_lengths() > 0)[:, 0])


def target_lengths(count: tf.Tensor, length: int, short_seq_prob: float,
                   seed: Sequence[Union[int, tf.Tensor]]) -> tf.Tensor:
    """int64 [count] target lengths: `length`, or with probability short_seq_prob one drawn
    uniformly in [2, length] (BERT's short sequences), the i-th from a hash of (seed, i)."""
    index = tf.range(tf.cast(count, tf.int64))
    low = min(2, length)
    u = _to_unit_float(hash_uint64(*seed, _SHORT_STREAM, index))
    drawn = tf.cast(hash_uint64(*seed, _LENGTH_STREAM, index) % (length - low + 1), tf.int64) + low
    return tf.where(u < short_seq_prob, drawn, tf.constant(length, tf.int64))


def pack_tokens(tokens: tf.RaggedTensor, length: int, *, short_seq_prob: float = 0.0,
                seed: Sequence[Union[int, tf.Tensor]] = (0,)) -> tf.RaggedTensor:
    """Packs documents [docs, (tokens)] into rows of at most `length` tokens, [SEP] between docs.

    The documents' tokens are laid end to end with one [SEP] after each and cut every `length`
    tokens (or, with short_seq_prob > 0, after each row's `target_lengths`, so no text is lost).
    A [SEP] that lands first or last in a row (a boundary at the cut) is dropped, and runs of
    [SEP] (empty documents) are merged, so rows never start or end with one.

    Returns:
      RaggedTensor [rows, (<= length)] of the tokens' dtype; rows can be empty.
    """
    sep = tf.cast(SEP_ID, tokens.dtype)
    stream = tf.concat([tokens, tf.fill([tokens.nrows(), 1], sep)], axis=1).flat_values
    previous = tf.concat([[sep], stream[:-1]], axis=0)
    stream = tf.boolean_mask(stream, ~((stream == sep) & (previous == sep)))
    size = tf.size(stream, out_type=tf.int64)
    if short_seq_prob > 0:
        # Rows hold at least min(2, length) tokens, so this many targets always suffice.
        starts = tf.cumsum(target_lengths(size // min(2, length) + 1, length, short_seq_prob, seed),
                           exclusive=True)
        starts = tf.boolean_mask(starts, starts < size)
    else:
        starts = tf.range(0, size, length, dtype=tf.int64)
    splits = tf.concat([starts, [size]], axis=0)
    rows = tf.RaggedTensor.from_row_splits(stream, splits, validate=False)
    # Position of each token in its row, to find the first and last ones.
    row_ids = rows.value_rowids()
    position = tf.range(size) - tf.gather(rows.row_starts(), row_ids)
    last = tf.gather(rows.row_lengths(), row_ids) - 1
    at_edge = (position == 0) | (position == last)
    return tf.ragged.boolean_mask(rows, rows.with_flat_values(~(at_edge & (stream == sep))))


def read_text_documents(path: tf.Tensor, blank_line_documents: bool) -> tf.data.Dataset:
    """The documents of one text file (scalar string path) as a dataset of scalar strings."""
    if not blank_line_documents:
        lines = tf.data.TextLineDataset(path)
        return lines.map(tf.strings.strip).filter(lambda line: tf.strings.length(line) > 0)

    def paragraphs(file_path):
        text = tf.io.read_file(file_path)
        # Blank lines (possibly holding spaces) separate documents; the lines inside one join.
        text = tf.strings.regex_replace(text, r"\r?\n[ \t\r]*\n(?:[ \t\r]*\n)*", _RECORD_SEPARATOR)
        text = tf.strings.regex_replace(text, r"\s*\r?\n\s*", " ")
        return tf.data.Dataset.from_tensor_slices(
            tf.strings.strip(tf.strings.split(text, _RECORD_SEPARATOR)))

    documents = tf.data.Dataset.from_tensors(path).flat_map(paragraphs)
    return documents.filter(lambda doc: tf.strings.length(doc) > 0)


@dataclasses.dataclass(frozen=True)
class _Shard:
    num: int
    index: int


def _file_paths(files, shard, is_training, seed):
    """A dataset of this pipeline's file paths (shuffled in training), and whether it shards by
    file: only when there are at least as many files as pipelines; else by record, later."""
    shard_files = len(files) >= shard.num
    paths = tf.data.Dataset.from_tensor_slices(files)
    if shard.num > 1 and shard_files:
        paths = paths.shard(shard.num, shard.index)
    if is_training:
        paths = paths.shuffle(len(files), seed=_offset(seed, 2), reshuffle_each_iteration=True)
    return paths, shard_files


def _text_file_sequences(source, to_sequences, shard, is_training, seed, deterministic):
    files = expand_patterns(source.patterns)
    paths, shard_files = _file_paths(files, shard, is_training, seed)
    blank_lines = source.blank_line_documents
    # Each file is packed on its own, so a sequence never mixes two files' text; files are
    # interleaved (and read in parallel) at the sequence level.
    sequences = paths.interleave(
        lambda path: to_sequences(read_text_documents(path, blank_lines)),
        cycle_length=min(len(files), FILE_CYCLE_LENGTH), block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shard.num > 1 and not shard_files:
        sequences = sequences.shard(shard.num, shard.index)
    return sequences


def _tfds_sequences(source, to_sequences, shard, is_training, seed):
    split = source.split
    if shard.num > 1:
        import tensorflow_datasets as tfds

        split = tfds.even_splits(split, n=shard.num)[shard.index]
    return to_sequences(_tfds_documents(source, split, is_training, seed))


def _tfds_documents(source: TfdsSource, split: str, is_training: bool, seed: Optional[int]):
    """The text feature of a TFDS split as scalar strings, after checking name and feature."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(source.name, data_dir=source.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"unknown TFDS dataset {source.name!r}") from None
    features = builder.info.features
    if source.text_key not in features:
        raise ValueError(f"TFDS dataset {source.name} has no feature {source.text_key!r}; it has "
                         f"{', '.join(sorted(features.keys()))}")
    if getattr(features[source.text_key], "tf_dtype", None) != tf.string:
        raise ValueError(f"feature {source.text_key!r} of TFDS dataset {source.name} is not text")
    try:
        dataset = tfds.load(
            source.name, split=split, data_dir=source.data_dir, download=source.download,
            shuffle_files=is_training, read_config=tfds.ReadConfig(shuffle_seed=_offset(seed, 3)))
    except AssertionError as err:  # TFDS' way of saying the data is not prepared
        raise FileNotFoundError(
            f"TFDS dataset {source.name} is not prepared in "
            f"{source.data_dir or 'the default data_dir'} ({err}); prepare it or allow download"
        ) from None
    text_key = source.text_key
    return dataset.map(lambda example: example[text_key], num_parallel_calls=tf.data.AUTOTUNE)


def read_documents(source: Union[TextFilesSource, TfdsSource]) -> tf.data.Dataset:
    """Every document of a text source as scalar strings, in order (files sorted by name)."""
    if isinstance(source, TfdsSource):
        return _tfds_documents(source, source.split, is_training=False, seed=None)
    if isinstance(source, TextFilesSource):
        blank_lines = source.blank_line_documents
        return tf.data.Dataset.from_tensor_slices(expand_patterns(source.patterns)).flat_map(
            lambda path: read_text_documents(path, blank_lines))
    raise TypeError(f"source must be a TextFilesSource or TfdsSource, got {type(source).__name__}")


def text_lines(source: Union[TextFilesSource, TfdsSource],
               max_lines: Optional[int] = None) -> Iterator[str]:
    """The non-empty lines of a text source's documents, e.g. to train a vocabulary on TFDS text."""
    count = 0
    for document in read_documents(source).as_numpy_iterator():
        for line in document.decode("utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line:
                continue
            if max_lines is not None and count >= max_lines:
                return
            yield line
            count += 1


# ------------------------------------------------------------------------------------------ masking
class _Masker:
    """(ragged sequences [batch, (length)] int32, example indices [batch]) -> padded feature dict."""

    def __init__(self, vocab_size: int, max_seq_length: int, max_predictions_per_seq: int, seed: int,
                 pipeline_id: int, batch_size: Optional[int]):
        self.vocab_size = vocab_size
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self.seed = seed
        self.pipeline_id = pipeline_id
        self.batch_size = batch_size  # static batch dimension, None if the last batch is smaller

    def __call__(self, sequences: tf.RaggedTensor, example_ids: tf.Tensor,
                 segment_ids: Optional[tf.RaggedTensor] = None) -> Dict[str, tf.Tensor]:
        """segment_ids: [batch, (length)] like sequences, or None for one segment (all 0)."""
        # Every token's example index and position in its example: what the random draws hash.
        lengths = sequences.row_lengths()
        token_example = tf.repeat(example_ids, lengths)
        token_position = (tf.range(tf.size(sequences.flat_values, out_type=tf.int64))
                          - tf.repeat(sequences.row_starts(), lengths))
        seed = (self.seed, self.pipeline_id)

        def shuffle(positions):
            """A row's selectable flat positions, in an order keyed by (example, position)."""
            keys = hash_uint64(*seed, _SELECT_STREAM, tf.gather(token_example, positions),
                               tf.gather(token_position, positions))
            return tf.gather(positions, tf.argsort(_to_int63(keys)))

        # RandomItemSelector caps the selections per ROW (each example) of the ragged batch:
        # ceil(0.15 * selectable tokens), at most max_predictions_per_seq.
        selector = tf_text.RandomItemSelector(
            max_selections_per_batch=self.max_predictions_per_seq,
            selection_rate=MASKED_LM_RATE,
            unselectable_ids=list(range(NUM_SPECIAL_TOKENS)),
            shuffle_fn=shuffle,
        )
        chooser = HashedMaskValuesChooser(
            self.vocab_size, MASK_ID, MASK_TOKEN_RATE, RANDOM_TOKEN_RATE, seed=seed,
            example_ids=example_ids)
        masked, positions, targets = tf_text.mask_language_model(sequences, selector, chooser)
        input_ids, input_mask = tf_text.pad_model_inputs(
            masked, self.max_seq_length, pad_value=PAD_ID)
        positions, weights = tf_text.pad_model_inputs(
            tf.cast(positions, tf.int32), self.max_predictions_per_seq, pad_value=0)
        targets, _ = tf_text.pad_model_inputs(
            tf.cast(targets, tf.int32), self.max_predictions_per_seq, pad_value=0)
        features = {
            "input_ids": tf.cast(input_ids, tf.int32),
            "input_mask": tf.cast(input_mask, tf.int32),
            "segment_ids": (tf.zeros_like(input_ids, tf.int32) if segment_ids is None else tf.cast(
                tf_text.pad_model_inputs(segment_ids, self.max_seq_length, pad_value=0)[0], tf.int32)),
            "masked_lm_positions": positions,
            "masked_lm_ids": targets,
            "masked_lm_weights": tf.cast(weights, tf.float32),
        }
        # The ragged ops lose the static shape; TPUs (and XLA) need it whole.
        for name, value in features.items():
            length = self.max_seq_length if name in FEATURE_NAMES[:3] else self.max_predictions_per_seq
            value.set_shape([self.batch_size, length])
        return features


class HashedMaskValuesChooser(tf_text.MaskValuesChooser):
    """tensorflow_text's MaskValuesChooser, drawing from a hash instead of the global generator.

    For the j-th selected token of example e (selections are in position order), with
    u = uniform hash of (seed, e, j): u < mask_token_rate -> [MASK]; else
    u < mask_token_rate + random_token_rate -> a random id in [NUM_SPECIAL_TOKENS, vocab_size)
    (the parent draws from the whole vocabulary, [PAD] and [CLS] included); else unchanged.

    Args (besides the parent's):
      seed: a tuple of ints mixed into every hash.
      example_ids: int64 [batch], the index of each row's example in the stream.
    """

    def __init__(self, vocab_size: int, mask_token: int, mask_token_rate: float = 0.8,
                 random_token_rate: float = 0.1, *, seed: Sequence[int], example_ids: tf.Tensor):
        if mask_token_rate + random_token_rate > 1.0:
            raise ValueError("mask_token_rate + random_token_rate must be <= 1")
        if vocab_size <= NUM_SPECIAL_TOKENS:
            raise ValueError(f"vocab_size must exceed the {NUM_SPECIAL_TOKENS} special ids")
        super().__init__(vocab_size, mask_token, mask_token_rate, random_token_rate)
        self._mask_rate = mask_token_rate
        self._seed = tuple(seed)
        self._example_ids = example_ids

    def get_mask_values(self, masked_lm_ids: tf.RaggedTensor) -> tf.RaggedTensor:
        ids = masked_lm_ids.flat_values
        rows = masked_lm_ids.value_rowids()
        slot = tf.range(tf.size(ids, out_type=tf.int64)) - tf.gather(masked_lm_ids.row_starts(), rows)
        example = tf.gather(self._example_ids, rows)
        u = _to_unit_float(hash_uint64(*self._seed, _VALUE_STREAM, example, slot))
        draw = hash_uint64(*self._seed, _TOKEN_STREAM, example, slot)
        num_ordinary = tf.constant(self.vocab_size - NUM_SPECIAL_TOKENS, tf.uint64)
        random_ids = tf.cast(draw % num_ordinary, ids.dtype) + NUM_SPECIAL_TOKENS
        values = tf.where(u < self._mask_rate, tf.cast(self.mask_token, ids.dtype),
                          tf.where(u < self._mask_rate + self.random_token_rate, random_ids, ids))
        return masked_lm_ids.with_flat_values(values)


# Streams keep the three kinds of draws independent of one another.
_SELECT_STREAM, _VALUE_STREAM, _TOKEN_STREAM = 1, 2, 3
_SHORT_STREAM, _LENGTH_STREAM, _SPLIT_STREAM = 4, 5, 6


def hash_uint64(*parts: Union[tf.Tensor, int]) -> tf.Tensor:
    """A well-mixed uint64 hash of integer tensors (broadcast together) and Python ints.

    Chains SplitMix64's finaliser (Steele et al., 2014) over the parts; TensorFlow's uint64 ops
    wrap around like C's. Used as a counter-based random generator: the same parts always give
    the same value, and any change to a part gives an unrelated one.
    """
    h = tf.constant(0x9E3779B97F4A7C15, tf.uint64)
    for part in parts:
        if isinstance(part, int):
            part = tf.constant(part & 0xFFFFFFFFFFFFFFFF, tf.uint64)
        h = _splitmix64(tf.bitwise.bitwise_xor(h, tf.cast(part, tf.uint64)))
    return h


def _splitmix64(z):
    z = z + tf.constant(0x9E3779B97F4A7C15, tf.uint64)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(30, tf.uint64)))
    z = z * tf.constant(0xBF58476D1CE4E5B9, tf.uint64)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(27, tf.uint64)))
    z = z * tf.constant(0x94D049BB133111EB, tf.uint64)
    return tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(31, tf.uint64)))


def _to_unit_float(h):
    """uint64 hash -> float32 uniform in [0, 1) (its top 24 bits)."""
    top = tf.bitwise.right_shift(h, tf.constant(40, tf.uint64))
    return tf.cast(tf.cast(top, tf.int64), tf.float32) * (1.0 / (1 << 24))


def _to_int63(h):
    """uint64 hash -> non-negative int64 (for argsort, which has no uint64 kernel)."""
    return tf.cast(tf.bitwise.right_shift(h, tf.constant(1, tf.uint64)), tf.int64)


# -------------------------------------------------------------------------------------- TFRecords
def feature_spec(max_seq_length: int, max_predictions_per_seq: int) -> Dict[str, tf.io.FixedLenFeature]:
    """The tf.train.Example features as BERT writes them: int64 ids, float weights."""
    length = {"input_ids": max_seq_length, "input_mask": max_seq_length,
              "segment_ids": max_seq_length, "masked_lm_positions": max_predictions_per_seq,
              "masked_lm_ids": max_predictions_per_seq, "masked_lm_weights": max_predictions_per_seq}
    return {name: tf.io.FixedLenFeature(
        [length[name]], tf.float32 if name == "masked_lm_weights" else tf.int64)
        for name in FEATURE_NAMES}


def parse_examples(serialized: tf.Tensor, max_seq_length: int,
                   max_predictions_per_seq: int) -> Dict[str, tf.Tensor]:
    """Serialized tf.train.Examples [batch] -> feature dict, ids cast to int32 (TPUs lack int64)."""
    features = tf.io.parse_example(serialized, feature_spec(max_seq_length, max_predictions_per_seq))
    return {name: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value
            for name, value in features.items()}


def _prepare_output(output_path: str, max_examples: Optional[int]) -> None:
    """Checks the output path (and max_examples) and creates its folder, before any example is made."""
    if max_examples is not None:
        _check_positive("max_examples", max_examples)
    check_output_file(output_path)
    folder = os.path.dirname(output_path)
    if folder:
        tf.io.gfile.makedirs(folder)


def write_tfrecords(dataset: Iterable[Mapping[str, object]], output_path: str,
                    max_examples: Optional[int] = None) -> int:
    """Writes feature dicts (batched or single examples) as tf.train.Examples; returns the count.

    Ids are written as int64 and weights as floats, like BERT's create_pretraining_data.py. The
    file is written under a temporary name and renamed when complete, so a failure (or zero
    examples, a ValueError) leaves no output file.
    """
    _prepare_output(output_path, max_examples)
    tmp_path = f"{output_path}.tmp-{os.getpid()}"
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp_path) as writer:
            for features in dataset:
                for example in _examples(features):
                    writer.write(example.SerializeToString())
                    count += 1
                    if count == max_examples:
                        break
                if count == max_examples:
                    break
        if count == 0:
            raise ValueError(f"no examples to write to {output_path}: the input gave none")
        tf.io.gfile.rename(tmp_path, output_path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(tmp_path):
            tf.io.gfile.remove(tmp_path)
        raise
    return count


def shard_paths(output_path: str, num_shards: int) -> List[str]:
    """The files of a sharded output, named as TFDS and BERT-style pipelines do:
    OUTPUT-00000-of-00004, ... (read them back with the glob OUTPUT-*)."""
    _check_positive("num_shards", num_shards)
    return [f"{output_path}-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]


def serialize_examples(features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Feature batches -> serialized tf.train.Examples string [batch], in the graph.

    The same features as write_tfrecords writes (int64 ids, float weights), built with
    tf.io.encode_proto so that serialization runs in tf.data's parallel map, not in Python.
    """
    batch = tf.shape(features["input_ids"])[0]

    def encode(values, field_names, message_type):  # values: [batch, k] tensors, one per field
        sizes = tf.stack([tf.fill([batch], tf.shape(v)[1]) for v in values], axis=1)
        return tf.io.encode_proto(sizes, values, field_names, f"tensorflow.{message_type}")

    entries = []
    for name in FEATURE_NAMES:
        if name == "masked_lm_weights":
            kind, values = ("float_list", "FloatList"), tf.cast(features[name], tf.float32)
        else:
            kind, values = ("int64_list", "Int64List"), tf.cast(features[name], tf.int64)
        value_list = encode([values], ["value"], kind[1])
        feature = encode([value_list[:, None]], [kind[0]], "Feature")
        entries.append(encode([tf.fill([batch, 1], name), feature[:, None]], ["key", "value"],
                              "Features.FeatureEntry"))
    feature_map = encode([tf.stack(entries, axis=1)], ["feature"], "Features")
    return encode([feature_map[:, None]], ["features"], "Example")


def write_tfrecord_shards(serialized: Iterable[object], output_path: str, num_shards: int,
                          max_examples: Optional[int] = None) -> int:
    """Writes serialized examples (batches [batch] of bytes) to `shard_paths`; returns the count.

    Example k of the stream goes to shard k % num_shards, so the split is deterministic and the
    shards differ by at most one example. Every shard is written under a temporary name and all
    are renamed only once all are complete: a failure (or fewer examples than shards, a
    ValueError) leaves no output file.
    """
    paths = shard_paths(output_path, num_shards)
    _prepare_output(output_path, max_examples)
    tmp_paths = [f"{path}.tmp-{os.getpid()}" for path in paths]
    count = 0
    try:
        writers = [tf.io.TFRecordWriter(path) for path in tmp_paths]
        try:
            for batch in serialized:
                for record in np.atleast_1d(np.asarray(batch, dtype=object)):
                    writers[count % num_shards].write(record)
                    count += 1
                    if count == max_examples:
                        break
                if count == max_examples:
                    break
        finally:
            for writer in writers:
                writer.close()
        if count < num_shards:
            raise ValueError(f"only {count} examples for {num_shards} shards of {output_path}: "
                             f"give fewer shards (an empty file is not valid input)")
        for tmp_path, path in zip(tmp_paths, paths):
            tf.io.gfile.rename(tmp_path, path, overwrite=True)
    except BaseException:
        for tmp_path in tmp_paths:
            if tf.io.gfile.exists(tmp_path):
                tf.io.gfile.remove(tmp_path)
        raise
    return count


def check_output_file(output_path: str) -> None:
    """An output file path that can be written: not a directory, nor below a file (missing folders are made).

    Raises:
      ValueError: naming the path and what is wrong with it.
    """
    if tf.io.gfile.isdir(output_path):
        raise ValueError(f"output file {output_path} is a directory; give a file path in it, e.g. "
                         f"{os.path.join(output_path, 'train.tfrecord')}")
    folder = os.path.dirname(output_path)
    while folder and not tf.io.gfile.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    if folder and not tf.io.gfile.isdir(folder):
        raise ValueError(f"cannot write {output_path}: {folder} is a file, not a directory")


def _examples(features: Mapping[str, object]):
    arrays = {name: np.asarray(features[name]) for name in FEATURE_NAMES}
    if arrays["input_ids"].ndim == 1:
        arrays = {name: value[None] for name, value in arrays.items()}
    for i in range(arrays["input_ids"].shape[0]):
        feature = {}
        for name in FEATURE_NAMES:
            row = arrays[name][i]
            if name == "masked_lm_weights":
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=row.tolist()))
            else:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=row.tolist()))
        yield tf.train.Example(features=tf.train.Features(feature=feature))


def _check_tfrecord_file(path: str, max_seq_length: int, max_predictions_per_seq: int):
    """Reads the first example of `path`; ValueError unless it has the expected features and lengths."""
    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as err:
        raise ValueError(f"{path} is not a readable TFRecord file: {err.message}") from None
    if first is None:
        raise ValueError(f"TFRecord file {path} holds no examples (or is not a TFRecord file)")
    try:
        example = tf.train.Example.FromString(first.numpy())
    except Exception:  # protobuf's DecodeError
        raise ValueError(f"TFRecord file {path} does not hold tf.train.Examples") from None
    expected = feature_spec(max_seq_length, max_predictions_per_seq)
    found = example.features.feature
    for name, spec in expected.items():
        if name not in found:
            raise ValueError(f"TFRecord file {path} has no feature {name!r} (not pretraining data?)")
        kind = found[name].WhichOneof("kind")
        values = getattr(found[name], kind).value if kind else []
        if len(values) != spec.shape[0]:
            flag = "max_seq_length" if name in FEATURE_NAMES[:3] else "max_predictions_per_seq"
            raise ValueError(f"TFRecord file {path} holds {name} of length {len(values)}, but "
                             f"{flag} is {spec.shape[0]}")


def _tfrecord_dataset(source, shard, is_training, seed, deterministic, repeat, shuffle_buffer,
                      batch_size, drop_remainder, max_seq_length, max_predictions_per_seq):
    files = expand_patterns(source.patterns)
    _check_tfrecord_file(files[0], max_seq_length, max_predictions_per_seq)
    paths, shard_files = _file_paths(files, shard, is_training, seed)
    records = paths.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), FILE_CYCLE_LENGTH),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shard.num > 1 and not shard_files:
        records = records.shard(shard.num, shard.index)
    if repeat:
        records = records.repeat()
    if is_training:
        records = records.shuffle(shuffle_buffer, seed=_offset(seed, 1),
                                  reshuffle_each_iteration=True)
    # Batch first: one vectorized parse per batch instead of one per example.
    batches = records.batch(batch_size, drop_remainder=drop_remainder)
    batches = batches.map(
        lambda serialized: parse_examples(serialized, max_seq_length, max_predictions_per_seq),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return batches.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- unigram baseline
def count_token_ids(features: Iterable[Mapping[str, object]], vocab_size: int,
                    max_batches: Optional[int] = None) -> np.ndarray:
    """Counts of each token id in the real, non-special tokens of feature batches.

    The original ids are counted: masked positions are restored from masked_lm_ids, so [MASK]
    and the random replacements do not skew the counts.

    Returns:
      int64 array [vocab_size]; the special ids count 0.
    """
    _check_infinite(features, max_batches)
    counts = np.zeros([vocab_size], np.int64)
    for i, batch in enumerate(features):
        if max_batches is not None and i >= max_batches:
            break
        original = original_input_ids(batch)
        real = (np.asarray(batch["input_mask"]) > 0) & (original >= NUM_SPECIAL_TOKENS)
        counts += np.bincount(original[real].astype(np.int64), minlength=vocab_size)[:vocab_size]
    return counts


def original_input_ids(features: Mapping[str, object]) -> np.ndarray:
    """input_ids [batch, seq] with the masked positions restored to masked_lm_ids."""
    ids = np.array(features["input_ids"])
    positions = np.asarray(features["masked_lm_positions"])
    targets = np.asarray(features["masked_lm_ids"])
    weights = np.asarray(features["masked_lm_weights"])
    rows, slots = np.nonzero(weights > 0)
    ids[rows, positions[rows, slots]] = targets[rows, slots]
    return ids


def unigram_perplexity(train: Union[np.ndarray, Iterable[Mapping[str, object]]],
                       eval_features: Iterable[Mapping[str, object]], *,
                       vocab_size: Optional[int] = None,
                       max_train_batches: Optional[int] = None,
                       max_eval_batches: Optional[int] = None) -> float:
    """Perplexity of an add-one smoothed unigram model on the masked-LM targets of eval_features.

    The baseline beside a model's masked-LM perplexity: the model must beat guessing each masked
    token from its frequency in the TRAINING data alone. The unigram distribution covers the
    non-special ids (targets are never special): p(w) = (count(w) + 1) / (N + V - 5).
    Perplexity = exp(-sum(weight * log p(target)) / sum(weight)), over masked_lm_ids weighted by
    masked_lm_weights, exactly the positions the model is scored on.

    Args:
      train: counts from `count_token_ids`, or training feature batches to count (then give
        vocab_size, and max_train_batches if the dataset repeats).
      eval_features: evaluation feature batches (a finite dataset, or max_eval_batches).
    """
    if isinstance(train, np.ndarray):
        counts = train.astype(np.int64)
    else:
        if vocab_size is None:
            raise ValueError("vocab_size is needed to count token ids of training batches")
        counts = count_token_ids(train, vocab_size, max_train_batches)
    counts = counts.copy()
    counts[:NUM_SPECIAL_TOKENS] = 0
    outcomes = len(counts) - NUM_SPECIAL_TOKENS
    if outcomes <= 0:
        raise ValueError(f"counts cover {len(counts)} ids, no more than the special ones")
    log_prob = np.log(counts + 1.0) - np.log(counts.sum() + float(outcomes))
    _check_infinite(eval_features, max_eval_batches)
    total, weight_sum = 0.0, 0.0
    for i, batch in enumerate(eval_features):
        if max_eval_batches is not None and i >= max_eval_batches:
            break
        weights = np.asarray(batch["masked_lm_weights"], np.float64)
        targets = np.asarray(batch["masked_lm_ids"])
        total += float(np.sum(weights * log_prob[targets]))
        weight_sum += float(weights.sum())
    if weight_sum == 0:
        raise ValueError("eval_features hold no masked-LM predictions (all weights are 0)")
    return float(np.exp(-total / weight_sum))


# ------------------------------------------------------------------------------------------ helpers
def _check_positive(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_infinite(features, max_batches):
    if (max_batches is None and isinstance(features, tf.data.Dataset)
            and features.cardinality() == tf.data.INFINITE_CARDINALITY):
        raise ValueError("the dataset repeats forever: give a maximum number of batches")


def _offset(seed: Optional[int], offset: int) -> Optional[int]:
    """A distinct seed per use (file shuffle, sequence shuffle, ...), or None when unseeded."""
    return None if seed is None else seed + offset
