"""Text -> token sequences: tokenizing documents, packing them into full sequences (or trimming
them), short sequences, and BERT's segment pairs (steps 2 and 3 of data.py's module docstring).

Every draw (short lengths, the A/B cut) hashes (seed, the batch of documents' text, the piece's
index) with masking.py's hash_uint64, so the sequences are the same on every run of a seed.
"""

from typing import Any, Callable, Optional, Sequence, Tuple, Union

import tensorflow as tf
import tensorflow_text as tf_text

from gmlp_tf.tasks.pretraining.masking import (
    _LENGTH_STREAM,
    _SHORT_STREAM,
    _SPLIT_STREAM,
    _to_unit_float,
    hash_uint64,
)
from gmlp_tf.tasks.pretraining.sources import _RECORD_SEPARATOR
from gmlp_tf.tokenization import CLS_ID, PAD_ID, SEP_ID

# Documents tokenized (and packed) together. The last sequence of each such batch can be short,
# so larger is less padding; 512 short documents are still only a few hundred KB of text.
DOCS_PER_BATCH = 512
# packed: one segment of running text per example; segment_pair: BERT's [CLS] A [SEP] B [SEP].
EXAMPLE_FORMATS = ("packed", "segment_pair")
# BERT's share of examples with a shorter target length (create_pretraining_data.py's
# short_seq_prob), the default of the segment_pair format; the packed format's default is 0.
BERT_SHORT_SEQ_PROB = 0.1


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
    return per_document_batch(
        documents, lambda texts: _framed_rows(texts, tokenizer, max_seq_length, pack, short_seq_prob, seed))


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
    return per_document_batch(
        documents, lambda texts: _pair_rows(texts, tokenizer, max_seq_length, pack, short_seq_prob, seed))


def padded_examples_from_documents(documents: tf.data.Dataset, tokenizer: tf_text.SentencepieceTokenizer,
                                   max_seq_length: int, example_format: str, pack: bool = True, *,
                                   short_seq_prob: float = 0.0, seed: int = 0) -> tf.data.Dataset:
    """The examples of sequences_from_documents ("packed") or segment_pairs_from_documents
    ("segment_pair"), each padded to max_seq_length.

    Elements of one fixed shape: tf.data shuffled the variable-length ones of segment pairs (and
    of any short_seq_prob > 0) at half the rate, and batches fixed shapes several times faster.

    Returns:
      A dataset of (input ids int32 [max_seq_length], [PAD] after the tokens; segment ids int32
      [max_seq_length], all 0 for "packed"; the number of tokens, int32 scalar).
    """
    if example_format not in EXAMPLE_FORMATS:
        raise ValueError(f"unknown example format {example_format!r}; use one of {', '.join(EXAMPLE_FORMATS)}")
    return per_document_batch(documents, lambda texts: padded_rows(
        texts, tokenizer, max_seq_length, example_format, pack, short_seq_prob=short_seq_prob, seed=seed))


def padded_rows(texts: tf.Tensor, tokenizer: tf_text.SentencepieceTokenizer, max_seq_length: int,
                example_format: str, pack: bool = True, *, short_seq_prob: float = 0.0,
                seed: Union[int, tf.Tensor] = 0) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """A batch of documents [docs] -> padded_examples_from_documents' rows: input ids and segment
    ids int32 [rows, max_seq_length], lengths int32 [rows]. The seed may be an int64 tensor."""
    if example_format == "segment_pair":
        ids, segment_ids = _pair_rows(texts, tokenizer, max_seq_length, pack, short_seq_prob, seed)
    else:
        ids = _framed_rows(texts, tokenizer, max_seq_length, pack, short_seq_prob, seed)
        segment_ids = tf.zeros_like(ids)
    shape = [None, max_seq_length]
    return (ids.to_tensor(PAD_ID, shape=shape), segment_ids.to_tensor(0, shape=shape),
            tf.cast(ids.row_lengths(), tf.int32))


