"""Where the ablation's Transformers attend: the measurement behind their plateau at small budgets.

With Adam each step moves a weight by about the learning rate, so a zero-initialised relative
position bias, or query and key projections drawn at stddev 0.02, need many steps before any key
takes a visible share of a query's attention; until then every query averages its context nearly
uniformly and the model can only predict token frequencies (the unigram plateau). These figures,
taken on one held-out batch at every checkpoint, show how far from uniform the attention is.
"""

from typing import Any, Dict, Mapping, Optional

import keras
from keras import ops

from gmlp_tf.layers.baseline_blocks import TransformerBlock
from gmlp_tf.models.encoder import GMLPEncoder
from gmlp_tf.runtime.training import EvaluateFn
from gmlp_tf.tasks.pretraining import recipe as mlm
from gmlp_tf.tasks.pretraining.task import PretrainingTask

PREFIX = "attention/"


def attention_statistics(encoder: GMLPEncoder, inputs: Mapping[str, Any]) -> Dict[str, float]:
    """The attention of every Transformer block of `encoder` on one batch.

    Args:
      encoder: a text GMLPEncoder (blocks without attention are run, not measured).
      inputs: input_ids, segment_ids and input_mask [batch, n], as the pretraining pipeline gives them.

    Returns:
      For each attention block l (its index among the encoder's blocks):
        attention/max_weight_l: the largest weight any real query gives any key;
        attention/mean_peak_weight_l: each real query's largest weight, averaged over queries and heads;
        attention/mean_self_weight_l: the weight each real query gives its own position, averaged so;
        attention/max_relative_bias_l: the largest |r[h, k]| of its relative position bias, if it has one;
      and attention/uniform_weight: what mean_peak_weight would be for uniform attention (the mean of
      1 / real keys over real queries). {} when no block attends.
    """
    x, padding_mask = encoder.embed(dict(inputs), training=False)
    real = ops.cast(ops.convert_to_tensor(inputs["input_mask"]), "float32")  # [batch, n]
    queries = ops.sum(real)
    stats: Dict[str, float] = {}
    for index, block in enumerate(encoder.blocks):
        if isinstance(block, TransformerBlock):
            attention = block.attention
            probs = attention.attention_probs(block.attention_norm(x), padding_mask)  # [batch, heads, n, n]
            peak = ops.max(probs, axis=-1) * real[:, None, :]  # [batch, heads, n]; 0 at padding queries.
            stats[f"{PREFIX}max_weight_{index}"] = float(ops.max(peak))
            heads = ops.shape(probs)[1]
            stats[f"{PREFIX}mean_peak_weight_{index}"] = float(ops.sum(peak) / (queries * heads))
            own = ops.diagonal(probs, axis1=-2, axis2=-1) * real[:, None, :]  # [batch, heads, n]
            stats[f"{PREFIX}mean_self_weight_{index}"] = float(ops.sum(own) / (queries * heads))
            if attention.relative_positions:
                stats[f"{PREFIX}max_relative_bias_{index}"] = float(ops.max(ops.abs(attention.relative_bias)))
        x = block(x, padding_mask=padding_mask, training=False)
    if stats:
        keys = ops.sum(real, axis=1, keepdims=True)  # Real tokens per example: the keys of each query.
        stats[f"{PREFIX}uniform_weight"] = float(ops.sum(real / keys) / queries)
    return stats


class ProbedPretraining(PretrainingTask):
    """The pretraining task, with attention_statistics on the first held-out batch added to the
    held-out results at every checkpoint (and so to logs/eval)."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._probe_inputs: Optional[Dict[str, Any]] = None

    def checkpoint_evaluator(self) -> Optional[EvaluateFn]:
        evaluate = super().checkpoint_evaluator()
        if evaluate is None:
            return None

        def evaluate_and_probe(model: keras.Model) -> Dict[str, Any]:
            results = dict(evaluate(model))
            results.update(attention_statistics(model.encoder, self._first_held_out_batch()))
            return results

        return evaluate_and_probe

    def _first_held_out_batch(self) -> Dict[str, Any]:
        if self._probe_inputs is None:
            batch = next(iter(self.dataset(self.eval_source, False, self.eval_batch_size)))
            self._probe_inputs = mlm.split_features(batch)[0]
        return self._probe_inputs
