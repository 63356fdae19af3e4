"""The package graph of docs/ARCHITECTURE.md, enforced by walking every import statement."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("promptsep", "prompts", "separation", "embeddings", "judge", "bench", "demo", "corpus_build")
#: The library: what a user's program imports to separate or score audio.
LIBRARY = ("promptsep", "prompts", "separation", "embeddings", "judge")
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


def test_corpus_building_is_tooling_nothing_imports():
    """corpus_build/ (apt downloads, MIDI rendering) is reached only by ``promptsep data build``:
    no module of the library, bench or demo imports it, and the CLI only lazily (by name)."""
    bad = [(f, name) for pkg, f, dep, _, name in _imports() if dep == "corpus_build" and f not in CLI_LAYER]
    assert not bad, bad
    assert (ROOT / "corpus_build" / "build.py").is_file()
    cli_text = (ROOT / "promptsep" / "cli.py").read_text()
    assert '"corpus_build.build:cli_main"' in cli_text, "promptsep data build dispatches to corpus_build"


def test_foundation_imports_nothing_of_the_project_at_module_level():
    bad = [(f, name) for pkg, f, _, top, name in _imports() if pkg == "promptsep" and top]
    assert not bad, bad


def test_prompts_and_embeddings_stay_low():
    """prompts imports only the foundation; embeddings only the foundation and prompts."""
    allowed = {"prompts": {"promptsep"}, "embeddings": {"promptsep", "prompts"}, "separation": {"promptsep", "prompts"}}
    bad = [(f, name) for pkg, f, dep, _, name in _imports() if pkg in allowed and dep not in allowed[pkg]]
    assert not bad, bad


#: Files allowed to climb above their own package from ``__file__``, with the reason.
SOURCE_ROOT_ALLOWED: dict[str, str] = {}


def test_no_source_tree_relative_paths():
    """Shipped defaults (checkpoints, configs, examples) are found through promptsep.release
    (packaged_checkpoint, checkpoints_dir, config_dir, examples_dir), never by climbing from a
    source file (``Path(__file__).parent.parent``, ``parents[2]``), which breaks in a wheel."""
    climb = re.compile(r"__file__\)?(\.resolve\(\))?\.(parent\.parent|parents\[[1-9])")
    bad = []
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            rel = str(f.relative_to(ROOT))
            if rel not in SOURCE_ROOT_ALLOWED and climb.search(f.read_text()):
                bad.append(rel)
    assert not bad, bad


def test_configs_read_shipped_releases_through_the_package():
    """No config reads a shipped release by a path relative to the working directory: a value
    ``checkpoints/...`` may only be a write target (``export_dir``); reads use ``${packaged:NAME}``."""
    import yaml

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                yield from walk(v, key)
        else:
            yield key, node

    bad, packaged = [], []
    for f in sorted((ROOT / "conf").rglob("*.yaml")):
        for key, value in walk(yaml.safe_load(f.read_text()) or {}):
            if isinstance(value, str) and value.lstrip("./").startswith("checkpoints/") and key != "export_dir":
                bad.append(f"{f.relative_to(ROOT)}: {key}: {value}")
            if isinstance(value, str) and value.startswith("${packaged:"):
                packaged.append(f"{f.relative_to(ROOT)}:{key}")
    assert not bad, bad
    assert {"conf/bench.yaml:checkpoint", "conf/bench_embedding.yaml:separator",
            "conf/train.yaml:codec_checkpoint"} <= set(packaged), packaged


def test_packaged_defaults_resolve_outside_the_source_tree(tmp_path, monkeypatch):
    """The demo's defaults and the bench configs' ``${packaged:...}`` follow promptsep.release, so
    a wheel's copy (here: a checkpoints folder elsewhere, $PROMPTSEP_CHECKPOINTS) is what they use."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import demo.app
    from promptsep import release

    assert demo.app.DEFAULT_EXAMPLES == release.examples_dir()
    assert (release.examples_dir() / "examples.json").is_file()
    assert demo.app.DEFAULT_CHECKPOINT == release.packaged_checkpoint("promptsep-v2")
    monkeypatch.setenv(release.CHECKPOINTS_ENV, str(tmp_path))
    with initialize_config_dir(config_dir=str(release.config_dir()), version_base="1.3"):
        bench = compose(config_name="bench")
        emb = compose(config_name="bench_embedding")
        train = compose(config_name="train")
    assert OmegaConf.to_container(bench, resolve=True)["checkpoint"] == str(tmp_path / "promptsep-v2")
    assert OmegaConf.to_container(emb, resolve=True)["separator"] == str(tmp_path / "promptsep-v2")
    assert train.codec_checkpoint == str(tmp_path / "promptsep-tiny" / "codec")
