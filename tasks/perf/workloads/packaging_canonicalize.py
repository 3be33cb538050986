"""packaging.utils.canonicalize_name over many project names: mixed case and runs of
``-``, ``_`` and ``.`` (PEP 503 normalisation)."""

import hashlib
import random
import string

NAMES = 100_000
LENGTHS = (3, 5, 8, 11, 14, 20)
# Letters and digits, with separators often enough to make runs of them.
ALPHABET = string.ascii_letters + string.digits + "-_." * 8


def load():
    from packaging.utils import canonicalize_name

    return canonicalize_name


def setup(seed):
    rng = random.Random(seed)
    chars = "".join(rng.choices(ALPHABET, k=1 << 16))
    starts = rng.choices(range((1 << 16) - 20), k=NAMES)
    lengths = rng.choices(LENGTHS, k=NAMES)
    return [chars[s:s + n] for s, n in zip(starts, lengths, strict=True)]


def experiment(canonicalize_name, names):
    return [canonicalize_name(name) for name in names]


def store_result(result):
    joined = "\n".join(result)
    return {"count": len(result), "sha256": hashlib.sha256(joined.encode()).hexdigest(),
            "head": result[:20]}


def check_equivalence(reference, current):
    assert current["count"] == reference["count"], "a different number of names"
    assert current["head"] == reference["head"], f"{current['head']} != {reference['head']}"
    assert current["sha256"] == reference["sha256"], "the canonical names differ"
