"""The package graph of docs/ARCHITECTURE.md, enforced by walking every import statement."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("promptsep", "prompts", "separation", "embeddings", "judge", "bench", "demo")
#: The CLI layer (the dispatcher and the judge sub-command) loads the library lazily, inside its
#: commands (by design); its edges are not dependencies.
CLI_LAYER = ("promptsep/cli.py", "promptsep/judge_cli.py")


def _imports():
    """(package, file, imported top-level package, module-level?, imported dotted name) of every import."""
    out = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(f.read_text(), filename=str(f))
            top = {id(n) for n in tree.body}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for n in names:
                    t = n.split(".")[0]
                    if t in PACKAGES and t != pkg:
                        out.append((pkg, str(f.relative_to(ROOT)), t, id(node) in top, n))
    return out


def test_no_cycle_between_packages():
    graph = defaultdict(set)
    for pkg, f, dep, _, _ in _imports():
        if f not in CLI_LAYER:
            graph[pkg].add(dep)

    def reach(a, seen):
        for b in graph[a]:
            if b not in seen:
                seen.add(b)
                reach(b, seen)
        return seen

    cycles = sorted(p for p in PACKAGES if p in reach(p, set()))
    assert not cycles, f"packages on an import cycle: {cycles}; graph: { {k: sorted(v) for k, v in graph.items()} }"


def test_library_does_not_import_bench_demo_or_the_cli():
    bad = [(f, name) for pkg, f, dep, _, name in _imports()
           if pkg in ("separation", "prompts", "judge", "embeddings")
           and (dep in ("bench", "demo") or name.startswith("promptsep.cli"))]
    assert not bad, bad


def test_foundation_imports_nothing_of_the_project_at_module_level():
    bad = [(f, name) for pkg, f, _, top, name in _imports() if pkg == "promptsep" and top]
    assert not bad, bad


def test_prompts_and_embeddings_stay_low():
    """prompts imports only the foundation; embeddings only the foundation and prompts."""
    allowed = {"prompts": {"promptsep"}, "embeddings": {"promptsep", "prompts"}, "separation": {"promptsep", "prompts"}}
    bad = [(f, name) for pkg, f, dep, _, name in _imports() if pkg in allowed and dep not in allowed[pkg]]
    assert not bad, bad


def test_no_source_tree_relative_checkpoint_paths():
    """Shipped defaults are found through promptsep.release, never parent.parent of a source file."""
    bad = []
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            text = f.read_text()
            if '"checkpoints"' in text and ("parent.parent" in text or "parents[" in text):
                bad.append(str(f.relative_to(ROOT)))
    assert not bad, bad
