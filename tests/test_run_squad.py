"""run_squad.py end to end: tiny finetunes on SQuAD-format fixtures, prediction files, scores, bad input."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds
from text_fixtures import fake_sentences

from gmlp_tf import tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.runtime import training
from gmlp_tf.tasks.squad import official_scorer
from gmlp_tf.tasks.squad import task as squad_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SQUAD_DIR = os.path.join(ROOT, "tests", "fixtures", "squad")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A vocabulary trained on the fixture contexts and questions, and a matching tiny config."""
    folder = tmp_path_factory.mktemp("squad_job")
    texts = fake_sentences(300, seed=7)
    for name in ("sample-v1.1.json", "sample-v2.0.json"):
        for article in json.load(open(os.path.join(SQUAD_DIR, name)))["data"]:
            for paragraph in article["paragraphs"]:
                texts.append(paragraph["context"])
                texts.extend(qa["question"] for qa in paragraph["qas"])
    (folder / "corpus.txt").write_text("\n".join(texts) + "\n")
    tokenization.train_sentencepiece([str(folder / "corpus.txt")], str(folder / "spm"), vocab_size=200,
                                     character_coverage=1.0)
    GMLPConfig(vocab_size=200, d_model=32, d_ffn=64, num_layers=2, max_seq_length=64).to_json_file(
        str(folder / "config.json"))
    return folder


def spec(model_files, output_dir, **changes):
    values = dict(
        vocab_file=str(model_files / "spm.model"), gmlp_config_file=str(model_files / "config.json"),
        train_file=os.path.join(SQUAD_DIR, "sample-v1.1.json"),
        predict_file=os.path.join(SQUAD_DIR, "sample-v1.1.json"),
        output_dir=str(output_dir), do_train=True, do_predict=True, max_seq_length=64, doc_stride=16,
        max_query_length=16, train_batch_size=4, predict_batch_size=4, learning_rate=3e-3, num_train_steps=40,
        num_warmup_steps=4, save_checkpoints_steps=20, max_answer_length=10,
    )
    values.update(changes)
    return squad_job.JobSpec(**values)


def test_v1_finetune_predict_and_score(model_files, tmp_path):
    scores = squad_job.run(spec(model_files, tmp_path))
    assert {"exact_match", "f1"} <= set(scores) and 0.0 <= scores["f1"] <= 100.0
    predictions = json.load(open(tmp_path / "predictions.json"))
    nbest = json.load(open(tmp_path / "nbest_predictions.json"))
    contexts = {qa["id"]: p["context"] for a in json.load(open(os.path.join(SQUAD_DIR, "sample-v1.1.json")))["data"]
                for p in a["paragraphs"] for qa in p["qas"]}
    assert set(predictions) == set(contexts)
    assert all(text in contexts[qid] for qid, text in predictions.items())  # Exact context substrings.
    assert all(len(v) >= 1 and abs(sum(e["probability"] for e in v) - 1) < 1e-4 for v in nbest.values())
    assert not os.path.exists(tmp_path / "null_odds.json")
    assert "f1 = " in open(tmp_path / "eval_results.txt").read()
    # EM / F1 of the prediction file at both checkpoints (steps 20 and 40); the last is the result.
    f1 = training.read_scalars(os.path.join(tmp_path, "logs", "eval"))["f1"]
    assert [step for step, _ in f1] == [20, 40] and f1[-1][1] == pytest.approx(scores["f1"], rel=1e-5)
    # Rerunning resumes the finished run: no more training, the same predictions.
    again = squad_job.run(spec(model_files, tmp_path))
    assert again == scores


def test_v2_writes_null_odds_and_breakdown(model_files, tmp_path):
    v2 = os.path.join(SQUAD_DIR, "sample-v2.0.json")
    scores = squad_job.run(spec(model_files, tmp_path, train_file=v2, predict_file=v2, version_2_with_negative=True,
                                num_train_steps=20))
    assert {"HasAns_f1", "NoAns_f1", "exact", "f1"} <= set(scores)
    null_odds = json.load(open(tmp_path / "null_odds.json"))
    predictions = json.load(open(tmp_path / "predictions.json"))
    assert set(null_odds) == set(predictions)
    # The threshold search with null_odds.json as the na_probs, as evaluate-v2.0.py run on the files.
    official = official_scorer.official_scores(v2, predictions, null_odds)
    best = ("best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh")
    assert {k: scores[k] for k in best} == pytest.approx({k: official[k] for k in best})
    results = open(tmp_path / "eval_results.txt").read()
    assert all(f"{k} = " in results for k in best)


