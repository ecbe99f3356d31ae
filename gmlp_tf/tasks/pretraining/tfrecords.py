"""Pretraining features as TFRecords: BERT's tf.train.Example format, writing files and shards
(scripts/create_pretraining_data.py), and reading a TFRecordSource back into feature batches.
"""

import contextlib
import os
from typing import Dict, Iterable, Iterator, List, Mapping, Optional

import numpy as np
import tensorflow as tf

from gmlp_tf.tasks.pretraining.masking import FEATURE_NAMES
from gmlp_tf.tasks.pretraining.sources import (
    FILE_CYCLE_LENGTH,
    TFRecordSource,
    _check_positive,
    _file_paths,
    _offset,
    expand_patterns,
)


# -------------------------------------------------------------------------------------- TFRecords
def feature_spec(max_seq_length: int, max_predictions_per_seq: int) -> Dict[str, tf.io.FixedLenFeature]:
    """The tf.train.Example features as BERT writes them: int64 ids, float weights."""
    length = {"input_ids": max_seq_length, "input_mask": max_seq_length,
              "segment_ids": max_seq_length, "masked_lm_positions": max_predictions_per_seq,
              "masked_lm_ids": max_predictions_per_seq, "masked_lm_weights": max_predictions_per_seq}
    return {name: tf.io.FixedLenFeature(
        [length[name]], tf.float32 if name == "masked_lm_weights" else tf.int64)
        for name in FEATURE_NAMES}


def parse_examples(serialized: tf.Tensor, max_seq_length: int,
                   max_predictions_per_seq: int) -> Dict[str, tf.Tensor]:
    """Serialized tf.train.Examples [batch] -> feature dict, ids cast to int32 (TPUs lack int64)."""
    features = tf.io.parse_example(serialized, feature_spec(max_seq_length, max_predictions_per_seq))
    return {name: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value
            for name, value in features.items()}


def _prepare_output(output_path: str, max_examples: Optional[int]) -> None:
    """Checks the output path (and max_examples) and creates its folder, before any example is made."""
    if max_examples is not None:
        _check_positive("max_examples", max_examples)
    check_output_file(output_path)
    folder = os.path.dirname(output_path)
    if folder:
        tf.io.gfile.makedirs(folder)


