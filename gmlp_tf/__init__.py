"""gmlp_tf: gMLP and aMLP ("Pay Attention to MLPs", Liu et al., 2021) in TensorFlow 2 / Keras 3.

Where things are (docs/architecture.md has the whole map):
  utils/                  progress lines, data fetched from package registries (imports nothing of ours)
  config.py, presets.py   GMLPConfig (JSON like bert_config.json) and the paper's models by name
  layers/                 the spatial projection, the SGU, tiny attention, drop path, the gMLP block,
                          the Table 3 baseline blocks (transformer, MLP-Mixer)
  models/                 the token encoder, heads, task models, GMLPBackbone, the vision model, timm
                          import; reading a run's output directory and its checkpoint files
  tokenization.py         SentencePiece vocabularies and BERT's input framing
  counting.py, summary.py parameter and FLOP counts, beside the paper's
  runtime/                the Task interface and the one runner of every task: flags, start-up, output
                          directories, resumable training, checkpoints, results
  finetuning.py           the paper's finetuning recipe (Table 9), shared by GLUE and SQuAD
  tasks/                  one package per task: pretraining, glue, squad, imagenet
  export/, analysis/      SavedModels with raw-input serving signatures; the spatial-weight figures
  studies/, benchmarks/   the Table 3 ablation; speed beside BERT and timm
"""

from gmlp_tf.config import GMLPConfig
from gmlp_tf.layers.baseline_blocks import MixerBlock, SelfAttention, TransformerBlock
from gmlp_tf.layers.drop_path import DropPath
from gmlp_tf.layers.gmlp_block import GMLPBlock
from gmlp_tf.layers.spatial_gating import SpatialGatingUnit
from gmlp_tf.layers.spatial_projection import SpatialProjection, toeplitz_matrix
from gmlp_tf.layers.tiny_attention import TinyAttention
from gmlp_tf.models.backbone import GMLPBackbone
from gmlp_tf.models.encoder import GMLPEncoder
from gmlp_tf.models.heads import ClassificationHead, MaskedLMHead, SpanHead
from gmlp_tf.models.task_models import (
    GMLPForPretraining,
    GMLPForQuestionAnswering,
    GMLPForSequenceClassification,
    build_model,
)
from gmlp_tf.models.vision import GMLPVisionClassifier
from gmlp_tf.presets import build_preset, get_preset_config, list_presets

__version__ = "0.1.0"

__all__ = [
    "GMLPConfig", "GMLPBackbone", "GMLPEncoder", "GMLPBlock", "ClassificationHead", "MaskedLMHead", "SpanHead",
    "GMLPForPretraining", "GMLPForQuestionAnswering", "GMLPForSequenceClassification", "build_model",
    "build_preset", "get_preset_config", "list_presets", "SpatialGatingUnit", "SpatialProjection",
    "toeplitz_matrix", "TinyAttention", "DropPath", "GMLPVisionClassifier", "SelfAttention",
    "TransformerBlock", "MixerBlock",
]
