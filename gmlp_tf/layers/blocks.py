"""The blocks of a config, whatever its architecture: gMLP / aMLP or a Table 3 baseline."""

from typing import Any, Callable, Dict, List

import keras

from gmlp_tf.config import GMLPConfig
from gmlp_tf.layers import InitializerLike
from gmlp_tf.layers.baseline_blocks import MixerBlock, TransformerBlock
from gmlp_tf.layers.gmlp_block import GMLPBlock


def _gmlp_block(config: GMLPConfig, **common: Any) -> GMLPBlock:
    return GMLPBlock(
        config.d_model,
        config.d_ffn,
        config.seq_length,
        spatial_kind=config.spatial_kind,
        gating=config.gating,
        attention_size=config.attention_size,
        causal=config.causal,
        attention_dropout=config.attention_dropout_prob,
        sgu_layer_norm_eps=config.sgu_layer_norm_eps,
        spatial_init_stddev=config.spatial_init_stddev,
        spatial_implementation=config.spatial_implementation,
        sgu_padding_mask=config.sgu_padding_mask,
        attention_padding_mask=config.attention_padding_mask,
        **common,
    )


def _transformer_block(config: GMLPConfig, **common: Any) -> TransformerBlock:
    return TransformerBlock(
        config.d_model,
        config.d_ffn,
        config.num_attention_heads,
        config.seq_length,
        relative_positions=config.position_encoding == "relative",
        attention_content=config.attention_content,
        causal=config.causal,
        attention_dropout=config.attention_dropout_prob,
        **common,
    )


def _mixer_block(config: GMLPConfig, **common: Any) -> MixerBlock:
    return MixerBlock(config.d_model, config.d_ffn, config.d_spatial, config.seq_length, **common)


_BLOCK_FACTORIES: Dict[str, Callable[..., keras.layers.Layer]] = {
    "gmlp": _gmlp_block,
    "transformer": _transformer_block,
    "mlp_mixer": _mixer_block,
}


def blocks_from_config(
    config: GMLPConfig,
    kernel_initializer: InitializerLike,
    bias_initializer: InitializerLike,
    name_prefix: str = "block",
    dtype: Any = None,
) -> List[keras.layers.Layer]:
    """Builds the config's L blocks, each with its stochastic-depth survival probability.

    config.architecture picks the block: GMLPBlock ("gmlp"), TransformerBlock ("transformer")
    or MixerBlock ("mlp_mixer"); every kind takes [batch, n, d_model] and an optional padding
    mask, so that the encoder runs them alike (config.blocks_read_padding_mask says whether it
    passes one; a gMLP block then applies it as config.sgu_padding_mask and
    config.attention_padding_mask say).

    Args:
      config: a GMLPConfig.
      kernel_initializer, bias_initializer: Keras initializer names or configs for every dense
        projection of the blocks (each block gets fresh instances).
      name_prefix: blocks are named f"{name_prefix}_{i}".
      dtype: the blocks' dtype policy (None: the global policy).

    Returns:
      A list of config.num_layers blocks.
    """
    make_block = _BLOCK_FACTORIES[config.architecture]
    return [
        make_block(
            config,
            dropout=config.hidden_dropout_prob,
            survival_prob=survival_prob,
            layer_norm_eps=config.layer_norm_eps,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            name=f"{name_prefix}_{i}",
            dtype=dtype,
        )
        for i, survival_prob in enumerate(config.block_survival_probs())
    ]
