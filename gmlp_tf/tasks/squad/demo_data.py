"""The embedded default of run_squad.py: real SQuAD v1.1 questions from a PyPI wheel.

No extractive QA set of useful size can be installed from a package registry. The allennlp 0.9.0
wheel (Apache-2.0) carries allennlp/tests/fixtures/data/squad.json: one real SQuAD v1.1 article
paragraph set with 5 questions, in the official format. run_squad.py's default finetunes on it and
predicts it: a check that reading, windowing, training, span decoding and the official scoring
work end to end on real data, not a measure of reading comprehension.
"""

import os
from typing import Callable, Optional

from gmlp_tf.utils import registry_data

PACKAGE, VERSION = "allennlp", "0.9.0"
MEMBER = "allennlp/tests/fixtures/data/squad.json"
SOURCE = f"PyPI wheel {PACKAGE}=={VERSION}, {MEMBER}: 5 questions of SQuAD v1.1 (Rajpurkar et al., 2016)"
LICENSE = "SQuAD: CC BY-SA 4.0; the allennlp package: Apache-2.0"


def fetch_demo_squad(cache_dir: Optional[str] = None, download_fn: Optional[Callable[[str], str]] = None) -> str:
    """The cached squad.json, downloading the wheel on first use; returns its path."""
    path = os.path.join(cache_dir or registry_data.default_cache_dir(), f"{PACKAGE}-{VERSION}", "squad.json")
    return registry_data.cached_wheel_member(
        PACKAGE, VERSION, MEMBER, path, "The run_squad.py demo needs access to PyPI once.", download_fn
    )
