"""idna.encode on valid domains and on long hostile inputs (thousands of characters), which
IDNA must reject; a rejection counts by its base class (the release changed which subclass
it raises)."""

import random

VALID = 400
LONG = 8
LETTERS = "abcdefghijklmnopqrstuvwxyz"
UNICODE = "éüñçøåßöä"


def load():
    import idna

    return idna


def setup(seed):
    rng = random.Random(seed)
    inputs = []
    for _ in range(VALID):
        labels = ["".join(rng.choices(LETTERS + UNICODE, k=rng.randint(1, 12)))
                  for _ in range(rng.randint(2, 4))]
        inputs.append(".".join(labels))
    for i in range(LONG):
        n = rng.randint(6_000, 9_000)
        shape = i % 3
        if shape == 0:
            text = ".".join(rng.choices(UNICODE, k=n // 2)) + "."
        elif shape == 1:
            text = "".join(rng.choices(LETTERS + UNICODE, k=n))
        else:
            text = "xn--" + "".join(rng.choices(LETTERS, k=n))
        inputs.append(text)
    rng.shuffle(inputs)
    return inputs


def experiment(idna, inputs):
    out = []
    for text in inputs:
        try:
            out.append(idna.encode(text).decode("ascii"))
        except idna.IDNAError:
            out.append("<IDNAError>")
        except UnicodeError as exc:  # not IDNA's: must stay what it was
            out.append(f"<{type(exc).__name__}>")
    return out


def store_result(result):
    return [str(x) for x in result]


def check_equivalence(reference, current):
    assert len(current) == len(reference), "a different number of results"
    for i, (want, got) in enumerate(zip(reference, current, strict=True)):
        assert got == want, f"input {i}: {got[:60]!r}, expected {want[:60]!r}"
