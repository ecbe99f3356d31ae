"""gmlp_tf.tasks.glue: the task table, TSV and TFDS readers (data), submission files and metrics.

The TSV fixtures under fixtures/glue/ are small hand-written files in the real GLUE layouts
(headers, column counts, label vocabularies, MRPC's byte order mark, CoLA's missing header).
TFDS is read through tfds.testing.mock_data, never a download.
"""

import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from gmlp_tf.tasks.glue import data as glue
from gmlp_tf.tasks.glue import metrics as glue_metrics
from gmlp_tf.tasks.glue import submission, task_table

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "glue")

# (task, split) -> labels of every row, first row's text_a and text_b, indices of the rows.
EXPECTED = {
    ("cola", "train"): (["1", "0", "1", "0"],
                        "Our neighbours won't lend us the ladder, let alone the van.", None,
                        [0, 1, 2, 3]),
    ("cola", "dev"): (["1", "0", "1"], "The kettle boiled over before anyone noticed.", None,
                      [0, 1, 2]),
    ("cola", "test"): ([None] * 3, "Bill whistled past the house.", None, [0, 1, 2]),
    ("sst2", "train"): (["1", "0", "0", "1"], "a warm , funny and deeply felt little film ", None,
                        [0, 1, 2, 3]),
    ("sst2", "dev"): (["1", "0", "0"], "it 's a charming and often affecting journey . ", None,
                      [0, 1, 2]),
    ("sst2", "test"): ([None] * 3, "an uneasy mix of styles and genres .", None, [0, 1, 2]),
    ("mrpc", "train"): (["1", "0", "1"],
                        'The minister called the report " deeply flawed " on Monday .',
                        'On Monday the minister said the report was " deeply flawed " .',
                        [0, 1, 2]),
    ("mrpc", "dev"): (["1", "0", "0"], "He was arrested at his home late Tuesday .",
                      "Police arrested him at his home on Tuesday night .", [0, 1, 2]),
    ("mrpc", "test"): ([None] * 3, "The plant will close by the end of the year .",
                       "The factory is to shut down by year 's end .", [0, 1, 2]),
    ("qqp", "train"): (["1", "0", "1", "0"], "How do I learn to cook rice properly?",
                       "What is the best way to cook rice?", [133273, 402555, 360472, 150662]),
    ("qqp", "dev"): (["1", "0", "1"], "How can I improve my handwriting?",
                     "What are some ways to write neater?", [201359, 263843, 172974]),
    ("qqp", "test"): ([None] * 3, "How do I start running again?",
                      "What is a good plan to get back into running?", [0, 1, 2]),
    ("stsb", "train"): ([5.0, 3.8, 0.0, 2.6], "A plane is taking off.",
                        "An air plane is taking off.", [0, 1, 2, 3]),
    ("stsb", "dev"): ([5.0, 4.2, 0.25], "A man with a hard hat is dancing.",
                      "A man wearing a hard hat is dancing.", [0, 1, 2]),
    ("stsb", "test"): ([None] * 3, "A girl is styling her hair.", "A girl is brushing her hair.",
                       [0, 1, 2]),
    ("mnli", "train"): (["entailment", "contradiction", "neutral", "entailment"],
                        "The agency cut its budget by a third.", "The agency spends less now.",
                        [0, 1, 2, 3]),
    ("mnli", "dev_matched"): (["entailment", "contradiction", "neutral"],
                              "The new rules take effect in May.", "The rules change in May.",
                              [0, 1, 2]),
    ("mnli", "dev_mismatched"): (["entailment", "contradiction", "neutral"],
                                 "Your gift helps us feed 200 families.",
                                 "The charity feeds families.", [0, 1, 2]),
    ("mnli", "test_matched"): ([None] * 3, "The hotel overlooks the harbour.",
                               "The hotel has a view.", [0, 1, 2]),
    ("mnli", "test_mismatched"): ([None] * 3, "I grew up on a farm.", "I know about farm life.",
                                  [0, 1, 2]),
    ("qnli", "train"): (["entailment", "not_entailment", "entailment"],
                        "When did the bridge open?", "The bridge opened to traffic in 1932.",
                        [0, 1, 2]),
    ("qnli", "dev"): (["entailment", "not_entailment", "entailment"],
                      "What is the largest planet?", "Jupiter is the largest planet.", [0, 1, 2]),
    ("qnli", "test"): ([None] * 3, "Who wrote Hamlet?", "Hamlet was written around 1600.",
                       [0, 1, 2]),
    ("rte", "train"): (["entailment", "not_entailment", "entailment"],
                       "The company hired 200 new workers last year.",
                       "The company hired workers.", [0, 1, 2]),
    ("rte", "dev"): (["entailment", "not_entailment", "not_entailment"],
                     "Dana Reeve died of lung cancer at 44.", "Dana Reeve was 44.", [0, 1, 2]),
    ("rte", "test"): ([None] * 3, "The festival draws 50,000 visitors a year.",
                      "The festival is popular.", [0, 1, 2]),
    ("wnli", "train"): (["1", "0", "1"],
                        "The trophy doesn't fit in the suitcase because it is too big.",
                        "The trophy is too big.", [0, 1, 2]),
    ("wnli", "dev"): (["0", "1", "0"], "The city council refused the protesters a permit "
                      "because they feared violence.", "The protesters feared violence.",
                      [0, 1, 2]),
    ("wnli", "test"): ([None] * 3, "Anna did a lot better than her good friend Lucy on the test "
                       "because she had studied so hard.", "Anna had studied so hard.",
                       [0, 1, 2]),
    ("ax", "test"): ([None] * 4, "The cat sat on the mat.", "The cat did not sit on the mat.",
                     [0, 1, 2, 3]),
}


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return str(path)


