"""gmlp_tf: gMLP and aMLP ("Pay Attention to MLPs", Liu et al., 2021) in TensorFlow 2 / Keras 3.

Where things are:
  config.py              GMLPConfig, read and written as JSON like bert_config.json
  spatial_projection.py  f(Z) = W Z + b over tokens: dense or Toeplitz W, causal, shorter inputs
  spatial_gating.py      the Spatial Gating Unit and its Table 3 variants
  tiny_attention.py      the single-head attention of aMLP
  gmlp_block.py          the gMLP block (LayerNorm, U, GELU, SGU, V, residual, stochastic depth)
  encoder.py             the token encoder (BERT's input protocol)
  heads.py               masked-LM, classification and SQuAD span heads
  modeling.py            task models and build_model
  vision_model.py        the ImageNet classifier, laid out as timm's gMLP
  presets.py             the paper's models by name (configs/*.json)
  counting.py            parameter and FLOP counts from a config
  summary.py             those counts beside the paper's figures
"""

from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.encoder import GMLPEncoder
from gmlp_tf.layers.gmlp_block import GMLPBlock
from gmlp_tf.models.heads import ClassificationHead, MaskedLMHead, SpanHead
from gmlp_tf.models.task_models import (
    GMLPForPretraining,
    GMLPForQuestionAnswering,
    GMLPForSequenceClassification,
    build_model,
)
from gmlp_tf.presets import build_preset, get_preset_config, list_presets
from gmlp_tf.layers.spatial_gating import SpatialGatingUnit
from gmlp_tf.layers.spatial_projection import SpatialProjection, toeplitz_matrix
from gmlp_tf.layers.tiny_attention import TinyAttention
from gmlp_tf.models.vision import GMLPVisionClassifier

__version__ = "0.1.0"

__all__ = [
    "GMLPConfig", "GMLPEncoder", "GMLPBlock", "ClassificationHead", "MaskedLMHead", "SpanHead",
    "GMLPForPretraining", "GMLPForQuestionAnswering", "GMLPForSequenceClassification", "build_model",
    "build_preset", "get_preset_config", "list_presets", "SpatialGatingUnit", "SpatialProjection",
    "toeplitz_matrix", "TinyAttention", "GMLPVisionClassifier",
]
