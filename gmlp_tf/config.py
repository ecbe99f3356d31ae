"""GMLPConfig: the model hyperparameters, read from and written to JSON like bert_config.json."""

import copy
import dataclasses
import json
import os
from typing import Any, List, Optional, Union

MODALITIES = ("text", "image")
# The spatial projection's W and the Table 3 gating variants (the layers take these names).
SPATIAL_KINDS = ("dense", "toeplitz")
# How a Toeplitz W is applied (the same function either way; see SpatialProjection).
SPATIAL_IMPLEMENTATIONS = ("auto", "matmul", "fft")
GATINGS = ("split", "multiplicative", "additive", "linear")
DROP_PATH_SCHEDULES = ("uniform", "linear")
# The Table 3 baselines share the encoder, task models and jobs with gMLP; aMLP is gMLP with
# attention_size > 0.
ARCHITECTURES = ("gmlp", "transformer", "mlp_mixer")
POSITION_ENCODINGS = ("none", "absolute", "relative")


@dataclasses.dataclass
class GMLPConfig:
    """Hyperparameters of a gMLP or aMLP model, or of one of the Table 3 baselines.

    One class serves the token models (BERT-style encoder, masked-LM, classifier, SQuAD) and the
    vision classifier; `modality` says which. Fields that do not apply to a modality are ignored
    by it (the vision model has no vocabulary, the text model no image size).

    Attributes:
      modality: "text" or "image".
      vocab_size: size of the token vocabulary (text).
      type_vocab_size: number of segment ids (text; 2, as in BERT).
      d_model: width of the residual stream.
      d_ffn: width after the channel expansion U (the SGU splits it in two halves).
      num_layers: number of gMLP blocks L.
      max_seq_length: n, the number of tokens the spatial weights are sized for (text). Shorter
        inputs use the leading block of the weights; longer inputs are an error.
      spatial_kind: "dense" (an n x n matrix W) or "toeplitz" (2n - 1 weights, Appendix C).
      gating: the Table 3 variant: "split" (the SGU, s = Z1 * f(Z2)), "multiplicative"
        (s = Z * f(Z)), "additive" (s = Z + f(Z)) or "linear" (s = f(Z)).
      attention_size: size of the single-head tiny attention of aMLP; 0 for gMLP.
      causal: mask the spatial weights (and tiny attention) so token i sees only tokens j <= i.
      sgu_padding_mask: zero padded tokens (input_mask 0) before the spatial projection of the
        SGU (and before MLP-Mixer's token-mixing MLP), so that they cannot leak into real tokens.
        Off, as in the paper: gMLP learns to ignore padding in finetuning.
      attention_padding_mask: attention (aMLP's tiny attention, the transformer's self-attention)
        never reads padded keys when an input_mask is given, as BERT. On by default.
        Old config files with the single field `use_padding_mask` are read by from_dict.
      hidden_dropout_prob: dropout on the embeddings and on each block's output.
      attention_dropout_prob: dropout on the tiny attention probabilities.
      survival_prob: stochastic depth survival probability of a block (1.0 disables it).
      drop_path_schedule: "uniform" (every block survives with survival_prob, as timm's gMLP)
        or "linear" (from 1.0 at the first block to survival_prob at the last).
      image_size: side of the square input image (image).
      patch_size: side of the square patches cut by the stem (image).
      num_channels: image channels (image).
      num_classes: classes of the vision head (image).
      initializer_range: stddev of the truncated-normal initializer of the token model's
        embeddings and dense kernels, as in BERT.
      spatial_init_stddev: stddev of the normal initializer of W; b starts at 1, so that each
        block starts as a plain FFN.
      layer_norm_eps: epsilon of the block, final and head LayerNorms (timm: 1e-6).
      sgu_layer_norm_eps: epsilon of the LayerNorm inside the SGU (timm: 1e-5).
      architecture: the blocks: "gmlp" (gMLP, or aMLP with attention_size > 0), "transformer"
        (pre-LayerNorm BERT blocks) or "mlp_mixer" (MLP-Mixer blocks). The baselines are for
        text only and ignore the gMLP-only fields (spatial_kind, gating, spatial_init_stddev,
        sgu_layer_norm_eps); attention_size must stay 0 for them.
      num_attention_heads: heads of the transformer's self-attention; d_model must be divisible
        by it. Ignored by the other architectures.
      position_encoding: "none", "absolute" (BERT's learned position embeddings, max_seq_length
        of them, added to the token and segment embeddings) or "relative" (a learned scalar
        bias per layer, head and offset j - i in the attention logits, 2n - 1 offsets,
        unbucketed). Only the transformer may use one: gMLP and MLP-Mixer have none.
      attention_content: whether the transformer's attention logits include the content term
        q k^T. False is the paper's "rel pos - attn" baseline: no query and key projections,
        the logits are the relative position bias alone (needs position_encoding "relative").
      d_spatial: hidden width of MLP-Mixer's token-mixing MLP; must be positive for
        "mlp_mixer", ignored by the other architectures.
      spatial_implementation: how a Toeplitz W is computed, not what it computes: "matmul"
        (the n x n matrix of Appendix C), "fft" (O(n log n), for long sequences) or "auto"
        (the FFT from 1024 tokens on). "fft" needs spatial_kind "toeplitz".
    """

    modality: str = "text"
    vocab_size: int = 32000
    type_vocab_size: int = 2
    d_model: int = 512
    d_ffn: int = 3072
    num_layers: int = 36
    max_seq_length: int = 128
    spatial_kind: str = "toeplitz"
    gating: str = "split"
    attention_size: int = 0
    causal: bool = False
    sgu_padding_mask: bool = False
    hidden_dropout_prob: float = 0.0
    attention_dropout_prob: float = 0.0
    survival_prob: float = 1.0
    drop_path_schedule: str = "uniform"
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    num_classes: int = 1000
    initializer_range: float = 0.02
    spatial_init_stddev: float = 1e-6
    layer_norm_eps: float = 1e-6
    sgu_layer_norm_eps: float = 1e-5
    # Last, so that the fields above keep their positions.
    architecture: str = "gmlp"
    num_attention_heads: int = 1
    position_encoding: str = "none"
    attention_content: bool = True
    d_spatial: int = 0
    spatial_implementation: str = "auto"
    attention_padding_mask: bool = True

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ derived values
    @property
    def seq_length(self) -> int:
        """Number of tokens the spatial weights are sized for: patches for images."""
        if self.modality == "image":
            return (self.image_size // self.patch_size) ** 2
        return self.max_seq_length

    @property
    def gate_width(self) -> int:
        """Channels the SGU outputs: d_ffn / 2 for the split SGU, d_ffn otherwise."""
        return self.d_ffn // 2 if self.gating == "split" else self.d_ffn

    @property
    def is_amlp(self) -> bool:
        return self.attention_size > 0

    @property
    def blocks_read_padding_mask(self) -> bool:
        """Whether the blocks get the input mask at all (each block masks only what its fields say)."""
        if self.architecture == "transformer":
            return self.attention_padding_mask
        if self.architecture == "mlp_mixer":
            return self.sgu_padding_mask
        return self.sgu_padding_mask or (self.is_amlp and self.attention_padding_mask)

    def block_survival_probs(self) -> List[float]:
        """Survival probability of each block, first to last."""
        if self.drop_path_schedule == "uniform" or self.num_layers == 1:
            return [self.survival_prob] * self.num_layers
        step = (1.0 - self.survival_prob) / (self.num_layers - 1)
        return [1.0 - i * step for i in range(self.num_layers)]

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raises ValueError naming the first field that is out of range."""
        _check_choice("modality", self.modality, MODALITIES)
        _check_choice("spatial_kind", self.spatial_kind, SPATIAL_KINDS)
        _check_choice("spatial_implementation", self.spatial_implementation, SPATIAL_IMPLEMENTATIONS)
        if self.spatial_implementation == "fft" and self.spatial_kind != "toeplitz":
            raise ValueError("spatial_implementation 'fft' needs spatial_kind 'toeplitz'")
        _check_choice("gating", self.gating, GATINGS)
        _check_choice("drop_path_schedule", self.drop_path_schedule, DROP_PATH_SCHEDULES)
        for name in ("d_model", "d_ffn", "num_layers"):
            _check_positive(name, getattr(self, name))
        if self.gating == "split" and self.d_ffn % 2:
            raise ValueError(f"d_ffn must be even for the split SGU, got {self.d_ffn}")
        if self.attention_size < 0:
            raise ValueError(f"attention_size must be >= 0 (0 for gMLP), got {self.attention_size}")
        for name in ("hidden_dropout_prob", "attention_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if not 0.0 < self.survival_prob <= 1.0:
            raise ValueError(f"survival_prob must be in (0, 1], got {self.survival_prob}")
        self._validate_architecture()
        if self.modality == "text":
            for name in ("vocab_size", "type_vocab_size", "max_seq_length"):
                _check_positive(name, getattr(self, name))
        else:
            for name in ("image_size", "patch_size", "num_channels", "num_classes"):
                _check_positive(name, getattr(self, name))
            if self.image_size % self.patch_size:
                raise ValueError(
                    f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
                )

    def _validate_architecture(self) -> None:
        """The checks of architecture, num_attention_heads, position_encoding,
        attention_content and d_spatial."""
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("position_encoding", self.position_encoding, POSITION_ENCODINGS)
        _check_positive("num_attention_heads", self.num_attention_heads)
        if not isinstance(self.d_spatial, int) or isinstance(self.d_spatial, bool) or self.d_spatial < 0:
            raise ValueError(f"d_spatial must be a non-negative integer, got {self.d_spatial!r}")
        arch = self.architecture
        if self.modality == "image" and arch != "gmlp":
            raise ValueError(f"architecture must be 'gmlp' for image models, got {arch!r}")
        if arch != "gmlp" and self.attention_size:
            raise ValueError(f"attention_size (aMLP's tiny attention) needs architecture 'gmlp', got {arch!r}")
        if arch == "transformer" and self.d_model % self.num_attention_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} does not divide d_model {self.d_model}"
            )
        if arch != "transformer" and self.position_encoding != "none":
            # The paper's gMLP and Mixer have no position encoding: their token mixing is positional.
            raise ValueError(
                f"position_encoding must be 'none' for architecture {arch!r}, got {self.position_encoding!r}"
            )
        if not self.attention_content and (arch != "transformer" or self.position_encoding != "relative"):
            raise ValueError(
                "attention_content False (the 'rel pos - attn' baseline) needs architecture "
                "'transformer' and position_encoding 'relative'"
            )
        if arch == "mlp_mixer":
            if self.d_spatial <= 0:
                raise ValueError(f"d_spatial must be positive for architecture 'mlp_mixer', got {self.d_spatial}")
            if self.causal:
                raise ValueError("causal is not supported by architecture 'mlp_mixer'")

    # ------------------------------------------------------------------ JSON, as BertConfig
    @classmethod
    def from_dict(cls, json_object: dict) -> "GMLPConfig":
        """Builds a config from a dict; unknown keys are an error, not silently dropped.

        The field `use_padding_mask` of older files, which switched the SGU's and the tiny
        attention's padding masks together, becomes sgu_padding_mask and attention_padding_mask
        with the same behaviour (the transformer always masked padded keys).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(json_object) - known - {_OLD_PADDING_FIELD})
        if unknown:
            raise ValueError(f"unknown GMLPConfig field(s): {', '.join(unknown)}")
        return cls(**_upgrade_padding_field(json_object))

    @classmethod
    def from_json_file(cls, json_file: str) -> "GMLPConfig":
        """Reads a config written by `to_json_file` (or by hand).

        Raises:
          FileNotFoundError: no such file.
          ValueError: a file that is empty, not UTF-8, not JSON, not a JSON object, or not a valid
            config; the message names the file.
        """
        raw = _read_bytes(json_file)
        try:
            text = raw.decode("utf-8-sig")  # A byte-order mark, as some editors write, is allowed.
        except UnicodeDecodeError as err:
            raise ValueError(f"model config file {json_file} is not UTF-8 JSON: {err}") from None
        if not text.strip():
            raise ValueError(f"model config file is empty: {json_file}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"model config file {json_file} is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"model config file {json_file} must hold a JSON object")
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as err:
            raise ValueError(f"model config file {json_file}: {err}") from None

    def to_dict(self) -> dict:
        return copy.deepcopy(dataclasses.asdict(self))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file: str) -> None:
        """Writes the config atomically, so an interrupted write leaves no half file."""
        tmp = json_file + ".tmp"
        if not _is_url(json_file):
            with open(tmp, "w", encoding="utf-8") as writer:
                writer.write(self.to_json_string())
            os.replace(tmp, json_file)
            return
        import tensorflow as tf  # gfile: gs:// and the other file systems TensorFlow knows.

        with tf.io.gfile.GFile(tmp, "w") as writer:
            writer.write(self.to_json_string())
        tf.io.gfile.rename(tmp, json_file, overwrite=True)

    def replace(self, **changes: Any) -> "GMLPConfig":
        """Returns a copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def _is_url(path: str) -> bool:
    """gs://, s3:// and the like, which need tf.io.gfile; plain paths are read without TensorFlow,
    so that the model side runs where TensorFlow is not installed (JAX, PyTorch)."""
    return "://" in str(path)


def _read_bytes(path: str) -> bytes:
    """The bytes of a file; FileNotFoundError for a missing file or a folder."""
    if not _is_url(path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model config file not found: {path}")
        with open(path, "rb") as reader:
            return reader.read()
    import tensorflow as tf

    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"model config file not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as reader:
        return reader.read()


_OLD_PADDING_FIELD = "use_padding_mask"
_NEW_PADDING_FIELDS = ("sgu_padding_mask", "attention_padding_mask")


def _upgrade_padding_field(json_object: dict) -> dict:
    """Maps the old `use_padding_mask` onto the two fields that replaced it."""
    if _OLD_PADDING_FIELD not in json_object:
        return json_object
    both = [name for name in _NEW_PADDING_FIELDS if name in json_object]
    if both:
        raise ValueError(f"{_OLD_PADDING_FIELD} (an old field) cannot be given with {', '.join(both)}")
    upgraded = dict(json_object)
    old = upgraded.pop(_OLD_PADDING_FIELD)
    if not isinstance(old, bool):
        raise ValueError(f"{_OLD_PADDING_FIELD} must be true or false, got {old!r}")
    upgraded["sgu_padding_mask"] = old
    # The transformer masked padded keys whatever the old field said.
    upgraded["attention_padding_mask"] = old or upgraded.get("architecture", "gmlp") == "transformer"
    return upgraded


def _check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_positive(name: str, value: Optional[int]):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def as_config(config: Union[GMLPConfig, dict]) -> GMLPConfig:
    """Accepts a GMLPConfig or its dict form (as stored in a Keras layer config)."""
    if isinstance(config, GMLPConfig):
        return config
    if isinstance(config, dict):
        return GMLPConfig.from_dict(config)
    raise TypeError(f"expected a GMLPConfig or a dict, got {type(config).__name__}")
