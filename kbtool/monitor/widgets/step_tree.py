"""One task's search tree: the ideas step, then phases, agents (chains) and steps."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from kbtool.monitor.state import Step, TaskState
from kbtool.monitor.text import fmt_ms, styled, verdict

NodeData = tuple  # ("ideas",), ("phase", P), ("agent", P, A), ("step", (P, A, S))
EXPAND_AGENTS_UP_TO = 300  # steps in a task: beyond this, agents start folded


def _group_sig(steps: list[Step]) -> tuple:
    return tuple((s.status, s.runtime_ms, s.speedup) for s in steps)


def group_label(name: str, steps: list[Step], phase: bool) -> Text:
    ok = [s for s in steps if s.status == "ok"]
    timed = [s for s in ok if s.runtime_ms is not None]
    best = min(timed, key=lambda s: s.runtime_ms or 0.0) if timed else None
    label = Text(f"{name} ")
    if phase:
        label.append(f"{len(ok)}/{len(steps)} ok", style="green" if ok else "yellow")
        if best is not None:
            label.append(f" {fmt_ms(best.runtime_ms)} ms")
    elif best is not None and best.speedup is not None:
        label.append(f"ok {best.speedup:.2f}x", style="green")
    else:
        last = steps[-1]
        label.append_text(styled(verdict(last.status, last.runtime_ms)))
    return label


def step_label(step: Step) -> Text:
    label = Text(f"step {step.step} ")
    label.append_text(styled(verdict(step.status, step.runtime_ms)))
    if step.speedup is not None:
        label.append(f" {step.speedup:.2f}x")
    return label


class StepTree(Tree[NodeData]):
    """A Tree kept in step with a task's state: new steps are added in place and nodes whose
    figures changed are relabelled (no rebuild, so the cursor and what is folded stay).
    Left folds (or goes to the parent), right unfolds (or goes down)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "fold", "Fold", show=False),
        Binding("right", "unfold", "Unfold", show=False),
    ]
    _batch = False    # in sync(): Tree's invalidation is put off to its end
    _batched = False  # ... and was asked for

    def __init__(self, label: str, **kwargs: Any) -> None:
        super().__init__(label, **kwargs)
        self.show_root = False
        self.guide_depth = 2
        self.by_data: dict[NodeData, TreeNode[NodeData]] = {}
        self._sigs: dict[NodeData, tuple] = {}  # node data -> the figures of its label

    # -- cheaper updates ----------------------------------------------------------------------
    def _invalidate(self) -> None:
        """Tree drops its caches and asks for a layout at every node added, folded or
        unfolded; within sync() that is done once, at the end."""
        if self._batch:
            self._batched = True
        else:
            super()._invalidate()

    def get_label_width(self, node: TreeNode[NodeData]) -> int:
        """Without rendering the label (Tree renders every line's label to measure the
        widest at each rebuild of its lines)."""
        icon = "" if not node.allow_expand else \
            self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE
        label = node.label
        return cell_len(icon) + (label.cell_len if isinstance(label, Text) else cell_len(label))

    def start_over(self) -> None:
        """Forget every node (the log was replaced)."""
        self.clear()
        self.by_data, self._sigs = {}, {}

    def sync(self, task: TaskState) -> set[NodeData]:
        """Bring the tree up to ``task``; the data of the nodes that were relabelled."""
        self._batch, self._batched = True, False
        try:
            return self._sync(task)
        finally:
            self._batch = False
            if self._batched:
                self._invalidate()

    def _sync(self, task: TaskState) -> set[NodeData]:
        changed: set[NodeData] = set()
        groups: dict[int, dict[int, list[Step]]] = {}
        for key in sorted(task.steps):
            groups.setdefault(key[0], {}).setdefault(key[1], []).append(task.steps[key])
        if task.ideas and ("ideas",) not in self.by_data:
            self._node(self.root, ("ideas",), (), lambda: Text("ideas", style="italic"),
                       changed, leaf=True)
        expand = len(task.steps) <= EXPAND_AGENTS_UP_TO
        for phase, agents in groups.items():
            steps = [s for chain in agents.values() for s in chain]
            pnode = self._node(self.root, ("phase", phase), _group_sig(steps),
                               partial(group_label, f"phase {phase}", steps, True),
                               changed, expand=True)
            for agent, chain in agents.items():
                anode = self._node(pnode, ("agent", phase, agent), _group_sig(chain),
                                   partial(group_label, f"agent {agent}", chain, False),
                                   changed, expand=expand)
                for step in chain:
                    self._node(anode, ("step", step.key), (step.status, step.speedup),
                               partial(step_label, step), changed, leaf=True)
        return changed

    def _node(self, parent: TreeNode[NodeData], data: NodeData, sig: tuple,
              label: Callable[[], Text], changed: set[NodeData], leaf: bool = False,
              expand: bool = False) -> TreeNode[NodeData]:
        """The node for ``data``: added among ``parent``'s children in order, or relabelled
        when its figures (``sig``) changed."""
        node = self.by_data.get(data)
        if node is None:
            children = parent.children
            last = children[-1].data if children else None
            before = None
            if last is not None and not last < data:  # not the last: find its place
                index = sum(1 for child in children if child.data is not None and child.data < data)
                before = index if index < len(children) else None
            node = parent.add_leaf(label(), data=data, before=before) if leaf else \
                parent.add(label(), data=data, before=before, expand=expand)
            self.by_data[data] = node
        elif self._sigs.get(data) != sig:
            node.set_label(label())
            changed.add(data)
        self._sigs[data] = sig
        return node

    def move_to(self, data: NodeData | None) -> None:
        """Put the cursor on ``data``'s node (unfolding its parents), else the first line."""
        node = self.by_data.get(data) if data is not None else None
        if node is not None:
            parent = node.parent
            while parent is not None:
                parent.expand()
                parent = parent.parent
            self.call_after_refresh(self.move_cursor, node, animate=False)
        elif self.root.children:
            self.call_after_refresh(self.move_cursor_to_line, 0)

    def action_fold(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and node.is_expanded:
            node.collapse()
        else:
            self.action_cursor_parent()

    def action_unfold(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and not node.is_expanded:
            node.expand()
        else:
            self.action_cursor_down()
