"""From a model's candidate to an edit of the repository file.

One rule for every task type (``RULE``): the answer, put in place, is exactly one
``def``/``async def`` (decorators allowed) named like the item's method, checked with
``ast``; nothing else (a module-level import or helper) comes with it.  For method
generation and repair the answer is that method; for completion it is the rest of the
method after the given half, or the whole method again.
The code is re-indented to the original declaration's indentation; blank lines and the
inside of multi-line strings are kept exactly (the seed's clean-up deletes blank lines,
which changes strings that span them).
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass

from kbtool_plugins.repo.settings import RepoItem


class CandidateError(ValueError):
    """A candidate of the wrong shape: no code, no single method, the wrong name."""


@dataclass(frozen=True)
class Edit:
    """Lines ``start_line..end_line`` (1-based, inclusive) become ``text``."""

    start_line: int
    end_line: int
    text: str


def string_lines(code: str) -> set[int]:
    """1-based numbers of the lines that begin inside a multi-line string (their leading
    whitespace is the string's content, not indentation)."""
    inside: set[int] = set()
    # Python 3.12 splits f-strings into parts; their middles can span lines too.
    kinds = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in kinds and tok.end[0] > tok.start[0]:
                inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # unfinished code: indent every line
    return inside


def reindent(code: str, indent: str) -> str:
    """``code`` with its common indentation replaced by ``indent``; blank lines stay blank
    and lines inside multi-line strings are not touched."""
    lines = code.splitlines()
    keep = string_lines(code)
    code_lines = [line for i, line in enumerate(lines, 1) if i not in keep and line.strip()]
    common = min((len(line) - len(line.lstrip()) for line in code_lines), default=0)
    out = []
    for i, line in enumerate(lines, 1):
        if i in keep:
            out.append(line)
        elif not line.strip():
            out.append("")
        else:
            out.append(indent + line[common:])
    return "\n".join(out) + "\n"


RULE = ("the answer must be exactly one method, `def {name}(...)` (decorators allowed), with "
        "nothing else around it: imports and helpers go inside the method")


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(reindent(code, ""))
    except SyntaxError:
        return None


def _single_def(code: str, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    """The one ``def`` of ``code``, named ``name``; anything else is refused (``RULE``)."""
    try:
        tree = ast.parse(reindent(code, ""))
    except SyntaxError as exc:
        raise CandidateError(f"the method does not parse: line {exc.lineno}: {exc.msg}") \
            from None
    defs = [node for node in tree.body if isinstance(node, (ast.FunctionDef,
                                                            ast.AsyncFunctionDef))]
    if len(tree.body) != 1 or len(defs) != 1:
        raise CandidateError(RULE.format(name=name))
    if defs[0].name != name:
        raise CandidateError(f"the method must be named {name!r}, not {defs[0].name!r}")
    return defs[0]


def _defines(code: str, name: str) -> bool:
    """Whether ``code`` (dedented) parses and defines ``name`` at its top level: a whole
    method, maybe with something around it."""
    tree = _parse(code)
    return tree is not None and any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
        for node in tree.body)


def method_edit(item: RepoItem, candidate: str) -> Edit:
    """The edit a whole method makes: it replaces the original from its declaration to the
    end of its body; when it brings decorators, they replace the original ones."""
    node = _single_def(candidate, item.method_name)
    start = item.decorator_line if node.decorator_list else item.start_line
    return Edit(start, item.end_line, reindent(candidate, item.indent))


def completion_edit(item: RepoItem, candidate: str) -> Edit:
    """The edit a completion makes: the given half, then the candidate's lines (as written
    when that parses, else re-indented to the body's indentation).  An answer that defines
    the method again is a whole method (``method_edit``); either way the result must be the
    one method and nothing else (``RULE``)."""
    assert item.half_method is not None
    if _defines(candidate, item.method_name):
        return method_edit(item, candidate)
    half = item.half_method if item.half_method.endswith("\n") else item.half_method + "\n"
    body_indent = _body_indent(half, item.indent)
    tries = [candidate if candidate.endswith("\n") else candidate + "\n",
             reindent(candidate, body_indent)]
    refused: CandidateError | None = None
    for continuation in tries:
        text = half + continuation
        if _parse(text) is None:
            continue
        try:
            _single_def(text, item.method_name)
        except CandidateError as exc:  # e.g. a helper after the method, at the file's level
            refused = refused or exc
            continue
        return Edit(item.decorator_line, item.end_line, text)
    if refused is not None:
        raise refused
    return Edit(item.decorator_line, item.end_line, half + tries[0])  # the file check says why


def _body_indent(half: str, indent: str) -> str:
    lines = [line for line in half.splitlines() if line.strip()]
    for line in lines[1:]:
        lead = line[:len(line) - len(line.lstrip())]
        if len(lead) > len(indent):
            return lead
    return indent + "    "


def edit_for(item: RepoItem, candidate: str) -> Edit:
    if not candidate.strip():
        raise CandidateError("the answer holds no code")
    if item.task == "completion":
        return completion_edit(item, candidate)
    return method_edit(item, candidate)
