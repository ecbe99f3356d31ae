"""SQuAD v1.1 / v2.0 for extractive question answering: the data side of scripts/run_squad.py.

As BERT's run_squad.py, in four steps:

  1. Reading: `read_squad_json` (the official JSON files) or `read_squad_tfds` (TFDS squad/v1.1,
     squad/v2.0) -> `SquadExample`s. A training answer whose text is not found in the context at
     its answer_start is skipped and counted (BERT's "Could not find answer"); evaluation files
     keep every question, their answers are only used for scoring.
  2. Windowing: `convert_examples_to_features` tokenizes the question (at most max_query_length
     tokens) and the context with the SentencePiece model, and cuts the context into windows of
     max_seq_length - len(question) - 3 tokens, each starting doc_stride tokens after the last:

       [CLS] question [SEP] context window [SEP] [PAD] ...
       segment_ids 0 ... 0 ... 0 | 1 .... 1 1      0 ...
       input_mask  1 ...................... 1      0 ...

     Each feature records, for every context position of its window, the (start, end) character
     span of the token in the ORIGINAL context string, and whether this window is the one where
     the token has the most context (`token_is_max_context`).
  3. `features_to_dataset`: int32 batches for Keras (labels start_positions / end_positions).
  4. `compute_predictions` (answers.py): the n-best spans per question from the model's start /
     end logits, decoded back into exact substrings of the context; `write_predictions` writes
     BERT's predictions.json, nbest_predictions.json and (v2.0) null_odds.json.

Character offsets. SentencePiece normalizes text (nmt_nfkc: full-width letters, ligatures,
non-breaking spaces, tabs and newlines become plain characters) before it cuts pieces, so the
pieces' text is not a substring of the context. Its encoder's proto output also gives each piece's
begin / end BYTE offsets into the original UTF-8 input, which stay correct under normalization;
those are turned into character offsets of the original string and trimmed of surrounding
whitespace (a piece "▁king" covers " king"). Slicing the context between a start token's begin
and an end token's end therefore always gives a substring of the original context, whatever the
normalization did. A piece that normalization produced from part of one character (the "f" of
"ﬁ") can get an empty span; it is still a valid boundary.
"""

import bisect
import dataclasses
import json
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from gmlp_tf import tokenization
from gmlp_tf.tokenization import CLS_ID, PAD_ID, SEP_ID
from gmlp_tf.utils import progress

# TFDS names of SQuAD and whether they hold v2.0 unanswerable questions ("squad" is v1.1).
TFDS_NAMES = {"squad": False, "squad/v1.1": False, "squad/v2.0": True}
# BERT's first unique_id; only needs to differ from example indexes when printed side by side.
FIRST_UNIQUE_ID = 1_000_000_000
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
LABEL_NAMES = ("start_positions", "end_positions")


# ----------------------------------------------------------------------------------- data classes
@dataclasses.dataclass
class SquadExample:
    """One question about one context.

    Attributes:
      qas_id: the question's id (the key of predictions.json).
      question_text: the question.
      context_text: the paragraph, exactly as in the data (answers are substrings of it).
      answers: the gold answer texts, for evaluation; [] for a v2.0 unanswerable question.
      answer_text: the first answer, the one used for training; "" when there is none.
      answer_start: character offset of answer_text in context_text; -1 when there is none.
      is_impossible: a v2.0 question without an answer in the context.
      title: the article's title.
    """

    qas_id: str
    question_text: str
    context_text: str
    answers: List[str] = dataclasses.field(default_factory=list)
    answer_text: str = ""
    answer_start: int = -1
    is_impossible: bool = False
    title: str = ""


