"""Deterministic pseudo-English text for tokenizer and pipeline fixtures (no network, no data files)."""

import random

WORDS = ("the king queen lord lady speaks walks castle night morning sword letter brother sister "
         "Hamlet Ophelia Denmark England answer question love death heaven earth stands falls "
         "quickly slowly gentle noble honest good bad old young here there never always").split()


def fake_sentences(n, seed=0):
    """n cased sentences of 4 to 12 words drawn from WORDS."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
            for _ in range(n)]
