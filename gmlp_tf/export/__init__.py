"""SavedModel export of a trained gMLP / aMLP: raw-input serving signatures plus a tensor one.

`export_saved_model(model_dir, export_dir, ...)` reads an output directory of
run_pretraining.py, run_classifier.py or run_squad.py (gmlp_config.json, run_info.json,
vocab.model, a checkpoint in checkpoints/; a vision run needs no vocabulary) and writes a
SavedModel: `tf.saved_model.save` of a `tf.Module` whose `tf.function`s call the Keras model. The
SentencePiece tokenizer (tensorflow_text.SentencepieceTokenizer built from the vocabulary bytes) is
a tracked resource of the module, so the SavedModel is self-contained. Reloading needs only

    import tensorflow as tf
    import tensorflow_text  # registers the SentencePiece ops; must come before the load
    loaded = tf.saved_model.load(export_dir)
    loaded.signatures["serving_default"](text_a=tf.constant(["a fine film"]))

Signatures (input names and output keys are stable):

  classification ("classification" run)
    serving_default(text_a: string [None] [, text_b: string [None] for pair tasks])
        -> logits float32 [None, num_labels], probabilities float32 [None, num_labels] (softmax),
           labels string [None] (argmax label, only when the label list is known: --task_name),
           class_ids int32 [None];
        regression (num_labels = 1, STS-B): logits [None, 1] and scores float32 [None].
        Without a task name the pair structure is unknown: serving_default takes text_a alone
        and a second signature `text_pair(text_a, text_b)` takes pairs.
    encoded(input_ids, input_mask, segment_ids: int32 [None, None]) -> logits (as above)

  squad ("squad" run)
    serving_default(question: string [None], context: string [None])
        -> answer_text string [None], score float32 [None] (start + end logit of the span; NO_SPAN_SCORE
           = -1e9 and answer_text "" when the context is empty after truncation), start_index / end_index int32 [None]
           (token positions in the encoded sequence; -1 without a span), null_score float32
           [None] (the [CLS] no-answer score of SQuAD v2.0), start_logits / end_logits
           float32 [None, max_seq_length].
        Limits: ONE window. The question is cut to max_query_length tokens and the context to
        what fits after it ([CLS] question [SEP] context [SEP], as run_squad.py's first window);
        there are no in-graph sliding windows, so an answer beyond the first window is missed.
        The answer is the best span with end >= start, length <= max_answer_length tokens,
        inside the context segment, turned back into text by tokenizer.detokenize of the span's
        ids (surrounding whitespace stripped; an out-of-vocabulary character comes back as " ⁇ "):
        SentencePiece normalization (nmt_nfkc) may alter spacing and compatibility
        characters, so the text is not always an exact substring of the context.
    encoded(input_ids, input_mask, segment_ids) -> start_logits, end_logits [None, None],
        null_score [None]

  pretraining (masked LM)
    serving_default(text: string [None]) with literal "[MASK]" markers
        -> top_k_ids int32 [None, M, top_k], top_k_tokens string [None, M, top_k],
           top_k_scores float32 [None, M, top_k] (softmax probabilities), masked_positions
           int32 [None, M], num_masked int32 [None]; M is the largest number of masks in the
           batch, rows with fewer are padded (ids -1, tokens "", scores 0, positions -1).
        The tokenizer never produces [MASK] from text (it is a SentencePiece control symbol),
        so the text is split on the literal "[MASK]", the pieces are tokenized, and MASK_ID is
        inserted between them in-graph. Masks cut off by truncation are not reported.
    encoded(input_ids, input_mask, segment_ids) -> logits float32 [None, None, vocab_size]
        (every position scored)

  vision ("vision" run, modality "image")
    serving_default(image_bytes: string [None]) encoded JPEG / PNG / GIF / BMP
    images(images: uint8 [None, None, None, num_channels])
        -> logits float32 [None, num_classes], probabilities float32 [None, num_classes]
        Preprocessing in-graph: decode, bilinear resize to image_size x image_size (no crop,
        aspect ratio not kept), scale to [0, 1], normalise with the run's recorded per-channel mean and std
        (preprocessing.json, written by run_imagenet.py and convert_timm_checkpoint.py; without
        one, timm's gMLP mean = std = 0.5, x -> (x - 0.5) / 0.5). Undecodable bytes are an error.
    encoded(pixel_values: float32 [None, image_size, image_size, num_channels], already
        normalised) -> logits, probabilities

Robustness of the text signatures: inputs are first sanitized with
tf.strings.unicode_transcode(errors="replace") (invalid UTF-8 becomes U+FFFD, as SentencePiece
may fail on it) and cut to max(MIN_BYTES, MAX_BYTES_PER_TOKEN * max_seq_length) bytes (a guard against
huge requests, far more than the model can see). Inputs longer than the model's length are truncated
(classifier pairs round-robin, as in training); empty strings, emoji and batches of any size are
valid. The `encoded` signatures truncate sequences longer than the exported max_seq_length.

Layout: common.py holds what the four kinds of run share (reading the output directory, the
module that carries the tokenizer, the text guards, the atomic write); text_classification.py,
squad.py, masked_lm.py and image.py each build one kind's module and signatures.
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

from gmlp_tf import tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.export import common, image, masked_lm, squad, text_classification
from gmlp_tf.export.common import (
    EXPORT_INFO_NAME,
    EXTRA_DIR,
    MAX_BYTES_PER_TOKEN,
    MIN_BYTES,
    ExportModule,
    Signatures,
    read_model_dir,
)
from gmlp_tf.export.image import IMAGE_MEAN, IMAGE_STD
from gmlp_tf.export.squad import NO_SPAN_SCORE
from gmlp_tf.runtime.flags import option
from gmlp_tf.utils import progress


@dataclasses.dataclass
class ExportSpec:
    """The flags of export_saved_model.py: the arguments of `export_saved_model`."""

    model_dir: Optional[str] = option(
        None, "Output directory of run_pretraining.py, run_classifier.py or run_squad.py.")
    export_dir: Optional[str] = option(
        None, "Where to write the SavedModel (must not exist yet; written atomically).")
    max_seq_length: Optional[int] = option(
        None, "Tokens per raw-text input (default and maximum: the config's).")
    task_name: Optional[str] = option(
        None, "GLUE task of a classifier (sst2, mnli, ...): names its label list and "
        "whether serving_default takes sentence pairs.")
    top_k: int = option(5, "Masked LM: predictions returned per [MASK].")
    max_query_length: Optional[int] = option(
        None, "SQuAD: question tokens kept (default min(64, (max_seq_length - 3) // 2)).")
    max_answer_length: int = option(30, "SQuAD: longest answer span in tokens.")


def build_export_module(model_dir: str, max_seq_length: Optional[int] = None, task_name: Optional[str] = None,
                        top_k: int = 5, max_query_length: Optional[int] = None,
                        max_answer_length: int = 30) -> Tuple[ExportModule, Signatures, Dict[str, Any], GMLPConfig]:
    """Loads the run in model_dir and returns (module, signatures dict, export info dict, config).

    Everything the options allow to check is checked before the model is built, except the SQuAD
    lengths, which squad.build checks. max_query_length (SQuAD) defaults to
    min(64, (max_seq_length - 3) // 2).
    """
    config, info, sp_model, weights = read_model_dir(model_dir)
    task = info.get("task")
    num_labels = info.get("num_labels") or 2
    if task not in common.TASKS:
        raise ValueError(f"cannot export a {task!r} run (expected pretraining, classification, squad or vision)")
    max_seq_length = common.check_max_seq_length(config, max_seq_length)
    label_list, is_pair = text_classification.glue_labels(task_name, task, num_labels, model_dir)
    if top_k is None or top_k < 1:
        raise ValueError(f"--top_k must be >= 1, got {top_k!r}")

    with progress.stage(f"Loading the {task} model from {weights}"):
        model = common.load_model(config, task, num_labels, weights)
    tokenizer = tokenization.make_tokenizer(sp_model) if sp_model is not None else None
    export_info = {"task": task, "num_labels": num_labels if task == "classification" else None,
                   "max_seq_length": max_seq_length, "task_name": task_name, "label_list": label_list}
    with progress.stage(f"Building the {task} serving module"):
        if task == "classification":
            built = text_classification.build(model, config, max_seq_length, tokenizer, num_labels, label_list,
                                              is_pair)
        elif task == "squad":
            built = squad.build(model, config, max_seq_length, tokenizer, max_query_length, max_answer_length)
        elif task == "pretraining":
            built = masked_lm.build(model, config, max_seq_length, tokenizer, top_k)
        else:
            built = image.build(model, config, model_dir)
    module, signatures, task_info = built
    export_info.update(task_info)
    export_info["signatures"] = sorted(signatures)
    return module, signatures, export_info, config


def export_saved_model(model_dir: str, export_dir: str, max_seq_length: Optional[int] = None,
                       task_name: Optional[str] = None, top_k: int = 5, max_query_length: Optional[int] = None,
                       max_answer_length: int = 30) -> Dict[str, Any]:
    """Writes the SavedModel of the run in model_dir to export_dir (see the module docstring).

    The SavedModel is written into a temporary folder beside export_dir and renamed at the end,
    so a failure leaves nothing behind. export_dir must not exist yet (an empty folder is fine).

    Returns:
      The export info dict (also written to export_dir/assets.extra/export_info.json).
    """
    export_dir = common.check_export_dir(export_dir)
    module, signatures, export_info, config = build_export_module(
        model_dir, max_seq_length=max_seq_length, task_name=task_name, top_k=top_k,
        max_query_length=max_query_length, max_answer_length=max_answer_length)
    common.write_saved_model(module, signatures, export_info, config, export_dir)
    return export_info


__all__ = ["export_saved_model", "build_export_module", "read_model_dir", "ExportSpec", "ExportModule",
           "IMAGE_MEAN", "IMAGE_STD", "NO_SPAN_SCORE", "MAX_BYTES_PER_TOKEN", "MIN_BYTES", "EXPORT_INFO_NAME",
           "EXTRA_DIR"]