@dataclasses.dataclass
class SquadFeature:
    """One window of one example, as the model sees it.

    Attributes:
      unique_id: unique over the features of one convert_examples_to_features call.
      example_index: index of the example in the examples list given to the conversion.
      window_index: index of this window among the example's windows (0, 1, ...).
      window_start: index of the window's first token among the context's tokens; context token
        t of the example sits at sequence position t - window_start + len(question tokens) + 2.
      input_ids: [max_seq_length] ints: [CLS] question [SEP] context window [SEP] [PAD]...
      input_mask: [max_seq_length] ints, 1 on real tokens, 0 on [PAD].
      segment_ids: [max_seq_length] ints, 0 for [CLS] question [SEP], 1 for the context window
        and its final [SEP], 0 on [PAD].
      token_spans: sequence position -> (char_start, char_end) of that token in the example's
        context_text (end exclusive, whitespace trimmed), for the window's context tokens only:
        the positions an answer can start or end at.
      token_is_max_context: sequence position -> whether this window is the one where that
        context token has the most context (exactly one window of the example has True).
      start_position, end_position: training labels, the sequence positions of the answer's first
        and last token; 0 and 0 (the [CLS] position) when the answer is not inside this window,
        when the question is unanswerable, and for prediction features.
    """

    unique_id: int
    example_index: int
    window_index: int
    window_start: int
    input_ids: List[int]
    input_mask: List[int]
    segment_ids: List[int]
    token_spans: Dict[int, Tuple[int, int]]
    token_is_max_context: Dict[int, bool]
    start_position: int = 0
    end_position: int = 0


# ---------------------------------------------------------------------------------------- reading
def read_squad_json(path: str, is_training: bool,
                    version_2_with_negative: bool = False) -> Tuple[List[SquadExample], int]:
    """Reads an official SQuAD JSON file (train-v1.1.json, dev-v2.0.json, ...).

    Args:
      path: the file (local or gs://).
      is_training: check each answer against its context and skip misaligned ones (and, in
        v1.1, questions without an answer); evaluation reading keeps every question.
      version_2_with_negative: honour `is_impossible` (SQuAD 2.0). Without it, is_impossible is
        ignored, so unanswerable questions count as questions without an answer.

    Returns:
      (examples in file order, number of training questions skipped).

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is not JSON, or lacks a part of the SQuAD structure (named).
    """
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"SQuAD file not found: {path}")
    with tf.io.gfile.GFile(path, "r") as reader:
        text = reader.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"SQuAD file {path} is not JSON: {err}") from None
    questions = (
        dict(qas_id=str(qa["id"]), question=qa["question"], context=context, title=title,
             answer_texts=[a["text"] for a in qa.get("answers", [])],
             answer_starts=[a["answer_start"] for a in qa.get("answers", [])],
             is_impossible=qa.get("is_impossible", False))
        for qa, context, title in _iterate_questions(data, path))
    return _collect_examples(questions, is_training, version_2_with_negative)


def read_squad_tfds(name: str = "squad/v1.1", split: str = "train", data_dir: Optional[str] = None,
                    is_training: bool = True, version_2_with_negative: Optional[bool] = None
                    ) -> Tuple[List[SquadExample], int]:
    """Reads SQuAD from a prepared TFDS dataset (never downloads).

    Args:
      name: "squad/v1.1", "squad/v2.0" or "squad" (v1.1), optionally with ":version".
      split: "train", "validation" or any TFDS split expression ("train[:10%]").
      data_dir: the TFDS data folder; TFDS' default when None.
      is_training, version_2_with_negative: as in read_squad_json; version_2_with_negative
        defaults to whether the name is squad/v2.0.

    Returns:
      (examples, number of training questions skipped).

    Raises:
      ValueError: not a SQuAD name, or version_2_with_negative contradicting it.
      FileNotFoundError: the dataset is not prepared in data_dir.
    """
    base = name.split(":")[0]
    if base not in TFDS_NAMES:
        raise ValueError(f"not a TFDS SQuAD name: {name!r} (use one of {', '.join(TFDS_NAMES)})")
    if version_2_with_negative is None:
        version_2_with_negative = TFDS_NAMES[base]
    if version_2_with_negative != TFDS_NAMES[base]:
        raise ValueError(f"version_2_with_negative={version_2_with_negative} does not fit {name}")
    import tensorflow_datasets as tfds

    try:
        # download=False: fails at once when the data is missing; a download attempt without
        # network retries for minutes.
        dataset = tfds.load(name, split=split, data_dir=data_dir, download=False)
    except AssertionError as err:  # TFDS' way of saying the data is not prepared
        raise FileNotFoundError(
            f"TFDS dataset {name} is not prepared in {data_dir or 'the default data_dir'} ({err}); "
            "prepare it on a machine with internet or read the JSON files with read_squad_json"
        ) from None
    questions = (
        dict(qas_id=_text(row["id"]), question=_text(row["question"]), context=_text(row["context"]),
             title=_text(row.get("title", b"")), answer_texts=[_text(t) for t in row["answers"]["text"]],
             answer_starts=[int(s) for s in row["answers"]["answer_start"]],
             is_impossible=bool(row.get("is_impossible", False)))
        for row in tfds.as_numpy(dataset))
    return _collect_examples(questions, is_training, version_2_with_negative)


