"""What a candidate's source gives away before it runs (AST).

Hard findings reject the candidate: code that patches torch, the timer or kbtool itself, or
that walks the harness's frames and objects to find the reference's inputs and outputs.
Soft findings become flags.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

# Modules whose attributes a candidate must not replace (timers, torch, the harness).
GUARDED_MODULES = ("torch", "time", "triton", "kbtool", "kbtool_plugins", "builtins", "numpy",
                   "timeit")
HARNESS_MODULES = ("kbtool", "kbtool_plugins", "kbtool_reference")
# Introspection that reaches objects the candidate was not given.
INTROSPECTION = {
    ("sys", "_getframe"), ("inspect", "currentframe"), ("inspect", "stack"),
    ("inspect", "getouterframes"), ("inspect", "trace"), ("gc", "get_objects"),
    ("gc", "get_referrers"), ("gc", "get_referents"), ("sys", "settrace"),
    ("sys", "setprofile"), ("threading", "settrace"),
}
KERNEL_MARKERS = {"load_inline", "load", "jit", "autotune", "custom_op", "CUDAExtension",
                  "compile_module", "RawKernel", "SourceModule"}


@dataclass
class StaticReport:
    violations: list[str] = field(default_factory=list)  # reasons to reject
    custom_kernel: bool = False                           # load_inline, Triton, ... seen


class _Visitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.report = StaticReport()
        self.aliases: dict[str, str] = {}  # local name -> module path it stands for

    def _root(self, node: ast.AST) -> str | None:
        """The dotted module path an expression like ``t.cuda.Event`` refers to, if any."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.aliases:
            return None
        return ".".join([self.aliases[node.id], *reversed(parts)])

    def _guarded(self, path: str | None) -> bool:
        return path is not None and path.split(".")[0] in GUARDED_MODULES

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._note_import(alias.name, node.lineno)
            self.aliases[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._note_import(module, node.lineno)
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
            if (module.split(".")[0], alias.name) in INTROSPECTION:
                self._violation(node.lineno, f"imports {module}.{alias.name}")
            if alias.name in KERNEL_MARKERS:
                self.report.custom_kernel = True

    def _note_import(self, module: str, line: int) -> None:
        if module.split(".")[0] in HARNESS_MODULES:
            self._violation(line, f"imports the harness ({module})")
        if module.split(".")[0] in ("triton", "cupy", "numba", "pycuda"):
            self.report.custom_kernel = True

    def _violation(self, line: int, what: str) -> None:
        self.report.violations.append(f"line {line}: {what}")

    def _check_target(self, target: ast.AST, line: int) -> None:
        if isinstance(target, ast.Attribute):
            path = self._root(target)
            if self._guarded(path):
                self._violation(line, f"replaces {path}")
        elif isinstance(target, ast.Subscript):
            base = self._root(target.value)
            if base in ("sys.modules", "builtins.__dict__"):
                self._violation(line, f"writes into {base}")
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._check_target(element, line)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target, node.lineno)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target, node.lineno)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target, node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        path = self._root(func)
        if name in ("setattr", "delattr") and node.args and self._guarded(self._root(node.args[0])):
            self._violation(node.lineno, f"{name} on {self._root(node.args[0])}")
        if name in ("__import__", "import_module") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and str(arg.value).split(".")[0] in HARNESS_MODULES:
                self._violation(node.lineno, f"imports the harness ({arg.value!s})")
        if name in KERNEL_MARKERS and (path is None or "cpp_extension" in path or "triton" in path
                                       or name != "load"):
            self.report.custom_kernel = True
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        path = self._root(node)
        if path and tuple(path.split(".")[-2:]) in INTROSPECTION:
            self._violation(node.lineno, f"uses {path}")
        self.generic_visit(node)


def analyse(source: str) -> StaticReport:
    """Static findings for a candidate; a file that does not parse has none (it fails later)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return StaticReport()
    visitor = _Visitor()
    visitor.visit(tree)
    visitor.report.violations = list(dict.fromkeys(visitor.report.violations))
    return visitor.report
