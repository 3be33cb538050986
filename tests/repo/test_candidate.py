"""From a reply to an edit: the last python block, one def of the right name (checked with
ast), re-indented to the original declaration, blank lines and multi-line strings kept."""

from __future__ import annotations

import ast
import hashlib

import pytest

from kbtool_plugins.repo.candidate import CandidateError, edit_for, reindent, string_lines
from kbtool_plugins.repo.kind import RepoKind
from kbtool_plugins.repo.settings import RepoItem

FILE = '''class Greeter:
    """Says hello."""

    @staticmethod
    def greet(name):
        """Greet ``name``."""
        if not name:
            return "nobody"
        text = f"hello {name}"
        return text

    def other(self):
        return 1
'''


def item(task: str = "method_gen", **extra: object) -> RepoItem:
    lines = FILE.splitlines(keepends=True)
    return RepoItem.model_validate({
        "task": task, "file_path": "greeter.py", "class_name": "Greeter",
        "class_declaration": "class Greeter:", "method_name": "greet",
        "declaration": lines[4], "docstring": "Greet ``name``.", "body": "".join(lines[5:10]),
        "original": "".join(lines[3:10]), "indent": "    ", "decorator_line": 4,
        "start_line": 5, "body_start_line": 6, "end_line": 10, "tests": ["t"],
        "file_sha256": hashlib.sha256(FILE.encode()).hexdigest(), **extra})


def apply(it: RepoItem, candidate: str) -> str:
    edit = edit_for(it, candidate)
    lines = FILE.splitlines(keepends=True)
    return "".join([*lines[:edit.start_line - 1], edit.text, *lines[edit.end_line:]])


def test_the_last_python_block_is_the_candidate() -> None:
    reply = ("First try:\n```python\ndef greet(name):\n    return 1\n```\n"
             "Better:\n```python\ndef greet(name):\n    return 2\n```\nDone.")
    assert RepoKind().extract_candidate(reply) == "def greet(name):\n    return 2\n"
    assert RepoKind().extract_candidate("no code here") is None


def test_a_method_is_reindented_to_the_declaration_and_keeps_the_decorators() -> None:
    edited = apply(item(), "def greet(name):\n    return 'hi ' + name\n")
    assert "    @staticmethod\n    def greet(name):\n        return 'hi ' + name\n" in edited
    ast.parse(edited)
    assert edited.endswith("    def other(self):\n        return 1\n")


def test_decorators_in_the_candidate_replace_the_original_ones() -> None:
    edited = apply(item(), "@staticmethod\n@other\ndef greet(name):\n    return name\n")
    assert edited.count("@staticmethod") == 1 and "    @other\n" in edited


def test_an_indented_candidate_is_dedented_first() -> None:
    edited = apply(item(), "        def greet(name):\n            return name\n")
    assert "\n    def greet(name):\n        return name\n" in edited


def test_blank_lines_and_multiline_strings_survive() -> None:
    candidate = ('def greet(name):\n'
                 '    """Greet.\n'
                 '\n'
                 '\n'
                 '  odd indentation inside the string\n'
                 '    """\n'
                 '\n'
                 '    text = """a\n'
                 'b\n'
                 '    c"""\n'
                 '\n'
                 '    return text\n')
    edited = apply(item(), candidate)
    module = ast.parse(edited)
    func = module.body[0].body[1]  # type: ignore[attr-defined]
    # The string's content is the candidate's, exactly (its last line included).
    assert ast.get_docstring(func, clean=False) == "Greet.\n\n\n  odd indentation inside the " \
                                                   "string\n    "
    assert '        text = """a\nb\n    c"""\n\n        return text\n' in edited
    assert string_lines(candidate) == {3, 4, 5, 6, 9, 10}


@pytest.mark.parametrize(("candidate", "message"), [
    ("def hello(name):\n    return name\n", "must be named 'greet'"),
    ("import os\ndef greet(name):\n    return name\n", "exactly one method"),
    ("def greet(name):\n    return 1\ndef greet2():\n    pass\n", "exactly one method"),
    ("class Greet:\n    pass\n", "exactly one method"),
    ("def greet(name)\n    return name\n", "does not parse"),
    ("   \n", "no code"),
])
def test_wrong_shapes_are_refused(candidate: str, message: str) -> None:
    with pytest.raises(CandidateError, match=message):
        edit_for(item(), candidate)


def test_async_methods_are_methods() -> None:
    edited = apply(item(), "async def greet(name):\n    return name\n")
    assert "    async def greet(name):\n" in edited


def test_a_completion_continues_the_half_as_written_or_reindented() -> None:
    half = "".join(FILE.splitlines(keepends=True)[3:8])
    rest = '        text = f"hello {name}"\n        return text\n'
    it = item("completion", half_method=half, continuation=rest)
    assert apply(it, rest) == FILE
    # The same lines written flush left are put at the body's indentation.
    assert apply(it, 'text = f"hello {name}"\nreturn text\n') == FILE
    # A model that writes the whole method again is understood too.
    whole = "def greet(name):\n    return 'x'\n"
    assert "    def greet(name):\n        return 'x'\n" in apply(it, whole)


MODULE = "import re\n\n\ndef greet(name):\n    text = name.strip()\n    return text\n"


def module_item(task: str, **extra: object) -> RepoItem:
    """An item of the module-level function ``greet`` of MODULE."""
    lines = MODULE.splitlines(keepends=True)
    return RepoItem.model_validate({
        "task": task, "file_path": "mod.py", "method_name": "greet", "declaration": lines[3],
        "body": "".join(lines[4:6]), "original": "".join(lines[3:6]), "indent": "",
        "decorator_line": 4, "start_line": 4, "body_start_line": 5, "end_line": 6,
        "tests": ["t"], "file_sha256": hashlib.sha256(MODULE.encode()).hexdigest(), **extra})


WITH_IMPORT = "import os\n\ndef greet(name):\n    return os.sep + name\n"
WITH_HELPER = "def _strip(name):\n    return name.strip()\n\ndef greet(name):\n    return _strip(name)\n"


@pytest.mark.parametrize("answer", [WITH_IMPORT, WITH_HELPER])
@pytest.mark.parametrize("make", [item, module_item])
@pytest.mark.parametrize("task", ["method_gen", "repair", "completion"])
def test_one_rule_for_every_task_type_nothing_but_the_method(task: str, make: object,
                                                             answer: str) -> None:
    """An import or a helper at the file's level, beside the method, is refused alike for
    method generation, repair and completion (completion took it before)."""
    extra = {"half_method": "def greet(name):\n    text = name.strip()\n",
             "continuation": "    return text\n"} if task == "completion" else {}
    it = make(task, **extra)  # type: ignore[operator]
    with pytest.raises(CandidateError, match=r"exactly one method.*imports and helpers go inside"):
        edit_for(it, answer)
    inside = "def greet(name):\n    import os\n\n    return os.sep + name\n"
    assert "import os" in edit_for(it, inside).text


def test_a_completion_may_not_add_a_helper_after_the_method() -> None:
    half = "def greet(name):\n    text = name.strip()\n"
    it = module_item("completion", half_method=half, continuation="    return text\n")
    assert edit_for(it, "    return text\n").text == half + "    return text\n"
    with pytest.raises(CandidateError, match="exactly one method"):
        edit_for(it, "    return _up(text)\n\ndef _up(text):\n    return text.upper()\n")


def test_reindent_keeps_blank_lines_empty() -> None:
    assert reindent("def f():\n\n    return 1\n", "  ") == "  def f():\n\n      return 1\n"