def tsv(*rows):
    return "".join("\t".join(row) + "\n" for row in rows)


# ---------------------------------------------------------------------------------- tasks
def test_every_task_and_split_has_a_fixture():
    assert set(task_table.TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte",
                               "wnli", "ax"}
    assert {(t, s) for t, task in task_table.TASKS.items() for s in task.split_names} == set(EXPECTED)


def test_task_table():
    mnli = task_table.get_task("mnli")
    assert mnli.split_names == ("train", "dev_matched", "dev_mismatched", "test_matched",
                                "test_mismatched")
    assert task_table.eval_splits("mnli") == ("dev_matched", "dev_mismatched")
    assert task_table.test_splits("mnli") == ("test_matched", "test_mismatched")
    assert task_table.eval_splits("sst2") == ("dev",) and task_table.test_splits("sst2") == ("test",)
    assert task_table.eval_splits("ax") == () and task_table.test_splits("ax") == ("test",)
    assert task_table.get_task("ax").model_task == "mnli" and mnli.model_task == "mnli"
    assert task_table.get_task("ax").label_list == mnli.label_list
    stsb = task_table.get_task("stsb")
    assert stsb.is_regression and stsb.label_list is None and stsb.num_labels == 1
    assert not task_table.get_task("cola").is_pair and task_table.get_task("qqp").is_pair
    assert task_table.get_task("sst2").num_labels == 2 and mnli.num_labels == 3
    assert mnli.split("dev_matched").tfds_split == "validation_matched"
    assert task_table.get_task("rte").split("dev").tfds_split == "validation"
    for task in task_table.TASKS.values():
        assert task.score_metric in task.metric_names
        assert task.tfds_name == f"glue/{task.name}"


@pytest.mark.parametrize("alias, name", [
    ("SST-2", "sst2"), ("sst2", "sst2"), ("sts-b", "stsb"), ("STS_B", "stsb"), ("CoLA", "cola"),
    ("MNLI-m", "mnli"), ("mnli-mm", "mnli"), ("glue/qnli", "qnli"), ("diagnostic", "ax"),
    ("AX", "ax"), (" rte ", "rte"),
])
def test_get_task_aliases(alias, name):
    assert task_table.get_task(alias) is task_table.TASKS[name]