def _collect_examples(questions, is_training, version_2_with_negative):
    """(examples, skipped count) of question dicts; _make_example returns None for a skipped one."""
    examples, skipped = [], 0
    for question in questions:
        example = _make_example(**question, is_training=is_training, version_2_with_negative=version_2_with_negative)
        if example is None:
            skipped += 1
        else:
            examples.append(example)
    return examples, skipped


def _iterate_questions(data, path: str):
    """Yields (qa dict, context, title) of a parsed SQuAD file, checking its structure."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"SQuAD file {path} has no 'data' list")
    for i, article in enumerate(data["data"]):
        where = f"data[{i}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise ValueError(f"SQuAD file {path}: {where} has no 'paragraphs' list")
        title = str(article.get("title", ""))
        for j, paragraph in enumerate(article["paragraphs"]):
            where_p = f"{where}.paragraphs[{j}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                raise ValueError(f"SQuAD file {path}: {where_p} has no 'context' string")
            if not isinstance(paragraph.get("qas"), list):
                raise ValueError(f"SQuAD file {path}: {where_p} has no 'qas' list")
            for k, qa in enumerate(paragraph["qas"]):
                _check_qa(qa, f"{where_p}.qas[{k}]", path)
                yield qa, paragraph["context"], title


def _check_qa(qa, where: str, path: str):
    if not isinstance(qa, dict):
        raise ValueError(f"SQuAD file {path}: {where} is not an object")
    for key in ("id", "question"):
        if key not in qa:
            raise ValueError(f"SQuAD file {path}: {where} has no {key!r}")
    answers = qa.get("answers", [])
    if not isinstance(answers, list):
        raise ValueError(f"SQuAD file {path}: {where}.answers is not a list")
    for n, answer in enumerate(answers):
        if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
            raise ValueError(f"SQuAD file {path}: {where}.answers[{n}] needs 'text' and "
                             "'answer_start'")


def _make_example(qas_id: str, question: str, context: str, title: str,
                  answer_texts: Sequence[str], answer_starts: Sequence[int], is_impossible: bool,
                  is_training: bool, version_2_with_negative: bool) -> Optional[SquadExample]:
    """The example of one question, or None when a training question has no usable answer."""
    is_impossible = bool(is_impossible) and version_2_with_negative
    answers = [] if is_impossible else list(answer_texts)
    example = SquadExample(qas_id=qas_id, question_text=question, context_text=context,
                           answers=answers, is_impossible=is_impossible, title=title)
    if answers:
        example.answer_text, example.answer_start = answers[0], int(answer_starts[0])
    if not is_training or is_impossible:
        return example
    if not answers:
        logging.warning("Skipping training question %s: it has no answer", qas_id)
        return None
    if not _answer_is_aligned(context, example.answer_text, example.answer_start):
        logging.warning("Could not find answer of question %s: %r is not at character %d of its "
                        "context", qas_id, example.answer_text, example.answer_start)
        return None
    return example


def _answer_is_aligned(context: str, text: str, start: int) -> bool:
    return bool(text.strip()) and 0 <= start and context[start:start + len(text)] == text


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# -------------------------------------------------------------------------------------- windowing
def convert_examples_to_features(examples: Sequence[SquadExample], sp_model: bytes,
                                 max_seq_length: int = 384, doc_stride: int = 128,
                                 max_query_length: int = 64,
                                 is_training: bool = False) -> List[SquadFeature]:
    """Tokenizes the examples and cuts their contexts into windows (see the module docstring).

    Args:
      examples: from read_squad_json / read_squad_tfds.
      sp_model: the serialized SentencePiece model (tokenization.load_sp_model).
      max_seq_length: length of every feature, special tokens included (BERT: 384; the paper's
        SQuAD runs: 512); at most the model's max_seq_length.
      doc_stride: how many tokens each window starts after the previous one. A stride larger
        than a window moves by the window length, so no context token is ever left out.
      max_query_length: questions are truncated to this many tokens.
      is_training: compute start_position / end_position.

    Returns:
      The features, example by example and window by window; unique_ids count up from
      FIRST_UNIQUE_ID. Every example has at least one window (an empty context gives one window
      without context tokens).

    Raises:
      ValueError: bad lengths, or a vocabulary without the fixed special ids.
    """
    for arg, value in (("max_seq_length", max_seq_length), ("doc_stride", doc_stride),
                       ("max_query_length", max_query_length)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    if max_seq_length <= max_query_length + 3:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for context after a "
                         f"question of max_query_length {max_query_length} and the 3 special "
                         f"tokens; it must be > {max_query_length + 3}")
    tokenization.check_special_ids(sp_model)
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=sp_model)

    features = []
    context_cache = (None, None)  # consecutive questions usually share their context
    for example_index, example in enumerate(progress.log_every(examples, "Windowing questions")):
        query_ids = processor.encode(example.question_text)[:max_query_length]
        if context_cache[0] != example.context_text:
            context_cache = (example.context_text,
                             _encode_with_spans(processor, example.context_text))
        doc_ids, doc_spans = context_cache[1]
        answer_tokens = None
        if is_training and not example.is_impossible:
            answer_tokens = _answer_token_span(example, doc_spans)
        window_length = max_seq_length - len(query_ids) - 3
        windows = _windows(len(doc_ids), window_length, doc_stride)
        best_window = _max_context_windows(windows, len(doc_ids))
        for window_index, (start, length) in enumerate(windows):
            feature = _make_feature(
                FIRST_UNIQUE_ID + len(features), example_index, window_index, query_ids, doc_ids,
                doc_spans, start, length, max_seq_length,
                is_max_context=[best_window[t] == window_index
                                for t in range(start, start + length)])
            if answer_tokens is not None:
                first, last = answer_tokens
                # BERT: a window that does not hold the whole answer is trained to point at [CLS].
                if start <= first and last < start + length:
                    offset = len(query_ids) + 2 - start  # doc token -> sequence position
                    feature.start_position, feature.end_position = first + offset, last + offset
            features.append(feature)
    return features


def _encode_with_spans(processor, text: str) -> Tuple[List[int], List[Tuple[int, int]]]:
    """Token ids of text and each token's (start, end) character span in text (module docstring)."""
    pieces = _encode_pieces(processor, text)
    # Byte offset at which each character starts, then the total: byte -> character lookups.
    char_starts, offset = [], 0
    for char in text:
        char_starts.append(offset)
        offset += len(char.encode("utf-8"))
    char_starts.append(offset)
    ids, spans = [], []
    for piece in pieces:
        # A begin inside a multi-byte character rounds down, an end rounds up: the span always
        # covers whole characters of the original text.
        start = bisect.bisect_right(char_starts, piece.begin) - 1
        end = max(start, bisect.bisect_left(char_starts, piece.end))
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        ids.append(piece.id)
        spans.append((start, end))
    return ids, spans


