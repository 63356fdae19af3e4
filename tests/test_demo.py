"""The Gradio demo, served on localhost and driven by the real gradio_client and a headless Chromium.

One app (tiny random separator + tiny random judge) serves every test of the module.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import tiny_model_config

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

SR = 16000
SCORE_KEYS = {"precision", "recall", "faithfulness", "overall"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_judge():
    from judge.model import JudgeConfig, build_judge
    from prompts.text import TextEncoderConfig

    cfg = JudgeConfig(codec=tiny_model_config().codec, text=TextEncoderConfig(kind="tiny_t5"), width=32, heads=2,
                      depth_audio=1, depth_fusion=1, bands=4, dropout=0.0)
    return build_judge(cfg).eval()


@pytest.fixture(scope="module")
def examples_dir(tiny_corpus, tmp_path_factory):
    """Examples made by examples/make_examples.py from the generated test corpus."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("make_examples", os.path.join(root, "examples", "make_examples.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("examples")
    assert mod.main(["--corpus", tiny_corpus, "--out", str(out), "--count", "2", "--min-seconds", "1"]) == 0
    return out


def test_make_examples(examples_dir):
    import json

    index = json.loads((examples_dir / "examples.json").read_text())
    assert len(index) == 2
    for e in index:
        data, sr = sf.read(examples_dir / e["file"])
        assert sr == 16000 and data.ndim == 1 and len(data) <= 8 * sr and (examples_dir / e["file"]).stat().st_size < 300_000
        assert e["target"]["category"] != e["interferer"]["category"] and e["text"]
        assert e["target"]["id"].split("_")[-1] in ("0", "1", "2", "3")  # train clips of the test corpus
    readme = (examples_dir / "README.md").read_text()
    assert all(e["file"] in readme for e in index) and "CC0-1.0" in readme


