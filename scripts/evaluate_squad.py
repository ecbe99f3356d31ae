"""Scores a SQuAD predictions file as the official evaluate-v1.1.py / evaluate-v2.0.py do.

  python scripts/evaluate_squad.py dev-v2.0.json output/predictions.json \
    --na-prob-file output/null_odds.json

The arguments are the official v2.0 script's (see gmlp_tf.tasks.squad.official_scorer.main);
v1.1 data scores as evaluate-v1.1.py. Scoring itself needs no TensorFlow (only for gs:// paths).
A missing or malformed file is one error line and exit status 1.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # The package imports TensorFlow: no start-up log lines.

from gmlp_tf.tasks.squad import official_scorer  # noqa: E402

if __name__ == "__main__":
    sys.exit(official_scorer.main())
