"""The serving signatures of a SQuAD model ("squad" run): question and context in, the answer text out.

One window only: [CLS] question [SEP] context [SEP] as run_squad.py's first window, with no
in-graph sliding windows (see the package docstring for the limits).
"""

from typing import Any, Dict, Optional, Tuple

import keras
import tensorflow as tf

from gmlp_tf.config import GMLPConfig
from gmlp_tf.export.common import ENCODED_SPEC, ExportModule, Signatures, frame_segments, sanitize

# The score of a question whose context is empty after truncation: finite (JSON-safe), below any span.
NO_SPAN_SCORE = -1e9


class SquadModule(ExportModule):
    """Serves the best answer span of one window, its text and the raw logits."""

    def __init__(self, model: keras.Model, config: GMLPConfig, max_seq_length: int, tokenizer: Any,
                 max_query_length: int, max_answer_length: int) -> None:
        super().__init__(model, config, max_seq_length, tokenizer)
        self.max_query_length = int(max_query_length)
        self.max_answer_length = int(max_answer_length)

    def encode(self, question: tf.Tensor, context: tf.Tensor) -> Tuple[Dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
        """[CLS] question [SEP] context [SEP] padded; also the context's first and last positions.

        Args:
          question, context: string [batch].

        Returns:
          (dict of int32 [batch, max_seq_length], first int32 [batch], last int32 [batch]);
          last < first where the context is empty after truncation.
        """
        n = self.max_seq_length
        question = self.tokenizer.tokenize(sanitize(question, self.max_bytes))[:, :self.max_query_length]
        context = self.tokenizer.tokenize(sanitize(context, self.max_bytes))
        q_len = tf.cast(question.row_lengths(), tf.int32)
        budget = n - 3 - q_len  # >= 1: max_query_length + 3 < max_seq_length is checked at export.
        keep = tf.ragged.range(tf.cast(context.row_lengths(), tf.int32)) < budget[:, None]
        context = tf.ragged.boolean_mask(context, keep)
        c_len = tf.cast(context.row_lengths(), tf.int32)
        inputs = frame_segments([question, context], n)
        first = q_len + 2
        return inputs, first, first + c_len - 1

    def head(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """int32 [batch, length] inputs -> start_logits, end_logits float32 [batch, length], null_score [batch]."""
        out = self._keras_call(inputs)
        return {"start_logits": out["start_logits"], "end_logits": out["end_logits"],
                "null_score": out["null_score"]}

    def best_span(self, start: tf.Tensor, end: tf.Tensor, first: tf.Tensor,
                  last: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """The best span inside the context: end >= start, at most max_answer_length tokens.

        Args:
          start, end: float32 [batch, length] logits.
          first, last: int32 [batch], the context's positions.

        Returns:
          score float32 [batch] (start + end logit; NO_SPAN_SCORE without a span), start_index and
          end_index int32 [batch] (-1 without a span), has_span bool [batch].
        """
        n = tf.shape(start)[1]
        pos = tf.range(n)
        s = pos[None, :, None]
        e = pos[None, None, :]
        valid = ((e >= s) & (e - s < self.max_answer_length)
                 & (s >= first[:, None, None]) & (e <= last[:, None, None]))
        scores = tf.where(valid, start[:, :, None] + end[:, None, :], float("-inf"))
        flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
        best = tf.argmax(flat, axis=-1, output_type=tf.int32)
        has_span = last >= first
        score = tf.where(has_span, tf.reduce_max(flat, axis=-1), NO_SPAN_SCORE)
        start_index = tf.where(has_span, best // n, -1)
        end_index = tf.where(has_span, best % n, -1)
        return score, start_index, end_index, has_span

    def span_text(self, input_ids: tf.Tensor, start_index: tf.Tensor, end_index: tf.Tensor,
                  has_span: tf.Tensor) -> tf.Tensor:
        """input_ids int32 [batch, length], span bounds int32 [batch] -> the span's text string [batch] ("" if none)."""
        n = tf.shape(input_ids)[1]
        # Gather each row's span ids from the flattened ids (an empty span where there is none).
        lengths = tf.where(has_span, end_index - start_index + 1, 0)
        offsets = tf.ragged.range(tf.maximum(start_index, 0), tf.maximum(start_index, 0) + lengths)
        batch = tf.shape(input_ids)[0]
        flat_index = offsets + (tf.range(batch) * n)[:, None]
        span_ids = tf.gather(tf.reshape(input_ids, [-1]), flat_index)
        answer = self.tokenizer.detokenize(span_ids)
        return tf.where(has_span, tf.strings.strip(answer), "")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                                  tf.TensorSpec([None], tf.string, name="context")])
    def serve_text(self, question: tf.Tensor, context: tf.Tensor) -> Dict[str, tf.Tensor]:
        """question, context string [batch] -> answer_text string [batch], score, start/end index and logits."""
        inputs, first, last = self.encode(question, context)
        out = self.head(inputs)
        score, start_index, end_index, has_span = self.best_span(out["start_logits"], out["end_logits"], first, last)
        answer = self.span_text(inputs["input_ids"], start_index, end_index, has_span)
        out.update(answer_text=answer, score=score, start_index=start_index, end_index=end_index)
        return out

    @tf.function(input_signature=[ENCODED_SPEC])
    def serve_encoded(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """input_ids, input_mask, segment_ids int32 [batch, length] -> the logits of `head`."""
        return self.head(self.clip(**inputs))


def build(model: keras.Model, config: GMLPConfig, max_seq_length: int, tokenizer: Any,
          max_query_length: Optional[int], max_answer_length: int) -> Tuple[SquadModule, Signatures, Dict[str, Any]]:
    """The SQuAD module, its signatures and its export info (the query and answer lengths).

    max_query_length defaults to min(64, (max_seq_length - 3) // 2).
    """
    if max_query_length is None:
        max_query_length = min(64, (max_seq_length - 3) // 2)
    if max_query_length < 1 or max_seq_length <= max_query_length + 3:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for context after a question of "
                         f"max_query_length {max_query_length}; it must be > {max_query_length + 3}")
    if max_answer_length < 1:
        raise ValueError(f"--max_answer_length must be >= 1, got {max_answer_length}")
    module = SquadModule(model, config, max_seq_length, tokenizer, max_query_length, max_answer_length)
    signatures = {"serving_default": module.serve_text, "encoded": module.serve_encoded}
    return module, signatures, {"max_query_length": max_query_length, "max_answer_length": max_answer_length}