class _Counting:
    """A separator that counts its ``separate`` calls (everything else is the wrapped one's)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def separate(self, *args, **kwargs):
        self.calls += 1
        return self.inner.separate(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def app(examples_dir):
    """(demo, url) of the app on a free localhost port; closed and cleaned after the module."""
    from demo.app import build_demo, close_demo, launch_demo
    from demo.core import DemoConfig
    from separation.model import build_separation_model
    from separation.separator import Separator

    torch.manual_seed(0)
    model = build_separation_model(tiny_model_config()).eval()
    judge = _tiny_judge()
    sep = Separator(model, judge=judge)
    cfg = DemoConfig(max_file_mb=1.0, max_duration_s=10.0, max_video_duration_s=5.0, concurrency_limit=2,
                     default_steps=2, max_batch_files=4)
    torch.manual_seed(1)
    video_sep = _Counting(Separator(build_separation_model(tiny_model_config()).eval(), judge=judge))
    demo = build_demo(sep, judge, cfg, examples_dir=examples_dir, checkpoint="tiny-random",
                      video_separator=video_sep, video_checkpoint="tiny-random-video")
    demo.video_separator_for_tests = video_sep
    launch_demo(demo, host="127.0.0.1", port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield demo, demo.local_url
    root = demo.promptsep_workspace.root
    close_demo(demo)
    assert not root.exists(), "the demo's temporary folder is removed on close"


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app[1], verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Input files: mono 16 kHz, stereo 22.05 kHz, unreadable, empty, too long, too big."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    t = np.arange(int(1.2 * SR)) / SR
    mono = (0.4 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)
    sf.write(d / "mono.wav", mono, SR)
    sr2 = 22050
    stereo = (0.2 * rng.standard_normal((int(0.8 * sr2), 2))).astype(np.float32)
    sf.write(d / "stereo.wav", stereo, sr2)
    (d / "broken.wav").write_bytes(b"this is not audio at all" * 10)
    sf.write(d / "empty.wav", np.zeros(0, np.float32), SR)
    sf.write(d / "long.wav", (0.1 * rng.standard_normal(int(12 * 8000))).astype(np.float32), 8000)  # 12 s
    sf.write(d / "big.wav", (0.1 * rng.standard_normal(int(40 * SR))).astype(np.float32), SR, subtype="FLOAT")  # 2.4 MB
    _write_video(d / "clip.mp4", seconds=1.5, fps=10, width=64, height=48)
    return d


def _write_video(path, seconds: float, fps: int, width: int, height: int) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((height, width, 3), 40, np.uint8)
            x = (3 * i) % (width - 16)
            img[12:36, x : x + 16] = (250, 200, 30)  # a moving yellow block
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def _spans(*rows):
    return {"headers": ["sign (+/-)", "start (s)", "end (s)"], "data": [list(r) for r in rows] or [["", None, None]]}


def _call(client, audio, text="", spans=(), video=None, box=(None, None, None, None), candidates=1, steps=2):
    from gradio_client import handle_file

    return client.predict(
        audio=None if audio is None else handle_file(str(audio)), text=text, span_table=_spans(*spans),
        video=None if video is None else handle_file(str(video)),
        x0=box[0], y0=box[1], x1=box[2], y1=box[3], mask=None,
        steps=steps, guidance=1.0, candidates=candidates, method="midpoint", seed=0, api_name="/separate",
    )


def _check_result(out, ref_path, scored: bool):
    target, residual, downloads, scores, timing, spec_mix, spec_tgt, spec_res, wave = out
    ref, ref_sr = sf.read(str(ref_path), always_2d=True)
    for p in (target, residual):
        data, sr = sf.read(p, always_2d=True)
        assert sr == ref_sr and data.shape == ref.shape, (p, data.shape, ref.shape)
        assert np.isfinite(data).all()
    stem = os.path.splitext(os.path.basename(str(ref_path)))[0]
    assert len(downloads) == 2 and {os.path.basename(p) for p in downloads} == {f"{stem}_target.wav", f"{stem}_residual.wav"}
    if scored:
        assert set(scores) == SCORE_KEYS and all(1.0 <= scores[k] <= 5.0 for k in SCORE_KEYS), scores
    assert timing.startswith("Separated") and "real time" in timing
    from PIL import Image

    for img in (spec_mix, spec_tgt, spec_res, wave):
        w, h = Image.open(img).size
        assert w > 300 and h > 100


def test_text_prompt_stereo_any_rate(client, files):
    out = _call(client, files / "stereo.wav", text="dog barking")
    _check_result(out, files / "stereo.wav", scored=True)


def test_span_prompt(client, files):
    out = _call(client, files / "mono.wav", spans=[("+", 0.1, 0.5), ("-", 0.7, 1.2)], candidates=2)
    _check_result(out, files / "mono.wav", scored=False)
    assert "text prompt" in out[3]["judge"]  # span-only: the judge needs text, and says so


def test_video_prompt_with_box(client, files):
    out = _call(client, files / "mono.wav", text="the yellow block", video=files / "clip.mp4", box=(5, 10, 40, 40))
    _check_result(out, files / "mono.wav", scored=True)


def test_video_requests_go_to_the_video_release(app, client, files):
    """With a second separator loaded for video (`--video-checkpoint`), a request with a video
    prompt is separated by it, and one without a video prompt by the page's main separator."""
    video_sep = app[0].video_separator_for_tests
    before = video_sep.calls
    _call(client, files / "mono.wav", text="the yellow block", video=files / "clip.mp4", box=(5, 10, 40, 40))
    assert video_sep.calls == before + 1
    _call(client, files / "mono.wav", text="piano")
    assert video_sep.calls == before + 1


