"""The unigram baseline: token counts of training features, and the perplexity of an add-one smoothed
unigram model on the masked-LM targets, beside the model's masked-LM perplexity.
"""

from typing import Iterable, Mapping, Optional, Union

import numpy as np
import tensorflow as tf

from gmlp_tf.tokenization import NUM_SPECIAL_TOKENS


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


def _check_infinite(features, max_batches):
    if (max_batches is None and isinstance(features, tf.data.Dataset)
            and features.cardinality() == tf.data.INFINITE_CARDINALITY):
        raise ValueError("the dataset repeats forever: give a maximum number of batches")
