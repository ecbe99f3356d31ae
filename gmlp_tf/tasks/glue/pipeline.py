"""GLUE examples -> tf.data batches of BERT inputs, labels and example weights.

Each batch is framed by tokenization.encode_texts, the same function the raw-text serving
signature uses, so training and serving see identical inputs.
"""

import math
from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

from gmlp_tf.tasks.glue.task_table import InputExample
from gmlp_tf.tokenization import encode_texts


def label_ids(examples: Sequence[InputExample], label_list: Optional[Sequence[str]]) -> np.ndarray:
    """Labels as model targets: int32 indexes into label_list, or float32 scores (label_list None)."""
    if label_list is None:
        return np.array([float(e.label) for e in examples], np.float32)
    index = {label: i for i, label in enumerate(label_list)}
    return np.array([index[e.label] for e in examples], np.int32)


def padded_length(num_examples: int, batch_size: int) -> int:
    """Examples after padding to whole batches: TPUs need every batch at full size."""
    return int(math.ceil(num_examples / batch_size)) * batch_size


def classifier_dataset(
    examples: Sequence[InputExample],
    tokenizer: Any,
    max_seq_length: int,
    batch_size: int,
    label_list: Optional[Sequence[str]] = None,
    is_training: bool = False,
    with_labels: bool = True,
    seed: Optional[int] = None,
) -> tf.data.Dataset:
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
    columns = {"text_a": [e.text_a for e in rows],
               "weight": np.array([1.0] * len(examples) + [0.0] * (count - len(examples)), np.float32)}
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
