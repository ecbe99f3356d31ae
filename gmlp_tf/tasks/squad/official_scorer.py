"""SQuAD exact match and F1, computed as the official evaluate-v1.1.py and evaluate-v2.0.py do.

Scoring of one prediction against one gold answer, both versions:
  normalization  lower case, drop string.punctuation characters, drop the whole words a / an /
                 the, collapse whitespace.
  exact match    1 if the normalized texts are equal, else 0.
  F1             over the normalized whitespace tokens (bag of tokens, counting repeats):
                 2 * precision * recall / (precision + recall), 0 without a common token.
A question scores the maximum over its gold answers.

SQuAD 2.0 differences (version_2_with_negative=True), as evaluate-v2.0.py:
  - gold answers that normalize to "" are dropped; a question left without any (an
    unanswerable one) has the single gold answer "": predicting "" scores 1, anything else 0.
  - F1 of an empty against a non-empty token list is 0, of two empty lists 1 (v1.1 gives 0).
  - na_probs {qid: no-answer score} with na_prob_thresh: a question whose score is above the
    threshold counts as answered "no answer" (1 if it is unanswerable, else 0). BERT's
    null_odds.json is such a file. With na_probs, the best thresholds are searched as the
    script's find_all_best_thresh (best_exact, best_exact_thresh, best_f1, best_f1_thresh).

Key scheme of `evaluate` (percentages 0..100, totals as ints):
  always       exact_match, f1, total
  v2.0 adds    exact (the v2.0 script's name; equal to exact_match);
               HasAns_exact, HasAns_f1, HasAns_total when some questions have an answer;
               NoAns_exact, NoAns_f1, NoAns_total when some have none (the script's rule);
               best_exact, best_exact_thresh, best_f1, best_f1_thresh when na_probs are given.

Missing predictions score 0 and count in every total (evaluate-v1.1.py does the same and prints
a message; evaluate-v2.0.py leaves them out of its totals or fails): a warning gives their number.
Question ids missing from na_probs count as 0.0 (evaluate-v2.0.py fails on them).

Where the two scripts differ in how they walk the data, each version follows its own script:
  v1.1  every qa entry of every paragraph is scored, so an id repeated in the data counts once
        per entry (its own gold answers, the one prediction of the id).
  v2.0  scores are dicts by id (the last entry of a repeated id wins), and the threshold search
        walks the ids in the order of the na_probs mapping's own keys (the na_prob file's order),
        stably sorted by na_prob: tied na_probs are taken in that order, which decides where
        the best threshold falls (the dataset's order can give another best_exact).

`official_scores` gives the official scripts' own dicts (v1.1: exact_match, f1; v2.0: exact, f1,
total, HasAns_*, NoAns_*, best_*), which `main` (scripts/evaluate_squad.py) prints as the scripts do.
"""

import argparse
import collections
import errno
import json
import os
import re
import string
import sys
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from absl import logging

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


