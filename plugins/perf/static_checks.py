"""What a patch adds to the package's code, read before any of it runs.

A performance patch to a pure-Python library has no business with clocks, frames, other
processes, files written for later, or the names of the benchmark; those are how a patch
fakes a speedup (a patched timer, a cache across processes, work in another process, a
special case for the workload).  For every changed module, the names and words the patched
file uses that the baseline's file did not are compared with the lists below.  The lists
name what is *added*, so a library that already used one of them is not refused for it.
This is a first line, not the only one: the judge's clock, fresh processes, fresh seeds and
the CPU-time balance catch what is written around it (``getattr(m, "perf" + "_counter")``
still needs ``getattr`` with a computed name, which is flagged).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field

REFUSED: dict[str, tuple[str, ...]] = {
    "reads or patches clocks": (
        "perf_counter", "perf_counter_ns", "process_time", "process_time_ns", "monotonic",
        "monotonic_ns", "time_ns", "thread_time", "timeit", "getrusage", "clock_gettime"),
    "inspects its callers or the interpreter": (
        "_getframe", "currentframe", "f_back", "f_globals", "f_locals", "f_code", "getouterframes",
        "get_objects", "get_referrers", "get_referents", "settrace", "setprofile",
        "addaudithook", "__main__", "_current_frames", "tb_frame"),
    "starts processes": (
        "subprocess", "multiprocessing", "fork", "forkpty", "spawnv", "spawnl", "posix_spawn",
        "system", "popen", "Popen", "execv", "execve", "execl", "ProcessPoolExecutor",
        "concurrent"),
    "keeps state in files": (
        "pickle", "shelve", "sqlite3", "marshal", "dbm", "tempfile", "write_text",
        "write_bytes", "mkstemp", "mkdtemp", "makedirs", "mkdir"),
    "reaches outside Python": ("ctypes", "cffi"),
    "knows the benchmark": ("kbtool", "experiment", "store_result", "check_equivalence",
                            "kbtool_perf_workload", "runner"),
}
FLAGGED: dict[str, tuple[str, ...]] = {
    "threads": ("threading", "_thread", "Thread", "ThreadPoolExecutor"),
    # Legitimate libraries use these too (packaging 26.0 validates with ``compile`` and
    # ``getattr``): a finding for a human to read, not a refusal.
    "dynamic_code": ("exec", "eval", "__import__", "importlib", "builtins", "__builtins__",
                     "compile", "getattr(computed name)"),
    "environment": ("environ", "getenv"),
}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Findings:
    refused: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)


# Words looked for in string constants too (``getattr(time, "perf_counter")``): the
# distinctive ones only, not English words an error message may hold ("system").
STRING_WORDS = (*REFUSED["reads or patches clocks"], *REFUSED["inspects its callers or the "
                                                              "interpreter"],
                "subprocess", "multiprocessing", "pickle", "shelve", "sqlite3", "marshal",
                "importlib", "__import__", "kbtool", "store_result", "check_equivalence",
                "kbtool_perf_workload")
# Attribute names that are harmless methods of common objects (``re.compile``).
_ATTRIBUTES_ALLOWED = {"compile"}


def names_used(source: str) -> set[str]:
    """Identifiers, attribute names, imported module parts, and the distinctive words of
    string constants (docstrings left out)."""
    tree = ast.parse(source)
    docstrings = {id(body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef,
                                       ast.ClassDef))
                  and (body := node.body) and isinstance(body[0], ast.Expr)
                  and isinstance(body[0].value, ast.Constant)}
    # ``from re import compile``: that name is re's, not the builtin.
    imported = {alias.asname or alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module != "builtins"
                for alias in node.names if alias.name in _ATTRIBUTES_ALLOWED}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in imported:
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr not in _ATTRIBUTES_ALLOWED:
            found.add(node.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                found.update(p for p in alias.name.split(".") if p not in imported)
            if isinstance(node, ast.ImportFrom) and node.module:
                found.update(node.module.split("."))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                id(node) not in docstrings:
            found.update(w for w in _WORD.findall(node.value) if w in STRING_WORDS)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr") and len(node.args) >= 2 and \
                not isinstance(node.args[1], ast.Constant):
            found.add("getattr(computed name)")
        if isinstance(node, ast.Call) and _opens_for_writing(node):
            found.add("open(for writing)")
    return found


def _opens_for_writing(node: ast.Call) -> bool:
    name = node.func.id if isinstance(node.func, ast.Name) else \
        node.func.attr if isinstance(node.func, ast.Attribute) else ""
    if name != "open":
        return False
    mode = node.args[1] if len(node.args) > 1 else next(
        (k.value for k in node.keywords if k.arg == "mode"), None)
    if mode is None:
        return False
    return not isinstance(mode, ast.Constant) or any(c in str(mode.value) for c in "wax+")


def _docstring_free(source: str) -> str:
    """The source without comments (a comment may mention a clock; it runs nothing)."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type != tokenize.COMMENT:
                out.append(tok)
        return tokenize.untokenize(out)
    except (tokenize.TokenError, IndentationError):
        return source


def check_module(path: str, before: str | None, after: str, workload_names: set[str]) -> Findings:
    """What the patched module ``after`` adds over ``before`` (None: a new module);
    ``workload_names``: words of the task's workloads a patch may not mention."""
    found = Findings()
    try:
        new = names_used(_docstring_free(after))
    except SyntaxError:
        return found  # reported as a compile error by the check
    try:
        old = names_used(_docstring_free(before)) if before is not None else set()
    except SyntaxError:
        old = set()
    added = new - old
    refused = {**REFUSED, "knows the benchmark": (*REFUSED["knows the benchmark"],
                                                  *sorted(workload_names))}
    special = {"open(for writing)": "keeps state in files"}
    for word in sorted(added):
        why = special.get(word) or next((c for c, words in refused.items() if word in words), None)
        if why:
            found.refused.append(f"{path} adds {word!r} (a patch that {why})")
    for flag, words in FLAGGED.items():
        hits = sorted(added & set(words))
        if hits:
            found.flags.append(flag)
            found.findings.append(f"{flag}: {path} adds {', '.join(hits)}")
    return found
