"""Batch separation benchmark: reference metrics, oracle baselines, judge scores, speed.

``run_benchmark(cfg)`` is the plain function (tests call it); ``promptsep bench separation``
(argparse, :func:`main`) and ``python -m bench.separation`` (Hydra, ``conf/bench.yaml``)
are thin wrappers over it.

For every manifest item (see :mod:`bench.manifest`) and every system

- ``mixture``: the mixture itself as the estimate (SI-SDRi = 0 by definition),
- ``oracle_irm``: the ideal ratio mask on the mixture STFT (uses the true target),
- ``oracle_codec``: the true target through the separator's codec (the latent ceiling),
- ``oracle_codec_wiener``: the mixture soft-masked (:meth:`Separator.wiener`, the release's settings)
  with the codec round trips of the true target and residual (the ceiling of the refined output),
- ``separator_nfeK``: the separator with ``K`` function evaluations (several K per run) and
  its default Wiener refinement (``Separator(refine="wiener")``, what users get),
- ``separator_raw_nfeK``: the same generation without refinement (``refine="none"``: the
  decoded generated target, residual = mixture - target),

By default the separator samples as the release recommends (its ``config.json`` ``sampling``:
steps and method, the ones ``promptsep separate`` uses); ``bench.nfe`` / ``bench.method``
override them, and every separator row, ``summary.json`` (``samplers``) and ``report.md`` say
which sampler each system used.

one row is appended to ``results.jsonl`` with SI-SDR, SI-SDRi, SDR (BSS-eval), SNR,
multi-resolution STFT distance, mixture consistency, judge scores (with a judge
checkpoint), wall time and real-time factor; for absent-target items the output energy
relative to the mixture. ``summary.json``, ``report.md`` and PNG plots follow.

Scale and faults:

- Inference is batched (:meth:`Separator.separate_batch`) and runs in Lightning's predict
  loop: ``trainer.devices``/``trainer.strategy=ddp``/``trainer.num_nodes`` shard the
  manifest's batches by rank (rank ``r`` takes batches ``r, r + W, ...``); each rank appends
  to its own part file and rank 0 merges them into ``results.jsonl`` at the end.
- Batches are fixed by the manifest order and ``batch_size``, and the separator's noise
  seed is a function of the batch index, so results do not depend on the number of
  ranks or on resuming.
- Every row is appended durably (flush + fsync). A rerun reads the rows already there,
  skips finished (item, system) pairs and recomputes only what is missing.
- Rows carry a fingerprint of the checkpoint (a SHA-256 of its weights and config), the judge,
  the sampling (method, seed, batching, chunking), the metric settings and the manifest
  (``fingerprint.json`` holds its parts). A rerun into a folder made with anything else is
  refused (:class:`FingerprintMismatchError`) instead of mixing or relabelling rows.
- A system whose output has NaN/Inf samples gets a ``failed`` row with the reason.
- An item that cannot be read (missing or unreadable file, length mismatch, bad prompt)
  gets a ``status: "failed"`` row with the reason; the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.manifest import LoadedItem, load_manifest, read_item
from bench.oracles import codec_round_trip, ideal_ratio_mask
from promptsep.errors import NonFiniteOutputError
from promptsep.release import config_dir
from separation import metrics as M
from separation.refine import REFINE_MODES

logger = logging.getLogger(__name__)

CONF_DIR = str(config_dir())
BASELINES = ("mixture", "oracle_irm", "oracle_codec", "oracle_codec_wiener")


def separator_system(nfe: int, refine: str = "wiener") -> str:
    """System name of the separator at ``nfe`` evaluations: ``separator_nfeK`` (Wiener-refined,
    the default output) or ``separator_raw_nfeK`` (``refine="none"``)."""
    if refine not in REFINE_MODES:
        raise ValueError(f"refine must be one of {REFINE_MODES}, got {refine!r}")
    return f"separator_nfe{int(nfe)}" if refine == "wiener" else f"separator_raw_nfe{int(nfe)}"


def parse_system(name: str) -> tuple[int | None, str | None]:
    """``(nfe, refine)`` of a separator system name, ``(None, None)`` for a baseline."""
    for prefix, refine in (("separator_raw_nfe", "none"), ("separator_nfe", "wiener")):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return int(name[len(prefix):]), refine
    return None, None
#: Metric fields of a row (others are bookkeeping); used to compare runs.
METRIC_FIELDS = (
    "si_sdr", "si_sdr_mixture", "si_sdri", "sdr", "snr", "mrstft", "consistency_db", "absent_energy_db",
    "judge_precision", "judge_recall", "judge_faithfulness", "judge_overall",
)
#: Consistency is capped here (dB): 100 means target + residual reproduce the mixture exactly.
CONSISTENCY_CAP_DB = 100.0
#: Settings that change the rows' numbers (with the checkpoint, judge and manifest contents): part of the fingerprint.
FINGERPRINT_SETTINGS = ("method", "seed", "batch_size", "chunk_s", "overlap_s", "irm_n_fft", "irm_hop",
                        "sdr_filter_length")


class FingerprintMismatchError(ValueError):
    """The output folder holds rows made with another checkpoint, sampler or manifest."""


# ---------------------------------------------------------------------- settings
#: Keys of the shared ``trainer`` preset that the benchmark reads (the rest configure training).
TRAINER_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision", "threads")


@dataclass
class BenchSettings:
    """Everything :func:`run_benchmark` needs (flattened from the Hydra config).

    Attributes:
        manifest: benchmark manifest (JSONL).
        checkpoint: separator release folder.
        out_dir: where results, summary, report and plots go.
        judge: judge release folder, or None for no judge scores.
        nfe: separator function-evaluation counts to run (None: the release's recommended
            ``sampling.steps``, filled by :meth:`resolve_sampling`).
        refine: separator output modes, one system each per NFE: ``wiener`` (the default
            output, ``separator_nfeK``) and/or ``none`` (raw generative stems, ``separator_raw_nfeK``).
            Both come from one generation: the raw stems are refined with
            :meth:`separation.separator.Separator.wiener` exactly as the Separator does (the release's
            mask exponent and STFT size).
        card_nfe: NFE of the model-card figures (``model_card.json``/``.md``); None: 16 when
            run, else the largest NFE.
        baselines: baseline systems among ``mixture``, ``oracle_irm``, ``oracle_codec``,
            ``oracle_codec_wiener``.
        method: ODE sampler (None: the release's recommended ``sampling.method``).
        batch_size: items per :meth:`Separator.separate_batch` call.
        seed: base noise seed (batch ``b`` uses ``seed * 1_000_003 + b``).
        irm_n_fft / irm_hop: STFT of the ideal-ratio-mask oracle.
        sdr_filter_length: BSS-eval distortion filter taps.
        chunk_s / overlap_s: the separator's long-audio chunking.
        bootstrap_samples / bootstrap_seed / alpha: confidence intervals.
        plots: write PNG plots.
        retry_failed: a rerun retries failed items instead of skipping them.
        max_items: only the first items of the manifest (None: all).
        accelerator / devices / num_nodes / strategy / precision: the Lightning trainer.
        use_lightning: False runs a plain loop in this process (no Lightning).
        threads: torch CPU threads (None: leave as is).
        command: the command line recorded in the report.
    """

    manifest: str
    checkpoint: str
    out_dir: str = "runs/bench"
    judge: str | None = None
    nfe: list[int] | None = None
    refine: list[str] = field(default_factory=lambda: ["wiener", "none"])
    card_nfe: int | None = None
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    method: str | None = None
    batch_size: int = 8
    seed: int = 0
    irm_n_fft: int = 1024
    irm_hop: int = 256
    sdr_filter_length: int = 512
    chunk_s: float = 10.0
    overlap_s: float = 2.0
    bootstrap_samples: int = 1000
    bootstrap_seed: int = 0
    alpha: float = 0.05
    plots: bool = True
    retry_failed: bool = False
    max_items: int | None = None
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    use_lightning: bool = True
    threads: int | None = None
    command: str | None = None
    release_sampling: dict[str, Any] | None = None
    fingerprint: str | None = None

    @classmethod
    def from_cfg(cls, cfg: Any) -> BenchSettings:
        """From a composed ``conf/bench.yaml`` (DictConfig) or a plain dict.

        Keys are read from the top level, from ``bench`` and from ``trainer`` (in that
        order of precedence: top level wins). The ``trainer`` preset is shared with training, so
        only its device keys are read; an unknown key at the top level or in ``bench`` (a
        misspelt override) is a ``ValueError`` naming it.
        """
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(cfg, DictConfig):
                cfg = OmegaConf.to_container(cfg, resolve=True)
        except ImportError:  # pragma: no cover
            pass
        cfg = dict(cfg)
        names = {f.name for f in dataclasses.fields(cls)}
        trainer = cfg.get("trainer") if isinstance(cfg.get("trainer"), dict) else {}
        flat: dict[str, Any] = {k: v for k, v in trainer.items() if k in TRAINER_KEYS}
        own = dict(cfg.get("bench") or {}) if isinstance(cfg.get("bench"), dict) else {}
        own.update({k: v for k, v in cfg.items() if not isinstance(v, dict)})
        unknown = sorted(k for k in own if k not in names and k not in ("judge_checkpoint", "bootstrap"))
        if unknown:
            raise ValueError(f"unknown benchmark setting(s) {', '.join(map(repr, unknown))}; known: {sorted(names)}")
        flat.update(own)
        if flat.get("judge_checkpoint") is not None:  # conf/bench.yaml's name (``judge`` is a config group)
            flat["judge"] = flat["judge_checkpoint"]
        if isinstance(flat.get("bootstrap"), dict):
            flat.update({f"bootstrap_{k}": v for k, v in flat["bootstrap"].items()})
        kw = {k: v for k, v in flat.items() if k in names}
        missing = [k for k in ("manifest", "checkpoint") if kw.get(k) in (None, "???")]
        if missing:
            raise ValueError(f"the benchmark config needs {', '.join(missing)}")
        s = cls(**kw)
        s.nfe = None if s.nfe is None else [int(k) for k in s.nfe]
        s.baselines = [str(b) for b in (s.baselines or [])]
        s.refine = [str(r) for r in ([s.refine] if isinstance(s.refine, str) else (s.refine or []))]
        bad_r = [r for r in s.refine if r not in REFINE_MODES]
        if bad_r or (s.nfe and not s.refine):
            raise ValueError(f"refine must list some of {list(REFINE_MODES)}, got {s.refine}")
        if s.card_nfe is not None:
            s.card_nfe = int(s.card_nfe)
        bad = [b for b in s.baselines if b not in BASELINES]
        if bad:
            raise ValueError(f"unknown baselines {bad}; choose from {list(BASELINES)}")
        if s.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {s.batch_size}")
        return s

    def resolve_sampling(self, release: Any) -> BenchSettings:
        """Fill ``nfe`` / ``method`` left None with the release's recommended sampling.

        Args:
            release: the checkpoint's :class:`separation.model.SamplingDefaults` (or a dict).
        """
        rel = dataclasses.asdict(release) if dataclasses.is_dataclass(release) else dict(release)
        self.release_sampling = rel
        if self.nfe is None:
            self.nfe = [int(rel["steps"])]
        if self.method is None:
            self.method = str(rel["method"])
        return self

    def sampler_label(self, system: str) -> str | None:
        """``"euler, 1 step (release default)"`` for a separator system, None for a baseline."""
        nfe, _ = parse_system(system)
        if nfe is None:
            return None
        rel = self.release_sampling or {}
        default = (self.method, nfe) == (rel.get("method"), rel.get("steps"))
        return f"{self.method}, {nfe} step{'' if nfe == 1 else 's'} ({'release default' if default else 'override'})"

    @property
    def systems(self) -> list[str]:
        """Systems in report order."""
        return [b for b in BASELINES if b in self.baselines] + [
            separator_system(k, r) for k in self.nfe for r in REFINE_MODES if r in self.refine
        ]

    @property
    def model_card_nfe(self) -> int | None:
        """NFE of the model-card figures."""
        if self.card_nfe is not None:
            return self.card_nfe
        if not self.nfe:
            return None
        return 16 if 16 in self.nfe else max(self.nfe)


# ---------------------------------------------------------------------- metrics
def _num(x: Any) -> float | None:
    """A finite float or None (JSON has no NaN/inf)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def item_metrics(
    estimate: torch.Tensor,
    residual: torch.Tensor | None,
    item: LoadedItem,
    si_sdr_mixture: float | None,
    sdr_filter_length: int = 512,
) -> dict[str, float | None]:
    """Reference metrics of one estimate.

    Args:
        estimate: target estimate ``[1, N]`` at the item's rate.
        residual: residual estimate ``[1, N]`` (None: consistency not measured).
        item: the loaded item (mixture, target, present).
        si_sdr_mixture: SI-SDR of the mixture vs the target (for SI-SDRi).
        sdr_filter_length: BSS-eval distortion filter taps.

    Returns:
        Present targets: ``si_sdr``, ``si_sdr_mixture``, ``si_sdri``, ``sdr``, ``snr``,
        ``mrstft``; absent targets: ``absent_energy_db`` (estimate vs mixture energy);
        both: ``consistency_db`` (SNR of ``estimate + residual`` vs the mixture, capped at 100).
    """
    est = estimate.reshape(-1).double()
    mix = item.mixture.reshape(-1).double()
    for name, x in (("estimate", est), ("residual", residual)):
        if x is not None and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise NonFiniteOutputError(f"the {name} has {bad} non-finite (NaN/Inf) samples")
    out: dict[str, float | None] = dict.fromkeys(
        ("si_sdr", "si_sdr_mixture", "si_sdri", "sdr", "snr", "mrstft", "level_db", "residual_si_sdr",
         "consistency_db", "absent_energy_db")
    )
    if item.present:
        ref = item.target.reshape(-1).double()
        out["si_sdr"] = _num(M.si_sdr(est, ref))
        out["si_sdr_mixture"] = _num(si_sdr_mixture)
        if out["si_sdr"] is not None and out["si_sdr_mixture"] is not None:
            out["si_sdri"] = out["si_sdr"] - out["si_sdr_mixture"]
        try:
            out["sdr"] = _num(M.sdr(est, ref, filter_length=sdr_filter_length))
        except Exception as exc:  # noqa: BLE001 - a singular system for degenerate estimates
            logger.warning("item %s: SDR failed (%s)", item.item["id"], exc)
        out["snr"] = _num(M.snr(est, ref))
        out["mrstft"] = _num(M.multi_resolution_stft_distance(est.float(), ref.float()))
        out["level_db"] = _num(M.energy_ratio_db(est, ref))
        interferers = mix - ref
        if residual is not None and float(interferers.pow(2).sum()) > 0:
            out["residual_si_sdr"] = _num(M.si_sdr(residual.reshape(-1).double(), interferers))
    else:
        out["absent_energy_db"] = _num(M.energy_ratio_db(est, mix))
    if residual is not None:
        c = _num(M.snr(est + residual.reshape(-1).double(), mix))
        out["consistency_db"] = None if c is None else min(c, CONSISTENCY_CAP_DB)
    return out


# ---------------------------------------------------------------------- results store
def _read_rows(path: Path) -> list[dict]:
    """Rows of a JSONL file; a torn last line (a killed write) is ignored."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and "id" in r and "system" in r:
            rows.append(r)
    return rows


class ResultWriter:
    """Durable JSONL appender: every row is flushed and fsynced before the next one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():  # cut a torn last line left by a kill
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(self.path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        self._f = open(self.path, "a")  # noqa: SIM115 - closed in close()

    def append(self, row: dict) -> None:
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def result_files(out_dir: Path) -> list[Path]:
    """``results.jsonl`` and the per-rank part files of an output folder."""
    parts = sorted((out_dir / "parts").glob("results.rank*.jsonl")) if (out_dir / "parts").is_dir() else []
    return [out_dir / "results.jsonl", *parts]


def merge_rows(rows: Iterable[dict], retry_failed: bool = True) -> dict[tuple[str, str], dict]:
    """Last row per (item, system); an item's ``*`` failure row is dropped once it has ok rows."""
    by_key: dict[tuple[str, str], dict] = {}
    for r in rows:
        by_key[(r["id"], r["system"])] = r
    ok_items = {k[0] for k, r in by_key.items() if r.get("status") == "ok"}
    return {k: r for k, r in by_key.items() if not (k[1] == "*" and k[0] in ok_items)}


# ---------------------------------------------------------------------- runner
def _batches(items: Sequence[dict], batch_size: int) -> list[list[dict]]:
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


class BenchRunner:
    """Runs the systems on batches and appends rows (one instance per rank).

    Args:
        settings: the benchmark settings.
        done: already written rows keyed by (item id, system).
        writer: where new rows go.
    """

    def __init__(self, settings: BenchSettings, done: dict[tuple[str, str], dict], writer: ResultWriter | None):
        self.s = settings
        self.done = done
        self.writer = writer
        self.separator = None
        self.judge = None
        self.device_name = "cpu"
        self._pending: list[dict] = []

    # -- bookkeeping
    def needed(self, iid: str) -> set[str]:
        """Systems still to run for an item (empty: finished, or failed as a whole)."""
        star = self.done.get((iid, "*"))
        if star is not None and star.get("status") == "failed" and not self.s.retry_failed:
            return set()
        need = set()
        for s in self.s.systems:
            r = self.done.get((iid, s))
            if r is None or (r.get("status") != "ok" and self.s.retry_failed):
                need.add(s)
        return need

    def _emit(self, row: dict) -> None:
        row = {k: (_num(v) if isinstance(v, float) else v) for k, v in row.items()}
        self.done[(row["id"], row["system"])] = row
        self._pending.append(row)

    def _flush(self, batch: Sequence[dict]) -> None:
        """Append the batch's new rows item by item (an item's rows together, in system order)."""
        order = {it["id"]: i for i, it in enumerate(batch)}
        sys_order = {name: i for i, name in enumerate(["*", *self.s.systems])}
        rows = sorted(self._pending, key=lambda r: (order.get(r["id"], 0), sys_order.get(r["system"], 99)))
        self._pending = []
        if self.writer is not None:
            for row in rows:
                self.writer.append(row)

    def _base_row(self, item: dict, system: str, li: LoadedItem | None) -> dict:
        kind = item.get("prompt_kind")
        if kind is None and li is not None:
            kind = "+".join(k for k, v in (("text", li.text), ("span", li.spans)) if v) or ("video" if li.video else None)
        nfe, refine = parse_system(system)
        return {
            "id": item["id"], "system": system, "nfe": nfe, "refine": refine,
            "method": self.s.method if nfe is not None else None, "steps": nfe, "fingerprint": self.s.fingerprint,
            "category": item.get("category"), "prompt_kind": kind, "subset": item.get("subset"),
            "scene": item.get("scene"),
            "label": item.get("label"), "num_sources": item.get("num_sources"),
            "target_present": None if li is None else li.present,
            "audio_seconds": None if li is None else li.seconds,
        }

    def _fail(self, item: dict, system: str, li: LoadedItem | None, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        logger.warning("item %s, %s failed: %s", item["id"], system, reason)
        self._emit({**self._base_row(item, system, li), "status": "failed", "reason": reason})

    def _judge(self, li: LoadedItem, est: torch.Tensor) -> dict[str, float | None]:
        if self.judge is None:
            return {}
        sc = self.judge.score(li.mixture, est, li.judge_text, li.sample_rate)
        return {f"judge_{k}": _num(getattr(sc, k)) for k in ("precision", "recall", "faithfulness", "overall")}

    def _ok(self, item: dict, system: str, li: LoadedItem, est, res, seconds: float, sisdr_mix) -> None:
        row = {**self._base_row(item, system, li), "status": "ok"}
        row.update(item_metrics(est, res, li, sisdr_mix, self.s.sdr_filter_length))
        try:
            row.update(self._judge(li, est))
        except Exception as exc:  # noqa: BLE001 - a judge failure must not lose the row
            logger.warning("item %s, %s: judge failed (%s)", item["id"], system, exc)
            row["judge_error"] = f"{type(exc).__name__}: {exc}"
        row["seconds"] = seconds
        row["rtf"] = seconds / li.seconds if li.seconds > 0 else None
        row["device"] = self.device_name
        self._emit(row)

    # -- one batch
    @torch.no_grad()
    def process_batch(self, batch: Sequence[dict], batch_index: int) -> int:
        """Run every still-needed system on a batch and append its rows; returns the rows due."""
        needs = {it["id"]: self.needed(it["id"]) for it in batch}
        if not any(needs.values()):
            return 0
        try:
            self._run_batch(batch, batch_index, needs)
        finally:
            self._flush(batch)
        return sum(len(v) for v in needs.values())

    def _run_batch(self, batch: Sequence[dict], batch_index: int, needs: dict[str, set[str]]) -> None:
        loaded: list[tuple[dict, LoadedItem, float | None]] = []
        for it in batch:
            try:
                li = read_item(it)
            except Exception as exc:  # noqa: BLE001 - any bad item is recorded, the run goes on
                if needs[it["id"]]:
                    self._fail(it, "*", None, exc)
                continue
            mix_sisdr = _num(M.si_sdr(li.mixture.reshape(-1).double(), li.target.reshape(-1).double())) if li.present else None
            loaded.append((it, li, mix_sisdr))

        codec_cache: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}  # both codec oracles share one round trip
        for system in (b for b in BASELINES if b in self.s.baselines):
            for it, li, ms in loaded:
                if system not in needs[it["id"]]:
                    continue
                try:
                    t0 = time.perf_counter()
                    extra = 0.0
                    if system == "mixture":
                        est, res = li.mixture, torch.zeros_like(li.mixture)
                    elif system == "oracle_irm":
                        est, res = ideal_ratio_mask(li.mixture, li.target, self.s.irm_n_fft, self.s.irm_hop)
                    else:
                        if it["id"] not in codec_cache:
                            model = self.separator.model
                            t_est = codec_round_trip(model, li.target, li.sample_rate)
                            t_res = codec_round_trip(model, li.residual, li.sample_rate)
                            codec_cache[it["id"]] = (t_est, t_res, time.perf_counter() - t0)
                            t0 = time.perf_counter()
                        est, res, extra = codec_cache[it["id"]]
                        if system == "oracle_codec_wiener":
                            est, res = self.separator.wiener(li.mixture, est, res)
                    self._ok(it, system, li, est, res, extra + time.perf_counter() - t0, ms)
                except Exception as exc:  # noqa: BLE001
                    self._fail(it, system, li, exc)

        seed = self.s.seed * 1_000_003 + batch_index
        for k in self.s.nfe:
            names = {r: separator_system(k, r) for r in REFINE_MODES if r in self.s.refine}
            if not any(n in needs[it["id"]] for it, _, _ in loaded for n in names.values()):
                continue
            # One generation per NFE; both systems are exactly what the Separator returns with
            # refine="wiener" / "none" (the raw target comes with keep_raw; residual = mixture - target).
            mode = "wiener" if "wiener" in names else "none"
            keep_raw = mode == "wiener" and "none" in names
            outs: list[Any]
            try:
                outs = self.separator.separate_batch(
                    [li.mixture for _, li, _ in loaded], [li.sample_rate for _, li, _ in loaded],
                    [li.text for _, li, _ in loaded], [li.spans for _, li, _ in loaded],
                    [li.video for _, li, _ in loaded], steps=k, method=self.s.method, seed=seed, refine=mode,
                    keep_raw=keep_raw,
                )
            except Exception as exc:  # noqa: BLE001 - find the culprit item by item
                logger.info("batch %d failed as a batch (%s); separating item by item", batch_index, exc)
                outs = []
                for _, li, _ in loaded:
                    try:
                        outs.append(self.separator.separate(
                            li.mixture, li.sample_rate, text=li.text, spans=li.spans, video=li.video,
                            steps=k, method=self.s.method, seed=seed, refine=mode, keep_raw=keep_raw,
                        ))
                    except Exception as e:  # noqa: BLE001
                        outs.append(e)
            for (it, li, ms), out in zip(loaded, outs):
                for refine, system in names.items():
                    if system not in needs[it["id"]]:
                        continue
                    if isinstance(out, BaseException):
                        self._fail(it, system, li, out)
                        continue
                    try:
                        seconds = float(out.info["seconds"])
                        est, res = out.target, out.residual
                        if refine != mode:  # the raw system from a refined run: refine="none"'s output
                            est = out.raw[0]
                            res = (li.mixture.double() - est.double()).float()
                            seconds -= float(out.info.get("refine_seconds", 0.0))
                        self._ok(it, system, li, est, res, seconds, ms)
                    except Exception as exc:  # noqa: BLE001
                        self._fail(it, system, li, exc)


def _load_judge(path: str | None, device: torch.device | str):
    if not path:
        return None
    from judge.model import Judge

    judge = Judge.from_pretrained(path)
    if isinstance(judge, torch.nn.Module):
        judge = judge.eval().to(device)
    return judge


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------------- Lightning
def _identity(x):
    return x


def _make_module(settings: BenchSettings, model, judge, all_batches, runner_factory):
    import lightning as L

    class BenchModule(L.LightningModule):
        """Predict loop over manifest batches; the rank's shard is chosen in ``predict_dataloader``."""

        def __init__(self):
            super().__init__()
            self.model = model
            self.judge = judge if isinstance(judge, torch.nn.Module) else None
            self._judge_obj = judge
            self.runner: BenchRunner | None = None

        def predict_dataloader(self):
            from torch.utils.data import DataLoader

            rank, world = self.trainer.global_rank, self.trainer.world_size
            shard = [(b, all_batches[b]) for b in range(rank, len(all_batches), world)]
            logger.info("rank %d/%d: %d of %d batches", rank, world, len(shard), len(all_batches))
            return DataLoader(shard, batch_size=None, shuffle=False, collate_fn=_identity, num_workers=0)

        def on_predict_start(self):
            from separation.separator import Separator

            self.runner = runner_factory(self.trainer.global_rank, self.trainer.world_size)
            self.runner.separator = Separator(self.model, device=self.device, chunk_s=settings.chunk_s,
                                              overlap_s=settings.overlap_s)
            self.runner.judge = self._judge_obj
            self.runner.device_name = _device_name(self.device)

        def predict_step(self, batch, batch_idx):
            b, items = batch
            self.runner.process_batch(items, b)
            return None

        def on_predict_end(self):
            if self.runner is not None and self.runner.writer is not None:
                self.runner.writer.close()

    return BenchModule()


# ---------------------------------------------------------------------- entry
def run_benchmark(cfg: Any) -> dict[str, Any]:
    """Run (or resume) the benchmark described by ``cfg`` and write all outputs.

    Args:
        cfg: composed ``conf/bench.yaml`` or a dict / :class:`BenchSettings`.

    Returns:
        ``{"out_dir", "results", "summary", "report", "plots", "overall"}`` on the process
        that writes the outputs (rank 0), ``{"rank": r}`` on the others.
    """
    s = cfg if isinstance(cfg, BenchSettings) else BenchSettings.from_cfg(cfg)
    if s.threads:
        torch.set_num_threads(int(s.threads))
    out_dir = Path(s.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = load_manifest(s.manifest)
    if s.max_items:
        items = items[: int(s.max_items)]
    from_train = [it["id"] for it in items if it.get("split") == "train"]
    if from_train:
        raise ValueError(f"{len(from_train)} manifest item(s) come from the corpus train split (e.g. {from_train[:3]}); "
                         "benchmark held-out items (promptsep bench manifest --split test)")
    all_batches = _batches(items, s.batch_size)
    from separation.model import resolve_checkpoint

    ckpt_dir = resolve_checkpoint(s.checkpoint)
    s.resolve_sampling(json.loads((ckpt_dir / "config.json").read_text())["config"].get("sampling") or _default_sampling())
    s.fingerprint = check_fingerprint(out_dir, fingerprint_parts(s, ckpt_dir), result_files(out_dir))
    done = merge_rows(row for p in result_files(out_dir) for row in _read_rows(p))
    n_done = sum(1 for it in items if not BenchRunner(s, done, None).needed(it["id"]))
    logger.info("benchmark: %d items in %d batches, %d already finished; systems %s",
                len(items), len(all_batches), n_done, s.systems)

    from separation.model import SeparationModel

    if n_done < len(items):
        model = SeparationModel.from_pretrained(s.checkpoint)
        judge = _load_judge(s.judge, "cpu")
        if s.use_lightning:
            rank = _run_lightning(s, model, judge, all_batches, done, out_dir)
        else:
            rank = _run_plain(s, model, judge, all_batches, done, out_dir)
        if rank != 0:
            return {"rank": rank}
    elif int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0) != 0:
        return {"rank": int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))}
    return finalize(s, items, out_dir)


