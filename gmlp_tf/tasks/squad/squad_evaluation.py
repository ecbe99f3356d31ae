"""Scores a SQuAD predictions file as the official evaluate-v1.1.py / evaluate-v2.0.py do.

    python -m gmlp_tf.tasks.squad.squad_evaluation DATA.json PREDICTIONS.json \
        [--na-prob-file NA.json] [--na-prob-thresh 1.0] [--out-file F]

The arguments are the v2.0 script's. SQuAD 2.0 data (a "v2.0" version, is_impossible fields or
questions without answers) or an --na-prob-file (e.g. run_squad.py's null_odds.json) scores as
evaluate-v2.0.py and prints its JSON (exact, f1, total, HasAns_*, NoAns_*, best_*); other data
as evaluate-v1.1.py ({"exact_match", "f1"}); --version forces either. The dict is printed, or
written to --out-file. A missing or malformed file is one line on stderr and exit status 1.
Nothing here imports TensorFlow (only for gs:// paths), so scoring starts at once.
"""

import argparse
import json
import sys
from typing import List, Mapping, Optional

from gmlp_tf.tasks.squad import evaluation


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="squad_evaluation", description="Official SQuAD v1.1 / v2.0 scores of a predictions file.")
    parser.add_argument("data_file", metavar="data.json", help="Input data JSON file.")
    parser.add_argument("pred_file", metavar="pred.json", help="Model predictions.")
    parser.add_argument("--out-file", "-o", metavar="eval.json",
                        help="Write accuracy metrics to file (default is stdout).")
    parser.add_argument("--na-prob-file", "-n", metavar="na_prob.json",
                        help="Model estimates of probability of no answer (null_odds.json).")
    parser.add_argument("--na-prob-thresh", "-t", type=float, default=1.0,
                        help='Predict "" if no-answer probability exceeds this (default = 1.0).')
    parser.add_argument("--version", choices=("auto", "1.1", "2.0"), default="auto",
                        help="Score as evaluate-v1.1.py or evaluate-v2.0.py (default: from the data).")
    return parser.parse_args(argv)


def _mapping(path: str, what: str, value_type, type_name: str) -> Mapping:
    """A {qid: value} JSON file, checked: one clear ValueError otherwise."""
    content = evaluation._load_json(path)
    if not isinstance(content, dict):
        raise ValueError(f"{what} file {path} must hold a JSON object {{question id: value}}")
    for qid, value in content.items():
        if not isinstance(value, value_type) or isinstance(value, bool):
            raise ValueError(f"{what} file {path}: the value of {qid!r} is not a {type_name}")
    return content


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        predictions = _mapping(args.pred_file, "predictions", str, "string")
        na_probs = None
        if args.na_prob_file:
            na_probs = {k: float(v) for k, v in _mapping(args.na_prob_file, "na_prob", (int, float), "number").items()}
        version_2 = {"auto": None, "1.1": False, "2.0": True}[args.version]
        scores = evaluation.official_scores(args.data_file, predictions, na_probs, args.na_prob_thresh, version_2)
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"squad_evaluation: error: {err}", file=sys.stderr)
        return 1
    if args.out_file:
        with open(args.out_file, "w") as writer:
            json.dump(scores, writer)
    else:
        print(json.dumps(scores, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