def test_video_without_audio_separates_its_sound_track(client, tmp_path):
    """As ``promptsep separate clip.mp4 --box``: no audio file, the video's own sound is the input."""
    from promptsep.audio import load_audio_track
    from tests.test_video_files import _available, write_clip

    if not _available("mp4"):
        pytest.skip("PyAV here has no H.264/AAC encoder")
    write_clip(tmp_path / "talking.mp4", "mp4", video_s=1.2, audio_s=1.0)
    target, residual, downloads, *_ = _call(client, None, video=tmp_path / "talking.mp4", box=(10, 20, 50, 60))
    wav, sr = load_audio_track(tmp_path / "talking.mp4")
    data, rate = sf.read(target, always_2d=True)
    assert rate == sr and data.shape == tuple(wav.T.shape) and np.isfinite(data).all()
    assert {os.path.basename(p) for p in downloads} == {"talking_target.wav", "talking_residual.wav"}


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("broken.wav", {"text": "dog"}, "cannot read audio file"),
        ("empty.wav", {"text": "dog"}, "empty"),
        ("long.wav", {"text": "dog"}, "over the 10 s limit"),
        ("mono.wav", {}, "give a prompt"),
        ("mono.wav", {"spans": [("+", 0.5, 3.5)]}, "past the end"),
        ("mono.wav", {"spans": [("x", 0.1, 0.5)]}, "sign must be"),
        ("mono.wav", {"text": "dog", "video": "clip.mp4"}, "needs a box"),
        ("mono.wav", {"text": "dog", "video": "clip.mp4", "box": (10, 10, 400, 40)}, "outside"),
    ],
)
def test_bad_input_is_a_clear_error_and_the_app_keeps_serving(client, files, name, kwargs, message):
    if "video" in kwargs:
        kwargs = {**kwargs, "video": files / kwargs["video"]}
    with pytest.raises(Exception) as info:
        _call(client, files / name, **kwargs)
    assert message in str(info.value), str(info.value)
    assert "Traceback" not in str(info.value) and "/tmp/" not in str(info.value)


def test_oversized_upload_is_refused_then_good_request_succeeds(app, client, files):
    assert (files / "big.wav").stat().st_size > 1024 * 1024
    with pytest.raises(Exception) as info:
        _call(client, files / "big.wav", text="dog")
    assert "size" in str(info.value).lower() or "limit" in str(info.value).lower(), str(info.value)
    import httpx  # the server refuses it too, not only the client

    with open(files / "big.wav", "rb") as f:
        r = httpx.post(app[1] + "gradio_api/upload", files={"files": ("big.wav", f, "audio/wav")}, timeout=30)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    out = _call(client, files / "mono.wav", text="piano")
    _check_result(out, files / "mono.wav", scored=True)


