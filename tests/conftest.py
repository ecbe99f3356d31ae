"""Test set-up: two logical CPU devices, so that MirroredStrategy has two replicas.

This must run before TensorFlow initialises its devices, hence at conftest import time.
"""

import os
import sys

# Under pytest-xdist the workers already fill the cores: one TensorFlow thread pool thread each (and
# in the scripts and clusters they start, which inherit the environment) instead of a pool per core
# in every process, which only adds switching between them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import pytest  # noqa: E402

from gmlp_tf.config import GMLPConfig  # noqa: E402


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a worker per core, at most 4. Each holds TensorFlow (about 1 GB), and several tests
    start two-process clusters of their own, so more workers buy little but memory and contention."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


# The slowest files first (measured: each 50 s to 4 min of a serial run), so that under xdist, which
# hands out whole files in collection order, the run does not end on one long file and an idle core.
_SLOW_FILES_FIRST = (
    "test_multi_worker.py", "test_run_pretraining.py", "test_run_classifier.py", "test_backends.py",
    "test_faults.py", "test_pretraining_data.py", "test_data_scripts.py", "test_resume.py", "test_export.py",
    "test_pretraining.py", "test_ablation.py", "test_scaling_study.py", "test_model_harness.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable: file order kept otherwise.


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


@pytest.fixture(scope="session")
def two_replica_strategy():
    """One MirroredStrategy over the two logical CPUs for the whole session: collective ops of
    two strategies in one process can collide on their instance keys."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def tiny_text_config():
    """A small text config: 2 blocks, width 16, length 8, vocabulary 50."""
    return GMLPConfig(vocab_size=50, d_model=16, d_ffn=32, num_layers=2, max_seq_length=8)


@pytest.fixture
def tiny_image_config():
    """A small image config: 32 x 32 images, 8 x 8 patches (16 tokens), 5 classes."""
    return GMLPConfig(
        modality="image", image_size=32, patch_size=8, d_model=16, d_ffn=32, num_layers=2,
        num_classes=5, spatial_kind="dense",
    )


@pytest.fixture(scope="session")
def pretraining_files(tmp_path_factory):
    """Train and eval text files, a SentencePiece vocabulary and a tiny model config that matches it
    (the config of test_run_pretraining.CONFIG_OF_FIXTURE)."""
    from text_fixtures import fake_sentences

    from gmlp_tf import tokenization

    folder = tmp_path_factory.mktemp("run_pretraining")
    (folder / "train.txt").write_text("\n".join(fake_sentences(600, seed=1)) + "\n")
    (folder / "eval.txt").write_text("\n".join(fake_sentences(100, seed=2)) + "\n")
    (folder / "empty.txt").write_text("")
    tokenization.train_sentencepiece([str(folder / "train.txt")], str(folder / "spm"), vocab_size=120,
                                     character_coverage=1.0)
    GMLPConfig(vocab_size=120, d_model=32, d_ffn=64, num_layers=2, max_seq_length=32).to_json_file(
        str(folder / "config.json"))
    return folder


@pytest.fixture(scope="module")
def study_corpus(tmp_path_factory):
    """The studies' tiny setup: train and eval text, a 120-piece vocabulary and a base gMLP config
    (2 blocks, width 32, length 16) in one folder."""
    from text_fixtures import fake_sentences

    from gmlp_tf import tokenization

    folder = tmp_path_factory.mktemp("study")
    (folder / "train.txt").write_text("\n".join(fake_sentences(400, seed=1)) + "\n")
    (folder / "eval.txt").write_text("\n".join(fake_sentences(60, seed=2)) + "\n")
    tokenization.train_sentencepiece([str(folder / "train.txt")], str(folder / "spm"), vocab_size=120,
                                     character_coverage=1.0)
    GMLPConfig(vocab_size=120, d_model=32, d_ffn=96, num_layers=2, max_seq_length=16).to_json_file(
        str(folder / "base.json"))
    return folder
