"""The token encoder: BERT's input protocol, L gMLP blocks (or Table 3 baseline blocks)."""

from typing import Any, Dict, Mapping, Optional, Tuple, Union

import keras
from keras import ops

from gmlp_tf.config import GMLPConfig, as_config
from gmlp_tf.layers import Shape, Tensor
from gmlp_tf.layers.blocks import blocks_from_config
from gmlp_tf.layers.spatial_projection import checked_length

# BERT's feature names, in the order of a serving signature.
TEXT_INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")


def text_inputs(masked_lm_positions: bool = False) -> Dict[str, keras.KerasTensor]:
    """Named int32 keras.Inputs of the token models: the serving signature of export().

    Args:
      masked_lm_positions: also an int32 [batch, num_predictions] "masked_lm_positions".

    Returns:
      dict of int32 [batch, seq_length] "input_ids", "input_mask", "segment_ids" (any length up
      to max_seq_length), plus "masked_lm_positions" if asked.
    """
    names = TEXT_INPUT_NAMES + (("masked_lm_positions",) if masked_lm_positions else ())
    return {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in names}


def text_initializer(config: GMLPConfig) -> keras.initializers.Initializer:
    """BERT's initializer for the token model's embeddings and dense kernels."""
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


@keras.saving.register_keras_serializable(package="gmlp_tf")
class GMLPEncoder(keras.layers.Layer):
    """gMLP / aMLP token encoder, and that of the Table 3 baselines (config.architecture).

    Token embeddings plus segment embeddings, dropout, config.num_layers blocks, a final
    LayerNorm. gMLP and MLP-Mixer have no position embeddings (their token mixing carries
    position); a transformer with position_encoding "absolute" adds BERT's learned position
    embeddings (one per position up to max_seq_length) to the token and segment embeddings,
    one with "relative" has the position bias in its attention. Inputs follow BERT:
    `[CLS] a [SEP] b [SEP]` then padding, with segment ids 0 / 1.

    The token embedding is a ReversibleEmbedding so that the masked-LM head can reuse it as
    its output projection (tied weights).

    Args:
      config: a text GMLPConfig or its dict.

    Call args:
      inputs: dict with
        "input_ids": int [batch, n], n <= config.max_seq_length;
        "segment_ids": optional int [batch, n] (zeros if absent);
        "input_mask": optional [batch, n], 1 for real tokens. Attention (aMLP's tiny
          attention, the transformer's) masks padded keys with it when
          config.attention_padding_mask is true (the default, as BERT); the SGU and MLP-Mixer's
          token mixing zero padded tokens only when config.sgu_padding_mask is true (off, as in
          the paper: gMLP learns to ignore padding).
      training: enables dropout and stochastic depth.

    Returns:
      dict with "sequence_output" [batch, n, d_model] and "cls_output" [batch, d_model]
      (the final representation of the first token, `[CLS]`).
    """

    def __init__(self, config: Union[GMLPConfig, Dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = as_config(config)
        cfg = self.config
        if cfg.modality != "text":
            raise ValueError(f"GMLPEncoder needs a text config, got modality {cfg.modality!r}")
        self.token_embedding = keras.layers.ReversibleEmbedding(
            cfg.vocab_size,
            cfg.d_model,
            embeddings_initializer=text_initializer(cfg),
            reverse_dtype="float32",  # Masked-LM logits stay float32 under mixed precision.
            name="token_embedding", dtype=self.dtype_policy,
        )
        self.segment_embedding = keras.layers.Embedding(
            cfg.type_vocab_size,
            cfg.d_model,
            embeddings_initializer=text_initializer(cfg),
            name="segment_embedding", dtype=self.dtype_policy,
        )
        # Only when used, so that the variables of the other models stay as they were.
        self.position_embedding = None
        if cfg.position_encoding == "absolute":
            self.position_embedding = keras.layers.Embedding(
                cfg.max_seq_length,
                cfg.d_model,
                embeddings_initializer=text_initializer(cfg),
                name="position_embedding", dtype=self.dtype_policy,
            )
        self.embedding_dropout = keras.layers.Dropout(
            cfg.hidden_dropout_prob, name="embedding_dropout", dtype=self.dtype_policy)
        self.blocks = blocks_from_config(
            cfg,
            kernel_initializer=keras.initializers.serialize(text_initializer(cfg)),
            bias_initializer="zeros",
            dtype=self.dtype_policy,
        )
        self.final_norm = keras.layers.LayerNormalization(
            epsilon=cfg.layer_norm_eps, name="final_norm", dtype=self.dtype_policy)

    def build(self, input_shape: Union[Shape, Mapping[str, Shape]]) -> None:
        ids_shape = input_shape["input_ids"] if isinstance(input_shape, dict) else input_shape
        hidden_shape = tuple(ids_shape) + (self.config.d_model,)
        self.token_embedding.build(ids_shape)
        self.segment_embedding.build(ids_shape)
        if self.position_embedding is not None:
            self.position_embedding.build((self.config.max_seq_length,))
        for block in self.blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)

    def embed(self, inputs: Mapping[str, Tensor], training: Optional[bool] = None
              ) -> Tuple[Tensor, Optional[Tensor]]:
        """The first block's input [batch, n, d_model] and the padding mask [batch, n] the blocks
        read (None where they read none); the blocks and final_norm do the rest of `call`."""
        if not isinstance(inputs, dict) or "input_ids" not in inputs:
            raise ValueError("GMLPEncoder expects a dict with at least 'input_ids'")
        input_ids = inputs["input_ids"]
        if len(input_ids.shape) != 2:
            raise ValueError(f"input_ids must be [batch, seq_length], got shape {input_ids.shape}")
        segment_ids = inputs.get("segment_ids")
        if segment_ids is None:
            segment_ids = ops.zeros_like(input_ids)
        padding_mask = inputs.get("input_mask") if self.config.blocks_read_padding_mask else None

        x = self.token_embedding(input_ids) + self.segment_embedding(segment_ids)
        if self.position_embedding is not None:
            n = checked_length(input_ids, self.config.max_seq_length, "the position embedding")
            x = x + self.position_embedding(ops.arange(n))[None]
        return self.embedding_dropout(x, training=training), padding_mask

    def call(self, inputs: Mapping[str, Tensor], training: Optional[bool] = None) -> Dict[str, Tensor]:
        x, padding_mask = self.embed(inputs, training)
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        x = self.final_norm(x)
        return {"sequence_output": x, "cls_output": x[:, 0, :]}

    def compute_output_spec(
        self, inputs: Mapping[str, keras.KerasTensor], training: Optional[bool] = None
    ) -> Dict[str, keras.KerasTensor]:
        # Symbolic inputs of unknown length (keras.Input((None,))) would otherwise be traced
        # at a placeholder length that may exceed max_seq_length.
        batch, n = tuple(inputs["input_ids"].shape)
        d_model = self.config.d_model
        return {
            "sequence_output": keras.KerasTensor((batch, n, d_model), dtype=self.compute_dtype),
            "cls_output": keras.KerasTensor((batch, d_model), dtype=self.compute_dtype),
        }

    def get_config(self) -> Dict[str, Any]:
        base = super().get_config()
        base.update(config=self.config.to_dict())
        return base
