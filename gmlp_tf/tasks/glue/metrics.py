"""GLUE metrics in NumPy: accuracy, F1, Matthews correlation, Pearson and Spearman.

compute_metrics gives each task what GLUE reports for it:
  cola                          mcc
  sst2, mnli, qnli, rte, wnli   accuracy
  mrpc, qqp                     accuracy, f1 (positive label "1"), acc_and_f1 (their mean)
  stsb                          pearson, spearman, corr (their mean)
  ax                            accuracy, mcc (GLUE's R3: MCC over the three classes)
  your own data (tsv, tfds)     accuracy; with two labels also f1 (of the second label)

Where a statistic is undefined (a constant input, no positive label or prediction) it is 0.0,
as scikit-learn returns for MCC and F1: a constant predictor has no skill, and an evaluation
summary stays finite and comparable.
"""

from typing import Dict, Sequence, Union

import numpy as np

from gmlp_tf.tasks.glue import task_table

Labels = Sequence[Union[str, float]]


def accuracy(labels: Labels, predictions: Labels) -> float:
    """Fraction of predictions equal to their label."""
    labels, predictions = _paired(labels, predictions)
    return float(np.mean(labels == predictions))


def f1_score(labels: Labels, predictions: Labels, positive_label: str = "1") -> float:
    """Binary F1 of positive_label; 0.0 when there are no true positives."""
    labels, predictions = _paired(labels, predictions)
    true_positives = np.sum((predictions == positive_label) & (labels == positive_label))
    predicted = np.sum(predictions == positive_label)
    actual = np.sum(labels == positive_label)
    if true_positives == 0:
        return 0.0
    return float(2.0 * true_positives / (predicted + actual))


def matthews_corrcoef(labels: Labels, predictions: Labels) -> float:
    """Matthews correlation coefficient, multiclass (Gorodkin's R_K) as scikit-learn.

    For two classes it is the usual (TP TN - FP FN) / sqrt(...); 0.0 when undefined (labels or
    predictions all of one class).
    """
    labels, predictions = _paired(labels, predictions)
    classes, codes = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    k, n = len(classes), len(labels)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (codes[:n], codes[n:]), 1.0)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    correct, total = np.trace(confusion), float(n)
    numerator = correct * total - np.dot(true_counts, predicted_counts)
    denominator = np.sqrt((total ** 2 - np.dot(predicted_counts, predicted_counts))
                          * (total ** 2 - np.dot(true_counts, true_counts)))
    if denominator == 0.0:
        return 0.0
    return float(numerator / denominator)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation; 0.0 when either input is constant."""
    x, y = _paired(x, y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.dot(x, x) * np.dot(y, y))
    if denominator == 0.0:
        return 0.0
    return float(np.clip(np.dot(x, y) / denominator, -1.0, 1.0))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's of the ranks, ties given their average rank."""
    x, y = _paired(x, y, dtype=np.float64)
    return pearson(average_ranks(x), average_ranks(y))


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, float64 [n], equal values sharing the mean of their ranks."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start of each run of equal values in sorted order, and the run each value falls in.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_of = np.repeat(np.arange(len(starts)), ends - starts)
    mean_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = mean_rank[run_of]
    return ranks


def compute_metrics(task: Union[str, "task_table.GlueTask"], labels: Labels,
                    predictions: Labels) -> Dict[str, float]:
    """The task's metrics (task.metric_names) of predictions against labels.

    Args:
      task: a GlueTask or its name.
      labels, predictions: label strings of the task's label_list, or STS-B scores.

    Raises:
      ValueError: empty inputs, different lengths, or a value that is not a label of the task.
    """
    task = task_table.get_task(task)
    if task.is_regression:
        labels, predictions = _paired(labels, predictions, dtype=np.float64)
        if not (np.all(np.isfinite(labels)) and np.all(np.isfinite(predictions))):
            raise ValueError(f"{task.display_name} labels and predictions must be finite")
        r, rho = pearson(labels, predictions), spearman(labels, predictions)
        metrics = {"pearson": r, "spearman": rho, "corr": (r + rho) / 2.0}
    else:
        _check_labels(task, "label", labels)
        _check_labels(task, "prediction", predictions)
        metrics = {"accuracy": accuracy(labels, predictions)}
        if "f1" in task.metric_names:
            metrics["f1"] = f1_score(labels, predictions, positive_label=task.positive_label)
            metrics["acc_and_f1"] = (metrics["accuracy"] + metrics["f1"]) / 2.0
        if "mcc" in task.metric_names:
            metrics["mcc"] = matthews_corrcoef(labels, predictions)
    return {name: metrics[name] for name in task.metric_names}


def _paired(a, b, dtype=None):
    """The two sequences as NumPy arrays of equal, non-zero length."""
    a = np.asarray(list(a), dtype=dtype)
    b = np.asarray(list(b), dtype=dtype)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"labels and predictions must be flat sequences, got shapes "
                         f"{a.shape} and {b.shape}")
    if len(a) != len(b):
        raise ValueError(f"{len(a)} labels but {len(b)} predictions")
    if len(a) == 0:
        raise ValueError("no labels and predictions to score")
    return a, b


def _check_labels(task: "task_table.GlueTask", what: str, values: Labels):
    """Every value must be a label string of the task: an int 1 would never equal "1"."""
    allowed = set(task.label_list)
    for value in values:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"{what} {value!r} is not a {task.display_name} label "
                             f"({', '.join(task.label_list)})")
