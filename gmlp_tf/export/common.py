"""What every exported signature shares: the run's files, the module, text guards, the atomic write.

A run's output directory gives the config, run info, vocabulary and weights (`read_model_dir`,
`load_model`); `ExportModule` is the `tf.Module` that is saved: it tracks the Keras model's
variables and the SentencePiece tokenizer (a resource, so the SavedModel is self-contained).
`write_saved_model` writes it beside the target and renames it into place.
"""

import json
import logging
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import keras
import tensorflow as tf
from absl import logging as absl_logging

from gmlp_tf import tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.models import saved_runs
from gmlp_tf.models.task_models import build_model
from gmlp_tf.tokenization import CLS_ID, PAD_ID, SEP_ID
from gmlp_tf.utils import progress

# Raw strings are cut to this many bytes per token position before tokenizing.
MAX_BYTES_PER_TOKEN = 64
MIN_BYTES = 4096
EXPORT_INFO_NAME = "export_info.json"
EXTRA_DIR = "assets.extra"  # TF Serving's folder for files beside the SavedModel.
TASKS = ("pretraining", "classification", "squad", "vision")

# Signature name -> the module's tf.function serving it.
Signatures = Dict[str, Callable[..., Dict[str, tf.Tensor]]]

ENCODED_SPEC = {
    "input_ids": tf.TensorSpec([None, None], tf.int32, name="input_ids"),
    "input_mask": tf.TensorSpec([None, None], tf.int32, name="input_mask"),
    "segment_ids": tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
}


def sanitize(text: tf.Tensor, max_bytes: int) -> tf.Tensor:
    """string [batch] -> string [batch]: at most max_bytes bytes, invalid UTF-8 replaced by U+FFFD.

    SentencePiece may fail on invalid UTF-8; the byte cap may cut a character, which is replaced too.
    """
    text = tf.strings.substr(text, 0, max_bytes)
    return tf.strings.unicode_transcode(text, input_encoding="UTF-8", output_encoding="UTF-8",
                                        errors="replace", replacement_char=0xFFFD)


def frame_segments(segments: Sequence[tf.RaggedTensor], max_seq_length: int) -> Dict[str, tf.Tensor]:
    """[CLS] seg_1 [SEP] (seg_2 [SEP]) padded: the model inputs of already truncated token ids.

    Args:
      segments: int RaggedTensors [batch, (tokens)] that fit with their [CLS] / [SEP] marks.
      max_seq_length: the padded length.

    Returns:
      dict of int32 [batch, max_seq_length]: "input_ids", "input_mask", "segment_ids".
    """
    # Imported when a text signature is traced, so that vision exports need no tensorflow_text.
    import tensorflow_text as tf_text

    ids, segment_ids = tf_text.combine_segments(list(segments), start_of_sequence_id=CLS_ID,
                                                end_of_segment_id=SEP_ID)
    input_ids, input_mask = tf_text.pad_model_inputs(ids, max_seq_length, pad_value=PAD_ID)
    segment_ids, _ = tf_text.pad_model_inputs(segment_ids, max_seq_length, pad_value=0)
    return {"input_ids": tf.cast(input_ids, tf.int32), "input_mask": tf.cast(input_mask, tf.int32),
            "segment_ids": tf.cast(segment_ids, tf.int32)}


class ExportModule(tf.Module):
    """The saved module: the model's variables, the tokenizer and (in subclasses) the serving functions."""

    def __init__(self, model: keras.Model, config: GMLPConfig, max_seq_length: int,
                 tokenizer: Optional[Any] = None) -> None:
        super().__init__(name="gmlp_export")
        # Track the variables (not the Keras model object itself), as keras' ExportArchive does.
        self.model_variables = list(model.variables)
        self._keras_call = lambda inputs: model(inputs, training=False)
        self.tokenizer = tokenizer  # A tracked resource: the SavedModel carries the vocabulary.
        self.config = config
        self.max_seq_length = int(max_seq_length)
        self.max_bytes = max(MIN_BYTES, MAX_BYTES_PER_TOKEN * self.max_seq_length)

    def clip(self, input_ids: tf.Tensor, input_mask: tf.Tensor, segment_ids: tf.Tensor) -> Dict[str, tf.Tensor]:
        """int32 [batch, length] each -> the same cut to [batch, min(length, max_seq_length)]."""
        # The spatial weights are sized for max_seq_length: longer inputs cannot run.
        n = self.max_seq_length
        return {"input_ids": input_ids[:, :n], "input_mask": input_mask[:, :n], "segment_ids": segment_ids[:, :n]}


