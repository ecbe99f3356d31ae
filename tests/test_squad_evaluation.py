"""gmlp_tf.tasks.squad.evaluation: exact match and F1 as the official SQuAD v1.1 / v2.0 scripts."""

import json
import os

import pytest

from gmlp_tf.tasks.squad import data as squad
from gmlp_tf.tasks.squad.evaluation import (evaluate, exact_match_score, f1_score, gold_answers,
                                      normalize_answer)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "squad")
V1 = os.path.join(FIXTURES, "sample-v1.1.json")
V2 = os.path.join(FIXTURES, "sample-v2.0.json")


def _dataset(questions, version_2=False):
    """Official-format data of one paragraph: questions is [(id, [gold texts])]."""
    qas = []
    for qid, answers in questions:
        qa = {"id": qid, "question": "?", "answers": [{"text": a, "answer_start": 0}
                                                      for a in answers]}
        if version_2:
            qa["is_impossible"] = not answers
        qas.append(qa)
    return {"version": "v2.0" if version_2 else "1.1",
            "data": [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]}


def test_normalization():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    # Articles only as whole words; punctuation is removed before articles are.
    assert normalize_answer("Theater at the ANTHEM") == "theater at anthem"
    assert normalize_answer("the-a") == "thea"
    assert normalize_answer("U.S.A.") == "usa"
    assert normalize_answer(" 100\u00a0metres\n") == "100 metres"
    assert normalize_answer("The") == "" and normalize_answer("") == ""


def test_single_answer_scores():
    assert exact_match_score("the Volga.", "Volga") == 1.0
    assert exact_match_score("Volga River", "Volga") == 0.0
    # Bag of tokens: pred [pierre, curie] vs gold [her, husband, pierre, curie]: P 1, R 1/2.
    assert f1_score("Pierre Curie", "her husband Pierre Curie") == pytest.approx(2 / 3)
    # Repeated tokens count as often as they occur in both.
    assert f1_score("ten ten ten", "ten") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert f1_score("Paris", "London") == 0.0
    # Empty answers: v1.1 scores 0 (no common token), v2.0 scores empty vs empty as 1.
    assert f1_score("", "") == 0.0
    assert f1_score("", "", version_2_with_negative=True) == 1.0
    assert f1_score("", "Paris", version_2_with_negative=True) == 0.0
    assert f1_score("the", "a", version_2_with_negative=True) == 1.0  # both normalize to ""


def test_v1_max_over_gold_answers_partial_f1_and_missing_predictions():
    data = _dataset([("q1", ["the Volga", "Volga River"]),
                     ("q2", ["Pierre Curie and Henri Becquerel"]),
                     ("q3", ["1903"])])
    predictions = {"q1": "the Volga river", "q2": "Pierre Curie"}  # q3 missing: scores 0
    result = evaluate(data, predictions)
    assert set(result) == {"exact_match", "f1", "total"}
    # q1: exact against its second gold answer. q2: P 1, R 2/5 -> F1 4/7.
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(100 * (1 + 4 / 7) / 3)
    assert result["total"] == 3
    # The same from the "data" list alone.
    assert evaluate(data["data"], predictions) == result


