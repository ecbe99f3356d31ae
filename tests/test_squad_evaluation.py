"""gmlp_tf.tasks.squad.official_scorer: exact match and F1 as the official SQuAD v1.1 / v2.0 scripts."""

import json
import os
import subprocess
import sys

import pytest

from gmlp_tf.tasks.squad import data as squad
from gmlp_tf.tasks.squad import squad_evaluation
from gmlp_tf.tasks.squad.official_scorer import (
    evaluate,
    exact_match_score,
    f1_score,
    gold_answers,
    normalize_answer,
    official_scores,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "squad")
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


def test_v2_best_threshold_breaks_na_prob_ties_in_the_na_prob_files_order():
    # Dataset order q1, q2, q3, q4; the na_prob file lists q2 before q1, tied at 0.5.
    data = _dataset([("q1", ["Paris"]), ("q2", []), ("q3", []), ("q4", ["Rome"])], version_2=True)
    predictions = {"q1": "Paris", "q2": "Lyon", "q3": "", "q4": "Milan"}
    na_probs = {"q4": 0.1, "q2": 0.5, "q1": 0.5, "q3": 0.9}
    result = evaluate(data, predictions, version_2_with_negative=True, na_probs=na_probs)
    # Worked by hand as evaluate-v2.0.py's find_best_thresh: start at 2 (q2, q3 have no answer);
    # walk sorted(na_probs, key=na_probs.get) = q4, q2, q1, q3 (stable: q2 before q1):
    # q4 +0 -> 2, q2 -1 -> 1 (a text for no answer), q1 +1 -> 2, q3 +0 -> 2. Never above 2:
    # best 2 of 4 = 50.0 at the starting threshold 0.0. (The dataset's order q4, q1, q2, q3
    # would reach 3 after q1: 75.0 at 0.5.)
    assert result["best_exact"] == 50.0 and result["best_exact_thresh"] == 0.0
    assert result["best_f1"] == 50.0 and result["best_f1_thresh"] == 0.0
    # The other order of the same ties: q4, q1, q2, q3 -> 2, 3, 2, 2: 75.0 at 0.5.
    flipped = {"q4": 0.1, "q1": 0.5, "q2": 0.5, "q3": 0.9}
    result = evaluate(data, predictions, version_2_with_negative=True, na_probs=flipped)
    assert result["best_exact"] == 75.0 and result["best_exact_thresh"] == 0.5


def test_v1_repeated_question_ids_are_scored_per_entry():
    data = _dataset([("q1", ["Paris"]), ("q1", ["Paris France"]), ("q2", ["Rome"])])
    result = evaluate(data, {"q1": "Paris", "q2": "Rome"})
    # As evaluate-v1.1.py, three entries: q1 (exact 1, F1 1), q1 again against "Paris France"
    # (exact 0, F1 2 * 1 * 1/2 / (1 + 1/2) = 2/3), q2 (1, 1): exact 2/3, F1 (8/3) / 3.
    assert result["total"] == 3
    assert result["exact_match"] == pytest.approx(100 * 2 / 3)
    assert result["f1"] == pytest.approx(100 * 8 / 9)
    assert official_scores(data, {"q1": "Paris", "q2": "Rome"}) == pytest.approx(
        {"exact_match": 100 * 2 / 3, "f1": 100 * 8 / 9})


def _fixture_predictions():
    """Gold predictions of sample-v2.0.json but two wrong: a text for wall-impossible, none for wall-1."""
    data = json.load(open(V2))
    predictions = {qa["id"]: (qa["answers"][0]["text"] if qa["answers"] else "")
                   for article in data["data"] for p in article["paragraphs"] for qa in p["qas"]}
    return dict(predictions, **{"wall-impossible": "Qin Shi Huang", "wall-1": ""})


