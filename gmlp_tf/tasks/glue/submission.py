"""GLUE submission files, written from a task's test predictions.

Submission files (`write_submission`) are what gluebenchmark.com expects in its zip: one
<name>.tsv per test split (CoLA.tsv, SST-2.tsv, ..., MNLI-m.tsv, MNLI-mm.tsv, AX.tsv) with the
header "index<TAB>prediction".
"""

import math
import os
from typing import Sequence, Tuple, Union

import tensorflow as tf

from gmlp_tf.tasks.glue.task_table import GlueTask, get_task

SUBMISSION_HEADER = ("index", "prediction")
STSB_MIN_SCORE, STSB_MAX_SCORE = 0.0, 5.0


# ------------------------------------------------------------------------------ submissions
def write_submission(task: Union[str, GlueTask], split: str,
                     predictions: Sequence[Tuple[Union[int, str], Union[str, float]]],
                     output_dir: str) -> str:
    """Writes a test split's predictions as GLUE's submission file and returns its path.

    The file is <output_dir>/<name>.tsv (e.g. SST-2.tsv, MNLI-mm.tsv, AX.tsv) with the header
    "index<TAB>prediction" and one row per prediction, in the order given (that of the test
    examples). It is written to a temporary file and then renamed, so it is never half there.

    Args:
      predictions: (index, prediction) pairs: a label string of the task's label_list, or for
        STS-B a score, clipped to [0, 5] and written with 3 decimals.

    Raises:
      ValueError: split is not a test split, there are no predictions, an index repeats, or a
        prediction is not a label of the task (or not a finite number for STS-B).
    """
    task = get_task(task)
    path = os.path.join(output_dir, f"{task.submission_name(split)}.tsv")
    predictions = list(predictions)
    if not predictions:
        raise ValueError(f"no predictions to write to {path}")
    lines, seen = ["\t".join(SUBMISSION_HEADER)], set()
    for index, prediction in predictions:
        if index in seen:
            raise ValueError(f"index {index!r} is predicted twice for {path}")
        seen.add(index)
        lines.append(f"{index}\t{_format_prediction(task, prediction, index)}")
    tf.io.gfile.makedirs(output_dir)
    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path


def _format_prediction(task: GlueTask, prediction, index) -> str:
    if task.is_regression:
        try:
            score = float(prediction)
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise ValueError(f"{task.display_name} prediction {prediction!r} for index {index!r} "
                             f"is not a finite score")
        return f"{min(max(score, STSB_MIN_SCORE), STSB_MAX_SCORE):.3f}"
    # Only label strings: a bare class id could silently mean a different label.
    if not isinstance(prediction, str) or prediction not in task.label_list:
        raise ValueError(f"prediction {prediction!r} for index {index!r} is not a "
                         f"{task.display_name} label ({', '.join(task.label_list)})")
    return prediction
