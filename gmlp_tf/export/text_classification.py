"""The serving signatures of a text classifier ("classification" run): raw sentences or pairs in, labels out."""

from typing import Any, Dict, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from gmlp_tf.config import GMLPConfig
from gmlp_tf.export.common import ENCODED_SPEC, ExportModule, Signatures, sanitize
from gmlp_tf.tokenization import encode_texts


class ClassifierModule(ExportModule):
    """Serves logits, probabilities, class ids and labels of sentences, pairs or encoded inputs."""

    def __init__(self, model: keras.Model, config: GMLPConfig, max_seq_length: int, tokenizer: Any,
                 label_list: Optional[Sequence[str]], num_labels: int) -> None:
        super().__init__(model, config, max_seq_length, tokenizer)
        self.label_list = None if label_list is None else list(label_list)
        self.num_labels = num_labels

    def outputs(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """int32 [batch, max_seq_length] inputs -> logits float32 [batch, num_labels] and what follows from them.

        Classes: probabilities float32 [batch, num_labels], class_ids int32 [batch], labels
        string [batch] when the label list is known. Regression (one label): scores float32 [batch].
        """
        logits = self._keras_call(inputs)
        out = {"logits": logits}
        if self.num_labels == 1:
            out["scores"] = logits[:, 0]
            return out
        out["probabilities"] = tf.nn.softmax(logits, axis=-1)
        class_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
        out["class_ids"] = class_ids
        if self.label_list is not None:
            out["labels"] = tf.gather(tf.constant(self.label_list), class_ids)
        return out

    def encode(self, text_a: tf.Tensor, text_b: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        """string [batch] (and string [batch]) -> dict of int32 [batch, max_seq_length], pairs trimmed round-robin."""
        text_a = sanitize(text_a, self.max_bytes)
        if text_b is not None:
            text_b = sanitize(text_b, self.max_bytes)
        return encode_texts(self.tokenizer, self.max_seq_length, text_a, text_b)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text_a")])
    def serve_single(self, text_a: tf.Tensor) -> Dict[str, tf.Tensor]:
        """text_a string [batch] -> outputs (see `outputs`)."""
        return self.outputs(self.encode(text_a))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text_a"),
                                  tf.TensorSpec([None], tf.string, name="text_b")])
    def serve_pair(self, text_a: tf.Tensor, text_b: tf.Tensor) -> Dict[str, tf.Tensor]:
        """text_a, text_b string [batch] -> outputs (see `outputs`)."""
        return self.outputs(self.encode(text_a, text_b))

    @tf.function(input_signature=[ENCODED_SPEC])
    def serve_encoded(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """input_ids, input_mask, segment_ids int32 [batch, length] -> outputs (see `outputs`)."""
        return self.outputs(self.clip(**inputs))


def glue_labels(task_name: Optional[str], task: str, num_labels: int,
                model_dir: str) -> Tuple[Optional[Tuple[str, ...]], Optional[bool]]:
    """(label_list, is_pair) of the GLUE task --task_name; (None, None) without one (unknown)."""
    if not task_name:
        return None, None
    if task != "classification":
        raise ValueError(f"--task_name applies to classifier runs, not to a {task!r} run")
    # Imported here, not at the top: importing the export package must load no task package.
    from gmlp_tf.tasks.glue import task_table

    glue_task = task_table.get_task(task_name)
    if glue_task.num_labels != num_labels:
        raise ValueError(f"task {task_name!r} has {glue_task.num_labels} labels but the model in {model_dir} "
                         f"has {num_labels}")
    return glue_task.label_list, glue_task.is_pair


def build(model: keras.Model, config: GMLPConfig, max_seq_length: int, tokenizer: Any, num_labels: int,
          label_list: Optional[Sequence[str]], is_pair: Optional[bool]) -> Tuple[ClassifierModule, Signatures,
                                                                                  Dict[str, Any]]:
    """The classifier's module, its signatures and (no) export info of its own.

    serving_default takes text_a, or text_a and text_b for a pair task; when is_pair is unknown
    (None: no task name) it takes text_a and `text_pair` takes pairs.
    """
    module = ClassifierModule(model, config, max_seq_length, tokenizer, label_list, num_labels)
    signatures = {"encoded": module.serve_encoded}
    if is_pair is None:
        signatures["serving_default"] = module.serve_single
        signatures["text_pair"] = module.serve_pair
    else:
        signatures["serving_default"] = module.serve_pair if is_pair else module.serve_single
    return module, signatures, {}
