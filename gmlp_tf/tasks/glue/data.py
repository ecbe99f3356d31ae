"""GLUE data for run_classifier.py: the readers of the tasks' TSV files and TFDS, and the tasks of
your own data. The task table is task_table.py, submission files submission.py.

Every GLUE task is one `GlueTask` in TASKS (get_task accepts common spellings: "SST-2", "sts-b",
"MNLI-mm", "glue/qnli", "diagnostic"). A task reads from two sources into the same
`InputExample`s:

  read_tsv_examples   the original GLUE files (the layout of GLUE's download script):
                        <data_dir>/CoLA/{train,dev,test}.tsv, SST-2, MRPC, QQP, STS-B, QNLI, RTE,
                        WNLI likewise, MNLI/{train,dev_matched,dev_mismatched,test_matched,
                        test_mismatched}.tsv and diagnostic/diagnostic.tsv (AX).
                      data_dir may also be the task folder itself, or the .tsv file.
  read_tfds_examples  TFDS's glue/<task> (already prepared; never downloads).

Splits have canonical names: "train", "dev", "test"; MNLI has "dev_matched", "dev_mismatched",
"test_matched" and "test_mismatched"; AX (the diagnostic set, predicted with an MNLI model) has
only "test". train and dev carry labels, test does not (label None).

Labels are GLUE's own strings ("0"/"1" for CoLA, SST-2, MRPC, QQP and WNLI; "entailment", ...
for the NLI tasks), whichever the source; STS-B's is a float score in [0, 5]. The order of
`label_list` is TFDS's class-id order, so a TFDS label id indexes it directly and a classifier
predicting class i means label_list[i] in both sources.

TSV quirks handled here:
  - Quoting is off (csv.QUOTE_NONE, as BERT and TFDS read GLUE): a '"' in a sentence is a
    literal character, never the start of a quoted field that could swallow tabs and lines.
  - CoLA's train.tsv and dev.tsv have no header (columns: source, label, original judgement,
    sentence); its test.tsv does (index, sentence). Every other file has a header, and columns
    are found by name there, so the column order does not matter.
  - MRPC's train.tsv and dev.tsv, as written by GLUE's download script, start with the UTF-8
    byte order mark of Microsoft's original file; it is dropped, so the first column is
    "Quality" and not "\\ufeffQuality".
  - Files without an index column (SST-2, MRPC and QQP train/dev, CoLA train/dev, the labeled
    diagnostic-full.tsv) get the 0-based row number, which is also what GLUE's test indices are.
  - AX: GLUE's download script saves the diagnostic set as diagnostic/diagnostic.tsv (index,
    sentence1, sentence2); GLUE's site also serves it as AX.tsv, and a labeled
    diagnostic-full.tsv (Lexical Semantics, Predicate-Argument Structure, Logic, Knowledge,
    Domain, Premise, Hypothesis, Label) for local analysis, read the same way (rows in the same
    order, so the row number is the index) when passed as the file itself.

Your own data uses the same examples, readers and files through a GlueTask made at run time:
  tsv_task            --task_name=tsv: <dir>/train.tsv, dev.tsv and test.tsv with a header
                      naming sentence (or sentence1 and sentence2) and label (not needed in
                      test; an index or id column is used when there). The labels are those of
                      train.tsv, sorted (as numbers when all are integers), so the class ids do
                      not depend on the order of the rows. Metric: accuracy, and F1 of the
                      second label too when there are two (e.g. "1" of 0/1, "pos" of neg/pos).
                      Test predictions go to test_results.tsv (index, prediction).
  tfds_task           --tfds_name: any TFDS dataset with one or two text features and a
                      ClassLabel feature; the labels are the ClassLabel's names in id order.
                      Splits: train; validation for evaluation, or test when the dataset has
                      no validation split; test for predictions (row number as the index).
"""

import csv
import dataclasses
import math
import os
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import tensorflow as tf

from gmlp_tf.tasks.glue.task_table import (
    DEV,
    TEST,
    TRAIN,
    Column,
    GlueTask,
    InputExample,
    SplitFormat,
    get_task,
)