def test_concurrent_requests_all_complete(app, files):
    from gradio_client import Client

    results, errors = [], []

    def work(i):
        try:
            c = Client(app[1], verbose=False)
            results.append(_call(c, files / "mono.wav", text=f"sound {i}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == 3
    for out in results:
        _check_result(out, files / "mono.wav", scored=True)
    # Same mixture, so the same mixture picture: the files still differ (request id in the
    # metadata), else Gradio's content-addressed cache serves one file to all three.
    import hashlib

    digests = {hashlib.sha1(open(out[5], "rb").read()).hexdigest() for out in results}
    assert len(digests) == 3
    comments = sorted(sf.SoundFile(out[0]).copy_metadata().get("comment", "") for out in results)
    assert [c.startswith("target; promptsep request ") for c in comments] == [True] * 3
    assert all(any(f"text='sound {i}'" in c for c in comments) for i in range(3)), comments


def test_batch_zip_and_csv(client, files):
    from gradio_client import handle_file

    job = client.submit(
        files=[handle_file(str(files / n)) for n in ("mono.wav", "stereo.wav", "broken.wav")],
        text="dog barking", steps=2, candidates=1, api_name="/batch",
    )
    zip_path, csv_path, table = job.result(timeout=120)
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        assert {"mono/target.wav", "mono/residual.wav", "stereo/target.wav", "stereo/residual.wav", "scores.csv"} <= names
        data, sr = sf.read(io.BytesIO(z.read("stereo/target.wav")), always_2d=True)
        assert sr == 22050 and data.shape == (int(0.8 * 22050), 2)
    with open(csv_path) as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"mono.wav", "stereo.wav", "broken.wav"}
    for name in ("mono.wav", "stereo.wav"):
        assert rows[name]["error"] == "" and 1.0 <= float(rows[name]["overall"]) <= 5.0
    assert "cannot read" in rows["broken.wav"]["error"]
    assert table["headers"][:2] == ["file", "duration_s"]


def test_batch_without_prompt_is_an_error(client, files):
    from gradio_client import handle_file

    with pytest.raises(Exception, match="text prompt"):
        client.predict(files=[handle_file(str(files / "mono.wav"))], text=" ", steps=2, candidates=1, api_name="/batch")


def test_ui_helpers_preview_video_click_box_and_draw_spans(app, files):
    """The browser-only events (video preview, box clicks, span drawing) on the served app's own handlers."""
    import gradio as gr

    fns = {f.name: f.fn for f in app[0].fns.values()}
    frame, state, hint = fns["video_preview"](str(files / "clip.mp4"))
    assert frame.shape == (48, 64, 3) and "64x48" in hint
    img, corner, *box = fns["click_corner"](state, None, gr.SelectData(None, {"index": [40, 30], "value": None}))
    assert corner == (40, 30) and all(isinstance(b, type(gr.skip())) for b in box)
    img, corner, *box = fns["click_corner"](state, corner, gr.SelectData(None, {"index": [5, 10], "value": None}))
    assert corner is None and box == [5, 10, 41, 31] and img.shape == frame.shape
    assert not np.array_equal(img, frame)  # the box is drawn
    table = fns["add_span"](_spans(), "+", 0.2, 0.6)
    assert table["data"] == [["+", 0.2, 0.6]]
    wave = fns["draw_waveform"](str(files / "mono.wav"), table)
    assert wave.ndim == 3 and wave.shape[1] > 500


def test_span_table_and_box_parsing():
    from demo.core import order_box, parse_box, parse_span_table
    from promptsep.errors import PromptError, VideoError

    table = {"data": [["+", 0.5, 1.0], ["", None, None], ["minus", "1.5", "2"]]}
    assert parse_span_table(table, 2.0) == [("+", 0.5, 1.0), ("-", 1.5, 2.0)]
    with pytest.raises(PromptError, match="row 1"):
        parse_span_table([["+", 1.0, 0.5]], 2.0)
    assert parse_box(None, None, None, None) is None
    assert parse_box(1, 2.4, 30, 40) == (1, 2, 30, 40)
    with pytest.raises(VideoError, match="all four"):
        parse_box(1, None, 3, 4)
    assert order_box((30, 40), (10, 5)) == (10, 5, 31, 41)


def test_workspace_prunes_old_request_folders(tmp_path):
    from demo.core import Workspace

    ws = Workspace(keep_s=60, root=tmp_path)
    old = ws.request_dir()
    (old / "x.wav").write_bytes(b"0")
    os.utime(old, (time.time() - 120, time.time() - 120))
    new = ws.request_dir()  # prunes the old one
    assert not old.exists() and new.exists()
    ws.close()
    assert not ws.root.exists()


def test_import_is_light():
    code = "import sys, demo.app; bad = [m for m in ('gradio', 'torch', 'matplotlib') if m in sys.modules]; print(bad)"
    out = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.strip() == "[]", out.stdout


CHROMIUM = "/usr/bin/chromium"


def _chromium(url, tmp_path, *extra, timeout=90):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1280,1600",
           "--virtual-time-budget=15000", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="headless Chromium not installed (apt-get install chromium)")
