"""Where pretraining text comes from: the source dataclasses, file patterns, and the documents of text
files and TFDS datasets, sharded across input pipelines.

TFRecordSource (features already made) is read in tfrecords.py; the pipeline is data.py's
make_pretraining_dataset.
"""

import dataclasses
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

FILE_CYCLE_LENGTH = 8
# Paragraph separator used internally for blank-line documents (ASCII record separator).
_RECORD_SEPARATOR = "\x1e"

Patterns = Union[str, Sequence[str]]


# ------------------------------------------------------------------------------------- sources
@dataclasses.dataclass(frozen=True)
class TextFilesSource:
    """Text files by glob pattern(s): a list, or one string of comma-separated patterns.

    blank_line_documents=False: every non-empty line is a document (e.g. one web page per line).
    blank_line_documents=True: documents are separated by blank lines and the lines inside one
    are joined with spaces. In this mode each file is read whole into memory, so keep files to a
    few hundred MB (split bigger corpora, or use one document per line).
    """

    patterns: Patterns
    blank_line_documents: bool = False


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A TFDS dataset with a text feature, e.g. TfdsSource("c4/en", "train").

    download=False reads data already prepared in data_dir (fails at once if there is none);
    download=True lets TFDS download and prepare it first.
    """

    name: str
    split: str = "train"
    data_dir: Optional[str] = None
    text_key: str = "text"
    download: bool = False


@dataclasses.dataclass(frozen=True)
class TFRecordSource:
    """TFRecord files of tf.train.Examples with BERT's pretraining features (write_tfrecords)."""

    patterns: Patterns


Source = Union[TextFilesSource, TfdsSource, TFRecordSource]


# Bytes read from the start of each text input file to check that it is text.
TEXT_SAMPLE_BYTES = 64 * 1024


def expand_patterns(patterns: Patterns) -> List[str]:
    """Comma-separated glob pattern(s) -> the sorted, de-duplicated files they match.

    Raises:
      ValueError: no pattern given, a pattern that matches no file, or an empty file.
    """
    if isinstance(patterns, str):
        patterns = patterns.split(",")
    patterns = [p.strip() for p in patterns if p and p.strip()]
    if not patterns:
        raise ValueError("no input file pattern given")
    files, seen = [], set()
    for pattern in patterns:
        matched = [f for f in sorted(tf.io.gfile.glob(pattern)) if not tf.io.gfile.isdir(f)]
        if not matched:
            raise ValueError(f"no files match {pattern!r}")
        for path in matched:
            if tf.io.gfile.stat(path).length == 0:
                raise ValueError(f"input file is empty: {path}")
            if path not in seen:
                seen.add(path)
                files.append(path)
    return files


