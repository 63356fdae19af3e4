"""The README's shell commands and Python snippet, run as written on the shipped model.

Every ``promptsep`` / ``python`` command of the README's ``bash`` blocks either runs here (in a
scratch folder that sees the repository's ``examples/`` and ``checkpoints/``) or matches one of
the SKIPS below, which say why it cannot run offline in seconds. A command that neither runs
nor is explained fails the test, so a new README command needs a decision.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SHIPPED = ROOT / "checkpoints" / "promptsep-v2"

#: (pattern on the command, why it is not run here)
SKIPS = [
    (r"^python3 -m venv|^\.venv/bin/pip install", "creates a virtual environment and installs the package (minutes, "
                                                   "PyPI); the tests run inside the installed environment"),
    (r"^\./scripts/test\.sh", "runs the whole test suite"),
    (r"--video clip\.mp4", "needs a video and its recording; none is bundled"),
    (r"--candidates 4", "4 separations plus 4 judge passes (about 40 s on 2 shared CPUs); "
                        "tests/test_cli.py covers candidate ranking"),
    (r"^promptsep demo", "starts a web server; tests/test_demo.py drives the demo"),
    (r"^promptsep (data|bench)|/work/corpus", "needs the corpus built by `promptsep data build` (hours)"),
    (r"^python -m (separation\.train|judge\.train)", "trains a model (minutes to hours)"),
]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def readme_commands() -> list[list[str]]:
    """Each command of the README's bash blocks as argv (``a && b`` gives two commands)."""
    cmds = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            cur: list[str] = []
            for w in [*words, "&&"]:
                if w == "&&":
                    if cur:
                        cmds.append(cur)
                    cur = []
                else:
                    cur.append(w)
    return cmds


def skip_reason(argv: list[str]) -> str | None:
    line = shlex.join(argv)
    for pattern, why in SKIPS:
        if re.search(pattern, line):
            return why
    return None


def _cli_module() -> str:
    return "promptsep.cli"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    for name in ("examples", "checkpoints"):
        (d / name).symlink_to(ROOT / name)
    return d


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="shipped model not in this checkout")
def test_readme_shell_commands_run_as_written(scratch):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    ran, skipped = [], []
    for argv in readme_commands():
        why = skip_reason(argv)
        if why is not None:
            skipped.append((shlex.join(argv), why))
            continue
        prog = Path(argv[0]).name
        assert prog == "promptsep", f"README command neither runs here nor is explained in SKIPS: {shlex.join(argv)}"
        cmd = [sys.executable, "-c", f"import sys; from {_cli_module()} import main; sys.exit(main(sys.argv[1:]))",
               *argv[1:]]
        res = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{shlex.join(argv)}\n{res.stderr[-3000:]}"
        assert "Traceback" not in res.stderr
        ran.append(shlex.join(argv))
    print("\nran:", *ran, "skipped:", *(f"{c}  ({w})" for c, w in skipped), sep="\n  ")
    assert len(ran) >= 5, ran
    # what they wrote, where the README says
    for stem in ("woman_speaking_with_door", "trumpet_with_door"):
        assert (scratch / "separated" / stem).is_dir()
    assert (scratch / "separated" / "trumpet_with_door" / "target.flac").is_file()
    assert (scratch / "spans" / "trumpet_with_door" / "residual.wav").is_file()


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="shipped model not in this checkout")
def test_readme_python_snippet_runs_as_written(scratch, monkeypatch):
    (snippet,) = _blocks("python")
    monkeypatch.chdir(scratch)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    res = scope["res"]
    assert res.target.shape == res.residual.shape and res.target.shape[-1] > 16000
    assert res.info["steps"] == 1 and res.info["method"] == "euler"  # the release's recommended sampling


def test_every_skip_is_used_and_the_docs_do_not_steer_to_16_steps():
    cmds = [shlex.join(a) for a in readme_commands()]
    for pattern, _ in SKIPS:
        assert any(re.search(pattern, c) for c in cmds), f"stale skip rule {pattern!r}"
    for doc in (README, ROOT / "docs" / "DEMO.md"):
        text = doc.read_text()
        assert "steps=16" not in text and "--steps 16" not in text, doc
    assert "real recordings" not in (ROOT / "examples" / "README.md").read_text()
