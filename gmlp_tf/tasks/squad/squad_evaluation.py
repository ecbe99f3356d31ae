"""The SQuAD command-line scorer under its former name; it is now scripts/evaluate_squad.py.

    python -m gmlp_tf.tasks.squad.squad_evaluation DATA.json PREDICTIONS.json [...]

still works as before (gmlp_tf.tasks.squad.official_scorer.main, whose docstring gives the
arguments) and says where the command lives now.
"""

import sys
from typing import List, Optional

from gmlp_tf.tasks.squad import official_scorer

PROGRAM = "squad_evaluation"


def main(argv: Optional[List[str]] = None) -> int:
    """official_scorer.main under this module's program name."""
    return official_scorer.main(argv, prog=PROGRAM)


if __name__ == "__main__":
    print(f"{PROGRAM}: note: this command is now scripts/evaluate_squad.py", file=sys.stderr)
    sys.exit(main())