def test_unknown_task_and_split():
    with pytest.raises(ValueError, match=r"unknown GLUE task 'squad'; known tasks: cola, sst2"):
        task_table.get_task("squad")
    with pytest.raises(ValueError,
                       match=r"mnli has no split 'dev'; its splits: train, dev_matched"):
        glue.read_tsv_examples("mnli", FIXTURES, "dev")
    with pytest.raises(ValueError, match="ax has no split 'train'"):
        task_table.get_task("ax").split("train")


# ------------------------------------------------------------------------------------ TSV
@pytest.mark.parametrize("task_name, split", sorted(EXPECTED))
def test_read_tsv_every_task_and_split(task_name, split):
    labels, text_a, text_b, indices = EXPECTED[(task_name, split)]
    task = task_table.get_task(task_name)
    examples = glue.read_tsv_examples(task, FIXTURES, split)
    assert [e.label for e in examples] == labels
    assert [e.index for e in examples] == indices
    assert [e.guid for e in examples] == [f"{split}-{i}" for i in range(len(examples))]
    assert (examples[0].text_a, examples[0].text_b) == (text_a, text_b)
    assert all(e.text_a for e in examples)
    if task.is_pair:
        assert all(e.text_b for e in examples)
    else:
        assert all(e.text_b is None for e in examples)
    if task.is_regression:
        assert all(isinstance(e.label, float) for e in examples if e.label is not None)
    else:
        assert all(e.label in task.label_list for e in examples if e.label is not None)


def test_cola_train_and_dev_have_no_header_but_test_has():
    with open(os.path.join(FIXTURES, "CoLA", "train.tsv"), encoding="utf-8") as f:
        first_line = f.readline()
    assert first_line.split("\t")[:2] == ["gj04", "1"]  # data, not a header
    train = glue.read_tsv_examples("cola", FIXTURES, "train")
    assert len(train) == 4 and train[1].text_a == "The garden was sang by the children."
    test = glue.read_tsv_examples("cola", FIXTURES, "test")
    assert len(test) == 3 and test[0].text_a != "sentence"


def test_cola_file_with_a_header_line_is_an_error(tmp_path):
    path = write(tmp_path / "CoLA" / "train.tsv",
                 tsv(["source", "label", "original", "sentence"], ["gj04", "1", "", "Fine."]))
    with pytest.raises(ValueError, match=r"train.tsv:1: label 'label' is not a CoLA label"):
        glue.read_tsv_examples("cola", str(tmp_path), "train")
    assert os.path.exists(path)


def test_quotes_are_literal(tmp_path):
    sst = glue.read_tsv_examples("sst2", FIXTURES, "train")
    assert sst[2].text_a == 'a " twist " you can see coming a mile away '
    ax = glue.read_tsv_examples("ax", FIXTURES, "test")
    assert ax[2].text_a == 'When you\'ve got no snow, it\'s "really" hard to learn a snow sport.'
    # An unbalanced quote would make a quoting reader swallow the tab and the next lines.
    write(tmp_path / "RTE" / "dev.tsv", tsv(
        ["index", "sentence1", "sentence2", "label"],
        ["0", '"Unclosed quote starts here', "Second sentence.", "entailment"],
        ["1", "Next row.", 'Ends with a quote"', "not_entailment"]))
    rte = glue.read_tsv_examples("rte", str(tmp_path), "dev")
    assert [(e.text_a, e.text_b, e.label) for e in rte] == [
        ('"Unclosed quote starts here', "Second sentence.", "entailment"),
        ("Next row.", 'Ends with a quote"', "not_entailment")]