TSV_TASK, TFDS_TASK = "tsv", "tfds"  # the names of the tasks of your own data
CUSTOM_SUBMISSION_NAME = "test_results"
# TFDS examples are read in batches: one Python round trip per example is slow on MNLI (393k).
_TFDS_BATCH_SIZE = 1024


# ------------------------------------------------------------------------------------- TSV
def read_tsv_examples(task: Union[str, GlueTask], data_dir: str, split: str) -> List[InputExample]:
    """Reads one split of a task from GLUE's TSV files, in file order.

    Args:
      task: a GlueTask or its name.
      data_dir: the GLUE data directory (holding CoLA/, SST-2/, ...), the task's folder, or the
        .tsv file itself. Local or any path tf.io.gfile reads (gs://).
      split: a canonical split name of the task.

    Raises:
      FileNotFoundError: the split's file is in none of the places looked at.
      ValueError: the file is empty or has no examples, its header lacks a needed column, or a
        row has too few columns or a label outside the task's labels; the message names the file
        and, for a row, its 1-based line number.
    """
    task = get_task(task)
    fmt = task.split(split)
    path = find_tsv_file(task, data_dir, split)
    examples = []
    rows = _tsv_rows(path)
    # An empty file raises at the first next(); a header-only file ends the loop at once.
    columns = _resolve_columns(task, fmt, path, next(rows) if fmt.has_header else None)
    for row_number, (line, row) in enumerate(rows):
        examples.append(_row_example(task, fmt, columns, path, line, row_number, row))
    if not examples:
        raise ValueError(f"GLUE file {path} holds no examples")
    return examples


def find_tsv_file(task: Union[str, GlueTask], data_dir: str, split: str) -> str:
    """The path of a split's TSV file: data_dir itself if it is a file, else the first of
    <data_dir>/<task folder>/<file> and <data_dir>/<file> that exists."""
    task = get_task(task)
    fmt = task.split(split)
    if tf.io.gfile.exists(data_dir) and not tf.io.gfile.isdir(data_dir):
        return data_dir
    candidates = [os.path.join(data_dir, folder, file_name)
                  for file_name in fmt.file_names for folder in task.dir_names]
    candidates += [os.path.join(data_dir, file_name) for file_name in fmt.file_names]
    for path in candidates:
        if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
            return path
    raise FileNotFoundError(f"GLUE {task.display_name} {split} file not found; looked for "
                            f"{', '.join(candidates)}")


def _tsv_rows(path: str) -> Iterator[Tuple[int, List[str]]]:
    """(1-based line number, fields) of each non-blank line, quoting off, BOM dropped."""
    with tf.io.gfile.GFile(path, "r") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        empty = True
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                raise ValueError(f"{path}:{reader.line_num}: unreadable row: {err}") from None
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{reader.line_num + 1}: not UTF-8 text ({err.reason})"
                                 ) from None
            if not row:  # A blank line is no row.
                continue
            if empty and row[0].startswith("\ufeff"):
                row[0] = row[0][1:]
            empty = False
            yield reader.line_num, row
        if empty:
            raise ValueError(f"GLUE file is empty: {path}")


@dataclasses.dataclass(frozen=True)
class _Columns:
    """Positions of one file's columns (None: the file has no such column)."""

    text_a: int
    text_b: Optional[int]
    label: Optional[int]
    index: Optional[int]
    width: Optional[int] = None  # The header's column count, where a row must have exactly as many.

    @property
    def needed(self) -> int:
        """How many columns a row must have."""
        return 1 + max(p for p in (self.text_a, self.text_b, self.label, self.index)
                       if p is not None)