def _default_sampling() -> dict[str, Any]:
    from separation.model import SamplingDefaults

    return dataclasses.asdict(SamplingDefaults())


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _release_hash(folder: Path, weights: str = "model.safetensors") -> str:
    """SHA-256 over a release's weights file and its ``config.json`` model config (canonical JSON)."""
    cfg = json.loads((folder / "config.json").read_text()).get("config", {})
    h = hashlib.sha256(_sha256_file(folder / weights).encode())
    h.update(json.dumps(cfg, sort_keys=True).encode())
    return h.hexdigest()


def fingerprint_parts(s: BenchSettings, checkpoint_dir: Path) -> dict[str, Any]:
    """What the rows' numbers depend on: checkpoint and judge contents, sampling, metrics, manifest.

    The sets of systems (NFEs, refine modes, baselines) are not part of it: a rerun may add systems.
    """
    judge = None
    if s.judge:
        from separation.model import resolve_checkpoint

        jdir = Path(s.judge) if Path(s.judge).is_dir() else resolve_checkpoint(s.judge)
        judge = _release_hash(jdir)
    return {
        "checkpoint": _release_hash(checkpoint_dir),
        "judge": judge,
        "manifest": _sha256_file(Path(s.manifest)),
        "sampling": {k: getattr(s, k) for k in FINGERPRINT_SETTINGS},
    }


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    if old == new:
        return []
    name = prefix.rstrip(".")
    what = {"checkpoint": "checkpoint weights/config", "judge": "judge weights/config", "manifest": "manifest contents"}
    return [f"{what.get(name, name)}: {str(old)[:16]} -> {str(new)[:16]}"]


