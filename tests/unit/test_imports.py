"""The package's import graph, read with ``ast``: no cycles, no dynamic loading of edged's own
modules, and the layers stay where they belong."""

from __future__ import annotations

import ast
import re

import pytest

from tests.unit.edged_source import MODULES, nodes


def _target(name: str) -> str | None:
    """The edged module ``name`` refers to (``edged.x.y`` may be a name in ``edged.x``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str) -> set[str]:
    """Every edged module ``module`` imports, at the top or inside a function."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in nodes()[module]:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _target(name) if name.startswith("edged") else None
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def find_cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (cycle := visit(n)) is not None:
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state and (cycle := visit(m)) is not None:
            return cycle
    return None


def test_the_walk_sees_imports() -> None:
    assert "edged.config" in GRAPH["edged.app"]
    assert "edged.wire" in GRAPH["edged.fleet"]


def test_no_import_cycle() -> None:
    cycle = find_cycle()
    assert cycle is None, " -> ".join(cycle or [])


_MODULE_STRING = re.compile(r"^edged(\.\w+)+$")


def test_no_dynamic_loading_of_edged_modules() -> None:
    problems = []
    for module, walked in nodes().items():
        docstrings = {
            id(n.value)
            for n in walked
            if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
        }
        for node in walked:
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name == "__import__":
                    problems.append(f"{module}:{node.lineno}: __import__")
                if name == "import_module" and node.args:
                    arg = node.args[0]
                    if isinstance(arg, ast.Constant) and str(arg.value).startswith("edged"):
                        problems.append(f"{module}:{node.lineno}: import_module({arg.value!r})")
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and _MODULE_STRING.match(node.value)
                and node.value in MODULES
            ):
                problems.append(f"{module}:{node.lineno}: module named in a string {node.value!r}")
    assert not problems, "\n".join(problems)


def test_cycle_finder_finds_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "edged.cli", {*GRAPH["edged.cli"], "edged.demo"})
    monkeypatch.setitem(GRAPH, "edged.demo", {*GRAPH["edged.demo"], "edged.cli"})
    cycle = find_cycle()
    assert cycle is not None and cycle[0] == cycle[-1]


def test_backends_do_not_reach_up() -> None:
    """infer/ holds backends only: it never imports classify, preprocess or publish (the
    engine above the stages puts them together)."""
    forbidden = ("edged.classify", "edged.preprocess", "edged.publish", "edged.engine")
    problems = [
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if m.startswith("edged.infer")
        for t in targets
        if t.startswith(forbidden)
    ]
    assert not problems, problems


def test_nothing_reads_a_supervisors_privates() -> None:
    """Only the supervisor touches its underscore attributes."""
    problems = []
    for module, walked in nodes().items():
        if module == "edged.infer.supervisor":
            continue
        for node in walked:
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("_cpu", "_worker", "_active", "_pending", "_restarts")
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                problems.append(f"{module}:{node.lineno}: .{node.attr}")
    assert not problems, problems


def test_the_pipeline_rooms_stay_apart() -> None:
    """pipeline/ holds the per-camera rooms and the shared stage: nothing below it (capture,
    infer, preprocess, classify, publish, health, wire, config) imports it; the lanes are
    pure (no other edged module); the inference stage knows no camera's pipeline, publish
    stage or remote operation; a camera's pipeline never reaches the device-level wiring."""
    below = (
        "edged.capture",
        "edged.infer",
        "edged.preprocess",
        "edged.classify",
        "edged.publish",
        "edged.health",
        "edged.wire",
        "edged.config",
        "edged.engine",
    )
    problems = [
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if m.startswith(below)
        for t in targets
        if t.startswith("edged.pipeline")
    ]
    problems += [f"edged.pipeline.lanes imports {t}" for t in GRAPH["edged.pipeline.lanes"]]
    stage_forbidden = (
        "edged.pipeline.camera",
        "edged.pipeline.publishing",
        "edged.publish",
        "edged.control",
        "edged.capture",
    )
    problems += [
        f"edged.pipeline.inference imports {t}"
        for t in GRAPH["edged.pipeline.inference"]
        if t.startswith(stage_forbidden)
    ]
    problems += [
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if m.startswith("edged.pipeline")
        for t in targets
        if t in ("edged.app", "edged.cli", "edged.commands")
    ]
    assert not problems, problems


def test_app_wires_and_keeps_no_stage_of_its_own() -> None:
    """app.py builds the rooms and starts them: the capture loop, the interpreter loop and
    the publish stage live in pipeline/, so app.py imports no preprocessing, static-scene
    test, region cropping or event formatting."""
    forbidden = (
        "edged.capture.static",
        "edged.capture.regions",
        "edged.preprocess",
        "edged.publish.events",
        "edged.handoff",
    )
    problems = [t for t in GRAPH["edged.app"] if t.startswith(forbidden)]
    assert not problems, problems