def _encode_pieces(processor, text: str):
    """The pieces (id, begin, end byte offsets) of SentencePiece's proto output."""
    try:
        return processor.encode(text, out_type="proto").pieces
    except (ValueError, RuntimeError, TypeError):  # sentencepiece < 0.2.1 calls it immutable_proto
        return processor.encode(text, out_type="immutable_proto").pieces


def _answer_token_span(example: SquadExample,
                       doc_spans: Sequence[Tuple[int, int]]) -> Optional[Tuple[int, int]]:
    """First and last context token overlapping the training answer; None if none does."""
    start = example.answer_start
    end = start + len(example.answer_text)
    overlapping = [t for t, (s, e) in enumerate(doc_spans) if s < end and e > start]
    if not overlapping:
        logging.warning("No token of question %s's answer %r: trained as unanswerable",
                        example.qas_id, example.answer_text)
        return None
    return overlapping[0], overlapping[-1]


def _windows(num_tokens: int, window_length: int, doc_stride: int) -> List[Tuple[int, int]]:
    """(start, length) of each window over num_tokens context tokens, as BERT's doc_spans."""
    windows, start = [], 0
    while True:
        length = min(num_tokens - start, window_length)
        windows.append((start, length))
        if start + length >= num_tokens:
            return windows
        start += min(length, doc_stride)


