"""SavedModel export of a trained gMLP / aMLP: raw-input serving signatures plus a tensor one.

`export_saved_model(model_dir, export_dir, ...)` reads an output directory of
run_pretraining.py, run_classifier.py or run_squad.py (gmlp_config.json, run_info.json,
vocab.model, checkpoints/latest.weights.h5; a vision run needs no vocabulary) and writes a
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
may fail on it) and cut to MAX_BYTES_PER_TOKEN * max_seq_length bytes (a guard against huge
requests, far more than the model can see). Inputs longer than the model's length are truncated
(classifier pairs round-robin, as in training); empty strings, emoji and batches of any size are
valid. The `encoded` signatures truncate sequences longer than the exported max_seq_length.
"""

import json
import os
import shutil
import tempfile

import tensorflow as tf

from gmlp_tf import tokenization
from gmlp_tf.runtime import checkpointing
from gmlp_tf.tokenization import encode_texts
from gmlp_tf.config import GMLPConfig
from gmlp_tf.models.task_models import build_model
from gmlp_tf.tokenization import CLS_ID, MASK, MASK_ID, PAD_ID, SEP_ID

# Raw strings are cut to this many bytes per token position before tokenizing.
MAX_BYTES_PER_TOKEN = 64
MIN_BYTES = 4096
# The score of a question whose context is empty after truncation: finite (JSON-safe), below any span.
NO_SPAN_SCORE = -1e9
IMAGE_MEAN = 0.5
IMAGE_STD = 0.5
EXPORT_INFO_NAME = "export_info.json"
EXTRA_DIR = "assets.extra"  # TF Serving's folder for files beside the SavedModel.


def _sanitize(text, max_bytes):
    """Caps the byte length and replaces invalid UTF-8 (the cap may cut a character: replaced too)."""
    text = tf.strings.substr(text, 0, max_bytes)
    return tf.strings.unicode_transcode(text, input_encoding="UTF-8", output_encoding="UTF-8",
                                        errors="replace", replacement_char=0xFFFD)


_ENCODED_SPEC = {
    "input_ids": tf.TensorSpec([None, None], tf.int32, name="input_ids"),
    "input_mask": tf.TensorSpec([None, None], tf.int32, name="input_mask"),
    "segment_ids": tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
}


class _ExportModule(tf.Module):
    """Holds the variables, the tokenizer and the serving functions."""

    def __init__(self, model, config, max_seq_length, tokenizer=None):
        super().__init__(name="gmlp_export")
        # Track the variables (not the Keras model object itself), as keras' ExportArchive does.
        self.model_variables = list(model.variables)
        self._keras_call = lambda inputs: model(inputs, training=False)
        self.tokenizer = tokenizer
        self.config = config
        self.max_seq_length = int(max_seq_length)
        self.max_bytes = max(MIN_BYTES, MAX_BYTES_PER_TOKEN * self.max_seq_length)

    def _clip(self, input_ids, input_mask, segment_ids):
        n = self.max_seq_length
        return {"input_ids": input_ids[:, :n], "input_mask": input_mask[:, :n], "segment_ids": segment_ids[:, :n]}


class _ClassifierModule(_ExportModule):
    def __init__(self, model, config, max_seq_length, tokenizer, label_list, num_labels):
        super().__init__(model, config, max_seq_length, tokenizer)
        self.label_list = None if label_list is None else list(label_list)
        self.num_labels = num_labels

    def outputs(self, inputs):
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

    def encode(self, text_a, text_b=None):
        text_a = _sanitize(text_a, self.max_bytes)
        if text_b is not None:
            text_b = _sanitize(text_b, self.max_bytes)
        return encode_texts(self.tokenizer, self.max_seq_length, text_a, text_b)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text_a")])
    def serve_single(self, text_a):
        return self.outputs(self.encode(text_a))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text_a"),
                                  tf.TensorSpec([None], tf.string, name="text_b")])
    def serve_pair(self, text_a, text_b):
        return self.outputs(self.encode(text_a, text_b))

    @tf.function(input_signature=[_ENCODED_SPEC])
    def serve_encoded(self, inputs):
        return self.outputs(self._clip(**inputs))