def check_fingerprint(out_dir: Path, parts: dict[str, Any], files: Sequence[Path]) -> str:
    """Fingerprint of this run; refuse an output folder whose rows were made by another run.

    Writes ``fingerprint.json`` on the first run.

    Raises:
        FingerprintMismatchError: ``fingerprint.json`` or a row says another checkpoint, judge,
            sampler or manifest made them (or rows without a fingerprint are there).
    """
    fp = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    path = out_dir / "fingerprint.json"
    hint = "use another --out folder (or delete this one) to benchmark a different setup"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("fingerprint") != fp:
            raise FingerprintMismatchError(
                f"{out_dir} holds results of another setup ({'; '.join(_diff(old.get('parts', {}), parts)) or 'fingerprint'}); {hint}")
    other = {r.get("fingerprint") for f in files for r in _read_rows(f)} - {fp}
    if other:
        raise FingerprintMismatchError(
            f"{out_dir} holds rows of another checkpoint, sampler or manifest (fingerprints {sorted(map(str, other))[:3]}); {hint}")
    if not path.is_file():
        tmp = path.with_name(f".fingerprint.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fingerprint": fp, "parts": parts}, indent=2))
        os.replace(tmp, path)
    return fp


def _writer_path(out_dir: Path, rank: int, world: int) -> Path:
    return out_dir / "results.jsonl" if world == 1 else out_dir / "parts" / f"results.rank{rank}.jsonl"


