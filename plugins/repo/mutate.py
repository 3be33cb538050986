"""Bug injection for repair items: one small change to a method, in its own text.

Each kind of bug the issue names is one family of sites: a binary operator swapped
(``+``/``-``, ``*``/``//``...), a comparison changed (``<``/``<=``, ``==``/``!=``, ``in``/
``not in``...), an integer constant off by one, a condition negated (``if``, ``while``,
conditional expressions), a boolean operator swapped (``and``/``or``), a name replaced by
another name the method uses (a wrong variable).  Only the changed expression is rewritten
(``ast.unparse`` of that node, spliced in at its position): the rest of the method keeps its
formatting and comments, so the bug is not given away by a reformatted method.
"""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass

_BINOPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult, ast.Mod: ast.FloorDiv, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
    ast.LShift: ast.RShift, ast.RShift: ast.LShift}
_COMPARES: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
    ast.IsNot: ast.Is}


@dataclass(frozen=True)
class Mutation:
    family: str          # operator, comparison, off_by_one, negation, boolean, wrong_name
    node: ast.expr       # the expression replaced (positions in the method's text)
    new: ast.expr        # what replaces it
    description: str


def _sites(tree: ast.AST) -> Iterator[Mutation]:
    func = tree.body[0] if isinstance(tree, ast.Module) else tree
    assert isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
    names = sorted({n.id for n in ast.walk(func) if isinstance(n, ast.Name)} |
                   {a.arg for a in ast.walk(func.args) if isinstance(a, ast.arg)})
    docstring = ast.get_docstring(func, clean=False) is not None
    body = func.body[1:] if docstring else func.body
    for stmt in body:
        for node in ast.walk(stmt):
            yield from _at(node, names)


def _at(node: ast.AST, names: list[str]) -> Iterator[Mutation]:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        new = copy.deepcopy(node)
        new.op = _BINOPS[type(node.op)]()
        yield Mutation("operator", node, new, f"`{_op(node)}` became `{_op(new)}`")
    elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARES:
        compare = copy.deepcopy(node)
        compare.ops = [_COMPARES[type(node.ops[0])]()]
        yield Mutation("comparison", node, compare,
                       f"`{ast.unparse(node)}` became `{ast.unparse(compare)}`")
    elif isinstance(node, ast.Constant) and type(node.value) is int and abs(node.value) < 1000:
        value = int(node.value)
        changed = value + (1 if value <= 0 else -1)
        yield Mutation("off_by_one", node, ast.Constant(changed),
                       f"the constant {value} became {changed}")
    elif isinstance(node, ast.BoolOp):
        swapped = ast.BoolOp(op=ast.Or() if isinstance(node.op, ast.And) else ast.And(),
                             values=copy.deepcopy(node.values))
        yield Mutation("boolean", node, swapped,
                       f"`{ast.unparse(node)}` became `{ast.unparse(swapped)}`")
    if isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)):
        test = node.test
        negated: ast.expr = (copy.deepcopy(test.operand)
                             if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
                             else ast.UnaryOp(op=ast.Not(), operand=copy.deepcopy(test)))
        yield Mutation("negation", test, negated,
                       f"the condition `{ast.unparse(test)}` was negated")
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        others = [n for n in names if n != node.id and n not in ("self", "cls")]
        if others and node.id not in ("self", "cls"):
            other = others[(len(node.id) * 7 + node.col_offset) % len(others)]
            yield Mutation("wrong_name", node, ast.Name(id=other, ctx=ast.Load()),
                           f"`{node.id}` became `{other}`")


def _op(node: ast.BinOp) -> str:
    return ast.unparse(node).replace(ast.unparse(node.left), "", 1) \
        .replace(ast.unparse(node.right), "").strip() or type(node.op).__name__


def _offset(lines: list[str], lineno: int, col: int) -> int:
    """The character offset of (1-based line, UTF-8 byte column) in the joined text."""
    before = sum(len(line) for line in lines[:lineno - 1])
    return before + len(lines[lineno - 1].encode()[:col].decode())


class _Replace(ast.NodeTransformer):
    def __init__(self, old: ast.expr, new: ast.expr) -> None:
        self.where = _position(old)
        self.kind = type(old)
        self.new = new

    def visit(self, node: ast.AST) -> ast.AST:
        if type(node) is self.kind and _position(node) == self.where:
            return self.new
        return super().visit(node)


def _position(node: ast.AST) -> tuple[int | None, ...]:
    return (getattr(node, "lineno", None), getattr(node, "col_offset", None),
            getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None))


def apply(source: str, mutation: Mutation) -> str | None:
    """``source`` with the mutated expression spliced in (parenthesised only where it must
    be); None if the splice does not make the intended change."""
    node = mutation.node
    assert node.end_lineno is not None and node.end_col_offset is not None
    lines = source.splitlines(keepends=True)
    start = _offset(lines, node.lineno, node.col_offset)
    end = _offset(lines, node.end_lineno, node.end_col_offset)
    expected = ast.dump(_Replace(node, mutation.new).visit(ast.parse(source)))
    new = ast.unparse(mutation.new)
    for text in (new, f"({new})"):
        spliced = source[:start] + text + source[end:]
        try:
            if ast.dump(ast.parse(spliced)) == expected:
                return spliced
        except SyntaxError:
            continue
    return None


def mutations(method: str, seed: int) -> list[tuple[str, str]]:
    """Buggy versions of ``method`` (its source, dedented), as (text, description), in a
    seeded order that mixes the families."""
    tree = ast.parse(method)
    by_family: dict[str, list[Mutation]] = {}
    for site in _sites(tree):
        by_family.setdefault(site.family, []).append(site)
    rng = random.Random(seed)
    families = sorted(by_family)
    rng.shuffle(families)
    for sites in by_family.values():
        rng.shuffle(sites)
    ordered: list[Mutation] = []
    while any(by_family.values()):
        for family in families:
            if by_family[family]:
                ordered.append(by_family[family].pop())
    found = []
    for mutation in ordered:
        text = apply(method, mutation)
        if text is not None and text != method:
            found.append((text, f"{mutation.family}: {mutation.description}"))
    return found
