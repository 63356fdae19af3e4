"""The wheel built by ``pip wheel .`` works outside the checkout, with the shipped model inside it.

A fresh venv gets the wheel (``--no-deps``); its third-party dependencies come from the running
interpreter's site-packages through a plain path entry (no ``.pth`` of that environment runs,
so no editable install of the checkout leaks in). The commands run from a folder outside the
checkout and must import promptsep, separation ... from the installed wheel.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so the build leaves no build/ or *.egg-info in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "outputs",
                                                             "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheel = next((tmp / "dist").glob("promptsep-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "zz_deps.pth").write_text("\n".join(deps) + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    work = tmp / "outside"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROMPTSEP_CHECKPOINTS")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env_dir, work, env


def test_wheel_runs_outside_the_checkout(installed):
    env_dir, work, env = installed
    py, exe = env_dir / "bin" / "python", env_dir / "bin" / "promptsep"
    r = subprocess.run([str(py), "-c", "import promptsep, separation, promptsep.release as r; "
                        "print(promptsep.__file__); print(separation.__file__); print(r.packaged_checkpoint('promptsep-tiny'))"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.split():
        assert str(ROOT) not in line and str(env_dir) in line, r.stdout
    r = subprocess.run([str(py), "-m", "promptsep", "--help"], cwd=work, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "usage: promptsep" in r.stdout and "separate IN" in r.stdout, r.stderr
    t = np.arange(16000) / 16000
    sf.write(work / "in.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    r = subprocess.run([str(exe), "separate", "in.wav", "--text", "a steady tone", "--steps", "2", "--out-dir", "out"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    wav, sr = sf.read(work / "out" / "in" / "target.wav")
    assert sr == 16000 and len(wav) == 16000 and np.isfinite(wav).all()


def test_wheel_carries_the_tooling_configs_and_examples(installed):
    """``promptsep data build`` (corpus_build), the configs with their ``${packaged:...}`` defaults
    and the demo's bundled examples all come from the installed wheel."""
    env_dir, work, env = installed
    py, exe = env_dir / "bin" / "python", env_dir / "bin" / "promptsep"
    code = ("import corpus_build.build, demo.app, promptsep.release as r\n"
            "from hydra import compose, initialize_config_dir\n"
            "with initialize_config_dir(config_dir=str(r.config_dir()), version_base='1.3'):\n"
            "    print(compose(config_name='bench').checkpoint)\n"
            "print(corpus_build.build.__file__)\n"
            "print(demo.app.DEFAULT_EXAMPLES / 'examples.json')\n")
    r = subprocess.run([str(py), "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt, build, examples = r.stdout.split()[-3:]
    for p in (ckpt, build, examples):
        assert str(ROOT) not in p and str(env_dir) in p, r.stdout
    assert (Path(ckpt) / "model.safetensors").is_file() and Path(examples).is_file()
    r = subprocess.run([str(exe), "data", "build", "--help"], cwd=work, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "--out" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