def _resolve_columns(task: GlueTask, fmt: SplitFormat, path: str,
                     header: Optional[Tuple[int, List[str]]]) -> _Columns:
    """Column positions, from the header's names where there is one."""
    if header is None:
        return _Columns(fmt.text_a, fmt.text_b, fmt.label, fmt.index)
    line, names = header
    names = [n.strip() for n in names]

    def find(column: Optional[Column], required: bool) -> Optional[int]:
        if column is None:
            return None
        accepted = (column,) if isinstance(column, str) else column
        for name in accepted:
            if name in names:
                return names.index(name)
        if required:
            raise ValueError(f"{path}:{line}: {task.display_name} header lacks column "
                             f"{' or '.join(map(repr, accepted))}; it has {', '.join(names)}")
        return None

    # Your own files: a row longer than the header has a tab inside a text, which would cut it.
    width = len(names) if task.name == TSV_TASK else None
    return _Columns(find(fmt.text_a, True), find(fmt.text_b, True),
                    find(fmt.label, fmt.label_required), find(fmt.index, False), width)


def _row_example(task: GlueTask, fmt: SplitFormat, columns: _Columns, path: str, line: int,
                 row_number: int, row: List[str]) -> InputExample:
    if len(row) < columns.needed:
        raise ValueError(f"{path}:{line}: row has {len(row)} columns, {task.display_name} "
                         f"{fmt.name} needs at least {columns.needed}")
    if columns.width is not None and len(row) > columns.width:
        raise ValueError(f"{path}:{line}: row has {len(row)} columns but the header {columns.width} "
                         "(a tab inside a text?)")
    label = None
    if columns.label is not None:
        label = _parse_label(task, row[columns.label], f"{path}:{line}")
    index = row_number if columns.index is None else _parse_index(row[columns.index])
    text_b = None if columns.text_b is None else row[columns.text_b]
    return InputExample(f"{fmt.name}-{row_number}", row[columns.text_a], text_b, label, index)


def _parse_label(task: GlueTask, value: str, where: str) -> Union[str, float]:
    """A TSV label: one of label_list, or STS-B's score as a float."""
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise ValueError(f"{where}: {task.display_name} score {value!r} is not a number")
        return score
    if value not in task.label_list:
        if task.name == TSV_TASK:
            raise ValueError(f"{where}: label {value!r} is not among the training file's labels "
                             f"({', '.join(task.label_list)})")
        raise ValueError(f"{where}: label {value!r} is not a {task.display_name} label "
                         f"({', '.join(task.label_list)})")
    return value


def _parse_index(value: str) -> Union[int, str]:
    """An index column value: an int where it is one (GLUE's are), else the string."""
    value = value.strip()
    try:
        return int(value)
    except ValueError:
        return value


# ------------------------------------------------------------------------------------ TFDS
def read_tfds_examples(task: Union[str, GlueTask], split: str,
                       data_dir: Optional[str] = None) -> List[InputExample]:
    """Reads one split of a task from TFDS's glue/<task>, already prepared in data_dir.

    TFDS stores examples shuffled; they are returned sorted by idx, the row number in GLUE's
    file, so test predictions come out in the submission's order. Test labels (TFDS's -1) are
    None; a class id becomes its label string.

    Raises:
      FileNotFoundError: the dataset is not prepared in data_dir (there is never a download).
      ValueError: TFDS's classes are not the ones this module expects, or a label id is out of
        range.
    """
    import tensorflow_datasets as tfds  # Only this reader needs it.

    task = get_task(task)
    fmt = task.split(split)
    _check_tfds_labels(task, tfds.builder(task.tfds_name, data_dir=data_dir))
    dataset = _load_prepared(task.tfds_name, fmt.tfds_split, data_dir)
    is_test = not fmt.label_required
    examples = []
    for batch in dataset.batch(_TFDS_BATCH_SIZE).as_numpy_iterator():
        for i in range(len(batch["idx"])):
            examples.append(_tfds_example(task, fmt, batch, i, is_test))
    examples.sort(key=lambda e: e.index)
    return [dataclasses.replace(e, guid=f"{fmt.name}-{n}") for n, e in enumerate(examples)]


