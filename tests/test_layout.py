"""The package layout: stage subpackages import one way, and serving never loads the evaluation."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import computealloc

ROOT = Path(computealloc.__file__).parent
STAGES = ("data", "estimation", "fitting", "serving", "evaluation", "training", "cli")


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else "core"


def _module_level_imports(path: Path) -> set[str]:
    """The ``computealloc.*`` modules a file imports at module level (TYPE_CHECKING excluded)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m.startswith("computealloc.")}


def test_stage_import_graph_is_acyclic() -> None:
    edges: dict[str, set[str]] = {s: set() for s in (*STAGES, "core")}
    for path in ROOT.rglob("*.py"):
        if path == ROOT / "__init__.py":
            continue  # the public facade re-exports from the stages
        me = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        for target in _module_level_imports(path):
            if _stage(target) != _stage(me):
                edges[_stage(me)].add(_stage(target))
    assert not edges["core"], f"the shared modules import stages: {edges['core']}"
    seen: set[str] = set()
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in seen or node in done, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        seen.add(node)
        for nxt in sorted(edges[node]):
            visit(nxt, (*path, node))
        done.add(node)

    for stage in edges:
        visit(stage, ())


def test_the_deploy_path_does_not_import_the_evaluation_harness() -> None:
    code = (
        "import sys, computealloc.serving.server, computealloc.serving.deploy, "
        "computealloc.fitting.persist, computealloc.cli.serve; "
        "print(sorted(m for m in sys.modules if m.startswith(('computealloc.evaluation', "
        "'computealloc.training'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