def write_tfrecords(dataset: Iterable[Mapping[str, object]], output_path: str,
                    max_examples: Optional[int] = None) -> int:
    """Writes feature dicts (batched or single examples) as tf.train.Examples; returns the count.

    Ids are written as int64 and weights as floats, like BERT's create_pretraining_data.py. The
    file is written under a temporary name and renamed when complete, so a failure (or zero
    examples, a ValueError) leaves no output file.
    """
    _prepare_output(output_path, max_examples)
    tmp_path = f"{output_path}.tmp-{os.getpid()}"
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp_path) as writer:
            for features in dataset:
                for example in _examples(features):
                    writer.write(example.SerializeToString())
                    count += 1
                    if count == max_examples:
                        break
                if count == max_examples:
                    break
        if count == 0:
            raise ValueError(f"no examples to write to {output_path}: the input gave none")
        tf.io.gfile.rename(tmp_path, output_path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(tmp_path):
            tf.io.gfile.remove(tmp_path)
        raise
    return count


def shard_paths(output_path: str, num_shards: int) -> List[str]:
    """The files of a sharded output, named as TFDS and BERT-style pipelines do:
    OUTPUT-00000-of-00004, ... (read them back with the glob OUTPUT-*)."""
    _check_positive("num_shards", num_shards)
    return [f"{output_path}-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]


def serialize_examples(features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Feature batches -> serialized tf.train.Examples string [batch], in the graph.

    The same features as write_tfrecords writes (int64 ids, float weights), built with
    tf.io.encode_proto so that serialization runs in tf.data's parallel map, not in Python.
    """
    batch = tf.shape(features["input_ids"])[0]

    def encode(values, field_names, message_type):  # values: [batch, k] tensors, one per field
        sizes = tf.stack([tf.fill([batch], tf.shape(v)[1]) for v in values], axis=1)
        return tf.io.encode_proto(sizes, values, field_names, f"tensorflow.{message_type}")

    entries = []
    for name in FEATURE_NAMES:
        if name == "masked_lm_weights":
            kind, values = ("float_list", "FloatList"), tf.cast(features[name], tf.float32)
        else:
            kind, values = ("int64_list", "Int64List"), tf.cast(features[name], tf.int64)
        value_list = encode([values], ["value"], kind[1])
        feature = encode([value_list[:, None]], [kind[0]], "Feature")
        entries.append(encode([tf.fill([batch, 1], name), feature[:, None]], ["key", "value"],
                              "Features.FeatureEntry"))
    feature_map = encode([tf.stack(entries, axis=1)], ["feature"], "Features")
    return encode([feature_map[:, None]], ["features"], "Example")


def write_tfrecord_shards(serialized: Iterable[object], output_path: str, num_shards: int,
                          max_examples: Optional[int] = None) -> int:
    """Writes serialized examples (batches [batch] of bytes) to `shard_paths`; returns the count.

    Example k of the stream goes to shard k % num_shards, so the split is deterministic and the
    shards differ by at most one example. Every shard is written under a temporary name and all
    are renamed only once all are complete: a failure (or fewer examples than shards, a
    ValueError) leaves no output file.
    """
    paths = shard_paths(output_path, num_shards)
    _prepare_output(output_path, max_examples)
    tmp_paths = [f"{path}.tmp-{os.getpid()}" for path in paths]
    count = 0
    try:
        writers = [tf.io.TFRecordWriter(path) for path in tmp_paths]
        try:
            for batch in serialized:
                for record in np.atleast_1d(np.asarray(batch, dtype=object)):
                    writers[count % num_shards].write(record)
                    count += 1
                    if count == max_examples:
                        break
                if count == max_examples:
                    break
        finally:
            for writer in writers:
                writer.close()
        if count < num_shards:
            raise ValueError(f"only {count} examples for {num_shards} shards of {output_path}: "
                             f"give fewer shards (an empty file is not valid input)")
        for tmp_path, path in zip(tmp_paths, paths):
            tf.io.gfile.rename(tmp_path, path, overwrite=True)
    except BaseException:
        for tmp_path in tmp_paths:
            if tf.io.gfile.exists(tmp_path):
                tf.io.gfile.remove(tmp_path)
        raise
    return count


def check_output_file(output_path: str) -> None:
    """An output file path that can be written: not a directory, nor below a file (missing folders are made).

    Raises:
      ValueError: naming the path and what is wrong with it.
    """
    if tf.io.gfile.isdir(output_path):
        raise ValueError(f"output file {output_path} is a directory; give a file path in it, e.g. "
                         f"{os.path.join(output_path, 'train.tfrecord')}")
    folder = os.path.dirname(output_path)
    while folder and not tf.io.gfile.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    if folder and not tf.io.gfile.isdir(folder):
        raise ValueError(f"cannot write {output_path}: {folder} is a file, not a directory")


def _examples(features: Mapping[str, object]):
    arrays = {name: np.asarray(features[name]) for name in FEATURE_NAMES}
    if arrays["input_ids"].ndim == 1:
        arrays = {name: value[None] for name, value in arrays.items()}
    for i in range(arrays["input_ids"].shape[0]):
        feature = {}
        for name in FEATURE_NAMES:
            row = arrays[name][i]
            if name == "masked_lm_weights":
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=row.tolist()))
            else:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=row.tolist()))
        yield tf.train.Example(features=tf.train.Features(feature=feature))


def _check_tfrecord_file(path: str, max_seq_length: int, max_predictions_per_seq: int):
    """Reads the first example of `path`; ValueError unless it has the expected features and lengths."""
    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as err:
        raise ValueError(f"{path} is not a readable TFRecord file: {err.message}") from None
    if first is None:
        raise ValueError(f"TFRecord file {path} holds no examples (or is not a TFRecord file)")
    try:
        example = tf.train.Example.FromString(first.numpy())
    except Exception:  # protobuf's DecodeError
        raise ValueError(f"TFRecord file {path} does not hold tf.train.Examples") from None
    expected = feature_spec(max_seq_length, max_predictions_per_seq)
    found = example.features.feature
    for name, spec in expected.items():
        if name not in found:
            raise ValueError(f"TFRecord file {path} has no feature {name!r} (not pretraining data?)")
        kind = found[name].WhichOneof("kind")
        values = getattr(found[name], kind).value if kind else []
        if len(values) != spec.shape[0]:
            flag = "max_seq_length" if name in FEATURE_NAMES[:3] else "max_predictions_per_seq"
            raise ValueError(f"TFRecord file {path} holds {name} of length {len(values)}, but "
                             f"{flag} is {spec.shape[0]}")


def _tfrecord_dataset(source, shard, is_training, seed, deterministic, repeat, shuffle_buffer,
                      batch_size, drop_remainder, max_seq_length, max_predictions_per_seq):
    files = expand_patterns(source.patterns)
    _check_tfrecord_file(files[0], max_seq_length, max_predictions_per_seq)
    paths, shard_files = _file_paths(files, shard, is_training, seed)
    records = paths.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), FILE_CYCLE_LENGTH),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shard.num > 1 and not shard_files:
        records = records.shard(shard.num, shard.index)
    if repeat:
        records = records.repeat()
    if is_training:
        records = records.shuffle(shuffle_buffer, seed=_offset(seed, 1),
                                  reshuffle_each_iteration=True)
    # Batch first: one vectorized parse per batch instead of one per example.
    batches = records.batch(batch_size, drop_remainder=drop_remainder)
    batches = batches.map(
        lambda serialized: parse_examples(serialized, max_seq_length, max_predictions_per_seq),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return batches.prefetch(tf.data.AUTOTUNE)


@contextlib.contextmanager
def damaged_files_named(sources: Iterable[object]) -> Iterator[None]:
    """Turns TensorFlow's DataLossError of reading TFRecords (which names no file) into one
    ValueError naming the damaged file of `sources` (TFRecordSource; others are ignored)."""
    try:
        yield
    except tf.errors.DataLossError as err:
        files = [f for s in sources if isinstance(s, TFRecordSource) for f in expand_patterns(s.patterns)]
        for path in files:
            problem = _read_problem(path)
            if problem:
                raise ValueError(f"{path} is a damaged TFRecord file ({problem}); write it again "
                                 "(create_pretraining_data.py)") from None
        raise ValueError(f"a TFRecord input could not be read: {str(err).strip().splitlines()[0]}") from None


def _read_problem(path: str) -> Optional[str]:
    """The first line of the error reading every record of one TFRecord file gives, or None."""
    try:
        for _ in tf.data.TFRecordDataset(path):
            pass
    except tf.errors.DataLossError as err:
        return (getattr(err, "message", None) or str(err)).strip().splitlines()[0]
    return None
