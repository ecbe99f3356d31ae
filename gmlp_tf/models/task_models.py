"""Task models: masked-LM pretraining, sequence classification, SQuAD; and `build_model`.

Each task model owns a GMLPEncoder as `.encoder`, so a checkpoint of the pretraining model's
encoder restores into any finetuning model.
"""

from typing import Any, Dict, Mapping, Optional, Union

import keras

from gmlp_tf.config import GMLPConfig, as_config
from gmlp_tf.layers import Shape, Tensor
from gmlp_tf.models.encoder import GMLPEncoder, text_inputs
from gmlp_tf.models.heads import ClassificationHead, MaskedLMHead, SpanHead
from gmlp_tf.models.vision import GMLPVisionClassifier

TASKS = ("pretraining", "classification", "squad", "encoder", "vision")


class _TextTaskModel(keras.Model):
    """Shared plumbing: config handling, an encoder, build from BERT-style input shapes, export.

    The models stay subclassed (their checkpoints' variable paths, "encoder/block_0/...", are
    what warm starts match), so Keras cannot infer their inputs; `serving_inputs` names them
    for `export`, which serves int32 "input_ids", "input_mask" and "segment_ids".
    """

    # Whether the serving signature also takes "masked_lm_positions".
    _serves_masked_lm_positions = False

    def __init__(self, config: Union[GMLPConfig, Dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = as_config(config)
        self.encoder = GMLPEncoder(self.config, name="encoder")

    def build(self, input_shape: Union[Shape, Mapping[str, Shape]]) -> None:
        ids_shape = input_shape["input_ids"] if isinstance(input_shape, dict) else input_shape
        self.encoder.build(ids_shape)
        self.build_head(tuple(ids_shape) + (self.config.d_model,))

    def build_head(self, sequence_shape: Shape) -> None:
        """Builds the head for the encoder's [batch, n, d_model] sequence output."""
        raise NotImplementedError

    def serving_inputs(self) -> Dict[str, keras.KerasTensor]:
        """The named int32 inputs [batch, seq_length] that `export` serves (see text_inputs)."""
        return text_inputs(masked_lm_positions=self._serves_masked_lm_positions)

    def export(self, filepath: str, format: str = "tf_saved_model", verbose: Optional[bool] = None,
               input_signature: Any = None, **kwargs: Any) -> None:
        """keras.Model.export, by default with the named int32 inputs of `serving_inputs`.

        The SavedModel's `serve` endpoint and "serving_default" signature take int32
        [batch, seq_length] input_ids, input_mask, segment_ids (seq_length up to
        max_seq_length) and return what `call` returns.
        """
        if not self.built:
            self.build({"input_ids": (None, self.config.max_seq_length)})
        if input_signature is None:
            input_signature = [self.serving_inputs()]  # One positional argument: the dict.
        super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)

    def get_config(self) -> Dict[str, Any]:
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "_TextTaskModel":
        return cls(**config)


@keras.saving.register_keras_serializable(package="gmlp_tf")
class GMLPForPretraining(_TextTaskModel):
    """Encoder plus tied masked-LM head.

    Call args:
      inputs: dict of int [batch, n] "input_ids", "segment_ids", "input_mask" (BERT's feature
        names) and int [batch, max_predictions_per_seq] "masked_lm_positions" (optional: if
        absent every token is scored).

    Returns:
      float32 logits [batch, max_predictions_per_seq (or n), vocab_size].
    """

    _serves_masked_lm_positions = True

    def __init__(self, config: Union[GMLPConfig, Dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.mlm_head = MaskedLMHead(
            self.encoder.token_embedding,
            layer_norm_eps=self.config.layer_norm_eps,
            initializer_range=self.config.initializer_range,
            name="mlm_head",
        )

    def build_head(self, sequence_shape: Shape) -> None:
        self.mlm_head.build(sequence_shape)

    def call(self, inputs: Mapping[str, Tensor], training: Optional[bool] = None) -> Tensor:
        outputs = self.encoder(inputs, training=training)
        return self.mlm_head(outputs["sequence_output"], inputs.get("masked_lm_positions"))


@keras.saving.register_keras_serializable(package="gmlp_tf")
class GMLPForSequenceClassification(_TextTaskModel):
    """Encoder plus classification (num_labels > 1) or regression (num_labels = 1) head.

    Call args:
      inputs: dict of int [batch, n] "input_ids", "segment_ids", "input_mask".

    Returns:
      float32 logits [batch, num_labels].
    """

    def __init__(
        self, config: Union[GMLPConfig, Dict[str, Any]], num_labels: int = 2, **kwargs: Any
    ) -> None:
        super().__init__(config, **kwargs)
        self.num_labels = int(num_labels)
        self.classifier = ClassificationHead(
            self.num_labels,
            self.config.d_model,
            dropout=self.config.hidden_dropout_prob,
            initializer_range=self.config.initializer_range,
            name="classifier",
        )

    def build_head(self, sequence_shape: Shape) -> None:
        self.classifier.build((sequence_shape[0], sequence_shape[-1]))

    def call(self, inputs: Mapping[str, Tensor], training: Optional[bool] = None) -> Tensor:
        outputs = self.encoder(inputs, training=training)
        return self.classifier(outputs["cls_output"], training=training)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(num_labels=self.num_labels)
        return config


@keras.saving.register_keras_serializable(package="gmlp_tf")
class GMLPForQuestionAnswering(_TextTaskModel):
    """Encoder plus SQuAD span head.

    Call args:
      inputs: dict of int [batch, n] "input_ids", "segment_ids", "input_mask".

    Returns:
      dict: "start_logits", "end_logits" float32 [batch, n]; "null_score" float32 [batch],
      the no-answer score at `[CLS]` (SQuAD v2.0).
    """

    def __init__(self, config: Union[GMLPConfig, Dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.span_head = SpanHead(initializer_range=self.config.initializer_range, name="span_head")

    def build_head(self, sequence_shape: Shape) -> None:
        self.span_head.build(sequence_shape)

    def call(self, inputs: Mapping[str, Tensor], training: Optional[bool] = None) -> Dict[str, Tensor]:
        outputs = self.encoder(inputs, training=training)
        return self.span_head(outputs["sequence_output"])


def build_model(
    config: Union[GMLPConfig, Dict[str, Any]], task: Optional[str] = None, num_labels: int = 2
) -> Union[keras.Model, GMLPEncoder]:
    """Builds the model for a config and task, with weights created (input length max_seq_length).

    Args:
      config: a GMLPConfig or its dict.
      task: one of TASKS; defaults to "vision" for image configs and "pretraining" otherwise.
      num_labels: labels of the "classification" task (1 for regression).

    Returns:
      A built keras.Model (or, for "encoder", a built GMLPEncoder layer).
    """
    config = as_config(config)
    if task is None:
        task = "vision" if config.modality == "image" else "pretraining"
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if (task == "vision") != (config.modality == "image"):
        raise ValueError(f"task {task!r} does not fit a config of modality {config.modality!r}")
    if task == "vision":
        model = GMLPVisionClassifier(config)
        model.build((None, config.image_size, config.image_size, config.num_channels))
        return model
    if task == "encoder":
        model = GMLPEncoder(config, name="encoder")
    elif task == "pretraining":
        model = GMLPForPretraining(config)
    elif task == "classification":
        model = GMLPForSequenceClassification(config, num_labels=num_labels)
    else:
        model = GMLPForQuestionAnswering(config)
    model.build({"input_ids": (None, config.max_seq_length)})
    return model


__all__ = [
    "GMLPConfig",
    "GMLPForPretraining",
    "GMLPForSequenceClassification",
    "GMLPForQuestionAnswering",
    "GMLPVisionClassifier",
    "build_model",
    "TASKS",
]
