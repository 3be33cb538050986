"""packaging.version.Version on simple versions (digits and dots only, the common case),
parsed and compared pairwise."""

import hashlib
import itertools
import random

COUNT = 40_000


def load():
    from packaging.version import Version

    return Version


def setup(seed):
    rng = random.Random(seed)
    numbers = [str(n) for n in rng.choices(range(41), k=COUNT * 4)]
    return [".".join(numbers[4 * i:4 * i + n])
            for i, n in enumerate(rng.choices((1, 2, 3, 4), k=COUNT))]


def experiment(Version, versions):
    parsed = [Version(text) for text in versions]
    return [str(v) for v in parsed], [a < b for a, b in itertools.pairwise(parsed)]


def store_result(result):
    texts, less = result
    digest = hashlib.sha256("\n".join(texts).encode())
    digest.update(bytes(bool(x) for x in less))
    return {"count": len(texts), "sha256": digest.hexdigest(), "head": list(texts[:20])}


def check_equivalence(reference, current):
    assert current["count"] == reference["count"], "a different number of versions"
    assert current["head"] == reference["head"], f"{current['head']} != {reference['head']}"
    assert current["sha256"] == reference["sha256"], "the versions or their order differ"