# --------------------------------------------------------------------------------- single answers
def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles a / an / the, single spaces (the official rule)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 if the normalized texts are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str, version_2_with_negative: bool = False) -> float:
    """Token-level F1 of the normalized texts (v2.0: two empty answers score 1.0)."""
    prediction_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(ground_truth).split()
    if version_2_with_negative and (not prediction_tokens or not truth_tokens):
        return float(prediction_tokens == truth_tokens)
    common = collections.Counter(prediction_tokens) & collections.Counter(truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def max_over_ground_truths(metric: Callable[..., float], prediction: str, ground_truths: Sequence[str],
                           **kwargs: Any) -> float:
    """The best score of prediction against any gold answer."""
    return max(metric(prediction, truth, **kwargs) for truth in ground_truths)


# ------------------------------------------------------------------------------------ a whole set
Dataset = Union[str, os.PathLike, Mapping, Sequence]


def evaluate(dataset_json_or_examples: Dataset, predictions: Mapping[str, str],
             version_2_with_negative: bool = False,
             na_probs: Optional[Mapping[str, float]] = None,
             na_prob_thresh: float = 1.0, source: Optional[str] = None) -> Dict[str, float]:
    """Scores predictions against gold answers; see the module docstring for the keys.

    Args:
      dataset_json_or_examples: the gold data: a SQuAD JSON file path, its parsed content (the
        dict with "data", or the "data" list of articles), or SquadExamples (their `answers`).
      predictions: {qas_id: predicted text} (predictions.json); "" means "no answer".
      version_2_with_negative: score as evaluate-v2.0.py.
      na_probs: {qas_id: no-answer score} (null_odds.json); missing ids count as 0.0. v2.0 only.
      na_prob_thresh: questions whose na_prob is above it count as answered "no answer" (the
        v2.0 script's default 1.0).
      source: the file the data came from, named in errors about it (by default the path given).

    Returns:
      The metrics dict.

    Raises:
      FileNotFoundError / ValueError: an unreadable dataset, one without questions, a v1.1
        question without gold answers, or na_probs without version_2_with_negative.
    """
    if isinstance(dataset_json_or_examples, (str, os.PathLike)):
        source = source or os.fspath(dataset_json_or_examples)
    where = f"{source}: " if source else ""
    entries = gold_entries(dataset_json_or_examples, source)
    questions = collections.OrderedDict(entries)  # v2.0: by id, the last entry of an id wins
    if not questions:
        raise ValueError(f"{where}the dataset has no questions to evaluate")
    if na_probs is not None and not version_2_with_negative:
        raise ValueError("na_probs apply to SQuAD 2.0 only (version_2_with_negative=True)")
    if not version_2_with_negative:
        for qid, answers in entries:
            if not answers:
                raise ValueError(f"{where}question {qid} has no gold answer; score SQuAD 2.0 data with "
                                 "version_2_with_negative=True")
    missing = [qid for qid in questions if qid not in predictions]
    if missing:
        logging.warning("%d of %d questions have no prediction and score 0 (first: %s)",
                        len(missing), len(questions), missing[0])
    if not version_2_with_negative:
        return _evaluate_v1(entries, predictions)
    return _evaluate_v2(questions, predictions, na_probs, na_prob_thresh)


def gold_entries(dataset: Dataset, source: Optional[str] = None) -> List[Tuple[str, List[str]]]:
    """(qas_id, gold answer texts) of every qa entry, in data order (a repeated id repeats).

    dataset: a SQuAD JSON path, its parsed content, its "data" list, or SquadExamples.
    source: the file the data came from, named in error messages (by default dataset when it is a path).

    Raises:
      ValueError: malformed data (no "data" list, a question without "id", an answer without "text"...),
        the message naming source.
    """
    if isinstance(dataset, (str, os.PathLike)):
        source = source or os.fspath(dataset)
        dataset = _load_json(os.fspath(dataset))
    where = f"{source}: " if source else ""
    if isinstance(dataset, Mapping):
        if not isinstance(dataset.get("data"), list):
            raise ValueError(f"{where}the SQuAD dataset has no 'data' list")
        dataset = dataset["data"]
    entries = []
    for item in dataset:
        if hasattr(item, "qas_id") and hasattr(item, "answers"):  # a SquadExample
            entries.append((item.qas_id, list(item.answers)))
            continue
        if not isinstance(item, Mapping) or not isinstance(item.get("paragraphs"), list):
            raise ValueError(f"{where}expected SQuAD articles (with 'paragraphs') or SquadExamples, got "
                             f"{type(item).__name__}")
        for paragraph in item["paragraphs"]:
            qas = paragraph.get("qas", []) if isinstance(paragraph, Mapping) else None
            if not isinstance(qas, list):
                raise ValueError(f"{where}a SQuAD paragraph is not an object with a 'qas' list")
            for qa in qas:
                if not isinstance(qa, Mapping) or "id" not in qa:
                    raise ValueError(f"{where}a SQuAD question has no 'id'")
                entries.append((str(qa["id"]), _answer_texts(qa, where)))
    return entries


def _answer_texts(qa: Mapping, where: str) -> List[str]:
    """The gold answer texts of one qa entry, checked: one ValueError naming the question otherwise."""
    answers = qa.get("answers", [])
    if not isinstance(answers, list):
        raise ValueError(f"{where}question {str(qa['id'])!r} has 'answers' that are not a list")
    for answer in answers:
        if not isinstance(answer, Mapping) or "text" not in answer:
            raise ValueError(f"{where}question {str(qa['id'])!r} has an answer without 'text'")
        if not isinstance(answer["text"], str):
            raise ValueError(f"{where}question {str(qa['id'])!r} has an answer whose 'text' is not a string")
    return [answer["text"] for answer in answers]


def gold_answers(dataset: Dataset) -> "collections.OrderedDict[str, List[str]]":
    """{qas_id: gold answer texts}, ids in first-seen order, a repeated id's last entry winning."""
    return collections.OrderedDict(gold_entries(dataset))


def _load_json(path: str):
    """A JSON file's content; local paths with open (no TensorFlow), URLs (gs://) with gfile."""
    if "://" in path:
        import tensorflow as tf  # Only for remote paths: scoring a local file stays light.

        exists, is_dir, opener = tf.io.gfile.exists, tf.io.gfile.isdir, tf.io.gfile.GFile
    else:
        exists, is_dir, opener = os.path.exists, os.path.isdir, open
    if not exists(path) or is_dir(path):
        raise FileNotFoundError(f"SQuAD file not found: {path}")
    with opener(path, "r") as reader:
        try:
            return json.load(reader)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"SQuAD file {path} is not JSON: {err}") from None