def _max_context_windows(windows: Sequence[Tuple[int, int]], num_tokens: int) -> List[int]:
    """For each context token, the window where it has the most context.

    A token's score in a window is min(tokens left of it, tokens right of it) + 0.01 * window
    length (BERT's _check_is_max_context); ties go to the earlier window, so there is exactly
    one best window per token.
    """
    best_window, best_score = [-1] * num_tokens, [-math.inf] * num_tokens
    for index, (start, length) in enumerate(windows):
        last = start + length - 1
        for token in range(start, start + length):
            score = min(token - start, last - token) + 0.01 * length
            if score > best_score[token]:
                best_window[token], best_score[token] = index, score
    return best_window


def _make_feature(unique_id: int, example_index: int, window_index: int, query_ids, doc_ids,
                  doc_spans, start: int, length: int, max_seq_length: int,
                  is_max_context: Sequence[bool]) -> SquadFeature:
    """The feature of the window of `length` context tokens from `start` (labels left at 0)."""
    input_ids = [CLS_ID] + list(query_ids) + [SEP_ID]
    segment_ids = [0] * len(input_ids)
    token_spans, token_is_max_context = {}, {}
    for i in range(length):
        position = len(input_ids)
        token_spans[position] = doc_spans[start + i]
        token_is_max_context[position] = is_max_context[i]
        input_ids.append(doc_ids[start + i])
    input_ids.append(SEP_ID)
    segment_ids += [1] * (length + 1)
    input_mask = [1] * len(input_ids)
    padding = max_seq_length - len(input_ids)
    return SquadFeature(
        unique_id=unique_id, example_index=example_index, window_index=window_index,
        window_start=start, input_ids=input_ids + [PAD_ID] * padding,
        input_mask=input_mask + [0] * padding,
        segment_ids=segment_ids + [0] * padding, token_spans=token_spans,
        token_is_max_context=token_is_max_context)


# ---------------------------------------------------------------------------------------- dataset
def features_to_dataset(features: Sequence[SquadFeature], is_training: bool, batch_size: int,
                        drop_remainder: bool = False, shuffle: Optional[bool] = None,
                        seed: Optional[int] = None) -> tf.data.Dataset:
    """Batches of features for Keras.

    Training: (inputs, labels), inputs = {"input_ids", "input_mask", "segment_ids"}: int32
    [batch, max_seq_length]; labels = {"start_positions", "end_positions"}: int32 [batch].
    Prediction: the inputs dict alone, in feature order and with every feature, so the i-th row
    of model.predict's output belongs to features[i] (what compute_predictions expects).
    Finite (no repeat): repeat it for step-based training. int32 throughout, as TPUs want.

    Args:
      features: from convert_examples_to_features, all of one max_seq_length.
      is_training: yield labels and, by default, shuffle.
      batch_size: examples per batch.
      drop_remainder: drop the last partial batch (static batch shape for TPU training).
      shuffle: shuffle all features each epoch; defaults to is_training.
      seed: shuffle seed.

    Raises:
      ValueError: no features, a bad batch size, features of different lengths, or a
        prediction dataset asked to shuffle or drop features.
    """
    if not features:
        raise ValueError("no features to make a dataset from")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    shuffle = is_training if shuffle is None else shuffle
    if not is_training and (shuffle or drop_remainder):
        raise ValueError("a prediction dataset cannot shuffle or drop_remainder: predictions are "
                         "matched to features by order")
    lengths = {len(getattr(f, name)) for f in features for name in INPUT_NAMES}
    if len(lengths) != 1:
        raise ValueError(f"features have different lengths {sorted(lengths)}; convert them with "
                         "one max_seq_length")
    inputs = {name: np.asarray([getattr(f, name) for f in features], np.int32)
              for name in INPUT_NAMES}
    if is_training:
        labels = {"start_positions": np.asarray([f.start_position for f in features], np.int32),
                  "end_positions": np.asarray([f.end_position for f in features], np.int32)}
        dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
    else:
        dataset = tf.data.Dataset.from_tensor_slices(inputs)
    if shuffle:
        # All features fit in memory, so the buffer holds them all: a full shuffle.
        dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
