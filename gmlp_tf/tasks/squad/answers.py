"""SQuAD answers: the model's start / end logits decoded into n-best spans of the context, and
BERT's prediction files (step 4 of data.py's module docstring).
"""

import collections
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from gmlp_tf.tasks.squad.data import SquadExample, SquadFeature
from gmlp_tf.utils import progress

# The null odds of a v2.0 question for which no window holds any valid span (an empty context):
# finite, so that null_odds.json stays standard JSON, and above any useful threshold.
NO_SPAN_NULL_ODDS = 1e9


# --------------------------------------------------------------------------------------- decoding
_Candidate = collections.namedtuple(
    "_Candidate", ["feature_index", "start", "end", "start_logit", "end_logit"])


def compute_predictions(examples: Sequence[SquadExample], features: Sequence[SquadFeature],
                        start_logits: np.ndarray, end_logits: np.ndarray, n_best_size: int = 20,
                        max_answer_length: int = 30, version_2_with_negative: bool = False,
                        null_score_diff_threshold: float = 0.0
                        ) -> Tuple[Dict[str, str], Dict[str, List[Dict[str, Union[str, float]]]], Dict[str, float]]:
    """Decodes the model's span logits into answer texts, as BERT's write_predictions.

    For each window, the n_best_size best start positions (context tokens whose
    token_is_max_context is True) and end positions (context tokens) are paired, keeping
    end >= start and end - start + 1 <= max_answer_length; a span's score is its start logit
    plus its end logit. The candidates of all of an example's windows are ranked together, and
    the n-best list keeps the first n_best_size distinct texts. A text is
    context_text[start token's char start : end token's char end], stripped: an exact substring
    of the context. Unlike BERT, the top-n cut is taken among context tokens only, so a window
    whose largest logits fall on the question still gives candidates.

    SQuAD 2.0: the null score is start_logits[f, 0] + end_logits[f, 0] (the [CLS] position),
    the minimum over the example's windows; "" competes in the n-best with that score (and is
    added if it ranked out). null_odds[qid] = null score - best non-null span score, and the
    prediction is "" when null_odds > null_score_diff_threshold (NO_SPAN_NULL_ODDS when there is
    no non-null span at all).

    Args:
      examples: the examples, as given to convert_examples_to_features.
      features: their features (any order; matched to examples by example_index).
      start_logits, end_logits: float [num_features, max_seq_length], row i for features[i].
      n_best_size: candidates per window and length of the n-best lists.
      max_answer_length: longest answer in tokens.
      version_2_with_negative: allow the empty (no-answer) prediction.
      null_score_diff_threshold: see above (BERT: 0.0; tune with the evaluation's best_f1_thresh).

    Returns:
      (predictions {qas_id: text}, nbest {qas_id: [{"text", "probability", "start_logit",
      "end_logit"}], best first, probabilities a softmax over the n-best scores}, null_odds
      {qas_id: float}, empty unless version_2_with_negative). Without any valid span (v1.1)
      the prediction is "".

    Raises:
      ValueError: logits that do not fit the features, an example without features, or bad
        n_best_size / max_answer_length.
    """
    start_logits = np.asarray(start_logits, np.float64)
    end_logits = np.asarray(end_logits, np.float64)
    for name, logits in (("start_logits", start_logits), ("end_logits", end_logits)):
        if logits.ndim != 2 or logits.shape[0] != len(features):
            raise ValueError(f"{name} must be [num_features={len(features)}, max_seq_length], "
                             f"got shape {logits.shape}")
    for arg, value in (("n_best_size", n_best_size), ("max_answer_length", max_answer_length)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    by_example = collections.defaultdict(list)
    for index, feature in enumerate(features):
        by_example[feature.example_index].append(index)

    predictions, nbest, null_odds = {}, {}, {}
    for example_index, example in enumerate(progress.log_every(examples, "Decoding answers")):
        if not by_example.get(example_index):
            raise ValueError(f"example {example_index} ({example.qas_id}) has no features")
        candidates, null = [], None
        for index in by_example[example_index]:
            feature = features[index]
            candidates += _window_candidates(index, feature, start_logits[index],
                                             end_logits[index], n_best_size, max_answer_length)
            if version_2_with_negative:
                score = start_logits[index, 0] + end_logits[index, 0]
                if null is None or score < null.start_logit + null.end_logit:
                    null = _Candidate(index, 0, 0, start_logits[index, 0], end_logits[index, 0])
        entries = _nbest_entries(example, features, candidates, null, n_best_size)
        nbest[example.qas_id] = entries
        best_span = next((e for e in entries if e["text"]), None)
        if not version_2_with_negative:
            predictions[example.qas_id] = best_span["text"] if best_span else ""
            continue
        null_score = null.start_logit + null.end_logit
        odds = (null_score - best_span["start_logit"] - best_span["end_logit"]
                if best_span else NO_SPAN_NULL_ODDS)
        null_odds[example.qas_id] = float(odds)
        predictions[example.qas_id] = "" if odds > null_score_diff_threshold else best_span["text"]
    return predictions, nbest, null_odds


def _window_candidates(index: int, feature: SquadFeature, start_logits: np.ndarray,
                       end_logits: np.ndarray, n_best_size: int,
                       max_answer_length: int) -> List[_Candidate]:
    """The valid (start, end) spans of one window among its n-best starts and ends."""
    positions = sorted(feature.token_spans)
    starts = [p for p in positions if feature.token_is_max_context.get(p, False)]
    starts = sorted(starts, key=lambda p: -start_logits[p])[:n_best_size]
    ends = sorted(positions, key=lambda p: -end_logits[p])[:n_best_size]
    return [_Candidate(index, s, e, start_logits[s], end_logits[e])
            for s in starts for e in ends if s <= e < s + max_answer_length]


def _nbest_entries(example: SquadExample, features: Sequence[SquadFeature],
                   candidates: List[_Candidate], null: Optional[_Candidate],
                   n_best_size: int) -> List[dict]:
    """The n-best list of one example: distinct texts, best first, with softmax probabilities."""
    if null is not None:
        candidates = candidates + [null]
    candidates.sort(key=lambda c: c.start_logit + c.end_logit, reverse=True)
    chosen, seen = [], set()
    for candidate in candidates:
        if len(chosen) >= n_best_size:
            break
        text = "" if candidate is null else _span_text(example, features[candidate.feature_index],
                                                         candidate.start, candidate.end)
        # A span of whitespace-only tokens is not an answer; "" only stands for "no answer".
        if text in seen or (not text and candidate is not null):
            continue
        seen.add(text)
        chosen.append((text, candidate.start_logit, candidate.end_logit))
    if null is not None and "" not in seen:
        chosen.append(("", null.start_logit, null.end_logit))
    if not chosen:
        chosen.append(("", 0.0, 0.0))
    probabilities = _softmax([s + e for _, s, e in chosen])
    return [{"text": text, "probability": float(p), "start_logit": float(s), "end_logit": float(e)}
            for (text, s, e), p in zip(chosen, probabilities)]


def _span_text(example: SquadExample, feature: SquadFeature, start: int, end: int) -> str:
    char_start = feature.token_spans[start][0]
    char_end = feature.token_spans[end][1]
    return example.context_text[char_start:char_end].strip() if char_end > char_start else ""


def _softmax(scores: Sequence[float]) -> np.ndarray:
    scores = np.asarray(scores, np.float64)
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


# ---------------------------------------------------------------------------------------- writing
def write_predictions(output_dir: str, predictions: Dict[str, str], nbest: Dict[str, List[dict]],
                      null_odds: Optional[Dict[str, float]] = None) -> Dict[str, str]:
    """Writes predictions.json, nbest_predictions.json and, given null_odds, null_odds.json.

    Each file is written to a temporary name and then renamed, so a reader (or an interrupted
    job) never sees half a file. output_dir may be local or gs:// and is created if missing.

    Returns:
      {"predictions": path, "nbest_predictions": path[, "null_odds": path]}.
    """
    tf.io.gfile.makedirs(output_dir)
    outputs = {"predictions": predictions, "nbest_predictions": nbest}
    if null_odds is not None:
        outputs["null_odds"] = null_odds
    paths = {}
    for name, data in outputs.items():
        path = os.path.join(output_dir, name + ".json")
        tmp = path + ".tmp"
        with tf.io.gfile.GFile(tmp, "w") as writer:
            writer.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        tf.io.gfile.rename(tmp, path, overwrite=True)
        paths[name] = path
    return paths
