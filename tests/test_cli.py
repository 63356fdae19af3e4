"""The ``promptsep`` command line: several inputs, names, formats, overwrite rules, checks
before loading, clean one-line errors, ``info``, ``--version``, quiet logs.

Runs the real CLI (``main`` of ``promptsep/cli.py``, formerly ``separation/cli.py``) on real audio files and a tiny saved release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import random_tiny_separation_model, save_random_release

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "promptsep-tiny"
#: The CLI module (``separation/cli.py`` moves to ``promptsep/cli.py``).
CLI_MODULE = "promptsep.cli"


#: A seeded tiny random separator (tests/conftest.py), once per module, and it saved as a release.
model = pytest.fixture(scope="module", name="model")(random_tiny_separation_model)
ckpt = pytest.fixture(scope="module", name="ckpt")(save_random_release)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """a.wav (22.05 kHz stereo), b.flac (16 kHz mono), c.mp3 (44.1 kHz mono)."""
    d = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(0)
    sf.write(d / "a.wav", (0.3 * rng.standard_normal((22050, 2))).astype(np.float32), 22050)
    t = np.arange(16000) / 16000
    sf.write(d / "b.flac", (0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32), 16000)
    sf.write(d / "c.mp3", (0.3 * rng.standard_normal(44100)).astype(np.float32), 44100)
    return d


@pytest.fixture()
def loads(monkeypatch):
    """Counts real model loads (the original loader runs)."""
    from separation.model import SeparationModel

    count = {"n": 0}
    orig = SeparationModel.from_pretrained.__func__

    def counting(cls, *a, **k):
        count["n"] += 1
        return orig(cls, *a, **k)

    monkeypatch.setattr(SeparationModel, "from_pretrained", classmethod(counting))
    return count


def run(*argv):
    import importlib

    return importlib.import_module(CLI_MODULE).main([str(a) for a in argv])


def test_several_inputs_one_model_load_named_outputs(ckpt, inputs, tmp_path, loads, capsys):
    out = tmp_path / "out"
    files = [inputs / "a.wav", inputs / "b.flac", inputs / "c.mp3"]
    assert run("separate", *files, "--text", "tone", "--checkpoint", ckpt, "-o", out) == 0
    assert loads["n"] == 1
    for f in files:
        ref, ref_sr = sf.read(f, always_2d=True)
        for kind in ("target", "residual"):
            data, sr = sf.read(out / f.stem / f"{kind}.wav", always_2d=True)
            assert sr == ref_sr and data.shape == ref.shape and np.isfinite(data).all()
            assert sf.info(str(out / f.stem / f"{kind}.wav")).subtype == "PCM_16"
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("->" in line for line in lines)


def test_format_flac_int24_float32(ckpt, inputs, tmp_path):
    a = inputs / "a.wav"
    assert run("separate", a, "--text", "tone", "--checkpoint", ckpt, "-o", tmp_path / "f", "--format", "flac") == 0
    assert sf.info(str(tmp_path / "f" / "a" / "target.flac")).format == "FLAC"
    assert run("separate", a, "--text", "tone", "--checkpoint", ckpt, "-o", tmp_path / "i", "--int24") == 0
    assert sf.info(str(tmp_path / "i" / "a" / "residual.wav")).subtype == "PCM_24"
    assert run("separate", a, "--text", "tone", "--checkpoint", ckpt, "-o", tmp_path / "x", "--float32") == 0
    assert sf.info(str(tmp_path / "x" / "a" / "target.wav")).subtype == "FLOAT"


def test_filename_template_and_collisions(ckpt, inputs, tmp_path, loads, capsys):
    out = tmp_path / "out"
    assert run("separate", inputs / "a.wav", "--text", "tone", "--checkpoint", ckpt, "-o", out,
               "--filename", "{stem}_{kind}.{ext}") == 0
    assert (out / "a_target.wav").is_file() and (out / "a_residual.wav").is_file()
    capsys.readouterr()
    other = tmp_path / "sub"
    other.mkdir()
    sf.write(other / "a.flac", np.full(8000, 0.1, np.float32), 16000)
    cases = [
        (["--filename", "{stem}/{speaker}.{ext}"], "unknown field"),
        (["--filename", "{stem}.{ext}"], "must contain {kind}"),
        (["--filename", "/abs/{kind}.wav"], "relative path"),
    ]
    for extra, msg in cases:
        assert run("separate", inputs / "a.wav", "--text", "tone", "--checkpoint", ckpt, "-o", tmp_path / "o2", *extra) == 2
        assert msg in capsys.readouterr().err
    assert run("separate", inputs / "a.wav", other / "a.flac", "--text", "tone", "--checkpoint", ckpt, "-o", tmp_path / "o3") == 2
    assert "would both write" in capsys.readouterr().err
    assert run("separate", inputs / "a.wav", other / "a.flac", "--text", "tone", "--checkpoint", ckpt, "-o", tmp_path / "o3",
               "--filename", "{name}/{kind}.{ext}") == 0
    assert loads["n"] == 2  # only the two runs that separated loaded a model


def test_never_overwrites_without_overwrite(ckpt, inputs, tmp_path, loads, capsys):
    out = tmp_path / "out"
    assert run("separate", inputs / "b.flac", "--text", "tone", "--checkpoint", ckpt, "-o", out) == 0
    target = out / "b" / "target.wav"
    before = target.read_bytes()
    # a different result would be written (another seed), but the file is kept
    assert run("separate", inputs / "b.flac", "--text", "tone", "--seed", "5", "--checkpoint", ckpt, "-o", out) == 2
    err = capsys.readouterr().err
    assert "output exists" in err and "--overwrite" in err and "Traceback" not in err
    assert target.read_bytes() == before and loads["n"] == 1  # refused before loading the model
    assert run("separate", inputs / "b.flac", "--text", "tone", "--seed", "5", "--checkpoint", ckpt, "-o", out, "--overwrite") == 0
    assert target.read_bytes() != before


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps: must be at least 1"),
    (["--candidates", "0"], "--candidates: must be at least 1"),
    (["--steps", "two"], "--steps: expected a whole number"),
    (["--device", "tpu9"], "unknown device 'tpu9'"),
    (["--guidance", "nan"], "--guidance: must be a finite number"),
    (["--guidance", "inf"], "--guidance: must be a finite number"),
    (["--guidance", "-1"], "--guidance: must be a finite number"),
    (["--span", "+0.2:3"], "outside a.wav"),
    (["--span", "+2:1"], "start"),
    (["--text", " "], "--text is empty"),
    (["--text", None], "give at least one prompt"),
    (["--box", "1,2,3,4"], "--box/--mask select an object in a video"),
    (["--mask", "no-such-mask.png"], "mask image not found"),
    (["--ranker", "activity"], "--ranker activity needs --span"),
    (["--text", None, "--span", "+0:0.5", "--ranker", "judge"], "--ranker judge needs --text"),
    (["--float32", "--format", "flac"], "cannot be stored as flac"),
    (["--checkpoint", "/no/such/release"], "cannot load the separator"),
])
def test_bad_options_are_one_line_errors(ckpt, inputs, tmp_path, capsys, extra, message, loads):
    argv = ["separate", inputs / "a.wav", "--text", "tone", "--checkpoint", ckpt, "-o", tmp_path / "o"]
    if "--text" in extra:  # replace the default text
        i = extra.index("--text")
        val = extra[i + 1]
        argv = argv[:2] + argv[4:]
        extra = extra[:i] + extra[i + 2:] + ([] if val is None else ["--text", val])
    if "--checkpoint" in extra:
        argv = argv[:argv.index("--checkpoint")] + argv[argv.index("--checkpoint") + 2:]
    rc = run(*argv, *extra)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("promptsep separate: error:")
    assert not (tmp_path / "o").exists(), "nothing is written"
    if "cannot load" not in message:
        assert loads["n"] == 0, "reported before any model was loaded"


def test_destination_problems_are_reported_before_loading(ckpt, inputs, tmp_path, capsys, loads):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert run("separate", inputs / "a.wav", "--text", "tone", "--checkpoint", ckpt, "-o", afile) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert run("separate", inputs / "a.wav", "--text", "tone", "--checkpoint", ckpt, "-o", afile / "sub") == 2
    assert "is a file" in capsys.readouterr().err
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert run("separate", inputs / "a.wav", "--text", "tone", "--checkpoint", ckpt, "-o", ro / "out") == 2
        assert "permission denied" in capsys.readouterr().err
    assert run("separate", tmp_path / "missing.wav", "--text", "tone", "--checkpoint", ckpt, "-o", tmp_path / "o") == 2
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "junk.wav").write_bytes(b"not audio" * 20)
    assert run("separate", tmp_path / "junk.wav", "--text", "tone", "--checkpoint", ckpt, "-o", tmp_path / "o") == 2
    assert "cannot read audio file" in capsys.readouterr().err
    assert loads["n"] == 0


def test_span_with_a_minus_sign_as_the_readme_writes_it(ckpt, inputs, tmp_path):
    out = tmp_path / "out"
    assert run("separate", inputs / "b.flac", "--text", "tone", "--span", "+0.1:0.4", "--span", "-0.5:1",
               "--checkpoint", ckpt, "-o", out) == 0
    comment = sf.SoundFile(str(out / "b" / "target.wav")).copy_metadata()["comment"]
    assert "spans=+0.1:0.4,-0.5:1" in comment


def test_candidates_without_ranker_pick_a_ranker_or_refuse(ckpt, model, inputs, tmp_path, capsys):
    from separation.separator import Separator

    # span prompt only: ranked by span activity, the same stem as the API with ranker="activity"
    out = tmp_path / "out"
    assert run("separate", inputs / "b.flac", "--span", "+0.1:0.4", "--candidates", "4", "--checkpoint", ckpt,
               "--refine", "none", "-o", out, "--float32") == 0
    got, _ = sf.read(out / "b" / "target.wav", dtype="float32")
    sep = Separator.from_pretrained(ckpt)
    wav, sr = sf.read(inputs / "b.flac", dtype="float32")
    ranked = sep.separate(wav, sr, spans=["+0.1:0.4"], candidates=4, ranker="activity", refine="none")
    first = sep.separate(wav, sr, spans=["+0.1:0.4"], candidates=1, refine="none")
    assert ranked.info["candidate_scores"] is not None
    best = int(np.argmax(ranked.info["candidate_scores"]))
    np.testing.assert_allclose(got, ranked.target[0].numpy(), atol=1e-6)
    if best != 0:
        assert not np.allclose(got, first.target[0].numpy(), atol=1e-6)
    # a video-only prompt has nothing to rank candidates by: refused (before loading)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    assert run("separate", inputs / "b.flac", "--video", video, "--box", "1,1,5,5", "--candidates", "3",
               "--checkpoint", ckpt, "-o", tmp_path / "v") == 2
    assert "needs a way to rank them" in capsys.readouterr().err


def test_non_finite_output_is_never_written_and_exits_non_zero(model, inputs, tmp_path, capsys):
    import copy

    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.dit.out_proj.weight[0, 0] = float("nan")  # a damaged weight
    ck = broken.save_pretrained(tmp_path / "nan")
    out = tmp_path / "out"
    rc = run("separate", inputs / "a.wav", inputs / "b.flac", "--text", "tone", "--checkpoint", ck, "-o", out)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "NaN/Inf" in err and "nothing" in err and "Traceback" not in err
    assert not list(out.rglob("*.wav")) if out.exists() else True


def test_one_bad_input_does_not_stop_the_others(ckpt, inputs, tmp_path, capsys):
    bad = tmp_path / "nan.wav"
    x = np.full(16000, 0.1, np.float32)
    x[100] = np.nan
    sf.write(bad, x, 16000, subtype="FLOAT")  # readable header, NaN samples
    out = tmp_path / "out"
    assert run("separate", bad, inputs / "b.flac", "--text", "tone", "--checkpoint", ckpt, "-o", out) == 1
    err = capsys.readouterr().err
    assert "nan.wav" in err and "1 of 2 input(s) failed" in err
    assert (out / "b" / "target.wav").is_file() and not (out / "nan").exists()


def _broken_releases(tmp_path):
    bad_json = tmp_path / "bad_json"
    bad_json.mkdir()
    (bad_json / "config.json").write_text('{"kind": ')
    (bad_json / "model.safetensors").write_bytes((SHIPPED / "model.safetensors").read_bytes()[:4096])
    bad_st = tmp_path / "bad_st"
    bad_st.mkdir()
    (bad_st / "config.json").write_text((SHIPPED / "config.json").read_text())
    (bad_st / "model.safetensors").write_bytes(b"\x00" * 64)
    return bad_json, bad_st


def test_broken_release_is_a_clean_error_in_separate_and_info(inputs, tmp_path, capsys):
    for rel in _broken_releases(tmp_path):
        assert run("separate", inputs / "a.wav", "--text", "tone", "--checkpoint", rel, "-o", tmp_path / "o") == 2
        err = capsys.readouterr().err
        assert "cannot load the separator" in err and "Traceback" not in err, err
        assert run("info", rel) == 2
        err = capsys.readouterr().err
        assert err.startswith("promptsep info: error:") and "Traceback" not in err, err


def test_info_shows_summary_labels_sampling_and_quality(capsys):
    assert run("info", SHIPPED) == 0
    out = capsys.readouterr().out
    assert "The first separator release; the default until promptsep-v2" in out
    assert "recommended sampling: euler, 1 step(s)" in out
    assert "labels it was trained on (70" in out and "woman speaking" in out and "dog barking" not in out
    assert "video prompt: -0.2 dB" in out and "Video prompts do not help yet" in out
    assert "up to 8000 Hz" in out
    assert run("info", SHIPPED, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sampling"]["steps"] == 1 and len(info["labels"]) == 70


def test_info_without_a_folder_describes_the_shipped_default(capsys):
    """`promptsep info` alone is the default release, promptsep-v2: its card, 86 labels, its video figure."""
    assert run("info") == 0
    out = capsys.readouterr().out
    assert out.startswith("promptsep-v2 (") and "The default separator" in out
    assert "labels it was trained on (86" in out and "dog barking" in out
    assert "video prompt: +4.7 dB" in out and "recommended sampling: euler, 1 step(s)" in out


def test_version_help_and_unknown_commands(capsys):
    assert run("--version") == 0
    assert capsys.readouterr().out.startswith("promptsep ")
    assert run("--help") == 0
    help_text = capsys.readouterr().out
    assert "separate" in help_text and "``" not in help_text and "::" not in help_text
    assert run("separate", "--help") == 0
    sub_help = capsys.readouterr().out
    assert "--overwrite" in sub_help and "{stem}/{kind}.{ext}" in sub_help
    assert not any(m in sub_help for m in ("`", "{{", "**", "::"))
    assert run("separat", "x.wav") == 2
    err = capsys.readouterr().err
    assert "unknown command 'separat'" in err and "did you mean 'separate'" in err
    assert run("frobnicate") == 2


def test_quiet_by_default_and_verbose_on_request(ckpt, inputs, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", CLI_MODULE]
    args = ["separate", str(inputs / "b.flac"), "--text", "tone", "--checkpoint", ckpt]
    q = subprocess.run(base + args + ["-o", str(tmp_path / "q")], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=300)
    assert q.returncode == 0, q.stderr
    assert q.stderr.strip() == "", q.stderr  # no INFO lines, no open_clip chatter, no progress bars
    assert q.stdout.strip().endswith("residual.wav")
    v = subprocess.run(base + ["-v"] + args + ["-o", str(tmp_path / "v")], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert v.returncode == 0 and "INFO" in v.stderr, v.stderr
    assert "chunk" in v.stderr  # -v shows the progress bar over generation chunks
    assert "video encoder" not in v.stderr  # no video prompt: the open_clip tower is never built


def test_video_problems_are_reported_before_loading(ckpt, inputs, tmp_path, capsys, loads):
    pytest.importorskip("av")
    from tests.test_demo import _write_video

    short = tmp_path / "short.mp4"
    _write_video(short, seconds=0.5, fps=10, width=64, height=48)
    assert run("separate", inputs / "b.flac", "--text", "tone", "--video", short, "--box", "4,4,40,40",
               "--checkpoint", ckpt, "-o", tmp_path / "o") == 2
    assert "shorter than the 1.00 s audio" in capsys.readouterr().err
    assert run("separate", inputs / "b.flac", "--video", short, "--checkpoint", ckpt, "-o", tmp_path / "o") == 2
    assert "--video needs --box" in capsys.readouterr().err
    assert loads["n"] == 0
    ok = tmp_path / "ok.mp4"
    _write_video(ok, seconds=1.2, fps=10, width=64, height=48)
    assert run("separate", inputs / "b.flac", "--text", "tone", "--video", ok, "--box", "4,4,40,40",
               "--checkpoint", ckpt, "-o", tmp_path / "o") == 0
    assert (tmp_path / "o" / "b" / "target.wav").is_file() and loads["n"] == 1


def test_judge_command_reports_broken_releases_and_devices_cleanly(inputs, tmp_path, capsys):
    for rel in _broken_releases(tmp_path):
        assert run("judge", inputs / "b.flac", inputs / "b.flac", "--text", "tone", "--checkpoint", rel) == 2
        err = capsys.readouterr().err
        assert err.startswith("promptsep judge: error: cannot load the judge") and "Traceback" not in err, err
    assert run("judge", inputs / "b.flac", inputs / "b.flac", "--text", "tone", "--device", "tpu9") == 2
    assert "unknown device 'tpu9'" in capsys.readouterr().err


@pytest.mark.skipif(not (ROOT / "checkpoints" / "promptsep-judge-tiny" / "model.safetensors").is_file(),
                    reason="shipped judge not in this checkout")
def test_candidates_with_text_are_ranked_by_the_shipped_judge(ckpt, inputs, tmp_path, capsys):
    from judge.model import Judge
    from separation.separator import Separator

    out = tmp_path / "out"
    assert run("separate", inputs / "b.flac", "--text", "tone", "--candidates", "3", "--refine", "none",
               "--float32", "--checkpoint", ckpt, "-o", out) == 0
    got, _ = sf.read(out / "b" / "target.wav", dtype="float32")
    judge = Judge.from_pretrained(str(ROOT / "checkpoints" / "promptsep-judge-tiny"))
    sep = Separator.from_pretrained(ckpt, judge=judge)
    wav, sr = sf.read(inputs / "b.flac", dtype="float32")
    ranked = sep.separate(wav, sr, text="tone", candidates=3, ranker="judge", refine="none")
    assert len(ranked.info["candidate_scores"]) == 3
    np.testing.assert_allclose(got, ranked.target[0].numpy(), atol=1e-6)
    # --variants with a label's prompt: the candidates take its other wordings (default: the text as given)
    assert run("separate", inputs / "b.flac", "--text", "acoustic guitar", "--candidates", "3", "--json",
               "--variants", "--checkpoint", ckpt, "-o", tmp_path / "v") == 0
    texts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["candidate_texts"]
    assert texts[0] == "acoustic guitar" and len(set(texts)) == 3
    assert run("separate", inputs / "b.flac", "--text", "acoustic guitar", "--candidates", "3", "--json",
               "--checkpoint", ckpt, "-o", tmp_path / "nv") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["candidate_texts"] == ["acoustic guitar"] * 3
    if int(np.argmax(ranked.info["candidate_scores"])) != 0:  # not simply the first draw
        first = sep.separate(wav, sr, text="tone", candidates=1, refine="none")
        assert not np.allclose(got, first.target[0].numpy(), atol=1e-6)


def test_files_are_streamed_and_the_input_cap_applies_only_in_memory(ckpt, inputs, tmp_path, capsys, monkeypatch):
    """One candidate: the CLI streams each file (Separator.separate_file), with no size cap; --candidates K
    reads the file whole and --max-input-mb limits that."""
    from separation.separator import Separator

    def no_whole_file(*a, **k):
        raise AssertionError("the in-memory path was used for a file")

    with monkeypatch.context() as m:
        m.setattr(Separator, "separate", no_whole_file)
        assert run("separate", inputs / "a.wav", "--text", "tone", "--span", "+0:0.5", "--checkpoint", ckpt,
                   "-o", tmp_path / "s", "--max-input-mb", "0.01") == 0
    t, sr = sf.read(tmp_path / "s" / "a" / "target.wav", always_2d=True)
    r, _ = sf.read(tmp_path / "s" / "a" / "residual.wav", always_2d=True)
    x, _ = sf.read(inputs / "a.wav", always_2d=True)
    assert sr == 22050 and t.shape == x.shape and np.abs(t + r - x).max() < 2e-4  # 16-bit stems add up
    capsys.readouterr()
    assert run("separate", inputs / "a.wav", "--span", "+0:0.5", "--candidates", "2", "--checkpoint", ckpt,
               "-o", tmp_path / "k", "--max-input-mb", "0.01") == 1
    assert "limit" in capsys.readouterr().err
    assert run("separate", inputs / "a.wav", "--span", "+0:0.5", "--candidates", "2", "--checkpoint", ckpt,
               "-o", tmp_path / "k2") == 0
