"""Scores a SQuAD predictions file as the official evaluate-v1.1.py / evaluate-v2.0.py do.

  python scripts/evaluate_squad.py dev-v2.0.json output/predictions.json \
    --na-prob-file output/null_odds.json

The arguments are the official v2.0 script's (see gmlp_tf.tasks.squad.official_scorer.main);
v1.1 data scores as evaluate-v1.1.py. The scorer is loaded on its own, without the gmlp_tf
package, so no TensorFlow or Keras is imported (only gs:// paths read through TensorFlow) and
scoring starts at once. A missing or malformed file is one error line and exit status 1.
"""

import importlib.util
import os
import sys
from types import ModuleType

PROGRAM = os.path.basename(__file__)


def official_scorer() -> ModuleType:
    """gmlp_tf/tasks/squad/official_scorer.py, executed alone: importing the package would load
    TensorFlow and Keras, seconds of start-up for a scorer that needs neither."""
    package = importlib.util.find_spec("gmlp_tf")  # Finds the package without importing it.
    if package is None or not package.submodule_search_locations:
        sys.exit(f"{PROGRAM}: error: gmlp_tf is not installed (pip install .)")
    path = os.path.join(list(package.submodule_search_locations)[0], "tasks", "squad", "official_scorer.py")
    spec = importlib.util.spec_from_file_location("gmlp_tf_official_scorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(official_scorer().main(prog=PROGRAM))
