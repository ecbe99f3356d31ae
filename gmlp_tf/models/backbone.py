"""GMLPBackbone: the token encoder as a keras.Model of its own, for a head of the user's.

`from_pretrained` reads a training run's output directory through models/saved_runs.py, as
keras-hub's `Backbone.from_preset` reads a preset: no training runtime is needed.
"""

from typing import Any, Dict, Union

import keras

from gmlp_tf.config import GMLPConfig, as_config
from gmlp_tf.models.encoder import GMLPEncoder, text_inputs


@keras.saving.register_keras_serializable(package="gmlp_tf")
class GMLPBackbone(keras.Model):
    """A functional keras.Model around GMLPEncoder, with named int32 inputs and outputs.

    Inputs: a dict of int32 [batch, n] "input_ids", "input_mask", "segment_ids" (n up to
    config.max_seq_length). Outputs: a dict of "sequence_output" [batch, n, d_model] (the
    final LayerNorm's output) and "pooled_output" [batch, d_model], the final representation
    of `[CLS]` (the encoder's "cls_output"). There is no tanh pooler: pretraining has no
    next-sentence task to train one, so, as ClassificationHead does, a head adds its own.

    The encoder layer is `.encoder`: its weights are those of every task model's `.encoder`.

    Args:
      config: a text GMLPConfig or its dict.
    """

    def __init__(self, config: Union[GMLPConfig, Dict[str, Any]], **kwargs: Any) -> None:
        config = as_config(config)
        if config.modality != "text":
            raise ValueError(f"GMLPBackbone needs a text config, got modality {config.modality!r}")
        inputs = text_inputs()
        encoder = GMLPEncoder(config, name="encoder")
        encoded = encoder(inputs)
        outputs = {"sequence_output": encoded["sequence_output"], "pooled_output": encoded["cls_output"]}
        kwargs.setdefault("name", "gmlp_backbone")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.config = config
        self.encoder = encoder

    def get_config(self) -> Dict[str, Any]:
        return {"config": self.config.to_dict(), "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "GMLPBackbone":
        return cls(**config)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "GMLPBackbone":
        """A freshly initialised backbone of a text preset (gmlp_tf.list_presets()).

        Args:
          name: the preset, e.g. "gmlp_base".
          **overrides: config fields to change, e.g. hidden_dropout_prob=0.1.
        """
        from gmlp_tf.presets import get_preset_config

        config = get_preset_config(name)
        return cls(config.replace(**overrides) if overrides else config)

    @classmethod
    def from_pretrained(cls, output_dir: str) -> "GMLPBackbone":
        """The encoder of a training run: output_dir's gmlp_config.json and newest checkpoint.

        output_dir is what run_pretraining.py (or run_classifier.py, run_squad.py) writes; the
        run's task model is rebuilt, its newest readable checkpoint loaded, and its encoder's
        weights copied into the backbone.

        Raises:
          ValueError: output_dir is not such a directory, holds no readable checkpoint, or is
            an image model's.
        """
        from gmlp_tf.models import saved_runs  # Reads checkpoints with TensorFlow: only here.

        config, _, model = saved_runs.load_run_model(output_dir)
        if config.modality != "text":
            raise ValueError(f"{output_dir} holds an image model; GMLPBackbone is the text encoder")
        backbone = cls(config)
        backbone.encoder.set_weights(model.encoder.get_weights())
        return backbone