def _evaluate_v1(entries: Sequence[Tuple[str, List[str]]],
                 predictions: Mapping[str, str]) -> Dict[str, float]:
    """evaluate-v1.1.py: one score per qa entry; a missing prediction scores 0."""
    exact = f1 = 0.0
    for qid, answers in entries:
        if qid in predictions:
            exact += max_over_ground_truths(exact_match_score, predictions[qid], answers)
            f1 += max_over_ground_truths(f1_score, predictions[qid], answers)
    total = len(entries)
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total, "total": total}


def _raw_scores(questions: Mapping[str, List[str]], predictions: Mapping[str, str],
                version_2_with_negative: bool) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Per-question exact match and F1 (0 to 1) before any no-answer threshold."""
    exact, f1 = {}, {}
    for qid, answers in questions.items():
        if version_2_with_negative:
            answers = [a for a in answers if normalize_answer(a)] or [""]
        if qid not in predictions:
            exact[qid] = f1[qid] = 0.0
            continue
        prediction = predictions[qid]
        exact[qid] = max_over_ground_truths(exact_match_score, prediction, answers)
        f1[qid] = max_over_ground_truths(f1_score, prediction, answers,
                                         version_2_with_negative=version_2_with_negative)
    return exact, f1


def _evaluate_v2(questions, predictions, na_probs, na_prob_thresh) -> Dict[str, float]:
    has_answer = {qid: bool(answers) for qid, answers in questions.items()}
    exact_raw, f1_raw = _raw_scores(questions, predictions, version_2_with_negative=True)
    probs = {qid: float((na_probs or {}).get(qid, 0.0)) for qid in questions}
    exact = _apply_threshold(exact_raw, probs, has_answer, na_prob_thresh)
    f1 = _apply_threshold(f1_raw, probs, has_answer, na_prob_thresh)
    result = {}
    result["exact"], result["f1"], result["total"] = _averages(exact, f1, list(questions))
    result["exact_match"] = result["exact"]
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [qid for qid, has in has_answer.items() if has == wanted]
        if qids:  # as the v2.0 script: a group without questions has no keys
            (result[prefix + "_exact"], result[prefix + "_f1"],
             result[prefix + "_total"]) = _averages(exact, f1, qids)
    if na_probs is not None:
        # The na_probs mapping's own key order (the file's), then ids it lacks: the stable sort
        # in _best_threshold then breaks ties as the script's sorted(na_probs, ...) does.
        answered = [qid for qid in na_probs if qid in questions and qid in predictions]
        answered += [qid for qid in questions if qid in predictions and qid not in na_probs]
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            best, thresh = _best_threshold(raw, probs, has_answer, predictions, answered)
            result["best_" + name], result[f"best_{name}_thresh"] = best, thresh
    return result


def _apply_threshold(scores, probs, has_answer, threshold) -> Dict[str, float]:
    """Questions with a no-answer score above threshold count as answered "no answer"."""
    return {qid: (float(not has_answer[qid]) if probs[qid] > threshold else score)
            for qid, score in scores.items()}


def _averages(exact, f1, qids: Iterable[str]) -> Tuple[float, float, int]:
    qids = list(qids)
    return (100.0 * sum(exact[q] for q in qids) / len(qids),
            100.0 * sum(f1[q] for q in qids) / len(qids), len(qids))


def _best_threshold(raw, probs, has_answer, predictions, answered) -> Tuple[float, float]:
    """The best score over no-answer thresholds and that threshold (find_best_thresh).

    Start with every question answered "no answer" (the unanswerable ones score 1), then lower
    the threshold past each question in order of its no-answer score: an answerable question
    then gains its raw score, an unanswerable one loses 1 if the model gave a non-empty text.
    Questions without a prediction score 0 throughout (they are in the denominator only).
    `answered` is walked in its own order, stably sorted by no-answer score: ties keep it.
    """
    score = sum(1 for qid in answered if not has_answer[qid])
    best, best_thresh = score, 0.0
    for qid in sorted(answered, key=lambda q: probs[q]):
        if has_answer[qid]:
            score += raw[qid]
        elif predictions[qid]:
            score -= 1
        if score > best:
            best, best_thresh = score, probs[qid]
    return 100.0 * best / len(raw), best_thresh


# ------------------------------------------------------------------------- the scripts' own dicts
_V2_KEYS = ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact",
            "NoAns_f1", "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh")


def is_version_2(dataset: Dataset) -> bool:
    """Whether data is SQuAD 2.0: a "v2..." version, an is_impossible field, or a question
    without gold answers (SquadExamples: one is_impossible)."""
    if isinstance(dataset, (str, os.PathLike)):
        dataset = _load_json(os.fspath(dataset))
    if isinstance(dataset, Mapping):
        if str(dataset.get("version", "")).lstrip("v").startswith("2"):
            return True
        dataset = dataset.get("data") or []
    # Malformed data is skipped here: gold_entries, which scoring calls next, says what is wrong.
    for item in dataset if isinstance(dataset, Sequence) else []:
        if hasattr(item, "is_impossible"):
            if item.is_impossible:
                return True
            continue
        for paragraph in _list(item, "paragraphs"):
            for qa in _list(paragraph, "qas"):
                if isinstance(qa, Mapping) and ("is_impossible" in qa or not qa.get("answers")):
                    return True
    return False


def _list(entry: Any, key: str) -> list:
    """entry[key] when entry is a JSON object whose key holds a list, else []."""
    value = entry.get(key) if isinstance(entry, Mapping) else None
    return value if isinstance(value, list) else []


def official_scores(dataset: Dataset, predictions: Mapping[str, str],
                    na_probs: Optional[Mapping[str, float]] = None, na_prob_thresh: float = 1.0,
                    version_2_with_negative: Optional[bool] = None) -> "collections.OrderedDict":
    """The dict the official script prints: evaluate-v1.1.py's {exact_match, f1} or
    evaluate-v2.0.py's {exact, f1, total, HasAns_*, NoAns_*[, best_*]}, in the script's order.

    version_2_with_negative None: v2.0 when the data is (is_version_2) or na_probs are given.
    """
    source = None
    if isinstance(dataset, (str, os.PathLike)):
        source = os.fspath(dataset)
        dataset = _load_json(source)
    if version_2_with_negative is None:
        version_2_with_negative = na_probs is not None or is_version_2(dataset)
    scores = evaluate(dataset, predictions, version_2_with_negative, na_probs, na_prob_thresh, source=source)
    keys = _V2_KEYS if version_2_with_negative else ("exact_match", "f1")
    return collections.OrderedDict((key, scores[key]) for key in keys if key in scores)


# --------------------------------------------------------------------------- command line
PROGRAM = "evaluate_squad.py"


def parse_args(argv: Optional[List[str]] = None, prog: str = PROGRAM) -> argparse.Namespace:
    """The command line's arguments: the official evaluate-v2.0.py's."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Official SQuAD v1.1 / v2.0 scores of a predictions file.")
    parser.add_argument("data_file", metavar="data.json", help="Input data JSON file.")
    parser.add_argument("pred_file", metavar="pred.json", help="Model predictions.")
    parser.add_argument("--out-file", "-o", metavar="eval.json",
                        help="Write accuracy metrics to file (default is stdout).")
    parser.add_argument("--na-prob-file", "-n", metavar="na_prob.json",
                        help="Model estimates of probability of no answer (null_odds.json).")
    parser.add_argument("--na-prob-thresh", "-t", type=float, default=1.0,
                        help='Predict "" if no-answer probability exceeds this (default = 1.0).')
    parser.add_argument("--version", choices=("auto", "1.1", "2.0"), default="auto",
                        help="Score as evaluate-v1.1.py or evaluate-v2.0.py (default: from the data).")
    return parser.parse_args(argv)


