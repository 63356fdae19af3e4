"""Random crops of single corpus clips (codec training and latent statistics)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset


def read_manifest(root: str | Path, split: str | None = None) -> list[dict]:
    """Rows of ``ROOT/manifest.jsonl`` (optionally of one split).

    Raises:
        FileNotFoundError: no manifest (build the corpus with ``promptsep data build``).
    """
    path = Path(root) / "manifest.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no corpus manifest at {path}; build one with `promptsep data build --out {root}`")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if split is None or r["split"] == split]


class ClipCropDataset(Dataset):
    """``segment_s`` crops of corpus clips, item ``i`` a deterministic function of ``(seed, i)``.

    Returns ``[1, N]`` float32 waveforms at the corpus rate, each at a random gain in
    ``gain_db`` (so the codec sees a range of levels).
    """

    def __init__(self, root: str | Path, split: str, segment_s: float, sample_rate: int, length: int,
                 seed: int = 0, gain_db: tuple[float, float] = (-20.0, 0.0)):
        self.root = Path(root)
        self.rows = read_manifest(root, split)
        if not self.rows:
            raise ValueError(f"the {split!r} split of {root} is empty")
        rates = {int(r["sample_rate"]) for r in self.rows}
        if rates != {int(sample_rate)}:
            raise ValueError(f"corpus clips are at {sorted(rates)} Hz, the codec wants {sample_rate} Hz")
        self.n = int(round(segment_s * sample_rate))
        self.length = length
        self.seed = seed
        self.gain_db = gain_db

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, int(i)])
        row = self.rows[int(rng.integers(len(self.rows)))]
        info = sf.info(str(self.root / row["path"]))
        start = int(rng.integers(0, max(1, info.frames - self.n)))
        data, _ = sf.read(str(self.root / row["path"]), start=start, frames=self.n, dtype="float32", always_2d=True)
        wav = np.zeros(self.n, dtype=np.float32)
        wav[: len(data)] = data[:, 0]
        gain = 10 ** (rng.uniform(*self.gain_db) / 20)
        return torch.from_numpy(wav * gain)[None]