def test_mrpc_byte_order_mark_is_dropped():
    with open(os.path.join(FIXTURES, "MRPC", "train.tsv"), "rb") as f:
        assert f.read(3) == b"\xef\xbb\xbf"  # as GLUE's download script leaves it
    assert glue.read_tsv_examples("mrpc", FIXTURES, "train")[0].label == "1"


def test_ax_labeled_diagnostic_full(tmp_path):
    full = os.path.join(FIXTURES, "diagnostic", "diagnostic-full.tsv")
    examples = glue.read_tsv_examples("ax", full, "test")
    assert [e.label for e in examples] == ["contradiction", "contradiction", "neutral",
                                           "entailment"]
    assert [e.index for e in examples] == [0, 1, 2, 3]
    unlabeled = glue.read_tsv_examples("ax", FIXTURES, "test")
    assert [(e.text_a, e.text_b) for e in examples] == [(e.text_a, e.text_b) for e in unlabeled]
    # A folder holding only the labeled file is read too.
    shutil.copy(full, tmp_path / "diagnostic-full.tsv")
    assert glue.read_tsv_examples("ax", str(tmp_path), "test") == examples


def test_data_dir_may_be_the_task_folder_or_the_file():
    root = glue.read_tsv_examples("qnli", FIXTURES, "dev")
    assert glue.read_tsv_examples("qnli", os.path.join(FIXTURES, "QNLI"), "dev") == root
    assert glue.read_tsv_examples("qnli", os.path.join(FIXTURES, "QNLI", "dev.tsv"), "dev") == root
    assert glue.find_tsv_file("mnli", FIXTURES, "test_mismatched") == os.path.join(
        FIXTURES, "MNLI", "test_mismatched.tsv")


def test_columns_found_by_header_name_in_any_order(tmp_path):
    write(tmp_path / "QNLI" / "dev.tsv", tsv(
        ["label", "sentence", "index", "question"],
        ["not_entailment", "It is red.", "7", "What colour is Mars?"],
        ["entailment", "It has two.", "8", "How many moons does Mars have?"]))
    examples = glue.read_tsv_examples("qnli", str(tmp_path), "dev")
    assert [(e.text_a, e.text_b, e.label, e.index) for e in examples] == [
        ("What colour is Mars?", "It is red.", "not_entailment", 7),
        ("How many moons does Mars have?", "It has two.", "entailment", 8)]


def test_text_that_is_not_utf8(tmp_path):
    path = tmp_path / "RTE" / "dev.tsv"
    write(path, tsv(["index", "sentence1", "sentence2", "label"], ["0", "A.", "B.", "entailment"]))
    with open(path, "ab") as f:
        f.write(b"1\tCaf\xe9.\tC.\tentailment\n")
    with pytest.raises(ValueError, match=r"dev.tsv:3: not UTF-8 text"):
        glue.read_tsv_examples("rte", str(tmp_path), "dev")


def test_crlf_line_endings_and_blank_lines(tmp_path):
    text = "sentence\tlabel\r\ngood film \t1\r\n\r\nbad film \t0\r\n"
    write(tmp_path / "SST-2" / "train.tsv", text)
    examples = glue.read_tsv_examples("sst2", str(tmp_path), "train")
    assert [(e.text_a, e.label) for e in examples] == [("good film ", "1"), ("bad film ", "0")]


def test_row_with_too_few_columns_names_file_and_line(tmp_path):
    path = write(tmp_path / "MNLI" / "dev_matched.tsv", tsv(
        ["index", "promptID", "pairID", "genre", "sentence1", "sentence2", "gold_label"],
        ["0", "1", "1e", "fiction", "A.", "B.", "entailment"],
        ["1", "2", "2n", "fiction", "C."]))
    with pytest.raises(ValueError, match=rf"{path}:3: row has 5 columns, MNLI dev_matched "
                                         rf"needs at least 7"):
        glue.read_tsv_examples("mnli", str(tmp_path), "dev_matched")
    write(tmp_path / "CoLA" / "dev.tsv", tsv(["gj04", "1", "", "Fine."], ["gj04", "0", "*"]))
    with pytest.raises(ValueError, match=r"CoLA[/\\]dev.tsv:2: row has 3 columns, CoLA dev needs "
                                         r"at least 4"):
        glue.read_tsv_examples("cola", str(tmp_path), "dev")