class _SquadModule(_ExportModule):
    def __init__(self, model, config, max_seq_length, tokenizer, max_query_length, max_answer_length):
        super().__init__(model, config, max_seq_length, tokenizer)
        self.max_query_length = int(max_query_length)
        self.max_answer_length = int(max_answer_length)

    def encode(self, question, context):
        """[CLS] question [SEP] context [SEP] padded; also the context's first and last positions."""
        n = self.max_seq_length
        question = self.tokenizer.tokenize(_sanitize(question, self.max_bytes))[:, :self.max_query_length]
        context = self.tokenizer.tokenize(_sanitize(context, self.max_bytes))
        q_len = tf.cast(question.row_lengths(), tf.int32)
        budget = n - 3 - q_len  # >= 1: max_query_length + 3 < max_seq_length is checked at export.
        keep = tf.ragged.range(tf.cast(context.row_lengths(), tf.int32)) < budget[:, None]
        context = tf.ragged.boolean_mask(context, keep)
        c_len = tf.cast(context.row_lengths(), tf.int32)
        import tensorflow_text as tf_text

        ids, segment_ids = tf_text.combine_segments([question, context], start_of_sequence_id=CLS_ID,
                                                    end_of_segment_id=SEP_ID)
        input_ids, input_mask = tf_text.pad_model_inputs(ids, n, pad_value=PAD_ID)
        segment_ids, _ = tf_text.pad_model_inputs(segment_ids, n, pad_value=0)
        inputs = {"input_ids": tf.cast(input_ids, tf.int32), "input_mask": tf.cast(input_mask, tf.int32),
                  "segment_ids": tf.cast(segment_ids, tf.int32)}
        first = q_len + 2
        return inputs, first, first + c_len - 1

    def head(self, inputs):
        out = self._keras_call(inputs)
        return {"start_logits": out["start_logits"], "end_logits": out["end_logits"],
                "null_score": out["null_score"]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                                  tf.TensorSpec([None], tf.string, name="context")])
    def serve_text(self, question, context):
        inputs, first, last = self.encode(question, context)
        out = self.head(inputs)
        start, end = out["start_logits"], out["end_logits"]
        n = tf.shape(start)[1]
        pos = tf.range(n)
        s = pos[None, :, None]
        e = pos[None, None, :]
        valid = ((e >= s) & (e - s < self.max_answer_length)
                 & (s >= first[:, None, None]) & (e <= last[:, None, None]))
        scores = tf.where(valid, start[:, :, None] + end[:, None, :], float("-inf"))
        flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
        best = tf.argmax(flat, axis=-1, output_type=tf.int32)
        has_span = last >= first
        score = tf.where(has_span, tf.reduce_max(flat, axis=-1), NO_SPAN_SCORE)
        start_index = tf.where(has_span, best // n, -1)
        end_index = tf.where(has_span, best % n, -1)
        # The span's ids, detokenized (an empty span where there is none).
        lengths = tf.where(has_span, end_index - start_index + 1, 0)
        offsets = tf.ragged.range(tf.maximum(start_index, 0), tf.maximum(start_index, 0) + lengths)
        batch = tf.shape(start)[0]
        flat_index = offsets + (tf.range(batch) * n)[:, None]
        span_ids = tf.gather(tf.reshape(inputs["input_ids"], [-1]), flat_index)
        answer = self.tokenizer.detokenize(span_ids)
        answer = tf.where(has_span, tf.strings.strip(answer), "")
        out.update(answer_text=answer, score=score, start_index=start_index, end_index=end_index)
        return out

    @tf.function(input_signature=[_ENCODED_SPEC])
    def serve_encoded(self, inputs):
        return self.head(self._clip(**inputs))


class _MaskedLMModule(_ExportModule):
    def __init__(self, model, config, max_seq_length, tokenizer, top_k):
        super().__init__(model, config, max_seq_length, tokenizer)
        self.top_k = int(top_k)

    def encode(self, text):
        """[CLS] pieces joined by [MASK] [SEP], truncated and padded."""
        import tensorflow_text as tf_text

        text = _sanitize(text, self.max_bytes)
        pieces = tf.strings.split(text, sep=MASK)  # [batch, (pieces)]; "" -> [""].
        tokens = self.tokenizer.tokenize(pieces.flat_values)  # [pieces, (tokens)]
        tokens = tf.cast(tokens, tf.int32)
        mask_column = tf.fill([tf.shape(pieces.flat_values)[0], 1], tf.constant(MASK_ID, tf.int32))
        tokens = tf.concat([tokens, tf.RaggedTensor.from_tensor(mask_column)], axis=1)  # piece + [MASK]
        rows = tf.RaggedTensor.from_row_lengths(tokens, pieces.row_lengths()).merge_dims(1, 2)
        # Drop the [MASK] appended after each row's last piece.
        keep = tf.ragged.range(tf.cast(rows.row_lengths(), tf.int32)) < tf.cast(rows.row_lengths(), tf.int32)[:, None] - 1
        rows = tf.ragged.boolean_mask(rows, keep)
        rows = rows[:, :self.max_seq_length - 2]
        ids, segment_ids = tf_text.combine_segments([rows], start_of_sequence_id=CLS_ID, end_of_segment_id=SEP_ID)
        input_ids, input_mask = tf_text.pad_model_inputs(ids, self.max_seq_length, pad_value=PAD_ID)
        segment_ids, _ = tf_text.pad_model_inputs(segment_ids, self.max_seq_length, pad_value=0)
        return {"input_ids": tf.cast(input_ids, tf.int32), "input_mask": tf.cast(input_mask, tf.int32),
                "segment_ids": tf.cast(segment_ids, tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        inputs = self.encode(text)
        is_mask = tf.equal(inputs["input_ids"], MASK_ID)
        where = tf.cast(tf.where(is_mask), tf.int32)  # [masks, 2] row-major
        batch = tf.shape(inputs["input_ids"])[0]
        positions = tf.RaggedTensor.from_value_rowids(where[:, 1], where[:, 0], nrows=batch)
        num_masked = tf.cast(positions.row_lengths(), tf.int32)
        present = tf.sequence_mask(num_masked)  # [batch, M]
        padded_positions = positions.to_tensor(default_value=0)
        model_inputs = dict(inputs, masked_lm_positions=padded_positions)
        logits = self._keras_call(model_inputs)  # [batch, M, vocab]
        probs = tf.nn.softmax(logits, axis=-1)
        k = min(self.top_k, self.config.vocab_size)
        scores, ids = tf.math.top_k(probs, k=k)
        ids = tf.cast(ids, tf.int32)
        mask3 = present[:, :, None]
        ids = tf.where(mask3, ids, -1)
        tokens = self.tokenizer.id_to_string(tf.maximum(ids, 0))
        tokens = tf.where(mask3, tokens, "")
        scores = tf.where(mask3, scores, 0.0)
        return {"top_k_ids": ids, "top_k_tokens": tokens, "top_k_scores": scores,
                "masked_positions": tf.where(present, padded_positions, -1), "num_masked": num_masked}

    @tf.function(input_signature=[_ENCODED_SPEC])
    def serve_encoded(self, inputs):
        return {"logits": self._keras_call(self._clip(**inputs))}


class _VisionModule(_ExportModule):
    def __init__(self, model, config, mean=IMAGE_MEAN, std=IMAGE_STD):
        super().__init__(model, config, config.seq_length)
        # Per-channel constants of the run's training normalisation (of [0, 1] pixels).
        self.mean = tf.constant(mean, tf.float32)
        self.std = tf.constant(std, tf.float32)

    def normalize(self, images):
        """float [.., c] pixels in 0..255 -> the normalised pixels the model was trained on."""
        return (images / 255.0 - self.mean) / self.std

    def outputs(self, pixels):
        logits = self._keras_call(pixels)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def preprocess(self, images):
        """uint8 (or float 0..255) [batch, h, w, c] -> normalised float32 [batch, S, S, c]."""
        size = self.config.image_size
        images = tf.image.resize(tf.cast(images, tf.float32), [size, size], method="bilinear")
        return self.normalize(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes):
        size, channels = self.config.image_size, self.config.num_channels

        def decode(data):
            image = tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)
            image = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bilinear")
            return tf.ensure_shape(image, [size, size, channels])

        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32))
        return self.outputs(self.normalize(images))

    def serve_images_fn(self):
        channels = self.config.num_channels

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")])
        def serve_images(images):
            return self.outputs(self.preprocess(images))

        return serve_images

    def serve_encoded_fn(self):
        cfg = self.config

        @tf.function(input_signature=[tf.TensorSpec([None, cfg.image_size, cfg.image_size, cfg.num_channels],
                                                    tf.float32, name="pixel_values")])
        def serve_encoded(pixel_values):
            return self.outputs(pixel_values)

        return serve_encoded


