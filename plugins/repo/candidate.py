"""From a model's candidate to an edit of the repository file.

For method generation and repair the candidate is one ``def``/``async def`` (decorators
allowed) named like the item's method, checked with ``ast``; for completion it is the rest
of the method after the given half (a whole method of the right name is accepted too).
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


def _single_def(code: str, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    try:
        tree = ast.parse(reindent(code, ""))
    except SyntaxError as exc:
        raise CandidateError(f"the method does not parse: line {exc.lineno}: {exc.msg}") \
            from None
    defs = [node for node in tree.body if isinstance(node, (ast.FunctionDef,
                                                            ast.AsyncFunctionDef))]
    if len(tree.body) != 1 or len(defs) != 1:
        raise CandidateError(f"the answer must be exactly one method, `def {name}(...)` "
                             "(decorators allowed), with nothing else around it")
    if defs[0].name != name:
        raise CandidateError(f"the method must be named {name!r}, not {defs[0].name!r}")
    return defs[0]


def method_edit(item: RepoItem, candidate: str) -> Edit:
    """The edit a whole method makes: it replaces the original from its declaration to the
    end of its body; when it brings decorators, they replace the original ones."""
    node = _single_def(candidate, item.method_name)
    start = item.decorator_line if node.decorator_list else item.start_line
    return Edit(start, item.end_line, reindent(candidate, item.indent))


def completion_edit(item: RepoItem, candidate: str) -> Edit:
    """The edit a completion makes: the given half, then the candidate's lines (as written
    when that parses, else re-indented to the body's indentation)."""
    assert item.half_method is not None
    try:
        return method_edit(item, candidate)  # the model wrote the whole method again
    except CandidateError:
        pass
    half = item.half_method if item.half_method.endswith("\n") else item.half_method + "\n"
    body_indent = _body_indent(half, item.indent)
    tries = [candidate if candidate.endswith("\n") else candidate + "\n",
             reindent(candidate, body_indent)]
    for continuation in tries:
        text = half + continuation
        try:
            ast.parse(reindent(text, ""))
        except SyntaxError:
            continue
        return Edit(item.decorator_line, item.end_line, text)
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
