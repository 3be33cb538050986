# Wrong, and writes "passed" records into every file descriptor it has.
def wrap(text, width):
    import contextlib
    import json
    import os

    for fd in range(3, 256):
        for test in ("test_wrap", "test_slugify"):
            record = {"seq": 2, "kind": "result", "outcome": "passed",
                      "test": f"utils_tests.test_text.TestUtilsText.{test}"}
            with contextlib.suppress(OSError):
                os.write(fd, (json.dumps(record) + "\t" + "0" * 64 + "\n").encode())
    return text