def test_label_outside_the_task_labels(tmp_path):
    write(tmp_path / "RTE" / "train.tsv", tsv(
        ["index", "sentence1", "sentence2", "label"],
        ["0", "A.", "B.", "entailment"], ["1", "C.", "D.", "neutral"]))
    with pytest.raises(ValueError, match=r"RTE[/\\]train.tsv:3: label 'neutral' is not a RTE "
                                         r"label \(entailment, not_entailment\)"):
        glue.read_tsv_examples("rte", str(tmp_path), "train")
    write(tmp_path / "STS-B" / "dev.tsv", tsv(
        ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
         "sentence2", "score"],
        ["0", "g", "f", "2012", "1", "none", "none", "A.", "B.", "n/a"]))
    with pytest.raises(ValueError, match=r"STS-B[/\\]dev.tsv:2: STS-B score 'n/a' is not a number"):
        glue.read_tsv_examples("stsb", str(tmp_path), "dev")


def test_missing_header_column(tmp_path):
    write(tmp_path / "QQP" / "train.tsv", tsv(
        ["id", "qid1", "qid2", "question1", "question2"], ["0", "1", "2", "A?", "B?"]))
    with pytest.raises(ValueError, match=r"QQP[/\\]train.tsv:1: QQP header lacks column "
                                         r"'is_duplicate'; it has id, qid1, qid2"):
        glue.read_tsv_examples("qqp", str(tmp_path), "train")


def test_missing_empty_and_header_only_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"GLUE SST-2 dev file not found; looked for "
                                                r".*SST-2[/\\]dev.tsv"):
        glue.read_tsv_examples("sst2", str(tmp_path), "dev")
    path = write(tmp_path / "SST-2" / "dev.tsv", "")
    with pytest.raises(ValueError, match=rf"GLUE file is empty: {path}"):
        glue.read_tsv_examples("sst2", str(tmp_path), "dev")
    write(tmp_path / "CoLA" / "train.tsv", "\n\n")
    with pytest.raises(ValueError, match="GLUE file is empty"):
        glue.read_tsv_examples("cola", str(tmp_path), "train")
    write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(ValueError, match=r"dev.tsv holds no examples"):
        glue.read_tsv_examples("sst2", str(tmp_path), "dev")


# ----------------------------------------------------------------------------------- TFDS
# Rows stored behind the mocked tfds.load, per (config, TFDS split); idx out of order, as TFDS
# stores examples shuffled.
TFDS_ROWS = {
    ("sst2", "validation"): {"sentence": ["b movie ", "a gem ", "fine "], "label": [0, 1, 1],
                             "idx": [2, 0, 1]},
    ("mnli", "validation_matched"): {"premise": ["P0", "P1", "P2"],
                                     "hypothesis": ["H0", "H1", "H2"],
                                     "label": [2, 0, 1], "idx": [0, 1, 2]},
    ("stsb", "train"): {"sentence1": ["S0", "S1"], "sentence2": ["T0", "T1"],
                        "label": np.array([3.8, 0.25], np.float32), "idx": [1, 0]},
    ("qnli", "test"): {"question": ["Q0", "Q1"], "sentence": ["A0", "A1"], "label": [-1, -1],
                       "idx": [0, 1]},
    ("stsb", "test"): {"sentence1": ["S0"], "sentence2": ["T0"],
                       "label": np.array([-1.0], np.float32), "idx": [0]},
    ("wnli", "train"): {"sentence1": ["A.", "B."], "sentence2": ["C.", "D."], "label": [1, 0],
                        "idx": [0, 1]},
}