def per_document_batch(documents: tf.data.Dataset, make_rows: Callable[[tf.Tensor], Any]) -> tf.data.Dataset:
    """Maps make_rows over batches of DOCS_PER_BATCH documents (in parallel) and unbatches its rows."""
    return documents.batch(DOCS_PER_BATCH).map(make_rows, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def _framed_rows(texts, tokenizer, max_seq_length, pack, short_seq_prob, seed):
    """Documents [docs] -> [CLS] tokens [SEP] rows, int32 [rows, (<= max_seq_length)]."""
    rows = _token_rows(texts, tokenizer, max_seq_length - 2, pack, short_seq_prob, (seed, _batch_key(texts)))
    num_rows = rows.nrows()
    return tf.concat([tf.fill([num_rows, 1], CLS_ID), rows, tf.fill([num_rows, 1], SEP_ID)], axis=1)


def _pair_rows(texts, tokenizer, max_seq_length, pack, short_seq_prob, seed):
    """Documents [docs] -> frame_segment_pairs' (input ids, segment ids) of their pieces of >= 2 tokens."""
    key = (seed, _batch_key(texts))
    rows = _token_rows(texts, tokenizer, max_seq_length - 3, pack, short_seq_prob, key)
    return frame_segment_pairs(tf.gather(rows, tf.where(rows.row_lengths() >= 2)[:, 0]), key)


def _segment_cuts(rows: tf.RaggedTensor, seed: Sequence[Union[int, tf.Tensor]]):
    """Where each row [rows, (>= 2 tokens)] is cut, per token: (in B, a [SEP] dropped at the cut).

    Row r is cut after a drawn 1 <= a < length tokens; a document-separating [SEP] at the cut
    (last of A or first of B) is dropped, since the framing puts one there.
    """
    row_ids = rows.value_rowids()
    draw = hash_uint64(*seed, _SPLIT_STREAM, tf.range(rows.nrows()))
    cut = tf.cast(draw % tf.cast(rows.row_lengths() - 1, tf.uint64), tf.int64) + 1
    cut = tf.gather(cut, row_ids)
    position = tf.range(tf.size(rows.flat_values, out_type=tf.int64)) - tf.gather(rows.row_starts(), row_ids)
    is_sep = tf.equal(rows.flat_values, tf.cast(SEP_ID, rows.dtype))
    return position >= cut, is_sep & ((position == cut - 1) | (position == cut))


def split_segments(rows: tf.RaggedTensor, seed: Sequence[Union[int, tf.Tensor]]):
    """Rows [rows, (>= 2 tokens)] -> (A, B): each row cut after a drawn 1 <= a < length tokens.

    A document-separating [SEP] at the cut (last of A or first of B) is dropped, since the
    framing puts one there; A and B keep at least their outer tokens, which are never [SEP].
    frame_segment_pairs makes the same cut and frames the pair.
    """
    in_second, dropped = _segment_cuts(rows, seed)
    return (tf.ragged.boolean_mask(rows, rows.with_flat_values(~in_second & ~dropped)),
            tf.ragged.boolean_mask(rows, rows.with_flat_values(in_second & ~dropped)))


def frame_segment_pairs(rows: tf.RaggedTensor, seed: Sequence[Union[int, tf.Tensor]]):
    """Rows [rows, (>= 2 tokens)] -> BERT's pairs [CLS] A [SEP] B [SEP], cut as split_segments cuts.

    Equal to tensorflow_text.combine_segments(split_segments(rows, seed), CLS_ID, SEP_ID), written
    on the flat token values: without ragged masking of every row, the first batch of the shuffled
    pair stream came in 1.2 s instead of 3.1 s on a 2-core CPU.

    Returns:
      (input ids, segment ids): int32 RaggedTensors [rows, (tokens kept + 3)]; segment ids are
      0 on [CLS] A [SEP] and 1 on B [SEP].
    """
    in_second, dropped = _segment_cuts(rows, seed)
    kept = ~dropped
    values = tf.boolean_mask(tf.cast(rows.flat_values, tf.int32), kept)
    kept_rows = tf.boolean_mask(rows.value_rowids(), kept)
    kept_second = tf.cast(tf.boolean_mask(in_second, kept), tf.int64)
    nrows = rows.nrows()
    kept_lengths = tf.math.unsorted_segment_sum(tf.ones_like(kept_rows), kept_rows, nrows)
    first_lengths = kept_lengths - tf.math.unsorted_segment_sum(kept_second, kept_rows, nrows)
    out_lengths = kept_lengths + 3  # [CLS], the [SEP] after A and the one after B.
    out_starts = tf.cumsum(out_lengths, exclusive=True)
    rank = tf.range(tf.size(kept_rows, out_type=tf.int64)) - tf.gather(
        tf.cumsum(kept_lengths, exclusive=True), kept_rows)
    # A kept token moves right past the [CLS], and past A's [SEP] when it is in B.
    index = tf.gather(out_starts, kept_rows) + 1 + rank + kept_second
    total = tf.reduce_sum(out_lengths)
    ids = tf.tensor_scatter_nd_update(tf.fill([total], SEP_ID), index[:, None], values)
    ids = tf.tensor_scatter_nd_update(ids, out_starts[:, None], tf.fill([nrows], CLS_ID))
    out_rows = tf.repeat(tf.range(nrows), out_lengths)
    out_position = tf.range(total) - tf.gather(out_starts, out_rows)
    segment_ids = tf.cast(out_position >= tf.gather(first_lengths + 2, out_rows), tf.int32)
    splits = tf.concat([out_starts, [total]], axis=0)
    return (tf.RaggedTensor.from_row_splits(ids, splits, validate=False),
            tf.RaggedTensor.from_row_splits(segment_ids, splits, validate=False))


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