def read_model_dir(model_dir: str) -> Tuple[GMLPConfig, Dict[str, Any], Optional[bytes], str]:
    """(config, run_info, sp_model bytes or None for an image model, weights path) of an output directory."""
    if not model_dir:
        raise ValueError("--model_dir is required")
    if not tf.io.gfile.isdir(model_dir):
        raise FileNotFoundError(f"model directory not found: {model_dir}")
    config = GMLPConfig.from_json_file(os.path.join(model_dir, saved_runs.CONFIG_NAME))
    info_path = os.path.join(model_dir, saved_runs.RUN_INFO_NAME)
    if not tf.io.gfile.exists(info_path):
        raise FileNotFoundError(f"{model_dir} has no {saved_runs.RUN_INFO_NAME}; is it an output directory of "
                                "run_pretraining.py, run_classifier.py or run_squad.py?")
    with tf.io.gfile.GFile(info_path) as f:
        info = json.load(f)
    weights = saved_runs.readable_weights(model_dir)
    if weights is None:
        # A sweep's parent folder holds runs, not a checkpoint: name them.
        subdirs = [d.rstrip("/") for d in tf.io.gfile.listdir(model_dir)
                   if saved_runs.latest_weights(os.path.join(model_dir, d.rstrip("/")))]
        hint = f" (runs inside: {', '.join(sorted(subdirs))}; export one of them)" if subdirs else ""
        raise FileNotFoundError(f"{model_dir} holds no checkpoint in {saved_runs.CHECKPOINT_DIR}/{hint}")
    sp_model = None
    if config.modality == "text":
        vocab_path = os.path.join(model_dir, saved_runs.VOCAB_NAME)
        if not tf.io.gfile.exists(vocab_path):
            raise FileNotFoundError(f"{model_dir} has no vocabulary {saved_runs.VOCAB_NAME}")
        sp_model = tokenization.load_sp_model(vocab_path)
    return config, info, sp_model, weights


def check_max_seq_length(config: GMLPConfig, max_seq_length: Optional[int]) -> Optional[int]:
    """The exported text length (default: the config's); None for an image model."""
    if config.modality != "text":
        if max_seq_length is not None:
            raise ValueError("--max_seq_length does not apply to an image model")
        return None
    if max_seq_length is None:
        max_seq_length = config.max_seq_length
    if not isinstance(max_seq_length, int) or max_seq_length < 3:
        raise ValueError(f"--max_seq_length must be an integer >= 3, got {max_seq_length!r}")
    if max_seq_length > config.max_seq_length:
        raise ValueError(f"--max_seq_length {max_seq_length} exceeds the model config's max_seq_length "
                         f"{config.max_seq_length}")
    return max_seq_length


def load_model(config: GMLPConfig, task: str, num_labels: int, weights: str) -> keras.Model:
    """The run's Keras model with its checkpoint's weights.

    Raises:
      ValueError: naming the weights file, when it is unreadable (truncated, empty, not HDF5: h5py
        raises OSError) or does not fit the model.
    """
    model = build_model(config, task, num_labels=num_labels)
    try:
        model.load_weights(weights)
    except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
        raise ValueError(f"cannot read checkpoint file {weights}: {err}") from None
    return model


def check_export_dir(export_dir: Optional[str]) -> str:
    """The absolute export_dir, which must not exist yet (an empty folder is fine)."""
    if not export_dir:
        raise ValueError("--export_dir is required")
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and (not os.path.isdir(export_dir) or os.listdir(export_dir)):
        raise ValueError(f"export directory {export_dir} already exists; choose a new one")
    return export_dir


class _RenamedInputsFilter(logging.Filter):
    """Drops TensorFlow's note that a signature's captured inputs are renamed: it lists every
    captured variable, hundreds of numbers on one line for an XLA-compiled vision model."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "unsupported characters which will be renamed" not in record.getMessage()


def save_quietly(module: tf.Module, directory: str, signatures: Signatures) -> None:
    """tf.saved_model.save, without the log line that names each captured variable (TensorFlow
    writes it through absl's logger)."""
    loggers, quiet = (absl_logging.get_absl_logger(), tf.get_logger()), _RenamedInputsFilter()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        tf.saved_model.save(module, directory, signatures=signatures)
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def write_saved_model(module: ExportModule, signatures: Signatures, export_info: Mapping[str, Any],
                      config: GMLPConfig, export_dir: str) -> None:
    """Saves module to export_dir (checked by check_export_dir) with config and export info in assets.extra.

    Written into a temporary folder beside export_dir and renamed at the end, so that a failure
    leaves nothing behind.
    """
    parent = os.path.dirname(export_dir)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create {parent}: {err.strerror}") from None
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.tmp-", dir=parent)
    try:
        target = os.path.join(tmp, "saved_model")
        # save traces the signatures itself (a trace made before it, outside its save context, is not
        # reused), so one stage covers both.
        description = (f"Tracing the signatures {', '.join(sorted(signatures))} and writing the SavedModel to "
                       f"{export_dir}")
        with progress.stage(description):
            save_quietly(module, target, signatures)
        extra = os.path.join(target, EXTRA_DIR)
        os.makedirs(extra, exist_ok=True)
        config.to_json_file(os.path.join(extra, saved_runs.CONFIG_NAME))
        with open(os.path.join(extra, EXPORT_INFO_NAME), "w") as f:
            json.dump(export_info, f, indent=2, sort_keys=True)
            f.write("\n")
        if os.path.isdir(export_dir):
            os.rmdir(export_dir)  # Empty, as check_export_dir made sure.
        os.rename(target, export_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