def _as_dataset(builder, split, **kwargs):
    rows = dict(TFDS_ROWS[(builder.builder_config.name, str(split))])
    rows["idx"] = np.asarray(rows["idx"], np.int32)
    if not isinstance(rows["label"], np.ndarray):
        rows["label"] = np.asarray(rows["label"], np.int64)
    return tf.data.Dataset.from_tensor_slices(rows)


@pytest.fixture
def mocked_tfds():
    with tfds.testing.mock_data(as_dataset_fn=_as_dataset):
        yield


def test_tfds_sst2_sorted_by_idx_with_label_strings(mocked_tfds):
    examples = glue.read_tfds_examples("sst2", "dev")
    assert examples == [
        task_table.InputExample("dev-0", "a gem ", None, "1", 0),
        task_table.InputExample("dev-1", "fine ", None, "1", 1),
        task_table.InputExample("dev-2", "b movie ", None, "0", 2)]


def test_tfds_mnli_validation_matched(mocked_tfds):
    examples = glue.read_tfds_examples("MNLI", "dev_matched")
    assert [(e.text_a, e.text_b, e.label, e.index) for e in examples] == [
        ("P0", "H0", "contradiction", 0), ("P1", "H1", "entailment", 1),
        ("P2", "H2", "neutral", 2)]


def test_tfds_stsb_scores_and_test_labels(mocked_tfds):
    train = glue.read_tfds_examples("stsb", "train")
    assert [(e.text_a, e.text_b, e.label, e.index) for e in train] == [
        ("S1", "T1", 0.25, 0), ("S0", "T0", 3.8, 1)]  # 3.8, not float32's 3.799999952316284
    assert [e.label for e in glue.read_tfds_examples("stsb", "test")] == [None]
    test = glue.read_tfds_examples("qnli", "test")
    assert [(e.guid, e.text_a, e.text_b, e.label, e.index) for e in test] == [
        ("test-0", "Q0", "A0", None, 0), ("test-1", "Q1", "A1", None, 1)]


def test_tfds_wnli_ids_map_to_glue_labels(mocked_tfds):
    # TFDS names WNLI's classes not_entailment, entailment; GLUE's files say 0 and 1.
    assert [e.label for e in glue.read_tfds_examples("wnli", "train")] == ["1", "0"]


def test_tfds_random_mock_data():
    with tfds.testing.mock_data(num_examples=5):
        examples = glue.read_tfds_examples("cola", "train")
        ax = glue.read_tfds_examples("ax", "test")
    assert len(examples) == 5 and all(e.label in ("0", "1") for e in examples)
    assert [e.index for e in examples] == sorted(e.index for e in examples)
    assert all(e.text_b is None for e in examples)
    assert all(e.label is None and e.text_b is not None for e in ax)


def test_tfds_not_prepared_fails_at_once(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"TFDS dataset glue/rte is not prepared in "):
        glue.read_tfds_examples("rte", "dev", data_dir=str(tmp_path))


# -------------------------------------------------------------------------------- metrics
def test_accuracy_and_f1():
    labels = ["1", "1", "0", "0", "1"]
    predictions = ["1", "0", "1", "0", "1"]
    assert glue_metrics.accuracy(labels, predictions) == pytest.approx(0.6)
    # TP 2, FP 1, FN 1: F1 = 2 * 2 / (3 + 3).
    assert glue_metrics.f1_score(labels, predictions) == pytest.approx(2 / 3)
    assert glue_metrics.f1_score(["0", "0"], ["0", "0"]) == 0.0  # no positives at all
    assert glue_metrics.f1_score(["1", "1"], ["0", "0"]) == 0.0  # none predicted


