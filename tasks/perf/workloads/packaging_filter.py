"""packaging.specifiers.SpecifierSet.filter: a list of versions through several
multi-clause specifier sets."""

import random

COUNT = 6_000
SPECIFIERS = [">=1.0,<20,!=5.*", "~=2.2,!=2.5.*,<9", ">=0.5,!=3.1.*,!=4.0,<=27.3",
              "==1.*,>=1.2", ">3,<25,!=12.*,!=13.*"]
SUFFIXES = ("", "", "", "", "a1", "rc2", ".dev3")


def load():
    from packaging.specifiers import SpecifierSet

    return SpecifierSet


def setup(seed):
    rng = random.Random(seed)
    numbers = [str(n) for n in rng.choices(range(31), k=COUNT * 3)]
    shapes = zip(rng.choices((1, 2, 3), k=COUNT), rng.choices(SUFFIXES, k=COUNT),
                 strict=True)
    return [".".join(numbers[3 * i:3 * i + n]) + suffix for i, (n, suffix) in enumerate(shapes)]


def experiment(SpecifierSet, versions):
    return [list(SpecifierSet(spec).filter(versions)) for spec in SPECIFIERS]


def store_result(result):
    return [[str(v) for v in kept] for kept in result]


def check_equivalence(reference, current):
    assert len(current) == len(reference), "a different number of specifier sets"
    for spec, want, got in zip(SPECIFIERS, reference, current, strict=True):
        assert got == want, f"{spec}: {len(got)} versions kept, expected {len(want)}"