def test_browser_renders_the_prompt_controls(app, tmp_path):
    shot = tmp_path / "demo.png"
    res = _chromium(app[1], tmp_path, f"--screenshot={shot}", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    html = res.stdout
    for elem in ("ps-audio", "ps-text", "ps-spans", "ps-waveform", "ps-run", "ps-target", "ps-residual", "ps-scores"):
        assert f'id="{elem}"' in html, f"{elem} missing from the rendered page"
    assert "Text prompt" in html and "Time spans" in html and "Video prompt" in html and "Examples" in html
    assert shot.is_file(), "no screenshot written"
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (1600, 1280) and img.std() > 5, "the screenshot is blank"
    keep = os.environ.get("PROMPTSEP_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, os.path.join(keep, "demo.png"))


def test_launcher_reports_a_missing_checkpoint(capsys, tmp_path):
    from demo.app import main

    assert main(["--checkpoint", str(tmp_path / "nope"), "--no-judge"]) == 2
    assert "cannot load the models" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"kind": "promptsep_separator", "format_version": 1, "config": {}}')
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    assert main(["--checkpoint", str(broken), "--no-judge"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the models" in err and "Traceback" not in err


def test_span_table_none_through_the_api(client, files):
    from gradio_client import handle_file

    out = client.predict(
        audio=handle_file(str(files / "mono.wav")), text="piano", span_table=None, video=None,
        x0=None, y0=None, x1=None, y1=None, mask=None, steps=2, guidance=1.0, candidates=1, method="midpoint",
        seed=0, api_name="/separate",
    )
    _check_result(out, files / "mono.wav", scored=True)


def test_about_tab_shows_the_model_card_figures_not_server_paths():
    from demo.app import DEFAULT_CHECKPOINT, DEFAULT_JUDGE, model_summary, video_note
    from demo.core import DemoConfig

    class _Sep:  # what the About tab reads of a loaded separator
        sample_rate = 16000

        @staticmethod
        def sampling():
            return 1, "euler"

    text = model_summary(_Sep(), object(), DemoConfig(), str(DEFAULT_CHECKPOINT), str(DEFAULT_JUDGE))
    assert "**promptsep-v2**: " in text and "promptsep-judge-tiny" in text
    assert str(DEFAULT_CHECKPOINT.parent) not in text and "/tmp" not in text
    assert "Recommended sampling: euler, 1 step(s)" in text
    card = json.loads((DEFAULT_CHECKPOINT / "bench_card_test.json").read_text())["pair_cross"]["text"]
    st = card["separator_si_sdri"]  # the model card's pair_cross text figure
    assert f"{st['mean']:+.1f} dB [{st['lo']:+.1f}, {st['hi']:+.1f}]" in text
    assert "3.37 M parameters in the release" in text and "dit 3.34 M" in text
    assert "woman speaking" in text and "86 labels" in text
    note = video_note(str(DEFAULT_CHECKPOINT))
    assert "This model's video prompts" in note and "+4.7 dB" in note
    assert "not measured" in video_note("tiny-random")  # no release folder: no figure to show


def test_score_markdown_is_labelled_numbers():
    from demo.core import SCORE_FIELDS, score_markdown

    md = score_markdown({"precision": 3.5, "recall": 2.25, "faithfulness": 4.0, "overall": 3.123}, True, True)
    for k in SCORE_FIELDS:
        assert f"**{k}: " in md
    assert "**overall: 3.12**" in md and "1 = poor, 5 = excellent" in md and "{" not in md
    assert "no judge loaded" in score_markdown(None, False, True)
    assert "needs a text prompt" in score_markdown(None, True, False)


SHOTS = os.environ.get("PROMPTSEP_SCREENSHOT_DIR")


def _driver(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1900",
              f"--user-data-dir={tmp_path / 'selenium-profile'}", "--disable-background-networking"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def drive_error_keeps_results(url, audio_path, text, shots_dir=None, timeout=240):
    """In a real browser: separate ``audio_path`` with ``text``, then run again without a prompt.

    Returns a dict of what the page showed after each step (texts of the result panels).
    """
    import tempfile
    from pathlib import Path

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    seen = {}
    with tempfile.TemporaryDirectory() as td:
        drv = _driver(Path(td))
        try:
            drv.get(url)
            wait = WebDriverWait(drv, timeout)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ps-audio input[type=file]"))
            drv.find_element(By.CSS_SELECTOR, "#ps-audio input[type=file]").send_keys(str(audio_path))
            box = drv.find_element(By.CSS_SELECTOR, "#ps-text textarea, #ps-text input")
            box.send_keys(text)
            time.sleep(1.0)
            drv.find_element(By.CSS_SELECTOR, "#ps-run").click()
            wait.until(lambda d: "overall" in d.find_element(By.ID, "ps-scores").text)
            wait.until(lambda d: "Separated" in d.find_element(By.ID, "ps-timing").text)
            time.sleep(1.0)
            seen["before"] = {k: drv.find_element(By.ID, k).text for k in ("ps-scores", "ps-timing", "ps-target", "ps-downloads")}
            if shots_dir:
                drv.save_screenshot(str(Path(shots_dir) / "demo_1_result.png"))
            box = drv.find_element(By.CSS_SELECTOR, "#ps-text textarea, #ps-text input")
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(Keys.BACKSPACE)
            time.sleep(0.5)
            drv.find_element(By.CSS_SELECTOR, "#ps-run").click()
            wait.until(lambda d: d.find_elements(By.ID, "ps-status") and "Error" in d.find_element(By.ID, "ps-status").text)
            time.sleep(1.5)
            seen["after"] = {k: drv.find_element(By.ID, k).text for k in ("ps-scores", "ps-timing", "ps-target", "ps-downloads", "ps-status", "ps-waveform")}
            seen["target_audio_after"] = len(drv.find_elements(By.CSS_SELECTOR, "#ps-target audio, #ps-target [data-testid='waveform-controls'], #ps-target button"))
            if shots_dir:
                drv.execute_script("document.getElementById('ps-status').scrollIntoView({block: 'center'})")
                time.sleep(0.3)
                drv.save_screenshot(str(Path(shots_dir) / "demo_2_after_error.png"))
        finally:
            drv.quit()
    return seen


@pytest.mark.skipif(not os.path.exists(CHROMIUM) or not os.path.exists("/usr/bin/chromedriver"),
                    reason="headless Chromium + chromedriver not installed (apt-get install chromium chromium-driver)")
def test_browser_error_keeps_earlier_results_and_scores_are_labelled(app, files):
    pytest.importorskip("selenium")
    seen = drive_error_keeps_results(app[1], files / "mono.wav", "piano", shots_dir=SHOTS)
    before, after = seen["before"], seen["after"]
    for k in SCORE_KEYS:  # labelled numbers, not raw JSON
        assert k in before["ps-scores"]
    assert "{" not in before["ps-scores"] and "1 = poor, 5 = excellent" in before["ps-scores"]
    import re

    assert len(re.findall(r"\b[1-5]\.\d\d\b", before["ps-scores"])) == 4, before["ps-scores"]
    # the error is shown once, in the status line, and the earlier results stay
    assert "give a prompt" in after["ps-status"]
    assert after["ps-scores"] == before["ps-scores"] and after["ps-timing"] == before["ps-timing"]
    names = after["ps-downloads"].replace("\n", "")
    assert "mono_target.wav" in names and "mono_residual.wav" in names
    for k in ("ps-scores", "ps-timing", "ps-target", "ps-downloads", "ps-waveform"):
        assert "Error" not in after[k], (k, after[k])
    assert seen["target_audio_after"] > 0


def test_batch_table_has_headers_and_steps_label_states_the_recommendation(app):
    from demo.core import BATCH_HEADERS

    comps = {getattr(c, "elem_id", None): c for c in app[0].blocks.values()}
    table = comps["ps-batch-table"]
    assert list(table.headers) == BATCH_HEADERS and BATCH_HEADERS[:2] == ["file", "duration_s"]
    assert "recommends" in comps["ps-steps"].label
