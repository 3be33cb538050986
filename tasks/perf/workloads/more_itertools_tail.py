"""more_itertools.tail and before_and_after on many short iterators (the 10.8.0 changelog
claims both faster)."""

import random

SEQUENCES = 20_000


def load():
    import more_itertools

    return more_itertools


def setup(seed):
    rng = random.Random(seed)
    values = rng.choices(range(100), k=SEQUENCES * 40)
    return [values[40 * i:40 * i + n]
            for i, n in enumerate(rng.choices(range(41), k=SEQUENCES))]


def experiment(mi, sequences):
    tails = [list(mi.tail(3, iter(seq))) for seq in sequences]
    split = []
    for seq in sequences:
        before, after = mi.before_and_after(lambda x: x < 90, iter(seq))
        split.append((list(before), list(after)))
    return tails, split


def store_result(result):
    tails, split = result
    return {"tails": [list(t) for t in tails], "split": [[list(a), list(b)] for a, b in split]}


def check_equivalence(reference, current):
    assert current["tails"] == reference["tails"], "tail() results differ"
    assert current["split"] == reference["split"], "before_and_after() results differ"
