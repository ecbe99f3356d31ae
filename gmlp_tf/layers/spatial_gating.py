"""The Spatial Gating Unit (SGU, paper section 2.1) and its Table 3 variants."""

from typing import Any, Dict, Optional

import keras
from keras import ops

from gmlp_tf.config import GATINGS
from gmlp_tf.layers import Shape, Tensor
from gmlp_tf.layers.spatial_projection import SpatialProjection


@keras.saving.register_keras_serializable(package="gmlp_tf")
class SpatialGatingUnit(keras.layers.Layer):
    """s(Z): gates the channels of each token by a linear projection across tokens.

    With f(X) = W LayerNorm(X) + b over the token axis (see SpatialProjection):
      split (the SGU):  Z = [Z1, Z2] along channels, s = Z1 * f(Z2);
      multiplicative:   s = Z * f(Z);
      additive:         s = Z + f(Z);
      linear:           s = f(Z).
    Z1 is the first half of the channels and Z2, the gate, the second, as in timm. For aMLP
    the tiny attention's output is added to f(.) before the gating (paper, Figure 6).

    Args:
      max_length: the most tokens an input may have (see SpatialProjection).
      gating: "split", "multiplicative", "additive" or "linear".
      spatial_kind: "dense" or "toeplitz", the kind of f's W.
      causal: token i reads only tokens j <= i.
      layer_norm_eps: epsilon of the LayerNorm before f.
      spatial_init_stddev: stddev of W's normal initializer.
      spatial_implementation: "auto", "matmul" or "fft" (see SpatialProjection).

    Call args:
      inputs: Z, [batch, n, d_ffn].
      attention_output: optional [batch, n, output_width] from TinyAttention.
      padding_mask: optional [batch, n], 1 for real tokens (see SpatialProjection).

    Returns:
      [batch, n, output_width]: d_ffn / 2 for "split", d_ffn for the other variants.
    """

    def __init__(
        self,
        max_length: int,
        gating: str = "split",
        spatial_kind: str = "dense",
        causal: bool = False,
        layer_norm_eps: float = 1e-5,
        spatial_init_stddev: float = 1e-6,
        spatial_implementation: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if gating not in GATINGS:
            raise ValueError(f"gating must be one of {', '.join(GATINGS)}; got {gating!r}")
        self.max_length = int(max_length)
        self.gating = gating
        self.spatial_kind = spatial_kind
        self.causal = bool(causal)
        self.layer_norm_eps = float(layer_norm_eps)
        self.spatial_init_stddev = float(spatial_init_stddev)
        self.spatial_implementation = spatial_implementation
        self.norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="norm", dtype=self.dtype_policy)
        self.proj = SpatialProjection(
            self.max_length,
            kind=spatial_kind,
            causal=self.causal,
            kernel_stddev=self.spatial_init_stddev,
            implementation=spatial_implementation,
            name="proj", dtype=self.dtype_policy,
        )

    def output_width(self, d_ffn: int) -> int:
        """The channels of the output for d_ffn input channels."""
        return d_ffn // 2 if self.gating == "split" else d_ffn

    def build(self, input_shape: Shape) -> None:
        d_ffn = input_shape[-1]
        if self.gating == "split" and d_ffn % 2:
            raise ValueError(f"the split SGU needs an even number of channels, got {d_ffn}")
        gate_shape = tuple(input_shape[:-1]) + (self.output_width(d_ffn),)
        self.norm.build(gate_shape)
        self.proj.build(gate_shape)

    def call(
        self,
        inputs: Tensor,
        attention_output: Optional[Tensor] = None,
        padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        if self.gating == "split":
            return self.gate_halves(*ops.split(inputs, 2, axis=-1), attention_output, padding_mask)
        gate = self.proj(self.norm(inputs), padding_mask=padding_mask)
        if attention_output is not None:
            gate = gate + attention_output
        if self.gating == "multiplicative":
            return inputs * gate
        if self.gating == "additive":
            return inputs + gate
        return gate

    def gate_halves(
        self,
        z1: Tensor,
        z2: Tensor,
        attention_output: Optional[Tensor] = None,
        padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """The split SGU on halves the caller holds apart: Z1 * (f(Z2) + attention_output).

        GMLPBlock computes Z1 and Z2 with two matmuls rather than slicing one Z (see its call);
        `call` splits Z and comes here. Needs a built layer with gating "split".

        Args:
          z1, z2: [batch, n, d_ffn / 2] each.
          attention_output, padding_mask: as for call.

        Returns:
          [batch, n, d_ffn / 2].
        """
        gate = self.proj(self.norm(z2), padding_mask=padding_mask)
        if attention_output is not None:
            gate = gate + attention_output
        return z1 * gate

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape[:-1]) + (self.output_width(input_shape[-1]),)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            max_length=self.max_length,
            gating=self.gating,
            spatial_kind=self.spatial_kind,
            causal=self.causal,
            layer_norm_eps=self.layer_norm_eps,
            spatial_init_stddev=self.spatial_init_stddev,
            spatial_implementation=self.spatial_implementation,
        )
        return config
