"""packaging.version.Version: parse many version strings of every PEP 440 shape and give
their normal forms."""

import hashlib
import random

COUNT = 30_000
EPOCHS = ("",) * 19 + ("1!",)
PRE = ("", "", "", "a1", "b2", "rc3", ".alpha4", "c1")
POST = ("", "", "", ".post1", "-2", ".rev3")
DEV = ("", "", "", ".dev0", ".dev12")
LOCAL = ("", "", "", "", "+local.7", "+ubuntu-1")


def load():
    from packaging.version import Version

    return Version


def setup(seed):
    rng = random.Random(seed)
    numbers = [str(n) for n in rng.choices(range(31), k=COUNT * 4)]
    parts = zip(rng.choices(EPOCHS, k=COUNT), rng.choices((1, 2, 3, 4), k=COUNT),
                rng.choices(PRE, k=COUNT), rng.choices(POST, k=COUNT),
                rng.choices(DEV, k=COUNT), rng.choices(LOCAL, k=COUNT), strict=True)
    return [f"{epoch}{'.'.join(numbers[4 * i:4 * i + n])}{pre}{post}{dev}{local}"
            for i, (epoch, n, pre, post, dev, local) in enumerate(parts)]


def experiment(Version, versions):
    return [Version(text) for text in versions]


def store_result(result):
    texts = [str(version) for version in result]
    return {"count": len(texts), "sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            "head": texts[:20]}


def check_equivalence(reference, current):
    assert current["count"] == reference["count"], "a different number of versions"
    assert current["head"] == reference["head"], f"{current['head']} != {reference['head']}"
    assert current["sha256"] == reference["sha256"], "the normalised versions differ"