def _run_plain(s: BenchSettings, model, judge, all_batches, done, out_dir: Path) -> int:
    from tqdm import tqdm

    from separation.separator import Separator

    device = torch.device("cuda" if s.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu")
    runner = BenchRunner(s, done, ResultWriter(_writer_path(out_dir, 0, 1)))
    runner.separator = Separator(model, device=device, chunk_s=s.chunk_s, overlap_s=s.overlap_s)
    runner.judge = judge if not isinstance(judge, torch.nn.Module) else judge.to(device)
    runner.device_name = _device_name(device)
    try:
        for b, batch in enumerate(tqdm(all_batches, desc="bench", unit="batch")):
            runner.process_batch(batch, b)
    finally:
        runner.writer.close()
    return 0


def _run_lightning(s: BenchSettings, model, judge, all_batches, done, out_dir: Path) -> int:
    import lightning as L

    def runner_factory(rank: int, world: int) -> BenchRunner:
        return BenchRunner(s, done, ResultWriter(_writer_path(out_dir, rank, world)))

    module = _make_module(s, model, judge, all_batches, runner_factory)
    trainer = L.Trainer(
        accelerator=s.accelerator, devices=s.devices, num_nodes=int(s.num_nodes), strategy=s.strategy,
        precision=s.precision, logger=False, enable_checkpointing=False, enable_model_summary=False,
        use_distributed_sampler=False, inference_mode=True, enable_progress_bar=True,
    )
    trainer.predict(module, return_predictions=False)
    trainer.strategy.barrier()
    return int(trainer.global_rank)


def finalize(s: BenchSettings, items: Sequence[dict], out_dir: Path) -> dict[str, Any]:
    """Merge part files into ``results.jsonl`` (manifest x system order), then summary, report, plots."""
    from bench.report import summarize, write_json, write_plots, write_report

    merged = merge_rows(row for p in result_files(out_dir) for row in _read_rows(p))
    order = {it["id"]: i for i, it in enumerate(items)}
    sys_order = {name: i for i, name in enumerate(["*", *s.systems])}
    rows = sorted((r for r in merged.values() if r["id"] in order),
                  key=lambda r: (order[r["id"]], sys_order.get(r["system"], len(sys_order)), r["system"]))
    tmp = out_dir / "results.jsonl.tmp"
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out_dir / "results.jsonl")
    for p in result_files(out_dir)[1:]:
        p.unlink()
    if (out_dir / "parts").is_dir() and not any((out_dir / "parts").iterdir()):
        (out_dir / "parts").rmdir()

    systems = s.systems
    groups = summarize(rows, systems, s.bootstrap_samples, s.bootstrap_seed, s.alpha)
    failed = [{"id": r["id"], "system": r["system"], "reason": r.get("reason")} for r in rows if r.get("status") != "ok"]
    failed_items = {f["id"] for f in failed if f["system"] == "*"}
    ok_rows = [r for r in rows if r.get("status") == "ok"]
    present_ids = {r["id"] for r in ok_rows if r.get("target_present")}
    absent_ids = {r["id"] for r in ok_rows if r.get("target_present") is False}
    devices = sorted({r.get("device") for r in ok_rows if r.get("device")})
    allg = groups.get("all", {})
    nfe_curve = []
    for refine in (r for r in REFINE_MODES if r in s.refine):
        for k in s.nfe:
            name = separator_system(k, refine)
            st = allg.get(name)
            if st:
                nfe_curve.append({"nfe": k, "refine": refine, "system": name, "si_sdri": st["present"]["si_sdri"],
                                  "judge_overall": st["present"]["judge_overall"], "rtf": st["all"]["rtf"],
                                  "seconds": st["all"]["seconds"]})
    summary: dict[str, Any] = {
        "manifest": s.manifest, "checkpoint": s.checkpoint, "judge": s.judge, "command": s.command,
        "systems": systems, "n_items": len(items), "n_present": len(present_ids), "n_absent": len(absent_ids),
        "n_failed_items": len(failed_items), "failed": failed, "device": ", ".join(devices) or "cpu",
        "bootstrap_samples": s.bootstrap_samples, "alpha": s.alpha, "nfe_curve": nfe_curve, "card_nfe": s.model_card_nfe,
        "settings": dataclasses.asdict(s), "groups": groups, "fingerprint": s.fingerprint,
        "release_sampling": s.release_sampling, "samplers": {name: s.sampler_label(name) for name in systems},
    }
    plots = write_plots(summary, out_dir) if s.plots else []
    summary["plots"] = plots
    card = None
    if s.model_card_nfe is not None:
        from bench.card import model_card, write_card_md

        card = model_card(rows, s, device=summary["device"])
        write_json(card, out_dir / "model_card.json")
        write_card_md(card, out_dir / "model_card.md")
        summary["model_card"] = ["model_card.json", "model_card.md"]
    write_json(summary, out_dir / "summary.json")
    write_report(summary, out_dir / "report.md")
    overall = {name: {m: allg.get(name, {}).get("present", {}).get(m, {}).get("mean") for m in ("si_sdr", "si_sdri", "sdr")}
               for name in systems}
    logger.info("benchmark written to %s", out_dir)
    return {"out_dir": str(out_dir), "results": str(out_dir / "results.jsonl"), "summary": str(out_dir / "summary.json"),
            "report": str(out_dir / "report.md"), "plots": plots, "overall": overall, "failed_rows": len(failed),
            "model_card": None if card is None else str(out_dir / "model_card.md")}


