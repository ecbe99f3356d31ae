"""run_classifier.py: text encoding, tiny finetunes on GLUE-format fixtures, sweeps, the demo data, bad input."""

import glob
import io
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from text_fixtures import fake_sentences

from gmlp_tf import tokenization
from gmlp_tf.config import GMLPConfig
from gmlp_tf.runtime import training
from gmlp_tf.tasks.glue import data as glue
from gmlp_tf.tasks.glue import demo_data as sentiment_demo
from gmlp_tf.tasks.glue import metrics, task_table
from gmlp_tf.tasks.glue import task as classifier_job
from gmlp_tf.tasks.glue.pipeline import classifier_dataset
from gmlp_tf.tasks.pretraining import task as pretraining_job
from gmlp_tf.tokenization import CLS_ID, PAD_ID, SEP_ID, encode_texts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE_DIR = os.path.join(ROOT, "tests", "fixtures", "glue")
VOCAB = 150


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny run_pretraining output directory (config, vocabulary, checkpoint)."""
    folder = tmp_path_factory.mktemp("classifier")
    glue_text = [line for path in glob.glob(f"{GLUE_DIR}/*/*.tsv") for line in open(path).read().splitlines()]
    (folder / "corpus.txt").write_text("\n".join(fake_sentences(600, seed=4) + glue_text) + "\n")
    (folder / "eval.txt").write_text("\n".join(fake_sentences(50, seed=8)) + "\n")
    tokenization.train_sentencepiece([str(folder / "corpus.txt")], str(folder / "spm"), vocab_size=VOCAB,
                                     character_coverage=1.0)
    GMLPConfig(vocab_size=VOCAB, d_model=32, d_ffn=64, num_layers=2, max_seq_length=64).to_json_file(
        str(folder / "config.json"))
    output = folder / "pretrained"
    pretraining_job.run(pretraining_job.JobSpec(
        input_file=str(folder / "corpus.txt"), eval_input_file=str(folder / "eval.txt"),
        vocab_file=str(folder / "spm.model"), gmlp_config_file=str(folder / "config.json"),
        output_dir=str(output), max_seq_length=32, max_predictions_per_seq=5, train_batch_size=8,
        num_train_steps=10, num_warmup_steps=1, save_checkpoints_steps=10, do_eval=False))
    return output


def spec(pretrained, output_dir, **changes):
    values = dict(task_name="sst2", data_dir=GLUE_DIR, init_checkpoint=str(pretrained), output_dir=str(output_dir),
                  max_seq_length=32, train_batch_size=2, eval_batch_size=3, learning_rate=1e-3,
                  num_train_epochs=2.0, do_predict=True, log_every_steps=1)
    values.update(changes)
    return classifier_job.JobSpec(**values)


def test_pairs_are_framed_trimmed_round_robin_and_padded(pretrained):
    sp_model = tokenization.load_sp_model(str(pretrained / "vocab.model"))
    tokenizer = tokenization.make_tokenizer(sp_model)
    a, b = "the king speaks to the queen of Denmark tonight", "never"
    ids_a = tokenizer.tokenize([a]).to_list()[0]
    ids_b = tokenizer.tokenize([b]).to_list()[0]
    assert len(ids_a) > 6 and len(ids_b) <= 2
    out = {k: v.numpy()[0] for k, v in encode_texts(tokenizer, 12, tf.constant([a]), tf.constant([b])).items()}
    # 12 = [CLS] + 9 tokens + 2 [SEP]: b keeps its tokens, a gives up the rest (round robin).
    keep_a = 9 - len(ids_b)
    expected = [CLS_ID] + ids_a[:keep_a] + [SEP_ID] + ids_b + [SEP_ID]
    assert out["input_ids"].tolist() == expected
    assert out["segment_ids"].tolist() == [0] * (keep_a + 2) + [1] * (len(ids_b) + 1)
    short = {k: v.numpy()[0] for k, v in encode_texts(tokenizer, 12, tf.constant(["never"])).items()}
    n = len(ids_b) + 2
    assert short["input_ids"].tolist() == [CLS_ID] + ids_b + [SEP_ID] + [PAD_ID] * (12 - n)
    assert short["input_mask"].tolist() == [1] * n + [0] * (12 - n)


def test_evaluation_batches_are_padded_with_zero_weights(pretrained):
    tokenizer = tokenization.make_tokenizer(tokenization.load_sp_model(str(pretrained / "vocab.model")))
    examples = glue.read_tsv_examples("sst2", GLUE_DIR, "dev")
    batches = list(classifier_dataset(examples, tokenizer, 16, 2, ("0", "1")))
    weights = np.concatenate([w.numpy() for _, _, w in batches])
    assert all(x["input_ids"].shape == (2, 16) for x, _, _ in batches)
    assert weights.tolist() == [1.0] * len(examples) + [0.0] * (len(weights) - len(examples))


@pytest.mark.parametrize("task_name", ["sst2", "stsb", "mnli", "cola"])
def test_tiny_finetune_evaluate_and_predict(pretrained, tmp_path, task_name):
    summary = classifier_job.run(spec(pretrained, tmp_path, task_name=task_name))
    task = task_table.get_task(task_name)
    if task_name == "mnli":
        assert {"dev_matched_accuracy", "dev_mismatched_accuracy"} <= set(summary)
        assert os.path.exists(tmp_path / "MNLI-m.tsv") and os.path.exists(tmp_path / "MNLI-mm.tsv")
        assert os.path.exists(tmp_path / "AX.tsv")  # The diagnostic, predicted with the MNLI model.
    else:
        assert set(task.metric_names) <= set(summary)
        rows = open(tmp_path / f"{task.display_name}.tsv").read().splitlines()
        assert rows[0] == "index\tprediction"
        assert len(rows) - 1 == len(glue.read_tsv_examples(task, GLUE_DIR, "test"))
    assert "eval_results.txt" in os.listdir(tmp_path)
    # The dev metrics at every checkpoint (epoch), by global step; the last one is the final result.
    curves = training.read_scalars(os.path.join(tmp_path, "logs", "eval"))
    key = "dev_matched_accuracy" if task_name == "mnli" else task.metric_names[0]
    assert len(curves[key]) == 2 and curves[key][0][0] < curves[key][1][0]
    assert curves[key][-1][1] == pytest.approx(summary[key], rel=1e-5)
    train_steps = [step for step, _ in training.read_scalars(os.path.join(tmp_path, "logs", "train"))["loss"]]
    assert train_steps == list(range(1, curves[key][-1][0] + 1))  # Every step (--log_every_steps=1).


def test_sweep_reports_medians_and_best_rate(pretrained, tmp_path):
    summary = classifier_job.run(
        spec(pretrained, tmp_path, learning_rates="1e-3,1e-4", num_seeds=2, num_train_epochs=1.0, do_predict=False))
    assert len([d for d in os.listdir(tmp_path) if d.startswith("lr")]) == 4
    runs = {lr: [float(open(tmp_path / f"lr{lr}_seed{s}" / "eval_results.txt").read()
                       .split("accuracy = ")[1].split()[0])
                 for s in (12345, 12346)] for lr in ("0.001", "0.0001")}
    assert summary["lr0.001_median_accuracy"] == pytest.approx(np.median(runs["0.001"]))
    assert summary["best_learning_rate"] in (1e-3, 1e-4)
    assert os.path.exists(tmp_path / "sweep_results.txt")


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"task_name": "squad"}, ValueError, "unknown GLUE task 'squad'"),
        ({"task_name": "ax"}, ValueError, "predicted with a mnli model"),
        ({"data_dir": "/no/such/glue"}, FileNotFoundError, "/no/such/glue"),
        ({"max_seq_length": 128}, ValueError, "max_seq_length 128 exceeds the model config's max_seq_length 64"),
        ({"learning_rates": "1e-5,fast"}, ValueError, "comma-separated numbers"),
        ({"use_tfds": True}, ValueError, "--data_dir .* or --use_tfds, one of them"),
    ],
)
def test_bad_input(pretrained, tmp_path, changes, error, message):
    with pytest.raises(error, match=message):
        classifier_job.run(spec(pretrained, tmp_path / "out", **changes))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"learning_rate": -1.0}, "--learning_rate must be positive, got -1.0"),
        ({"learning_rate": 0.0}, "--learning_rate must be positive, got 0.0"),
        ({"learning_rates": "1e-5,-2e-5"}, "--learning_rates must be positive numbers, got '1e-5,-2e-5'"),
        ({"learning_rates": "0"}, "--learning_rates must be positive numbers, got '0'"),
        ({"train_batch_size": 0}, "--train_batch_size must be positive, got 0"),
        ({"eval_batch_size": -3}, "--eval_batch_size must be positive, got -3"),
        ({"num_train_epochs": -1.0}, "--num_train_epochs must be positive, got -1.0"),
        ({"num_train_epochs": 0.0}, "--num_train_epochs must be positive, got 0.0"),
        ({"warmup_proportion": -0.1}, r"--warmup_proportion must be in \[0, 1\], got -0.1"),
        ({"warmup_proportion": 1.5}, r"--warmup_proportion must be in \[0, 1\], got 1.5"),
        ({"num_seeds": 0}, "--num_seeds must be at least 1, got 0"),
        ({"learning_rate": float("inf")}, "--learning_rate must be a finite number, got inf"),
        ({"max_seq_length": 2}, r"--max_seq_length must be at least 3 \(\[CLS\] text \[SEP\]\), got 2"),
        # The demo (no task): refused before the demo encoder is looked for (or pretrained).
        ({"task_name": None, "data_dir": None, "learning_rate": -1.0}, "--learning_rate must be positive, got -1.0"),
    ],
)
def test_bad_numeric_flag_fails_before_anything_is_read_or_written(tmp_path, monkeypatch, changes, message):
    def no_demo_encoder(*args):
        raise AssertionError("the demo encoder was looked for before the flags were checked")

    monkeypatch.setattr(classifier_job.runner, "ensure_demo_run", no_demo_encoder)
    values = dict(task_name="sst2", data_dir=GLUE_DIR, init_checkpoint=str(tmp_path / "no_checkpoint"),
                  output_dir=str(tmp_path / "out"))
    values.update(changes)
    with pytest.raises(ValueError, match=f"^{message}$"):
        classifier_job.run(classifier_job.JobSpec(**values))
    assert os.listdir(tmp_path) == []


def test_checkpoint_of_another_config_is_refused(pretrained, tmp_path):
    other = GMLPConfig(vocab_size=VOCAB, d_model=32, d_ffn=128, num_layers=2, max_seq_length=64)
    other.to_json_file(str(tmp_path / "other.json"))
    with pytest.raises(ValueError, match="model config does not match --init_checkpoint.*d_ffn"):
        classifier_job.run(spec(pretrained, tmp_path / "out", gmlp_config_file=str(tmp_path / "other.json")))


def test_tsv_missing_columns_names_file_and_line(pretrained, tmp_path):
    data = tmp_path / "glue" / "SST-2"
    data.mkdir(parents=True)
    (data / "train.tsv").write_text("sentence\tlabel\na fine film\t1\nno label here\n")
    with pytest.raises(ValueError, match=r"SST-2/train.tsv:3: row has 1 columns"):
        classifier_job.run(spec(pretrained, tmp_path / "out", data_dir=str(tmp_path / "glue")))


def _fake_vader_archive(path, rows):
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        data = "".join(f"{i}\t{score}\t{text}\r\n" for i, score, text in rows).encode("latin-1")
        info = tarfile.TarInfo(sentiment_demo.MEMBER)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(sentiment_demo.INNER_ARCHIVE)
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    return path


def test_sentiment_demo_data_from_the_nested_archive(tmp_path):
    rows = [(i, (-1) ** i * 1.5 if i != 3 else 0.0, f"caf\xe9 review number {i}") for i in range(1, 31)]
    archive = _fake_vader_archive(str(tmp_path / "vader.tar.gz"), rows)
    path = sentiment_demo.fetch_sentiment_file(str(tmp_path / "cache"), download_fn=lambda folder: archive)
    assert sentiment_demo.fetch_sentiment_file(str(tmp_path / "cache"), download_fn=None) == path  # Cached.
    train, held_out = sentiment_demo.read_examples(path)
    assert [e.index for e in held_out] == [10, 20, 30]
    assert len(train) == 26  # 30 rows, 3 held out, the 0.0 rating dropped.
    assert train[0].text_a == "caf\xe9 review number 1" and train[0].label == "0" and train[1].label == "1"


def test_script_error_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "run_classifier.py"), "--task_name=nope",
         f"--output_dir={tmp_path}/out", f"--data_dir={GLUE_DIR}"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert result.returncode != 0
    assert "run_classifier.py: error: unknown GLUE task 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_finetunes_the_pretrained_checkpoint_on_sentiment(pretrained, tmp_path, monkeypatch):
    rows = [(i, 2.0 if i % 3 else -2.0, f"the king speaks {'well' if i % 3 else 'badly'} {i}") for i in range(1, 61)]
    path = tmp_path / "ratings.txt"
    path.write_text("".join(f"{i}\t{score}\t{text}\n" for i, score, text in rows), encoding="latin-1")
    monkeypatch.setattr(sentiment_demo, "fetch_sentiment_file", lambda: str(path))
    summary = classifier_job.run(
        classifier_job.JobSpec(init_checkpoint=str(pretrained), output_dir=str(tmp_path / "demo"),
                               max_seq_length=16, num_train_epochs=1.0))
    assert set(summary) == {"accuracy", "majority_baseline_accuracy"}
    assert summary["majority_baseline_accuracy"] == pytest.approx(4 / 6)  # Held out: ids 10, 20, ..., 60.
    lines = classifier_job.report_lines(summary, classifier_job.JobSpec())
    assert lines[-1].startswith("Held-out accuracy") and "majority-class baseline 66.7%" in lines[-1]


def test_glue_task_from_tfds_through_mock_data(pretrained, tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        summary = classifier_job.run(
            spec(pretrained, tmp_path, data_dir=None, use_tfds=True, num_train_epochs=1.0))
    assert "accuracy" in summary
    rows = open(tmp_path / "SST-2.tsv").read().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 13


TSV_DIR = os.path.join(ROOT, "tests", "fixtures", "tsv")


def test_tsv_task_of_your_own_files_end_to_end(pretrained, tmp_path):
    summary = classifier_job.run(spec(pretrained, tmp_path, task_name="tsv", data_dir=TSV_DIR, num_train_epochs=1.0))
    assert set(summary) == {"accuracy", "f1", "majority_baseline_accuracy"}
    # train ties 3 neg / 3 pos: the first seen, pos, is the majority; dev has 1 pos of 3.
    assert summary["majority_baseline_accuracy"] == pytest.approx(1 / 3)
    assert "f1 = " in open(tmp_path / "eval_results.txt").read()
    rows = [row.split("\t") for row in open(tmp_path / "test_results.tsv").read().splitlines()]
    assert rows[0] == ["index", "prediction"]
    assert [r[0] for r in rows[1:]] == ["7", "3", "11"] and all(r[1] in ("neg", "pos") for r in rows[1:])


def test_tsv_labels_come_sorted_from_train_and_choose_the_metrics(tmp_path):
    task = glue.tsv_task(TSV_DIR)
    assert task.label_list == ("neg", "pos") and not task.is_pair  # sorted, not first-seen (pos)
    assert task.metric_names == ("accuracy", "f1") and task.positive_label == "pos"
    # accuracy 1/3; F1 of "pos": 1 true positive, 2 predicted, 2 actual -> 2 / 4.
    assert metrics.compute_metrics(task, ["neg", "pos", "pos"], ["pos", "pos", "neg"]) == pytest.approx(
        {"accuracy": 1 / 3, "f1": 0.5})
    (tmp_path / "train.tsv").write_text("sentence1\tsentence2\tlabel\na\tb\t10\nc\td\t2\ne\tf\t1\n")
    task = glue.tsv_task(str(tmp_path))
    assert task.is_pair and task.label_list == ("1", "2", "10") and task.metric_names == ("accuracy",)
    assert [e.text_b for e in glue.read_tsv_examples(task, str(tmp_path), "train")] == ["b", "d", "f"]


@pytest.mark.parametrize(
    "files, error, message",
    [
        ({"dev.tsv": "sentence\tlabel\nfine\tpos\nodd\tmeh\n"}, ValueError,
         r"dev.tsv:3: label 'meh' is not among the training file's labels \(neg, pos\)"),
        ({"train.tsv": "text\tlabel\nfine\tpos\n"}, ValueError,
         r"train.tsv:1: the header must name 'sentence' \(or 'sentence1' and 'sentence2'\) and 'label'"),
        ({"dev.tsv": "label\nneg\n"}, ValueError, r"dev.tsv:1: TSV header lacks column 'sentence'"),
        ({"dev.tsv": "sentence\tlabel\nfine\tpos\na tab\tinside\tneg\n"}, ValueError,
         r"dev.tsv:3: row has 3 columns but the header 2 \(a tab inside a text\?\)"),
        ({"train.tsv": None}, FileNotFoundError, r"train.tsv not found"),
    ],
)
def test_tsv_bad_input_is_one_clear_error(pretrained, tmp_path, files, error, message):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        if files.get(name, "") is not None:
            (data / name).write_text(files.get(name) or open(os.path.join(TSV_DIR, name)).read())
    with pytest.raises(error, match=message):
        classifier_job.run(spec(pretrained, tmp_path / "out", task_name="tsv", data_dir=str(data)))
    assert not (tmp_path / "out").exists()


def test_any_tfds_text_classification_dataset_through_mock_data(pretrained, tmp_path):
    import tensorflow_datasets as tfds

    assert glue.default_tfds_eval_split(["train", "test", "unsupervised"]) == "test"  # imdb_reviews
    assert glue.default_tfds_eval_split(["train", "validation", "test"]) == "validation"
    with tfds.testing.mock_data(num_examples=8):
        news = glue.tfds_task("ag_news_subset", ["title", "description"])
        assert news.is_pair and news.label_list == ("World", "Sports", "Business", "Sci/Tech")
        assert news.metric_names == ("accuracy",)
        with pytest.raises(ValueError, match="TFDS imdb_reviews has no feature 'body'; it has"):
            glue.tfds_task("imdb_reviews", ["body"])
        summary = classifier_job.run(spec(pretrained, tmp_path, task_name=None, data_dir=None,
                                          tfds_name="imdb_reviews", num_train_epochs=1.0))
    assert {"accuracy", "f1"} <= set(summary)
    rows = open(tmp_path / "test_results.tsv").read().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 9
    assert all(r.split("\t")[1] in ("neg", "pos") for r in rows[1:])


def _image_model_dir(tmp_path):
    """An output directory as run_imagenet.py leaves it, as far as its model config goes."""
    directory = tmp_path / "imagenet_run"
    directory.mkdir()
    GMLPConfig(modality="image", image_size=16, patch_size=8, num_channels=3, num_classes=3, d_model=8, d_ffn=16,
               num_layers=1, spatial_kind="dense", max_seq_length=4).to_json_file(str(directory / "gmlp_config.json"))
    return directory


def test_image_model_init_checkpoint_is_refused_by_name(tmp_path):
    from gmlp_tf.finetuning import load_model_files
    from gmlp_tf.tasks.squad import task as squad_job

    image_dir = _image_model_dir(tmp_path)
    message = (f"--init_checkpoint {image_dir} holds an image model (a run_imagenet.py run), not a text encoder: "
               "give an output directory of run_pretraining.py")
    with pytest.raises(ValueError) as info:
        classifier_job.run(spec(image_dir, tmp_path / "glue_out"))
    assert str(info.value) == message
    squad_spec = squad_job.JobSpec(init_checkpoint=str(image_dir), output_dir=str(tmp_path / "squad_out"),
                                   train_file=os.path.join(os.path.dirname(GLUE_DIR), "squad", "sample-v1.1.json"))
    with pytest.raises(ValueError) as info:
        squad_job.SquadTask(squad_spec)
    assert str(info.value) == message
    config_file = str(image_dir / "gmlp_config.json")
    with pytest.raises(ValueError) as info:
        load_model_files(None, config_file, str(tmp_path / "spm.model"))
    assert str(info.value) == f"--gmlp_config_file {config_file} is the config of an image model, not a text encoder"
    assert sorted(os.listdir(tmp_path)) == ["imagenet_run"]