def read_model_dir(model_dir):
    """(config, run_info, sp_model bytes or None, weights path) of an output directory."""
    if not model_dir:
        raise ValueError("--model_dir is required")
    if not tf.io.gfile.isdir(model_dir):
        raise FileNotFoundError(f"model directory not found: {model_dir}")
    config = GMLPConfig.from_json_file(os.path.join(model_dir, checkpointing.CONFIG_NAME))
    info_path = os.path.join(model_dir, checkpointing.RUN_INFO_NAME)
    if not tf.io.gfile.exists(info_path):
        raise FileNotFoundError(f"{model_dir} has no {checkpointing.RUN_INFO_NAME}; is it an output directory of "
                                "run_pretraining.py, run_classifier.py or run_squad.py?")
    with tf.io.gfile.GFile(info_path) as f:
        info = json.load(f)
    weights = checkpointing.latest_weights(model_dir)
    if weights is None:
        subdirs = [d.rstrip("/") for d in tf.io.gfile.listdir(model_dir)
                   if checkpointing.latest_weights(os.path.join(model_dir, d.rstrip("/")))]
        hint = f" (runs inside: {', '.join(sorted(subdirs))}; export one of them)" if subdirs else ""
        raise FileNotFoundError(f"{model_dir} holds no checkpoint {checkpointing.CHECKPOINT_DIR}/"
                                f"{checkpointing.WEIGHTS_NAME}{hint}")
    sp_model = None
    if config.modality == "text":
        vocab_path = os.path.join(model_dir, checkpointing.VOCAB_NAME)
        if not tf.io.gfile.exists(vocab_path):
            raise FileNotFoundError(f"{model_dir} has no vocabulary {checkpointing.VOCAB_NAME}")
        sp_model = tokenization.load_sp_model(vocab_path)
    return config, info, sp_model, weights