# ---------------------------------------------------------------------- CLIs
def compose_config(overrides: Sequence[str] = ()) -> Any:
    """Compose ``conf/bench.yaml`` with Hydra overrides (no output folder, no cwd change)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="bench"):
        return compose(config_name="bench", overrides=list(overrides))


def main(argv: Sequence[str] | None = None) -> int:
    """``promptsep bench separation --manifest M --checkpoint C --out DIR [--judge J] [--nfe 4 8] [overrides]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog="promptsep bench separation",
        description="Batch separation benchmark (metrics, oracle baselines, judge, speed). Extra arguments are "
                    "Hydra overrides of conf/bench.yaml, e.g. trainer=ddp trainer.devices=4 bench=quick.",
    )
    p.add_argument("--manifest", required=True, help="benchmark manifest (see `promptsep bench manifest`)")
    p.add_argument("--checkpoint", default=None, help="separator release folder (default: conf/bench.yaml's)")
    p.add_argument("--out", default=None, help="output folder (default: conf/bench.yaml's out_dir)")
    p.add_argument("--judge", default=None, help="judge release folder (adds judge scores)")
    p.add_argument("--nfe", type=int, nargs="+", default=None, help="separator function evaluations, e.g. 4 8 16 32")
    p.add_argument("--refine", nargs="+", choices=["wiener", "none"], default=None,
                   help="separator output modes, one system each per NFE (default: both; wiener = "
                        "separator_nfeK, none = separator_raw_nfeK)")
    p.add_argument("--card-nfe", type=int, default=None, help="NFE of the model-card figures (default 16 if run, else the largest)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--devices", default=None, help="Lightning devices (e.g. 1, 4, -1)")
    p.add_argument("--plain", action="store_true", help="run a plain loop instead of Lightning's predict loop")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. bench=quick trainer=ddp")
    # Hydra overrides (key=value) may come anywhere, also right after a list flag such as --nfe.
    single = {"--manifest", "--checkpoint", "--out", "--judge", "--card-nfe", "--batch-size", "--devices"}
    flags, extra = [], []
    for i, a in enumerate(argv):
        if "=" in a and not a.startswith("-") and not (i and argv[i - 1] in single):
            extra.append(a)
        else:
            flags.append(a)
    args = p.parse_args(flags)
    args.overrides = [*args.overrides, *extra]
    # flag -> Hydra key; list flags become [a,b,...]
    keys = {"manifest": "manifest", "checkpoint": "checkpoint", "out": "out_dir", "judge": "judge_checkpoint",
            "nfe": "bench.nfe", "refine": "bench.refine", "card_nfe": "bench.card_nfe",
            "batch_size": "bench.batch_size", "devices": "trainer.devices"}
    ov = []
    for flag, key in keys.items():
        val = getattr(args, flag)
        if val:
            ov.append(f"{key}=[{','.join(map(str, val))}]" if isinstance(val, list) else f"{key}={val}")
    if args.plain:
        ov.append("bench.use_lightning=false")
    ov += list(args.overrides)
    cfg = compose_config(ov)
    cfg_dict = dict(BenchSettings.from_cfg(cfg).__dict__)
    cfg_dict["command"] = "promptsep bench separation " + shlex.join(argv)
    try:
        result = run_benchmark(BenchSettings(**cfg_dict))
    except (FileNotFoundError, ValueError) as exc:
        print(f"promptsep bench separation: error: {exc}", file=sys.stderr)
        return 2
    if "overall" in result:
        print(json.dumps({k: result[k] for k in ("out_dir", "report", "model_card", "failed_rows", "overall")}, indent=2))
    return 0


def hydra_main() -> None:
    """``python -m bench.separation manifest=M checkpoint=C out_dir=DIR [bench=quick] [trainer=ddp]``."""
    import hydra

    def _run(cfg) -> None:
        from omegaconf import OmegaConf

        d = OmegaConf.to_container(cfg, resolve=True)
        d["command"] = "python -m bench.separation " + shlex.join(sys.argv[1:])
        result = run_benchmark(d)
        if "overall" in result:
            print(json.dumps({k: result[k] for k in ("out_dir", "report", "model_card", "failed_rows", "overall")}, indent=2))

    hydra.main(config_path=CONF_DIR, config_name="bench", version_base="1.3")(_run)()


__all__ = [
    "BenchRunner", "BenchSettings", "ResultWriter", "item_metrics", "main", "merge_rows", "parse_system",
    "run_benchmark", "separator_system",
]

if __name__ == "__main__":
    hydra_main()
