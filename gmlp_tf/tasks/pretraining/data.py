"""The masked-LM input pipeline: text -> SentencePiece ids -> packed, masked, padded BERT features.

Everything runs in tf.data on the host (tensorflow_text ops are host ops), batched and in
parallel, so the accelerator step only sees fixed-shape int32 / float32 tensors.

This module is the pipeline itself; its steps live beside it: sources.py (the sources below),
packing.py (steps 2 and 3), masking.py (4 and 5), tfrecords.py (TFRecord files, written and
read) and unigram.py (the unigram baseline).

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
     Examples travel padded to max_seq_length with their length (padded_examples_from_documents):
     tf.data shuffles and batches fixed shapes faster than variable-length ones.
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

import functools
import random
from typing import Callable, Dict, Optional, Tuple

import tensorflow as tf

from gmlp_tf import tokenization
from gmlp_tf.tasks.pretraining.masking import _Masker
from gmlp_tf.tasks.pretraining.packing import check_example_format, padded_rows, per_document_batch
from gmlp_tf.tasks.pretraining.sources import (
    Source,
    TextFilesSource,
    TfdsSource,
    TFRecordSource,
    _check_positive,
    _offset,
    _Shard,
    _text_file_sequences,
    _tfds_sequences,
)
from gmlp_tf.tasks.pretraining.tfrecords import _tfrecord_dataset

# An evaluation dataset without a seed still masks the same way on every run.
DEFAULT_EVAL_SEED = 0
# The default training shuffle buffer, in tokens.
SHUFFLE_BUFFER_TOKENS = 10_000 * 128


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
    vocab_size = tokenization.vocab_size(sp_model)
    rows = _tokenizing_function(sp_model, max_seq_length, example_format, pack, short_seq_prob)
    rows_seed = tf.constant(mask_seed, tf.int64)

    def to_sequences(documents):
        return per_document_batch(documents, lambda texts: rows(texts, rows_seed))

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
    batches = examples.batch(batch_size, drop_remainder=drop_remainder)
    masker = _masking_function(vocab_size, max_seq_length, max_predictions_per_seq,
                               batch_size if drop_remainder else None)
    seeds = tf.constant(mask_seed, tf.int64), tf.constant(pipeline_id, tf.int64)

    def mask(example, index):  # example: padded ids, segment ids [batch, max_seq_length], lengths [batch].
        ids, segment_ids, lengths = example
        return masker(ids, lengths, segment_ids, index, *seeds)

    batches = batches.map(mask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return batches.prefetch(tf.data.AUTOTUNE)


@functools.lru_cache(maxsize=None)
def _tokenizing_function(sp_model: bytes, max_seq_length: int, example_format: str, pack: bool,
                         short_seq_prob: float) -> Callable[[tf.Tensor, tf.Tensor], Tuple[tf.Tensor, ...]]:
    """padded_rows as one tf.function per vocabulary and shape, shared by every dataset of the process.

    As _masking_function: tracing the tokenizing, packing and framing (0.5-1.5 s) was repeated for
    each dataset; the seed is an input, so datasets of any seed share the trace (the rows are the
    same as with the seed traced in).
    """
    tokenization.check_special_ids(sp_model)

    @tf.function
    def rows(texts, seed):
        # The tokenizer is made inside the function: its SentencePiece resource belongs to the op
        # that creates it, and one made eagerly can be deleted under the datasets that share it.
        tokenizer = tokenization.make_tokenizer(sp_model)
        return padded_rows(texts, tokenizer, max_seq_length, example_format, pack,
                           short_seq_prob=short_seq_prob, seed=seed)

    return rows


@functools.lru_cache(maxsize=None)
def _masking_function(vocab_size: int, max_seq_length: int, max_predictions_per_seq: int,
                      batch_size: Optional[int]) -> Callable[..., Dict[str, tf.Tensor]]:
    """The masking step as one tf.function per shape, shared by every dataset of the process.

    Tracing tensorflow_text's masking builds about 1,100 ops (1-1.5 s); a dataset's map traced it
    anew each time (a training run builds several datasets). The seed and the pipeline id are
    inputs, so datasets of any seed share the traced graph; the masks are the same as when they
    were traced in as constants (hash_uint64 reads an int64 tensor as it reads a Python int).
    """
    @tf.function
    def mask(ids, lengths, segment_ids, index, seed, pipeline_id):
        masker = _Masker(vocab_size, max_seq_length, max_predictions_per_seq, seed, pipeline_id, batch_size)
        return masker(tf.RaggedTensor.from_tensor(ids, lengths=lengths), index, segment_ids)

    return mask


def _check_lengths(max_seq_length, max_predictions_per_seq, batch_size):
    _check_positive("max_seq_length", max_seq_length)
    _check_positive("max_predictions_per_seq", max_predictions_per_seq)
    _check_positive("batch_size", batch_size)
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be >= 3 ([CLS], a token, [SEP]), got {max_seq_length}")
    if max_predictions_per_seq > max_seq_length - 2:
        raise ValueError(f"max_predictions_per_seq {max_predictions_per_seq} exceeds the "
                         f"max_seq_length - 2 = {max_seq_length - 2} tokens of a sequence")