def _mapping(path: str, what: str, value_type, type_name: str) -> Mapping:
    """A {qid: value} JSON file, checked: one clear ValueError otherwise."""
    content = _load_json(path)
    if not isinstance(content, dict):
        raise ValueError(f"{what} file {path} must hold a JSON object {{question id: value}}")
    for qid, value in content.items():
        if not isinstance(value, value_type) or isinstance(value, bool):
            raise ValueError(f"{what} file {path}: the value of {qid!r} is not a {type_name}")
    return content


def _write_text(path: str, text: str) -> None:
    """Writes text to a local path through a temporary file beside it: a failed write leaves no
    half file (and an existing one as it was)."""
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as writer:
            writer.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: Optional[List[str]] = None, prog: str = PROGRAM) -> int:
    """The command line (scripts/evaluate_squad.py): scores a predictions file; returns the exit status.

        evaluate_squad.py DATA.json PREDICTIONS.json [--na-prob-file NA.json] [--na-prob-thresh 1.0]
            [--out-file F] [--version auto|1.1|2.0]

    The arguments are the v2.0 script's. SQuAD 2.0 data (a "v2.0" version, is_impossible fields
    or questions without answers) or an --na-prob-file (e.g. run_squad.py's null_odds.json)
    scores as evaluate-v2.0.py and prints its JSON (exact, f1, total, HasAns_*, NoAns_*, best_*);
    other data as evaluate-v1.1.py ({"exact_match", "f1"}); --version forces either. The dict is
    printed, or written to --out-file. A missing or malformed file is one line on stderr, "<prog>:
    error: ...", and exit status 1.
    """
    args = parse_args(argv, prog)
    try:
        predictions = _mapping(args.pred_file, "predictions", str, "string")
        na_probs = None
        if args.na_prob_file:
            na_probs = {k: float(v) for k, v in _mapping(args.na_prob_file, "na_prob", (int, float), "number").items()}
        version_2 = {"auto": None, "1.1": False, "2.0": True}[args.version]
        scores = official_scores(args.data_file, predictions, na_probs, args.na_prob_thresh, version_2)
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    if args.out_file:
        try:
            _write_text(args.out_file, json.dumps(scores))
        except OSError as err:
            print(f"{prog}: error: cannot write --out-file {args.out_file}: {err.strerror or err}", file=sys.stderr)
            return 1
    else:
        print(json.dumps(scores, indent=2))
    return 0