def test_tfds_squad_through_mock_data(model_files, tmp_path):
    with tfds.testing.mock_data(num_examples=8):
        scores = squad_job.run(spec(model_files, tmp_path, train_file=None, predict_file=None,
                                    tfds_name="squad/v1.1", do_train=False))
    assert os.path.exists(tmp_path / "predictions.json") and "f1" in scores


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"train_file": "/no/such.json"}, FileNotFoundError, "/no/such.json"),
        ({"max_seq_length": 128}, ValueError, "max_seq_length 128 exceeds the model config's max_seq_length 64"),
        ({"do_train": False, "do_predict": False}, ValueError, "nothing to do"),
        ({"train_file": None}, ValueError, "give --train_file"),
        ({"num_train_steps": 30, "steps_per_execution": 4}, ValueError, "multiple of --steps_per_execution"),
    ],
)
def test_bad_input(model_files, tmp_path, changes, error, message):
    with pytest.raises(error, match=message):
        squad_job.run(spec(model_files, tmp_path / "out", **changes))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"learning_rate": -1.0}, "--learning_rate must be positive, got -1.0"),
        ({"train_batch_size": 0}, "--train_batch_size must be positive, got 0"),
        ({"predict_batch_size": -4}, "--predict_batch_size must be positive, got -4"),
        ({"num_train_steps": 0}, "--num_train_steps must be positive, got 0"),
        ({"save_checkpoints_steps": 0}, "--save_checkpoints_steps must be positive, got 0"),
        ({"save_checkpoints_steps": -10}, "--save_checkpoints_steps must be positive, got -10"),
        ({"num_warmup_steps": -3}, "--num_warmup_steps must be non-negative, got -3"),
        ({"num_warmup_steps": 80}, r"--num_warmup_steps \(80\) exceeds --num_train_steps \(40\)"),
        ({"n_best_size": 0}, "--n_best_size must be positive, got 0"),
        ({"max_answer_length": 0}, "--max_answer_length must be positive, got 0"),
        ({"doc_stride": 46},
         r"--doc_stride 46 exceeds a window's 45 context tokens \(--max_seq_length - --max_query_length - 3\)"),
        ({"max_query_length": 61}, r"--max_query_length 61 leaves no context tokens in a window of --max_seq_length "
                                   r"64 \(\[CLS\] question \[SEP\] context \[SEP\]\)"),
    ],
)
def test_bad_numeric_flag_is_one_clear_error_and_writes_nothing(model_files, tmp_path, changes, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        squad_job.run(spec(model_files, tmp_path / "out", **changes))
    assert not (tmp_path / "out").exists()


def test_demo_checks_the_flags_it_keeps_before_looking_for_the_demo_encoder(tmp_path, monkeypatch):
    def no_demo_encoder(*args):
        raise AssertionError("the demo encoder was looked for before the flags were checked")

    monkeypatch.setattr(squad_job.runner, "ensure_demo_run", no_demo_encoder)
    with pytest.raises(ValueError, match="^--log_every_steps must be positive, got 0$"):
        squad_job.run(squad_job.JobSpec(output_dir=str(tmp_path / "out"), log_every_steps=0))
    assert os.listdir(tmp_path) == []


def test_script_error_is_one_line(model_files, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "run_squad.py"), f"--vocab_file={model_files}/spm.model",
         f"--gmlp_config_file={model_files}/config.json", f"--train_file={bad}", "--do_train",
         "--max_seq_length=64", "--max_query_length=16", "--doc_stride=16", f"--output_dir={tmp_path}/out"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert result.returncode != 0
    assert "run_squad.py: error:" in result.stderr and "bad.json" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_demo_data_comes_from_the_wheel(tmp_path):
    import zipfile

    from gmlp_tf.tasks.squad import demo_data as squad_demo

    wheel = tmp_path / "allennlp-0.9.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(os.path.join(SQUAD_DIR, "sample-v1.1.json"), squad_demo.MEMBER)
    path = squad_demo.fetch_demo_squad(str(tmp_path / "cache"), download_fn=lambda folder: str(wheel))
    assert json.load(open(path)) == json.load(open(os.path.join(SQUAD_DIR, "sample-v1.1.json")))
    assert squad_demo.fetch_demo_squad(str(tmp_path / "cache")) == path  # Cached: no download.
