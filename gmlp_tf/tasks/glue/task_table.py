"""The GLUE task table: the example, split and task dataclasses, GLUE's tasks in TASKS with their
file layouts and TFDS names, and get_task's spellings of their names.
"""

import dataclasses
from typing import Optional, Sequence, Tuple, Union

TRAIN = "train"
DEV = "dev"
TEST = "test"
DEV_MATCHED = "dev_matched"
DEV_MISMATCHED = "dev_mismatched"
TEST_MATCHED = "test_matched"
TEST_MISMATCHED = "test_mismatched"

# A column: a position (files without a header) or the header name(s) it may have; the first
# name the header has wins.
Column = Union[int, str, Tuple[str, ...]]


# ------------------------------------------------------------------------------- data classes
@dataclasses.dataclass(frozen=True)
class InputExample:
    """One GLUE example, from a TSV file or TFDS.

    Attributes:
      guid: unique id within the split, "<split>-<row number>" (0-based data row).
      text_a: the first (or only) sentence.
      text_b: the second sentence of a pair task; None for single-sentence tasks.
      label: a string of the task's label_list (classification), a float score (STS-B), or None
        (unlabeled test data).
      index: the row's id in the submission file: the file's "index"/"id" column (an int when it
        is one) or TFDS's idx, else the 0-based row number.
    """

    guid: str
    text_a: str
    text_b: Optional[str]
    label: Optional[Union[str, float]]
    index: Union[int, str]


@dataclasses.dataclass(frozen=True)
class SplitFormat:
    """How one split of a task is stored, in GLUE's TSV files and in TFDS.

    Attributes:
      name: the canonical split name ("train", "dev_matched", ...).
      file_names: TSV file name(s) to look for, the first that exists wins.
      has_header: whether the first line is a header (columns then by name, else by position).
      text_a, text_b: the sentence columns (text_b None for single-sentence tasks).
      label: the label column, or None where the split has none.
      label_required: a row without the label column is an error (train/dev); otherwise the
        label is read only where the file has the column (e.g. AX's diagnostic-full.tsv).
      index: the index column; where the file has none the row number is the index.
      tfds_split: the split's name in TFDS.
    """

    name: str
    file_names: Tuple[str, ...]
    has_header: bool
    text_a: Column
    text_b: Optional[Column]
    label: Optional[Column]
    label_required: bool
    index: Optional[Column]
    tfds_split: str


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """One GLUE task.

    Attributes:
      name: lower-case key, e.g. "sst2".
      display_name: GLUE's name, e.g. "SST-2".
      label_list: the label strings in class-id order (TFDS's order); None for regression.
      is_pair: whether examples are sentence pairs (text_b set).
      metric_names: what metrics.compute_metrics reports for the task.
      score_metric: the one of metric_names that is the task's GLUE score (the mean of F1 and
        accuracy for MRPC and QQP, of Pearson and Spearman for STS-B, R3 = MCC for AX).
      dir_names: folder name(s) of the task under the GLUE data directory.
      splits: the SplitFormat of every split, train first.
      submission_names: (test split, file stem of its submission file) pairs.
      tfds_name: e.g. "glue/sst2".
      tfds_text_features: TFDS feature name of text_a (and of text_b).
      tfds_label_names: TFDS's ClassLabel names, in id order (checked when reading TFDS).
      model_task: the task whose fine-tuned model predicts this one ("mnli" for AX).
      positive_label: the label F1 is computed for ("1" in GLUE; your data's second label).
      tfds_label_feature: TFDS feature name of the label.
    """

    name: str
    display_name: str
    label_list: Optional[Tuple[str, ...]]
    is_pair: bool
    metric_names: Tuple[str, ...]
    score_metric: str
    dir_names: Tuple[str, ...]
    splits: Tuple[SplitFormat, ...]
    submission_names: Tuple[Tuple[str, str], ...]
    tfds_name: str
    tfds_text_features: Tuple[str, ...]
    tfds_label_names: Optional[Tuple[str, ...]]
    model_task: str
    positive_label: str = "1"
    tfds_label_feature: str = "label"

    @property
    def is_regression(self) -> bool:
        return self.label_list is None

    @property
    def num_labels(self) -> int:
        """Outputs of the classifier head: the number of classes, 1 for regression."""
        return 1 if self.label_list is None else len(self.label_list)

    @property
    def split_names(self) -> Tuple[str, ...]:
        return tuple(s.name for s in self.splits)

    def split(self, name: str) -> SplitFormat:
        """The SplitFormat of a split; ValueError naming the task's splits if it has no such."""
        for split in self.splits:
            if split.name == name:
                return split
        raise ValueError(f"GLUE task {self.name} has no split {name!r}; "
                         f"its splits: {', '.join(self.split_names)}")

    def submission_name(self, split: str) -> str:
        """File stem of a test split's submission file, e.g. "MNLI-mm"."""
        self.split(split)
        for test_split, stem in self.submission_names:
            if test_split == split:
                return stem
        raise ValueError(f"{split!r} of GLUE task {self.name} is not a test split; submission "
                         f"files are for {', '.join(s for s, _ in self.submission_names)}")