def _load_prepared(tfds_name: str, split: str, data_dir: Optional[str]) -> tf.data.Dataset:
    """tfds.load of a split already prepared in data_dir, in TFDS's order; never a download.

    Raises:
      FileNotFoundError: the dataset is not prepared there.
    """
    import tensorflow_datasets as tfds

    try:
        return tfds.load(tfds_name, split=split, data_dir=data_dir, download=False, shuffle_files=False)
    except AssertionError as err:  # TFDS' way of saying the data is not prepared
        raise FileNotFoundError(
            f"TFDS dataset {tfds_name} is not prepared in {data_dir or 'the default data_dir'} ({err}); "
            f"prepare it with tfds.builder({tfds_name!r}).download_and_prepare() on a machine with internet"
        ) from None


def _check_tfds_labels(task: GlueTask, builder):
    """Fails if TFDS's class order is not the one label_list is aligned to."""
    if task.tfds_label_names is None:
        return
    names = tuple(getattr(builder.info.features["label"], "names", ()) or ())
    if names != task.tfds_label_names:
        raise ValueError(f"TFDS {task.tfds_name} has classes {names}, expected "
                         f"{task.tfds_label_names} (the order of {task.label_list})")


def _tfds_example(task: GlueTask, fmt: SplitFormat, batch, i: int, is_test: bool) -> InputExample:
    texts = [batch[feature][i].decode("utf-8") for feature in task.tfds_text_features]
    index = int(batch["idx"][i])
    label = None
    if not is_test:
        raw = batch["label"][i]
        if task.is_regression:
            # str() of the float32 is its shortest round-trip form: 3.8, not 3.799999952316284.
            label = float(str(raw))
        else:
            if not 0 <= int(raw) < len(task.label_list):
                raise ValueError(f"TFDS {task.tfds_name} {fmt.tfds_split} idx {index}: label id "
                                 f"{int(raw)} is out of range for {task.label_list}")
            label = task.label_list[int(raw)]
    return InputExample("", texts[0], texts[1] if task.is_pair else None, label, index)


# ------------------------------------------------------------------------- your own data
def _custom_task(name: str, display_name: str, labels: Sequence[str], is_pair: bool,
                 splits: Tuple[SplitFormat, ...], **tfds: object) -> GlueTask:
    """A GlueTask of your own labels: accuracy, and F1 of the second label when there are two."""
    binary = len(labels) == 2
    return GlueTask(
        name=name, display_name=display_name, label_list=tuple(labels), is_pair=is_pair,
        metric_names=("accuracy", "f1") if binary else ("accuracy",), score_metric="accuracy",
        dir_names=(), splits=splits, submission_names=((TEST, CUSTOM_SUBMISSION_NAME),),
        tfds_name=str(tfds.get("tfds_name", "")), tfds_text_features=tuple(tfds.get("text_features", ())),
        tfds_label_names=None, model_task=name, positive_label=labels[1] if binary else labels[-1],
        tfds_label_feature=str(tfds.get("label_feature", "label")))


def _sorted_labels(labels: Sequence[str]) -> List[str]:
    """Labels sorted: as integers when all are ("2" < "10"), else as strings."""
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def tsv_task(data_dir: str) -> GlueTask:
    """The task of a folder of your own TSV files (see the module docstring), labels from train.tsv.

    Raises:
      FileNotFoundError: data_dir or its train.tsv is missing.
      ValueError: train.tsv's header lacks sentence / sentence1 and sentence2 or label, a row
        lacks the label column or leaves it empty, or there are fewer than two labels.
    """
    path = os.path.join(data_dir, "train.tsv")
    if not tf.io.gfile.isdir(data_dir) or not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"--task_name=tsv reads <data_dir>/train.tsv: {path} not found")
    rows = _tsv_rows(path)
    line, header = next(rows)
    names = [n.strip() for n in header]
    is_pair = "sentence1" in names and "sentence2" in names
    if not (is_pair or "sentence" in names) or "label" not in names:
        raise ValueError(f"{path}:{line}: the header must name 'sentence' (or 'sentence1' and "
                         f"'sentence2') and 'label'; it has {', '.join(names)}")
    column, labels = names.index("label"), {}
    for line, row in rows:
        if len(row) <= column or not row[column].strip():
            raise ValueError(f"{path}:{line}: row has no label (column {column + 1}, 'label')")
        labels.setdefault(row[column], line)
    if len(labels) < 2:
        raise ValueError(f"{path} has {len(labels)} label(s) ({', '.join(labels)}); a classifier "
                         "needs at least two")
    text_a, text_b = ("sentence1", "sentence2") if is_pair else ("sentence", None)
    splits = tuple(SplitFormat(name, (f"{name}.tsv",), True, text_a, text_b,
                               None if name == TEST else "label", name != TEST, ("index", "id"), name)
                   for name in (TRAIN, DEV, TEST))
    return _custom_task(TSV_TASK, "TSV", _sorted_labels(list(labels)), is_pair, splits)