def test_matthews_correlation():
    labels = ["1", "1", "0", "0", "1"]
    predictions = ["1", "0", "1", "0", "1"]
    # TP 2, TN 1, FP 1, FN 1: (2 * 1 - 1 * 1) / sqrt(3 * 3 * 2 * 2).
    assert glue_metrics.matthews_corrcoef(labels, predictions) == pytest.approx(1 / 6)
    assert glue_metrics.matthews_corrcoef(["0", "1", "1"], ["1", "1", "1"]) == 0.0  # undefined
    assert glue_metrics.matthews_corrcoef(["1", "1"], ["1", "1"]) == 0.0
    assert glue_metrics.matthews_corrcoef(["0", "1", "0"], ["1", "0", "1"]) == pytest.approx(-1.0)
    # Three classes (R3): c = 3 correct of s = 4, t = (1, 2, 1), p = (1, 1, 2):
    # (3 * 4 - 5) / sqrt((16 - 6) * (16 - 6)) = 0.7.
    three = glue_metrics.matthews_corrcoef(
        ["entailment", "entailment", "neutral", "contradiction"],
        ["entailment", "neutral", "neutral", "contradiction"])
    assert three == pytest.approx(0.7)


def test_pearson_and_spearman():
    # dx = (-1.5, -.5, .5, 1.5), dy = (-3, -1, 0, 4): 11 / sqrt(5 * 26).
    assert glue_metrics.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
    assert glue_metrics.pearson([1, 1, 1], [1, 2, 3]) == 0.0
    # Ties share their average rank: x ranks (1, 2.5, 2.5, 4), y ranks (1, 3, 2, 4):
    # 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10).
    assert glue_metrics.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    assert glue_metrics.average_ranks([10, 30, 20, 30, 30]).tolist() == [1, 4, 2, 4, 4]
    assert glue_metrics.average_ranks([2.0, 2.0]).tolist() == [1.5, 1.5]
    assert glue_metrics.spearman([1, 2, 3], [10, 100, 1000]) == pytest.approx(1.0)


def test_compute_metrics_per_task():
    labels, predictions = ["1", "1", "0", "0", "1"], ["1", "0", "1", "0", "1"]
    assert glue_metrics.compute_metrics("cola", labels, predictions) == pytest.approx(
        {"mcc": 1 / 6})
    assert glue_metrics.compute_metrics("sst2", labels, predictions) == pytest.approx(
        {"accuracy": 0.6})
    assert glue_metrics.compute_metrics("mrpc", labels, predictions) == pytest.approx(
        {"accuracy": 0.6, "f1": 2 / 3, "acc_and_f1": (0.6 + 2 / 3) / 2})
    assert set(glue_metrics.compute_metrics("qqp", labels, predictions)) == {
        "accuracy", "f1", "acc_and_f1"}
    stsb = glue_metrics.compute_metrics("stsb", [1, 2, 2, 3], [1, 3, 2, 4])
    r = glue_metrics.pearson([1, 2, 2, 3], [1, 3, 2, 4])
    assert stsb == pytest.approx({"pearson": r, "spearman": 3 / math.sqrt(10),
                                  "corr": (r + 3 / math.sqrt(10)) / 2})
    nli = ["entailment", "entailment", "neutral", "contradiction"]
    nli_predictions = ["entailment", "neutral", "neutral", "contradiction"]
    assert glue_metrics.compute_metrics("mnli", nli, nli_predictions) == {"accuracy": 0.75}
    assert glue_metrics.compute_metrics("ax", nli, nli_predictions) == pytest.approx(
        {"accuracy": 0.75, "mcc": 0.7})
    for name in ("qnli", "rte"):
        assert glue_metrics.compute_metrics(name, ["entailment"], ["not_entailment"]) == {
            "accuracy": 0.0}
    assert glue_metrics.compute_metrics("wnli", ["0", "1"], ["0", "0"]) == {"accuracy": 0.5}
    for task in task_table.TASKS.values():
        assert task.score_metric in task.metric_names


