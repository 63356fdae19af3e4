"""Shared fixtures: a tiny corpus of generated real WAV files and tiny model configs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LABELS = {
    "tone": ("instrument", ["tone", "a steady tone"]),
    "noise": ("sfx", ["noise", "hiss"]),
    "chirp": ("sfx", ["chirp", "a rising chirp"]),
    "pulse": ("speech", ["pulse", "pulses"]),
}


def _signal(label: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    if label == "tone":
        x = np.sin(2 * np.pi * rng.uniform(200, 800) * t)
    elif label == "noise":
        x = rng.standard_normal(n) * 0.5
    elif label == "chirp":
        f = rng.uniform(100, 300) + 1500 * t / t[-1]
        x = np.sin(2 * np.pi * np.cumsum(f) / sr)
    else:
        x = np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


def make_corpus(root, sample_rate: int = 16000, per_label: int = 6, seconds: float = 2.0) -> str:
    """Write a tiny corpus (WAVs, manifest.jsonl, labels.json) under ``root``; returns its path."""
    rng = np.random.default_rng(0)
    rows = []
    splits = ["train", "train", "train", "train", "valid", "test"]
    for label, (cat, _) in LABELS.items():
        for k in range(per_label):
            rel = f"clips/{label}_{k}.wav"
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            sf.write(path, _signal(label, int(seconds * sample_rate), sample_rate, rng), sample_rate, subtype="PCM_16")
            rows.append({"id": f"{label}_{k}", "path": rel, "label": label, "category": cat, "source": "generated",
                         "group": f"gen:{label}_{k}", "license": "CC0-1.0", "duration": seconds,
                         "sample_rate": sample_rate, "split": splits[k % len(splits)]})
    with open(os.path.join(root, "manifest.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(root, "labels.json"), "w") as f:
        json.dump({k: {"category": c, "prompts": p} for k, (c, p) in LABELS.items()}, f)
    return str(root)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 24-clip corpus of generated signals with train/valid/test splits."""
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def tiny_model_config(video: bool = True):
    """A seconds-fast separation model config (tiny codec, tiny DiT, tiny T5, tiny ViT)."""
    from prompts.text import TextEncoderConfig
    from prompts.video import VideoEncoderConfig
    from separation.codec import CodecConfig
    from separation.dit import DiTConfig
    from separation.model import SeparationModelConfig

    return SeparationModelConfig(
        codec=CodecConfig(encoder_dim=8, encoder_rates=(4, 8), latent_dim=8, decoder_dim=16, decoder_rates=(8, 4)),
        dit=DiTConfig(width=32, depth=2, heads=2),
        text=TextEncoderConfig(kind="tiny_t5"),
        video=VideoEncoderConfig(image_size=32) if video else None,
    )


def random_tiny_separation_model(video: bool = True, gate: float | None = 0.5):
    """A seeded tiny separation model whose random output is not trivial (for separator/CLI tests).

    The DiT's zero-initialised output layer gets ``N(0, 0.05)`` weights, and the anchor (and
    video) gates, which start closed, are set to ``gate`` (None: left closed).
    """
    import torch

    from separation.model import build_separation_model

    torch.manual_seed(0)
    m = build_separation_model(tiny_model_config(video=video)).eval()
    torch.nn.init.normal_(m.dit.out_proj.weight, std=0.05)
    if gate is not None:
        with torch.no_grad():
            m.dit.anchor_gate.fill_(gate)
            if video:
                m.dit.video_gate.fill_(gate)
    return m


def save_random_release(model, tmp_path_factory) -> str:
    """Fixture body: the ``model`` fixture saved as a release folder; returns its path."""
    return str(model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny"))


def _checkpoint_digests() -> dict[str, str]:
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "checkpoints"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def shipped_checkpoints_untouched():
    """No test may write into the shipped ``checkpoints/`` (a trainer's default export_dir points there)."""
    before = _checkpoint_digests()
    yield
    after = _checkpoint_digests()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"tests changed shipped checkpoint files: {changed}"