def test_command_line_evaluator_prints_the_official_v2_json(tmp_path):
    (tmp_path / "pred.json").write_text(json.dumps(_fixture_predictions()))
    na_probs = {"photo-1": 0.1, "photo-2": 0.1, "photo-misaligned": 0.1, "wall-2": 0.1, "wall-1": 0.5,
                "photo-impossible-1": 0.6, "photo-impossible-2": 0.6, "wall-impossible": 0.9}
    (tmp_path / "na.json").write_text(json.dumps(na_probs))
    result = subprocess.run(
        [sys.executable, "-m", "gmlp_tf.tasks.squad.squad_evaluation", V2, str(tmp_path / "pred.json"),
         "--na-prob-file", str(tmp_path / "na.json"), "--na-prob-thresh", "0.8"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    # 8 questions, 5 answerable. Above 0.8 only wall-impossible: "no answer", right. Wrong: wall-1.
    # Threshold search: 3 (the unanswerable) + 4 answered right at 0.1 = 7; wall-1 +0, the two
    # empty unanswerable +0, wall-impossible -1: best 7 of 8 at 0.1.
    assert list(scores) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact",
                            "NoAns_f1", "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
    assert scores == pytest.approx({
        "exact": 87.5, "f1": 87.5, "total": 8, "HasAns_exact": 80.0, "HasAns_f1": 80.0, "HasAns_total": 5,
        "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 3, "best_exact": 87.5, "best_exact_thresh": 0.1,
        "best_f1": 87.5, "best_f1_thresh": 0.1})


def test_command_line_evaluator_v1_output_file_and_errors(tmp_path, capsys):
    examples, _ = squad.read_squad_json(V1, is_training=False)
    (tmp_path / "pred.json").write_text(json.dumps({e.qas_id: e.answers[0] for e in examples}))
    out = tmp_path / "eval.json"
    assert squad_evaluation.main([V1, str(tmp_path / "pred.json"), "-o", str(out)]) == 0
    assert json.load(open(out)) == {"exact_match": 100.0, "f1": 100.0}  # evaluate-v1.1.py's keys
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    for args, message in (([str(tmp_path / "none.json"), str(tmp_path / "pred.json")], "none.json"),
                          ([V1, str(tmp_path / "bad.json")], "bad.json is not JSON"),
                          ([V1, str(tmp_path / "list.json")], "must hold a JSON object"),
                          ([V2, str(tmp_path / "pred.json"), "-n", str(tmp_path / "pred.json")], "is not a number")):
        capsys.readouterr()
        assert squad_evaluation.main(args) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("squad_evaluation: error:") and message in err and "\n" not in err


@pytest.mark.parametrize("answers, message", [
    ([{"answer_start": 0}], "question 'abc' has an answer without 'text'"),
    (["x"], "question 'abc' has an answer without 'text'"),
    ([{"text": 3, "answer_start": 0}], "question 'abc' has an answer whose 'text' is not a string"),
    ({"text": "x"}, "question 'abc' has 'answers' that are not a list"),
])
def test_command_line_malformed_answers_name_the_file_and_question(tmp_path, capsys, answers, message):
    data = _dataset([("abc", ["x"])])
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"] = answers
    (tmp_path / "DATA.json").write_text(json.dumps(data))
    (tmp_path / "pred.json").write_text(json.dumps({"abc": "x"}))
    for version in ("auto", "1.1", "2.0"):
        capsys.readouterr()
        assert squad_evaluation.main([str(tmp_path / "DATA.json"), str(tmp_path / "pred.json"),
                                      "--version", version]) == 1
        err = capsys.readouterr().err.strip()
        assert err == f"squad_evaluation: error: {tmp_path / 'DATA.json'}: {message}"
    with pytest.raises(ValueError, match=f"^{message}$"):  # Parsed data: no file to name.
        evaluate(data, {"abc": "x"})


def test_command_line_malformed_paragraphs_are_one_error_line(tmp_path, capsys):
    (tmp_path / "pred.json").write_text(json.dumps({"abc": "x"}))
    for paragraphs, message in ((["text"], "a SQuAD paragraph is not an object with a 'qas' list"),
                                ([{"qas": {"id": "abc"}}], "a SQuAD paragraph is not an object with a 'qas' list"),
                                ([{"qas": ["abc"]}], "a SQuAD question has no 'id'")):
        (tmp_path / "DATA.json").write_text(json.dumps({"data": [{"paragraphs": paragraphs}]}))
        capsys.readouterr()
        assert squad_evaluation.main([str(tmp_path / "DATA.json"), str(tmp_path / "pred.json")]) == 1
        assert capsys.readouterr().err.strip() == f"squad_evaluation: error: {tmp_path / 'DATA.json'}: {message}"


def test_command_line_unwritable_out_file_is_one_error_line(tmp_path, capsys):
    examples, _ = squad.read_squad_json(V1, is_training=False)
    (tmp_path / "pred.json").write_text(json.dumps({e.qas_id: e.answers[0] for e in examples}))
    (tmp_path / "out_dir").mkdir()
    for out in (tmp_path / "out_dir", tmp_path / "no_such_dir" / "eval.json"):
        capsys.readouterr()
        assert squad_evaluation.main([V1, str(tmp_path / "pred.json"), "-o", str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"squad_evaluation: error: cannot write --out-file {out}: ") and "\n" not in err
    assert sorted(os.listdir(tmp_path)) == ["out_dir", "pred.json"] and os.listdir(tmp_path / "out_dir") == []


def test_scoring_imports_no_tensorflow():
    code = ("import sys, importlib.util; spec = importlib.util.spec_from_file_location('ev', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "m.evaluate(sys.argv[2], {}); print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code,
                             os.path.join(ROOT, "gmlp_tf", "tasks", "squad", "official_scorer.py"), V1],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_evaluate_squad_script_scores_and_names_itself_in_errors(tmp_path):
    examples, _ = squad.read_squad_json(V1, is_training=False)
    (tmp_path / "pred.json").write_text(json.dumps({e.qas_id: e.answers[0] for e in examples}))
    script = os.path.join(ROOT, "scripts", "evaluate_squad.py")
    env = dict(os.environ, PYTHONPATH=ROOT)
    ok = subprocess.run([sys.executable, script, V1, str(tmp_path / "pred.json")], capture_output=True, text=True,
                        env=env, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"exact_match": 100.0, "f1": 100.0}, ok.stderr
    bad = subprocess.run([sys.executable, script, V1, str(tmp_path / "none.json")], capture_output=True, text=True,
                         env=env, timeout=120)
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 1 and last.startswith("evaluate_squad.py: error:") and "none.json" in last


def test_evaluate_squad_script_starts_without_tensorflow(tmp_path):
    examples, _ = squad.read_squad_json(V1, is_training=False)
    (tmp_path / "pred.json").write_text(json.dumps({e.qas_id: e.answers[0] for e in examples}))
    code = ("import runpy, sys; sys.argv = sys.argv[1:]\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
            "print('exit', code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    script = os.path.join(ROOT, "scripts", "evaluate_squad.py")
    result = subprocess.run([sys.executable, "-c", code, script, V1, str(tmp_path / "pred.json")], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "exit 0 False False", result.stderr