def test_compute_metrics_errors():
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        glue_metrics.compute_metrics("sst2", ["0", "1"], ["0"])
    with pytest.raises(ValueError, match="no labels and predictions to score"):
        glue_metrics.compute_metrics("mrpc", [], [])
    with pytest.raises(ValueError, match="no labels and predictions to score"):
        glue_metrics.compute_metrics("stsb", [], [])
    with pytest.raises(ValueError, match=r"prediction 1 is not a SST-2 label \(0, 1\)"):
        glue_metrics.compute_metrics("sst2", ["0", "1"], ["0", 1])
    with pytest.raises(ValueError, match="label 'neutral' is not a RTE label"):
        glue_metrics.compute_metrics("rte", ["neutral"], ["entailment"])
    with pytest.raises(ValueError, match="must be finite"):
        glue_metrics.compute_metrics("stsb", [1.0, float("nan")], [1.0, 2.0])


# ---------------------------------------------------------------------------- submissions
def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")


def test_submission_classification(tmp_path):
    path = submission.write_submission("sst2", "test", [(0, "1"), (1, "0"), (2, "1")], str(tmp_path))
    assert path == os.path.join(str(tmp_path), "SST-2.tsv")
    assert read_lines(path) == ["index\tprediction", "0\t1", "1\t0", "2\t1", ""]
    assert os.listdir(tmp_path) == ["SST-2.tsv"]  # no temporary file left
    ax = submission.write_submission("ax", "test", [(0, "contradiction"), (1, "neutral")],
                               str(tmp_path / "out"))
    assert os.path.basename(ax) == "AX.tsv"
    assert read_lines(ax)[1:3] == ["0\tcontradiction", "1\tneutral"]


def test_submission_from_tsv_examples_mnli_mm(tmp_path):
    examples = glue.read_tsv_examples("mnli", FIXTURES, "test_mismatched")
    labels = ["entailment", "contradiction", "neutral"]
    path = submission.write_submission("mnli", "test_mismatched",
                                 [(e.index, y) for e, y in zip(examples, labels)], str(tmp_path))
    assert os.path.basename(path) == "MNLI-mm.tsv"
    assert read_lines(path) == ["index\tprediction", "0\tentailment", "1\tcontradiction",
                                "2\tneutral", ""]
    matched = submission.write_submission("mnli", "test_matched", [(0, "neutral")], str(tmp_path))
    assert os.path.basename(matched) == "MNLI-m.tsv"


def test_submission_stsb_scores_are_clipped(tmp_path):
    path = submission.write_submission("stsb", "test", [(0, 5.7), (1, -0.2), (2, np.float32(2.34567))],
                                 str(tmp_path))
    assert os.path.basename(path) == "STS-B.tsv"
    assert read_lines(path) == ["index\tprediction", "0\t5.000", "1\t0.000", "2\t2.346", ""]


def test_submission_errors(tmp_path):
    with pytest.raises(ValueError, match="'dev' of GLUE task sst2 is not a test split"):
        submission.write_submission("sst2", "dev", [(0, "1")], str(tmp_path))
    with pytest.raises(ValueError, match=r"prediction 1 for index 0 is not a SST-2 label"):
        submission.write_submission("sst2", "test", [(0, 1)], str(tmp_path))
    with pytest.raises(ValueError, match="prediction 'maybe' for index 3 is not a MNLI label"):
        submission.write_submission("mnli", "test_matched", [(3, "maybe")], str(tmp_path))
    with pytest.raises(ValueError, match="index 0 is predicted twice"):
        submission.write_submission("cola", "test", [(0, "1"), (0, "0")], str(tmp_path))
    with pytest.raises(ValueError, match="is not a finite score"):
        submission.write_submission("stsb", "test", [(0, float("nan"))], str(tmp_path))
    with pytest.raises(ValueError, match="no predictions to write"):
        submission.write_submission("rte", "test", [], str(tmp_path))
    assert os.listdir(tmp_path) == []
