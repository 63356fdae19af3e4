"""`promptsep bench paired`: per-item differences of runs on one manifest."""

from __future__ import annotations

import json

import pytest

from bench.cli import main as bench_main
from bench.paired import paired


def _run(folder, values, manifest="m1", system="separator_nfe2"):
    folder.mkdir(parents=True)
    (folder / "fingerprint.json").write_text(json.dumps({"fingerprint": "x", "parts": {"manifest": manifest}}))
    rows = []
    for i, v in enumerate(values):
        base = {"id": f"it{i}", "category": "sfx" if i % 2 else "speech", "prompt_kind": "text", "subset": "main",
                "target_present": True, "status": "ok"}
        rows.append({**base, "system": "mixture", "si_sdri": 0.0})
        rows.append({**base, "system": system, "si_sdri": v})
    rows.append({"id": "absent", "system": system, "status": "ok", "target_present": False, "si_sdri": None,
                 "category": "sfx", "prompt_kind": "text", "subset": "main"})
    (folder / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def test_paired_difference_removes_the_spread_between_items(tmp_path):
    base_vals = [float(v) for v in range(-10, 10)]          # wide spread between items
    a = _run(tmp_path / "a", base_vals)
    b = _run(tmp_path / "b", [v + 0.5 for v in base_vals])  # every item exactly 0.5 dB better
    t = paired(("a", a), [("b", b)], "separator_nfe2")
    g = t["groups"]["all"]
    assert g["n"] == 20                                       # target-present rows of that system only
    assert g["b"]["si_sdri"]["diff"]["mean"] == pytest.approx(0.5)
    assert g["b"]["si_sdri"]["diff"]["lo"] == pytest.approx(0.5) == g["b"]["si_sdri"]["diff"]["hi"]
    base_ci = g["base"]["si_sdri"]
    assert base_ci["hi"] - base_ci["lo"] > 3                  # the unpaired CI cannot see 0.5 dB
    assert t["groups"]["category=sfx"]["n"] == 10


def test_paired_refuses_runs_of_another_manifest_and_bad_folders(tmp_path, capsys):
    a = _run(tmp_path / "a", [1.0, 2.0])
    c = _run(tmp_path / "c", [1.0, 2.0], manifest="m2")
    with pytest.raises(ValueError, match="another manifest"):
        paired(("a", a), [("c", c)], "separator_nfe2")
    with pytest.raises(ValueError, match="no successful target-present rows"):
        paired(("a", a), [("a2", a)], "separator_nfe8")
    assert bench_main(["paired", "--base", f"a={a}", "--run", f"x={tmp_path / 'nothing'}",
                       "--system", "separator_nfe2", "--out", str(tmp_path / "o")]) == 2
    assert "not a `promptsep bench separation` output folder" in capsys.readouterr().err
    assert bench_main(["paired", "--base", f"a={a}", "--run", f"b={a}", "--system", "separator_nfe2",
                       "--out", str(tmp_path / "o")]) == 0
    assert "| all | 2 |" in (tmp_path / "o" / "paired.md").read_text()


def test_each_run_can_be_read_at_its_own_system(tmp_path):
    """``NAME=DIR@SYSTEM``: two releases compared at their own recommended steps."""
    a = _run(tmp_path / "a", [1.0, 2.0, 3.0], system="separator_nfe1")
    b = _run(tmp_path / "b", [2.0, 3.0, 4.0], system="separator_nfe4")
    t = paired(("a", a, "separator_nfe1"), [("b", b, "separator_nfe4")], "separator_nfe2")
    assert t["groups"]["all"]["b"]["si_sdri"]["diff"]["mean"] == pytest.approx(1.0)
    assert t["systems"] == {"a": "separator_nfe1", "b": "separator_nfe4"}
    assert bench_main(["paired", "--base", f"a={a}@separator_nfe1", "--run", f"b={b}@separator_nfe4",
                       "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "paired.md").read_text()
    assert "a: `separator_nfe1`, b: `separator_nfe4`" in md and "| all | 3 | +2.00" in md


def test_a_shared_system_is_named_and_bad_specs_are_refused(tmp_path, capsys):
    a = _run(tmp_path / "a", [1.0, 2.0], system="separator_nfe4")
    at = _run(tmp_path / "runs@2026", [2.0, 3.0], system="separator_nfe4")  # '@' in a folder name
    assert bench_main(["paired", "--base", f"a={a}@separator_nfe4", "--run", f"b={at}@separator_nfe4",
                       "--out", str(tmp_path / "o")]) == 0
    assert "Paired `si_sdri` of `separator_nfe4`" in (tmp_path / "o" / "paired.md").read_text()
    assert bench_main(["paired", "--base", f"a={a}", "--run", f"b={at}", "--system", "separator_nfe4",
                       "--out", str(tmp_path / "o2")]) == 0
    assert bench_main(["paired", "--base", f"a={a}@", "--run", f"b={at}", "--out", str(tmp_path / "o3")]) == 2
    assert "system name after '@'" in capsys.readouterr().err
