"""Sentences and sentence pairs -> BERT inputs, in-graph with tensorflow-text.

`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, segment ids 0 for the first part and 1 for the
second, trimmed round-robin (one token from each segment in turn, as BERT's
_truncate_seq_pair) to max_seq_length, padded with [PAD]. The same function serves training
pipelines and the raw-text serving signature, so both see identical inputs.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from gmlp_tf.tokenization import CLS_ID, PAD_ID, SEP_ID


def encode_texts(tokenizer, max_seq_length, text_a, text_b=None):
    """Tokenizes, trims, frames and pads a batch of sentences (or pairs).

    Args:
      tokenizer: a tensorflow_text.SentencepieceTokenizer (tokenization.make_tokenizer).
      max_seq_length: output length, special tokens included.
      text_a: string [batch].
      text_b: optional string [batch], the second sentence of each pair.

    Returns:
      dict of int32 [batch, max_seq_length]: "input_ids", "input_mask", "segment_ids".
    """
    segments = [tokenizer.tokenize(text_a)]
    if text_b is not None:
        segments.append(tokenizer.tokenize(text_b))
    budget = max_seq_length - len(segments) - 1  # [CLS] and one [SEP] per segment.
    if budget < len(segments):
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for the text")
    trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
    ids, segment_ids = tf_text.combine_segments(trimmed, start_of_sequence_id=CLS_ID, end_of_segment_id=SEP_ID)
    input_ids, input_mask = tf_text.pad_model_inputs(ids, max_seq_length, pad_value=PAD_ID)
    segment_ids, _ = tf_text.pad_model_inputs(segment_ids, max_seq_length, pad_value=0)
    return {
        "input_ids": tf.cast(input_ids, tf.int32),
        "input_mask": tf.cast(input_mask, tf.int32),
        "segment_ids": tf.cast(segment_ids, tf.int32),
    }


def label_ids(examples, label_list):
    """Labels as model targets: int32 indexes into label_list, or float32 scores (label_list None)."""
    if label_list is None:
        return np.array([float(e.label) for e in examples], np.float32)
    index = {label: i for i, label in enumerate(label_list)}
    return np.array([index[e.label] for e in examples], np.int32)


def padded_length(num_examples, batch_size):
    """Examples after padding to whole batches: TPUs need every batch at full size."""
    return int(math.ceil(num_examples / batch_size)) * batch_size


def classifier_dataset(examples, tokenizer, max_seq_length, batch_size, label_list=None, is_training=False,
                       with_labels=True, seed=None):
    """A tf.data pipeline of BERT inputs (and labels) for sentence(-pair) classification.

    Training batches are shuffled and drop the last partial batch. Evaluation and prediction
    batches keep every example and pad the last batch with copies of the first example, each
    with weight 0 (BERT's is_real_example), so that every batch has a static shape; callers
    slice predictions back to len(examples).

    Args:
      examples: glue.InputExample list.
      tokenizer: a tensorflow_text.SentencepieceTokenizer.
      max_seq_length: tokens per example.
      batch_size: batch size (global, or per replica inside an input context).
      label_list: the task's labels; None for regression (float scores).
      is_training: shuffle, repeat never, drop the remainder.
      with_labels: yield (inputs, labels, weights); else inputs only (unlabeled test data).
      seed: shuffle seed.

    Returns:
      Batches of ({"input_ids", "input_mask", "segment_ids"} int32 [batch, max_seq_length},
      labels [batch] (int32, or float32 [batch, 1] for regression), weights float32 [batch]).
    """
    if not examples:
        raise ValueError("no examples to encode")
    is_pair = examples[0].text_b is not None
    count = len(examples) if is_training else padded_length(len(examples), batch_size)
    rows = list(examples) + [examples[0]] * (count - len(examples))
    columns = {"text_a": [e.text_a for e in rows], "weight": np.array([1.0] * len(examples) + [0.0] * (count - len(examples)), np.float32)}
    if is_pair:
        columns["text_b"] = [e.text_b or "" for e in rows]
    if with_labels:
        columns["label"] = label_ids(rows, label_list)
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if is_training:
        dataset = dataset.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=is_training)

    def encode(batch):
        inputs = encode_texts(tokenizer, max_seq_length, batch["text_a"], batch.get("text_b"))
        if not with_labels:
            return inputs
        label = batch["label"]
        if label_list is None:
            label = label[:, None]  # Regression targets match the [batch, 1] scores.
        return inputs, label, batch["weight"]

    return dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