def default_tfds_eval_split(split_names: Sequence[str]) -> str:
    """validation where the dataset has it (or its splits are unknown), else test."""
    return "validation" if not split_names or "validation" in split_names else "test"


def tfds_task(name: str, text_keys: Sequence[str], label_key: str = "label",
              eval_split: Optional[str] = None, data_dir: Optional[str] = None) -> GlueTask:
    """The task of a TFDS text-classification dataset (labels: its ClassLabel's names).

    Raises:
      ValueError: an unknown dataset, not one or two text keys, a feature it lacks, a label
        feature that is no ClassLabel, or an eval split it does not have.
    """
    import tensorflow_datasets as tfds  # Only this reader needs it.

    text_keys = [k.strip() for k in text_keys if k.strip()]
    if not 1 <= len(text_keys) <= 2:
        raise ValueError(f"--tfds_text_keys must name one or two text features, got {text_keys}")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"unknown TFDS dataset {name!r}") from None
    features = builder.info.features
    for key in text_keys + [label_key]:
        if key not in features:
            raise ValueError(f"TFDS {name} has no feature {key!r}; it has {', '.join(features)}")
    if not isinstance(features[label_key], tfds.features.ClassLabel):
        raise ValueError(f"TFDS {name} feature {label_key!r} is not a ClassLabel (it is "
                         f"{type(features[label_key]).__name__}); give --tfds_label_key")
    known = list(builder.info.splits.keys())
    eval_split = eval_split or default_tfds_eval_split(known)
    if known and eval_split not in known:
        raise ValueError(f"TFDS {name} has no split {eval_split!r}; it has {', '.join(known)}")
    splits = tuple(SplitFormat(split, (), False, 0, 1 if len(text_keys) == 2 else None,
                               None if split == TEST else 0, split != TEST, None, tfds_split)
                   for split, tfds_split in ((TRAIN, "train"), (DEV, eval_split), (TEST, "test")))
    return _custom_task(TFDS_TASK, name, features[label_key].names, len(text_keys) == 2, splits,
                        tfds_name=name, text_features=text_keys, label_feature=label_key)


def read_tfds_classification(task: GlueTask, split: str,
                             data_dir: Optional[str] = None) -> List[InputExample]:
    """Reads one split of a tfds_task in TFDS's order (the row number is the index).

    Raises:
      FileNotFoundError: the dataset is not prepared in data_dir (there is never a download).
    """
    fmt = task.split(split)
    dataset = _load_prepared(task.tfds_name, fmt.tfds_split, data_dir)
    examples = []
    for batch in dataset.batch(_TFDS_BATCH_SIZE).as_numpy_iterator():
        for i in range(len(batch[task.tfds_label_feature])):
            texts = [batch[key][i].decode("utf-8") for key in task.tfds_text_features]
            label = None
            if fmt.label_required:
                label = task.label_list[int(batch[task.tfds_label_feature][i])]
            n = len(examples)
            examples.append(InputExample(f"{split}-{n}", texts[0], texts[1] if task.is_pair else None,
                                         label, n))
    if not examples:
        raise ValueError(f"TFDS {task.tfds_name} {fmt.tfds_split} holds no examples")
    return examples
