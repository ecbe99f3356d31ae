"""keras-hub's BERT masked LM, built and counted for the side-by-side pretraining benchmark.

keras-hub is not a dependency of the library: `pip install ".[bench]"` adds it.
"""

from typing import Dict, Mapping

import keras
import numpy as np


def keras_hub_available() -> bool:
    try:
        import keras_hub  # noqa: F401  (only whether it imports)
    except ImportError:
        return False
    return True


def build_bert_masked_lm(vocab_size: int, num_layers: int, num_heads: int, hidden_dim: int, intermediate_dim: int,
                         max_seq_length: int, num_predictions: int, dropout: float = 0.0) -> keras.Model:
    """keras_hub BertBackbone plus its MaskedLMHead (tied embeddings), as BertMaskedLM arranges them.

    Inputs: token_ids, segment_ids int32 [batch, n], padding_mask bool [batch, n],
    mask_positions int32 [batch, num_predictions]. Output: logits [batch, num_predictions, vocab_size].
    """
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocab_size, num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim, dropout=dropout, max_sequence_length=max_seq_length)
    head = keras_hub.layers.MaskedLMHead(vocabulary_size=vocab_size, token_embedding=backbone.token_embedding,
                                         intermediate_activation="gelu", name="mlm_head")
    mask_positions = keras.Input((num_predictions,), dtype="int32", name="mask_positions")
    sequence = backbone(backbone.input)["sequence_output"]
    return keras.Model({**backbone.input, "mask_positions": mask_positions}, head(sequence, mask_positions))


def bert_batch(features: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """BERT pretraining features (input_ids, input_mask, ...) renamed to keras-hub's inputs."""
    return {"token_ids": features["input_ids"], "segment_ids": features["segment_ids"],
            "padding_mask": features["input_mask"].astype(bool), "mask_positions": features["masked_lm_positions"]}


def bert_flops_per_example(num_layers: int, hidden_dim: int, intermediate_dim: int, seq_length: int,
                           num_predictions: int, vocab_size: int) -> int:
    """Forward FLOPs (2 x multiply-adds) of one example, counted as counting.py counts gMLP's.

    Per token and layer: Q, K, V and output projections (4 d^2), the FFN (2 d d_ff) and the
    attention logits and weighted sum (2 n d); the head: transform (d^2) and tied output
    projection (d V) at each predicted position. Embedding lookups, norms and softmax are not counted.
    """
    d, n = hidden_dim, seq_length
    per_token = 4 * d * d + 2 * d * intermediate_dim + 2 * n * d
    head = num_predictions * (d * d + d * vocab_size)
    return 2 * (num_layers * n * per_token + head)