def build_export_module(model_dir, max_seq_length=None, task_name=None, top_k=5, max_query_length=None,
                        max_answer_length=30):
    """Loads the run in model_dir and returns (module, signatures dict, export info dict, config).

    max_query_length (SQuAD) defaults to min(64, (max_seq_length - 3) // 2).
    """
    config, info, sp_model, weights = read_model_dir(model_dir)
    task = info.get("task")
    num_labels = info.get("num_labels") or 2
    if task not in ("pretraining", "classification", "squad", "vision"):
        raise ValueError(f"cannot export a {task!r} run (expected pretraining, classification, squad or vision)")
    if config.modality == "text":
        if max_seq_length is None:
            max_seq_length = config.max_seq_length
        if not isinstance(max_seq_length, int) or max_seq_length < 3:
            raise ValueError(f"--max_seq_length must be an integer >= 3, got {max_seq_length!r}")
        if max_seq_length > config.max_seq_length:
            raise ValueError(f"--max_seq_length {max_seq_length} exceeds the model config's max_seq_length "
                             f"{config.max_seq_length}")
    elif max_seq_length is not None:
        raise ValueError("--max_seq_length does not apply to an image model")
    label_list, is_pair = None, None
    if task_name:
        if task != "classification":
            raise ValueError(f"--task_name applies to classifier runs, not to a {task!r} run")
        from gmlp_tf.tasks.glue import data as glue

        glue_task = glue.get_task(task_name)
        if glue_task.num_labels != num_labels:
            raise ValueError(f"task {task_name!r} has {glue_task.num_labels} labels but the model in {model_dir} "
                             f"has {num_labels}")
        label_list, is_pair = glue_task.label_list, glue_task.is_pair
    if top_k is None or top_k < 1:
        raise ValueError(f"--top_k must be >= 1, got {top_k!r}")

    model = build_model(config, task, num_labels=num_labels)
    try:
        model.load_weights(weights)
    except ValueError as err:
        raise ValueError(f"cannot load {weights}: {err}") from None
    tokenizer = tokenization.make_tokenizer(sp_model) if sp_model is not None else None
    export_info = {"task": task, "num_labels": num_labels if task == "classification" else None,
                   "max_seq_length": max_seq_length, "task_name": task_name, "label_list": label_list}

    if task == "classification":
        module = _ClassifierModule(model, config, max_seq_length, tokenizer, label_list, num_labels)
        signatures = {"encoded": module.serve_encoded}
        if is_pair is None:
            signatures["serving_default"] = module.serve_single
            signatures["text_pair"] = module.serve_pair
        else:
            signatures["serving_default"] = module.serve_pair if is_pair else module.serve_single
    elif task == "squad":
        if max_query_length is None:
            max_query_length = min(64, (max_seq_length - 3) // 2)
        if max_query_length < 1 or max_seq_length <= max_query_length + 3:
            raise ValueError(f"max_seq_length {max_seq_length} leaves no room for context after a question of "
                             f"max_query_length {max_query_length}; it must be > {max_query_length + 3}")
        if max_answer_length < 1:
            raise ValueError(f"--max_answer_length must be >= 1, got {max_answer_length}")
        module = _SquadModule(model, config, max_seq_length, tokenizer, max_query_length, max_answer_length)
        signatures = {"serving_default": module.serve_text, "encoded": module.serve_encoded}
        export_info.update(max_query_length=max_query_length, max_answer_length=max_answer_length)
    elif task == "pretraining":
        module = _MaskedLMModule(model, config, max_seq_length, tokenizer, top_k)
        signatures = {"serving_default": module.serve_text, "encoded": module.serve_encoded}
        export_info.update(top_k=min(top_k, config.vocab_size))
    else:
        # The run's own normalisation (run_imagenet.py, convert_timm_checkpoint.py record it);
        # timm's gMLP one (mean = std = 0.5) for runs that recorded none.
        channels = config.num_channels
        mean, std = checkpointing.read_image_normalization(model_dir) or ((IMAGE_MEAN,) * channels, (IMAGE_STD,) * channels)
        module = _VisionModule(model, config, mean, std)
        module.serve_images = module.serve_images_fn()
        module.serve_pixels = module.serve_encoded_fn()
        signatures = {"serving_default": module.serve_bytes, "images": module.serve_images,
                      "encoded": module.serve_pixels}
        export_info.update(image_size=config.image_size, image_mean=list(mean), image_std=list(std))
    export_info["signatures"] = sorted(signatures)
    return module, signatures, export_info, config


def export_saved_model(model_dir, export_dir, max_seq_length=None, task_name=None, top_k=5, max_query_length=None,
                       max_answer_length=30):
    """Writes the SavedModel of the run in model_dir to export_dir (see the module docstring).

    The SavedModel is written into a temporary folder beside export_dir and renamed at the end,
    so a failure leaves nothing behind. export_dir must not exist yet (an empty folder is fine).

    Returns:
      The export info dict (also written to export_dir/assets.extra/export_info.json).
    """
    if not export_dir:
        raise ValueError("--export_dir is required")
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and (not os.path.isdir(export_dir) or os.listdir(export_dir)):
        raise ValueError(f"export directory {export_dir} already exists; choose a new one")
    module, signatures, export_info, config = build_export_module(
        model_dir, max_seq_length=max_seq_length, task_name=task_name, top_k=top_k,
        max_query_length=max_query_length, max_answer_length=max_answer_length)
    parent = os.path.dirname(export_dir)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create {parent}: {err.strerror}") from None
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.tmp-", dir=parent)
    try:
        target = os.path.join(tmp, "saved_model")
        tf.saved_model.save(module, target, signatures=signatures)
        extra = os.path.join(target, EXTRA_DIR)
        os.makedirs(extra, exist_ok=True)
        config.to_json_file(os.path.join(extra, checkpointing.CONFIG_NAME))
        with open(os.path.join(extra, EXPORT_INFO_NAME), "w") as f:
            json.dump(export_info, f, indent=2, sort_keys=True)
            f.write("\n")
        if os.path.isdir(export_dir):
            os.rmdir(export_dir)  # empty, checked above
        os.rename(target, export_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export_info


__all__ = ["export_saved_model", "build_export_module", "read_model_dir", "IMAGE_MEAN", "IMAGE_STD"]
