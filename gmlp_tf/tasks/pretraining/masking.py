"""BERT's masking of token sequences into the padded masked-LM features, with reproducible draws.

Step 4 (and 5, padding) of data.py's module docstring: every random draw is hash_uint64 of (the
dataset seed, the input pipeline id, the example's index, the token's position), never
TensorFlow's global generator, so masks do not depend on batching, replicas or threads.
"""

from typing import Dict, Optional, Sequence, Union

import tensorflow as tf
import tensorflow_text as tf_text

from gmlp_tf.tokenization import MASK_ID, NUM_SPECIAL_TOKENS, PAD_ID

FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids",
                 "masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
MASKED_LM_RATE = 0.15
MASK_TOKEN_RATE = 0.8
RANDOM_TOKEN_RATE = 0.1


# ------------------------------------------------------------------------------------------ masking
class _Masker:
    """(ragged sequences [batch, (length)] int32, example indices [batch]) -> padded feature dict."""

    def __init__(self, vocab_size: int, max_seq_length: int, max_predictions_per_seq: int,
                 seed: Union[int, tf.Tensor], pipeline_id: Union[int, tf.Tensor], batch_size: Optional[int]):
        self.vocab_size = vocab_size
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self.seed = seed
        self.pipeline_id = pipeline_id
        self.batch_size = batch_size  # static batch dimension, None if the last batch is smaller

    def __call__(self, sequences: tf.RaggedTensor, example_ids: tf.Tensor,
                 segment_ids: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        """segment_ids: int [batch, max_seq_length], 0 on padding; or None for one segment (all 0)."""
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
            "segment_ids": (tf.zeros_like(input_ids, tf.int32) if segment_ids is None
                            else tf.cast(segment_ids, tf.int32)),
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