def test_v2_answerable_and_unanswerable_both_ways():
    data = _dataset([("a1", ["Qin Shi Huang", "the first emperor"]),
                     ("a2", ["in the leaves"]),
                     ("a3", ["mostly in the leaves"]),
                     ("n1", []), ("n2", [])], version_2=True)
    predictions = {"a1": "Qin Shi Huang", "a2": "", "a3": "the leaves", "n1": "",
                   "n2": "oxygen"}
    result = evaluate(data, predictions, version_2_with_negative=True)
    # Per question (exact, f1): a1 (1, 1), a2 (0, 0) "" for an answerable one,
    # a3 (0, 1/2) [leaves] vs [mostly, in, leaves], n1 (1, 1), n2 (0, 0) text for no answer.
    expected = {"exact": 40.0, "exact_match": 40.0, "f1": 50.0, "total": 5,
                "HasAns_exact": 100 / 3, "HasAns_f1": 50.0, "HasAns_total": 3,
                "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2}
    assert result == pytest.approx(expected)

    na_probs = {"a1": 0.1, "a2": 0.9, "a3": 0.2, "n1": 0.3, "n2": 0.95}
    result = evaluate(data, predictions, version_2_with_negative=True, na_probs=na_probs,
                      na_prob_thresh=0.5)
    # Above 0.5, a2 and n2 count as "no answer": a2 stays 0, n2 becomes (1, 1).
    assert result["exact"] == pytest.approx(60.0) and result["f1"] == pytest.approx(70.0)
    assert result["NoAns_exact"] == 100.0 and result["HasAns_exact"] == pytest.approx(100 / 3)
    # Threshold search: from 2 (all "no answer") add a1 +1 at 0.1, a3 +0 / +0.5 at 0.2, n1 0,
    # a2 0, n2 -1: best exact 3 of 5 at 0.1, best F1 3.5 of 5 at 0.2.
    assert result["best_exact"] == pytest.approx(60.0) and result["best_exact_thresh"] == 0.1
    assert result["best_f1"] == pytest.approx(70.0) and result["best_f1_thresh"] == 0.2


def test_v2_groups_without_questions_have_no_keys_and_empty_gold_answers_mean_no_answer():
    data = _dataset([("a", ["the"]), ("b", ["Paris"])], version_2=True)
    result = evaluate(data, {"a": "", "b": "paris!"}, version_2_with_negative=True)
    # "a" has an answer (HasAns) whose text normalizes to "": its gold becomes [""].
    assert result == pytest.approx({"exact": 100.0, "exact_match": 100.0, "f1": 100.0,
                                    "total": 2, "HasAns_exact": 100.0, "HasAns_f1": 100.0,
                                    "HasAns_total": 2})


def test_fixture_files_examples_and_paths_agree(tmp_path):
    examples, _ = squad.read_squad_json(V2, is_training=False, version_2_with_negative=True)
    perfect = {e.qas_id: (e.answers[0] if e.answers else "") for e in examples}
    from_file = evaluate(V2, perfect, version_2_with_negative=True)
    assert from_file["exact"] == from_file["f1"] == 100.0
    assert (from_file["HasAns_total"], from_file["NoAns_total"]) == (5, 3)
    assert evaluate(examples, perfect, version_2_with_negative=True) == from_file
    wrong = dict(perfect, **{"wall-impossible": "Qin Shi Huang", "wall-1": ""})
    result = evaluate(examples, wrong, version_2_with_negative=True)
    assert result["exact"] == pytest.approx(100 * 6 / 8)

    examples, _ = squad.read_squad_json(V1, is_training=False)
    predictions = {e.qas_id: e.answers[-1] for e in examples}
    del predictions["danube-2"]
    result = evaluate(V1, predictions)
    assert result["total"] == 12 and result["exact_match"] == pytest.approx(100 * 11 / 12)
    assert evaluate(examples, predictions) == result
    assert list(gold_answers(V1))[:2] == ["curie-1", "curie-2"]


def test_argument_errors(tmp_path):
    data = _dataset([("a", ["x"]), ("n", [])], version_2=True)
    with pytest.raises(ValueError, match="no gold answer"):
        evaluate(data, {"a": "x", "n": ""})
    with pytest.raises(ValueError, match="SQuAD 2.0 only"):
        evaluate(_dataset([("a", ["x"])]), {"a": "x"}, na_probs={"a": 0.0})
    with pytest.raises(ValueError, match="no questions"):
        evaluate({"data": []}, {})
    with pytest.raises(FileNotFoundError, match="missing.json"):
        evaluate(str(tmp_path / "missing.json"), {})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": "1.1"}))
    with pytest.raises(ValueError, match="no 'data' list"):
        evaluate(str(bad), {})
