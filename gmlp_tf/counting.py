"""Parameter and FLOP counts computed from a GMLPConfig, without building the model.

Building gMLP_xlarge takes minutes and gigabytes; these closed forms take microseconds and
are checked against real Keras builds in tests/test_counting.py. FLOPs are 2 x multiply-adds
of the matrix products of one forward pass for one example, as the paper counts them
(normalisations, activations and the gating product are left out).
"""

from typing import Any, Dict, Optional, Union

from gmlp_tf.config import GMLPConfig, as_config


def block_parameters(config: GMLPConfig) -> int:
    """Parameters of one block of the config's architecture (gMLP / aMLP, transformer, Mixer)."""
    if config.architecture == "transformer":
        return _transformer_block_parameters(config)
    if config.architecture == "mlp_mixer":
        return _mixer_block_parameters(config)
    d, e, n, g = config.d_model, config.d_ffn, config.seq_length, config.gate_width
    count = 2 * d  # Block LayerNorm.
    count += d * e + e  # U.
    count += 2 * g  # SGU LayerNorm (on the gate's g channels).
    count += (n * n if config.spatial_kind == "dense" else 2 * n - 1) + n  # W and b.
    count += g * d + d  # V.
    a = config.attention_size
    if a:
        count += 3 * (d * a + a) + a * g + g  # Tiny attention: q, k, v, output projection.
    return count


def _channel_mlp_parameters(config: GMLPConfig) -> int:
    """Two LayerNorms (one per branch) and the d -> d_ffn -> d MLP of a baseline block."""
    d, e = config.d_model, config.d_ffn
    return 2 * 2 * d + d * e + e + e * d + d


def _transformer_block_parameters(config: GMLPConfig) -> int:
    d, n = config.d_model, config.seq_length
    projections = 4 if config.attention_content else 2  # q, k, v, output; no q, k without content.
    count = projections * (d * d + d)
    if config.position_encoding == "relative":
        count += config.num_attention_heads * (2 * n - 1)  # One bias per head and offset.
    return count + _channel_mlp_parameters(config)


def _mixer_block_parameters(config: GMLPConfig) -> int:
    n, s = config.seq_length, config.d_spatial
    return n * s + s + s * n + n + _channel_mlp_parameters(config)  # Token MLP, then channels.


def head_parameters(config: GMLPConfig, task: str, num_labels: int = 2) -> int:
    """Parameters of a task head on the text encoder ("encoder" has none)."""
    d = config.d_model
    if task == "pretraining":
        return d * d + d + 2 * d + config.vocab_size  # Transform, LayerNorm, output bias (tied E).
    if task == "classification":
        return d * d + d + d * num_labels + num_labels
    if task == "squad":
        return 2 * d + 2
    if task == "encoder":
        return 0
    raise ValueError(f"unknown text task {task!r}")


def count_parameters(
    config: Union[GMLPConfig, Dict[str, Any]], task: Optional[str] = None, num_labels: int = 2
) -> int:
    """Parameters of the model build_model(config, task) would build.

    Args:
      config: a GMLPConfig or its dict.
      task: as for modeling.build_model; defaults to "vision" or "pretraining".
      num_labels: labels of the classification head.
    """
    config = as_config(config)
    d, blocks = config.d_model, config.num_layers * block_parameters(config)
    if config.modality == "image":
        stem = config.patch_size**2 * config.num_channels * d + d
        return stem + blocks + 2 * d + d * config.num_classes + config.num_classes
    task = task or "pretraining"
    embeddings = (config.vocab_size + config.type_vocab_size) * d
    if config.position_encoding == "absolute":
        embeddings += config.max_seq_length * d
    return embeddings + blocks + 2 * d + head_parameters(config, task, num_labels)


def block_multiply_adds(config: GMLPConfig, n: Optional[int] = None) -> int:
    """Multiply-adds of one block over n tokens (default: the config's length)."""
    n = config.seq_length if n is None else n
    d, e, g, a = config.d_model, config.d_ffn, config.gate_width, config.attention_size
    if config.architecture == "transformer":
        per_token = 2 * d * e + 2 * d * d + n * d  # FFN; v and output; (softmax) v over all heads.
        if config.attention_content:
            per_token += 2 * d * d + n * d  # q and k; q k^T over all heads.
        return n * per_token
    if config.architecture == "mlp_mixer":
        # Token MLP: n -> d_spatial -> n for each of the d channels; then the channel MLP.
        return 2 * n * config.d_spatial * d + n * 2 * d * e
    per_token = d * e + n * g + g * d  # U, the spatial projection (n^2 g / n), V.
    if a:
        per_token += 3 * d * a + 2 * n * a + a * g  # q, k, v; q k^T and (softmax) v; output.
    return n * per_token


def default_num_predictions(config: GMLPConfig) -> int:
    """Masked positions scored by the MLM head: 15% of the tokens, as BERT."""
    return int(round(0.15 * config.seq_length))


def count_flops(config: Union[GMLPConfig, Dict[str, Any]], num_predictions: Optional[int] = None) -> int:
    """FLOPs (2 x multiply-adds) of one example's forward pass at the config's full length.

    For text configs this is the masked-LM model, its head applied to `num_predictions`
    positions (default 15% of the tokens); for image configs, the classifier.
    """
    config = as_config(config)
    n, d = config.seq_length, config.d_model
    macs = config.num_layers * block_multiply_adds(config)
    if config.modality == "image":
        macs += n * config.patch_size**2 * config.num_channels * d  # Stem.
        macs += d * config.num_classes  # Head.
    else:
        p = default_num_predictions(config) if num_predictions is None else num_predictions
        macs += p * (d * d + d * config.vocab_size)  # Transform and tied output projection.
    return 2 * macs
