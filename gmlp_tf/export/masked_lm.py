"""The serving signatures of a pretrained masked LM ("pretraining" run): text with [MASK]s in, top-k fills out."""

from typing import Any, Dict, Tuple

import keras
import tensorflow as tf

from gmlp_tf.config import GMLPConfig
from gmlp_tf.export.common import ENCODED_SPEC, ExportModule, Signatures, frame_segments, sanitize
from gmlp_tf.tokenization import MASK, MASK_ID


class MaskedLMModule(ExportModule):
    """Serves the top_k predictions at each literal "[MASK]" of a text, and all-position logits."""

    def __init__(self, model: keras.Model, config: GMLPConfig, max_seq_length: int, tokenizer: Any,
                 top_k: int) -> None:
        super().__init__(model, config, max_seq_length, tokenizer)
        self.top_k = int(top_k)

    def encode(self, text: tf.Tensor) -> Dict[str, tf.Tensor]:
        """string [batch] -> [CLS] pieces joined by [MASK] [SEP], truncated and padded.

        Returns:
          dict of int32 [batch, max_seq_length]: "input_ids", "input_mask", "segment_ids".
        """
        text = sanitize(text, self.max_bytes)
        # SentencePiece never yields [MASK] (a control symbol): split on it and put MASK_ID back between pieces.
        pieces = tf.strings.split(text, sep=MASK)  # [batch, (pieces)]; "" -> [""].
        tokens = self.tokenizer.tokenize(pieces.flat_values)  # [pieces, (tokens)]
        tokens = tf.cast(tokens, tf.int32)
        mask_column = tf.fill([tf.shape(pieces.flat_values)[0], 1], tf.constant(MASK_ID, tf.int32))
        tokens = tf.concat([tokens, tf.RaggedTensor.from_tensor(mask_column)], axis=1)  # piece + [MASK]
        rows = tf.RaggedTensor.from_row_lengths(tokens, pieces.row_lengths()).merge_dims(1, 2)
        # Drop the [MASK] appended after each row's last piece.
        row_lengths = tf.cast(rows.row_lengths(), tf.int32)
        keep = tf.ragged.range(row_lengths) < row_lengths[:, None] - 1
        rows = tf.ragged.boolean_mask(rows, keep)
        rows = rows[:, :self.max_seq_length - 2]
        return frame_segments([rows], self.max_seq_length)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text: tf.Tensor) -> Dict[str, tf.Tensor]:
        """text string [batch] -> the top_k fills of its M (the batch's most) masks.

        Returns top_k_ids int32, top_k_tokens string, top_k_scores float32 [batch, M, top_k];
        masked_positions int32 [batch, M]; num_masked int32 [batch]. Padding: -1, "", 0, -1.
        """
        inputs = self.encode(text)
        is_mask = tf.equal(inputs["input_ids"], MASK_ID)
        where = tf.cast(tf.where(is_mask), tf.int32)  # [masks, 2] row-major
        batch = tf.shape(inputs["input_ids"])[0]
        positions = tf.RaggedTensor.from_value_rowids(where[:, 1], where[:, 0], nrows=batch)
        num_masked = tf.cast(positions.row_lengths(), tf.int32)
        present = tf.sequence_mask(num_masked)  # [batch, M]
        padded_positions = positions.to_tensor(default_value=0)
        model_inputs = dict(inputs, masked_lm_positions=padded_positions)
        logits = self._keras_call(model_inputs)  # [batch, M, vocab]
        probs = tf.nn.softmax(logits, axis=-1)
        k = min(self.top_k, self.config.vocab_size)
        scores, ids = tf.math.top_k(probs, k=k)
        ids = tf.cast(ids, tf.int32)
        mask3 = present[:, :, None]
        ids = tf.where(mask3, ids, -1)
        tokens = self.tokenizer.id_to_string(tf.maximum(ids, 0))
        tokens = tf.where(mask3, tokens, "")
        scores = tf.where(mask3, scores, 0.0)
        return {"top_k_ids": ids, "top_k_tokens": tokens, "top_k_scores": scores,
                "masked_positions": tf.where(present, padded_positions, -1), "num_masked": num_masked}

    @tf.function(input_signature=[ENCODED_SPEC])
    def serve_encoded(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """input_ids, input_mask, segment_ids int32 [batch, length] -> logits float32 [batch, length, vocab_size]."""
        return {"logits": self._keras_call(self.clip(**inputs))}


def build(model: keras.Model, config: GMLPConfig, max_seq_length: int, tokenizer: Any,
          top_k: int) -> Tuple[MaskedLMModule, Signatures, Dict[str, Any]]:
    """The masked-LM module, its signatures and its export info (top_k, at most the vocabulary)."""
    module = MaskedLMModule(model, config, max_seq_length, tokenizer, top_k)
    signatures = {"serving_default": module.serve_text, "encoded": module.serve_encoded}
    return module, signatures, {"top_k": min(top_k, config.vocab_size)}