# ------------------------------------------------------------------------------ task table
def _formats(text_a: Tuple[Column, Column], text_b: Tuple[Optional[Column], Optional[Column]],
             label: Column, test_index: Column = "index", train_index: Optional[Column] = None,
             dev: Sequence[Tuple[str, str]] = ((DEV, "validation"),),
             test: Sequence[Tuple[str, str]] = ((TEST, "test"),),
             header_train_dev: bool = True) -> Tuple[SplitFormat, ...]:
    """Formats of the usual train / dev / test layout. text_a and text_b are (train/dev column,
    test column): the test files of some tasks name or place their columns differently."""
    labeled = [(TRAIN, "train")] + list(dev)
    out = [SplitFormat(name, (f"{name}.tsv",), header_train_dev, text_a[0], text_b[0], label,
                       True, train_index, tfds_split) for name, tfds_split in labeled]
    out += [SplitFormat(name, (f"{name}.tsv",), True, text_a[1], text_b[1], None, False,
                        test_index, tfds_split) for name, tfds_split in test]
    return tuple(out)


_BINARY = ("0", "1")
_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")
_ACCURACY = ("accuracy",)
_ACC_F1 = ("accuracy", "f1", "acc_and_f1")


def _task(name, display_name, label_list, is_pair, metric_names, score_metric, splits,
          tfds_text_features, tfds_label_names, dir_names=None, submission_names=None,
          model_task=None) -> GlueTask:
    if submission_names is None:
        submission_names = ((TEST, display_name),)
    return GlueTask(
        name=name, display_name=display_name, label_list=label_list, is_pair=is_pair,
        metric_names=metric_names, score_metric=score_metric,
        dir_names=dir_names or (display_name,), splits=splits,
        submission_names=submission_names, tfds_name=f"glue/{name}",
        tfds_text_features=tfds_text_features, tfds_label_names=tfds_label_names,
        model_task=model_task or name)