def check_text_file(path: str, sample_bytes: int = TEXT_SAMPLE_BYTES) -> None:
    """The start of a text input file is UTF-8 text: a binary file (a TFRecord, an archive) given as
    text would otherwise train on its bytes without a word.

    Raises:
      ValueError: naming the file and the offset of the first byte that is not text.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        sample = f.read(sample_bytes)
    nul = sample.find(b"\0")
    offset = nul if nul >= 0 else None
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as err:
        # A multi-byte character cut by the sample's end is text; anything before it is not.
        if err.start < len(sample) - 3 or err.reason != "unexpected end of data":
            offset = err.start if offset is None else min(offset, err.start)
    if offset is not None:
        raise ValueError(f"{path} is not UTF-8 text (a binary byte at offset {offset}): give text files, or "
                         "--input_format=tfrecord for create_pretraining_data.py's output")


def read_text_documents(path: tf.Tensor, blank_line_documents: bool) -> tf.data.Dataset:
    """The documents of one text file (scalar string path) as a dataset of scalar strings."""
    if not blank_line_documents:
        lines = tf.data.TextLineDataset(path)
        return lines.map(tf.strings.strip).filter(lambda line: tf.strings.length(line) > 0)

    def paragraphs(file_path):
        text = tf.io.read_file(file_path)
        # Blank lines (possibly holding spaces) separate documents; the lines inside one join.
        text = tf.strings.regex_replace(text, r"\r?\n[ \t\r]*\n(?:[ \t\r]*\n)*", _RECORD_SEPARATOR)
        text = tf.strings.regex_replace(text, r"\s*\r?\n\s*", " ")
        return tf.data.Dataset.from_tensor_slices(
            tf.strings.strip(tf.strings.split(text, _RECORD_SEPARATOR)))

    documents = tf.data.Dataset.from_tensors(path).flat_map(paragraphs)
    return documents.filter(lambda doc: tf.strings.length(doc) > 0)


@dataclasses.dataclass(frozen=True)
class _Shard:
    num: int
    index: int


def _file_paths(files, shard, is_training, seed):
    """A dataset of this pipeline's file paths (shuffled in training), and whether it shards by
    file: only when there are at least as many files as pipelines; else by record, later."""
    shard_files = len(files) >= shard.num
    paths = tf.data.Dataset.from_tensor_slices(files)
    if shard.num > 1 and shard_files:
        paths = paths.shard(shard.num, shard.index)
    if is_training:
        paths = paths.shuffle(len(files), seed=_offset(seed, 2), reshuffle_each_iteration=True)
    return paths, shard_files


def _text_file_sequences(source, to_sequences, shard, is_training, seed, deterministic):
    files = expand_patterns(source.patterns)
    paths, shard_files = _file_paths(files, shard, is_training, seed)
    blank_lines = source.blank_line_documents
    # Each file is packed on its own, so a sequence never mixes two files' text; files are
    # interleaved (and read in parallel) at the sequence level.
    sequences = paths.interleave(
        lambda path: to_sequences(read_text_documents(path, blank_lines)),
        cycle_length=min(len(files), FILE_CYCLE_LENGTH), block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shard.num > 1 and not shard_files:
        sequences = sequences.shard(shard.num, shard.index)
    return sequences


def _tfds_sequences(source, to_sequences, shard, is_training, seed):
    split = source.split
    if shard.num > 1:
        import tensorflow_datasets as tfds

        split = tfds.even_splits(split, n=shard.num)[shard.index]
    return to_sequences(_tfds_documents(source, split, is_training, seed))


def _tfds_documents(source: TfdsSource, split: str, is_training: bool, seed: Optional[int]):
    """The text feature of a TFDS split as scalar strings, after checking name and feature."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(source.name, data_dir=source.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"unknown TFDS dataset {source.name!r}") from None
    features = builder.info.features
    if source.text_key not in features:
        raise ValueError(f"TFDS dataset {source.name} has no feature {source.text_key!r}; it has "
                         f"{', '.join(sorted(features.keys()))}")
    if getattr(features[source.text_key], "tf_dtype", None) != tf.string:
        raise ValueError(f"feature {source.text_key!r} of TFDS dataset {source.name} is not text")
    try:
        dataset = tfds.load(
            source.name, split=split, data_dir=source.data_dir, download=source.download,
            shuffle_files=is_training, read_config=tfds.ReadConfig(shuffle_seed=_offset(seed, 3)))
    except AssertionError as err:  # TFDS' way of saying the data is not prepared
        raise FileNotFoundError(
            f"TFDS dataset {source.name} is not prepared in "
            f"{source.data_dir or 'the default data_dir'} ({err}); prepare it or allow download"
        ) from None
    text_key = source.text_key
    return dataset.map(lambda example: example[text_key], num_parallel_calls=tf.data.AUTOTUNE)


def read_documents(source: Union[TextFilesSource, TfdsSource]) -> tf.data.Dataset:
    """Every document of a text source as scalar strings, in order (files sorted by name)."""
    if isinstance(source, TfdsSource):
        return _tfds_documents(source, source.split, is_training=False, seed=None)
    if isinstance(source, TextFilesSource):
        blank_lines = source.blank_line_documents
        return tf.data.Dataset.from_tensor_slices(expand_patterns(source.patterns)).flat_map(
            lambda path: read_text_documents(path, blank_lines))
    raise TypeError(f"source must be a TextFilesSource or TfdsSource, got {type(source).__name__}")


def text_lines(source: Union[TextFilesSource, TfdsSource],
               max_lines: Optional[int] = None) -> Iterator[str]:
    """The non-empty lines of a text source's documents, e.g. to train a vocabulary on TFDS text."""
    count = 0
    for document in read_documents(source).as_numpy_iterator():
        for line in document.decode("utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line:
                continue
            if max_lines is not None and count >= max_lines:
                return
            yield line
            count += 1


# ------------------------------------------------------------------------------------------ helpers
def _check_positive(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _offset(seed: Optional[int], offset: int) -> Optional[int]:
    """A distinct seed per use (file shuffle, sequence shuffle, ...), or None when unseeded."""
    return None if seed is None else seed + offset