_TASK_LIST = (
    # CoLA train/dev: no header; source, label, original judgement ("*" or empty), sentence.
    _task("cola", "CoLA", _BINARY, False, ("mcc",), "mcc",
          _formats(text_a=(3, "sentence"), text_b=(None, None), label=1,
                   header_train_dev=False),
          ("sentence",), ("unacceptable", "acceptable")),
    _task("sst2", "SST-2", _BINARY, False, _ACCURACY, "accuracy",
          _formats(text_a=("sentence", "sentence"), text_b=(None, None), label="label"),
          ("sentence",), ("negative", "positive")),
    _task("mrpc", "MRPC", _BINARY, True, _ACC_F1, "acc_and_f1",
          _formats(text_a=("#1 String", "#1 String"), text_b=("#2 String", "#2 String"),
                   label="Quality"),
          ("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    _task("qqp", "QQP", _BINARY, True, _ACC_F1, "acc_and_f1",
          _formats(text_a=("question1", "question1"), text_b=("question2", "question2"),
                   label="is_duplicate", test_index="id", train_index="id"),
          ("question1", "question2"), ("not_duplicate", "duplicate")),
    _task("stsb", "STS-B", None, True, ("pearson", "spearman", "corr"), "corr",
          _formats(text_a=("sentence1", "sentence1"), text_b=("sentence2", "sentence2"),
                   label="score", train_index="index"),
          ("sentence1", "sentence2"), None),
    _task("mnli", "MNLI", _NLI3, True, _ACCURACY, "accuracy",
          _formats(text_a=("sentence1", "sentence1"), text_b=("sentence2", "sentence2"),
                   label="gold_label", train_index="index",
                   dev=((DEV_MATCHED, "validation_matched"),
                        (DEV_MISMATCHED, "validation_mismatched")),
                   test=((TEST_MATCHED, "test_matched"), (TEST_MISMATCHED, "test_mismatched"))),
          ("premise", "hypothesis"), _NLI3,
          submission_names=((TEST_MATCHED, "MNLI-m"), (TEST_MISMATCHED, "MNLI-mm"))),
    _task("qnli", "QNLI", _NLI2, True, _ACCURACY, "accuracy",
          _formats(text_a=("question", "question"), text_b=("sentence", "sentence"),
                   label="label", train_index="index"),
          ("question", "sentence"), _NLI2),
    _task("rte", "RTE", _NLI2, True, _ACCURACY, "accuracy",
          _formats(text_a=("sentence1", "sentence1"), text_b=("sentence2", "sentence2"),
                   label="label", train_index="index"),
          ("sentence1", "sentence2"), _NLI2),
    # WNLI's labels are 0/1 with 1 = entailment; TFDS names them not_entailment, entailment.
    _task("wnli", "WNLI", _BINARY, True, _ACCURACY, "accuracy",
          _formats(text_a=("sentence1", "sentence1"), text_b=("sentence2", "sentence2"),
                   label="label", train_index="index"),
          ("sentence1", "sentence2"), ("not_entailment", "entailment")),
    # AX: the diagnostic set, test only, predicted by an MNLI model with MNLI's labels. GLUE
    # scores it by R3 (MCC over the three classes); accuracy is reported beside it.
    _task("ax", "AX", _NLI3, True, ("accuracy", "mcc"), "mcc",
          (SplitFormat(TEST, ("diagnostic.tsv", "AX.tsv", "diagnostic-full.tsv"), True,
                       ("sentence1", "Premise"), ("sentence2", "Hypothesis"), ("Label",), False,
                       "index", "test"),),
          ("premise", "hypothesis"), _NLI3, dir_names=("diagnostic", "AX"), model_task="mnli"),
)

TASKS = {task.name: task for task in _TASK_LIST}
_ALIASES = {"diagnostic": "ax", "diagnostics": "ax", "mnlim": "mnli", "mnlimm": "mnli",
            "mnlimatched": "mnli", "mnlimismatched": "mnli"}


def get_task(name: Union[str, GlueTask]) -> GlueTask:
    """The GlueTask of a name: case, "-" and "_" and a "glue/" prefix do not matter.

    Raises:
      ValueError: the name is no GLUE task.
    """
    if isinstance(name, GlueTask):
        return name
    key = str(name).strip().lower()
    if key.startswith("glue/"):
        key = key[len("glue/"):]
    key = key.replace("-", "").replace("_", "")
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]


def eval_splits(task: Union[str, GlueTask]) -> Tuple[str, ...]:
    """The labeled evaluation splits: ("dev",), MNLI's matched and mismatched, none for AX."""
    return tuple(s.name for s in get_task(task).splits if s.label_required and s.name != TRAIN)


def test_splits(task: Union[str, GlueTask]) -> Tuple[str, ...]:
    """The splits predicted for the GLUE server: ("test",), MNLI's test_matched/mismatched."""
    return tuple(split for split, _ in get_task(task).submission_names)
