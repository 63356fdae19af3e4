"""Judge training with Lightning, configured by Hydra (``conf/train_judge.yaml``).

``python -m judge.train`` (or ``promptsep judge train [overrides]``) trains;
:func:`train_judge` is the plain function behind it (the tests call it directly).

The codec and the text encoder are frozen, and the codec encoder is by far the most
expensive part of a step on a CPU. Training therefore runs in two phases:

1. **Feature cache.** ``data.groups`` train-split groups of :class:`~judge.data.JudgeDataset`
   (one mixture and ``candidates.per_mixture`` candidates each) are generated, their
   reference targets computed and their frozen features (codec latents of mixture and
   estimate, hand features) stored in ``out_dir/cache/train`` as safetensors chunks (plus a
   JSON index for texts and kinds; no pickles). Chunks already there are reused, so an
   interrupted run picks up where it stopped. The same is done for ``val.groups``
   valid-split groups.
2. **Training** of the judge's own layers over the cached pairs with Lightning. A batch holds
   whole groups (about ``data.batch_size`` pairs): the loss is the weighted per-axis MSE,
   plus, with a presence head, ``loss.presence_weight`` x BCE of the presence logit on
   ``target_present``, plus ``loss.rank_weight`` x a pairwise logistic ranking loss on the
   predicted overall within each group (:func:`rank_loss`); when fine-tuning (``init_from``),
   ``loss.distill_weight`` x the MSE to the starting judge's own outputs on the candidate kinds
   ``loss.distill_kinds`` (learning without forgetting; those outputs are computed once over the
   cache before the first step). The group order is a function of
   the global step (:class:`~separation.harness.StepSampler` over a per-epoch permutation of
   the groups seeded by ``(seed, epoch)``), resume checkpoints are written
   atomically to ``out_dir`` (frozen weights left out), and ``resume=auto`` continues from
   ``out_dir/last.ckpt``.

At the end the judge is exported to ``export_dir`` as a release folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from judge.model import AXES
from promptsep.release import config_from_dict
from separation import harness

logger = logging.getLogger(__name__)

#: Feature-cache layout version (2: reference grades with the perceptual term, presence flags
#: used as labels; the grading recipe version is part of the fingerprint too).
CACHE_VERSION = 2
#: Logistic scale of the ranking loss on the predicted overall (1..5 units).
RANK_TEMPERATURE = 0.25
FROZEN_PREFIXES = ("codec.", "text_encoder.")


# ------------------------------------------------------------------- configs
def judge_config_from(cfg) -> Any:
    """:class:`~judge.model.JudgeConfig` from the composed config (``judge``, ``codec``, ``codec_checkpoint``)."""
    from omegaconf import OmegaConf

    from judge.model import JudgeConfig

    d = OmegaConf.to_container(cfg.judge, resolve=True)
    d["codec"] = OmegaConf.to_container(cfg.codec, resolve=True) if cfg.get("codec") is not None else {}
    d["codec_path"] = cfg.get("codec_checkpoint") or None
    return config_from_dict(JudgeConfig, d, "judge")


#: Keys of the judge's ``data:`` node that configure the feature cache and loader, not the mixing.
DATA_LOADER_KEYS = ("root", "groups", "chunk_groups", "cache_budget_s", "batch_size")


def mix_config_from(cfg) -> Any:
    """:class:`~separation.data.mixing.MixConfig` of the judge data (text prompts only, no video), strictly:
    a ``data.*`` key that is neither a loader key nor a mixing option is an error naming it."""
    from omegaconf import OmegaConf

    from separation.data.mixing import mix_config_from_dict

    return mix_config_from_dict(OmegaConf.to_container(cfg.data, resolve=True), loader_keys=DATA_LOADER_KEYS,
                                p_text=1.0, p_span=0.0, p_text_span=0.0, p_video=0.0, video=False)


def candidate_config_from(cfg) -> Any:
    from omegaconf import OmegaConf

    from judge.data import CandidateConfig

    return CandidateConfig.from_dict(OmegaConf.to_container(cfg.candidates, resolve=True))


# ------------------------------------------------------------------ feature cache
class FeatureCache(Dataset):
    """Frozen features of judge pairs, stored as safetensors chunks under a folder.

    Each chunk holds, for ``P`` pairs of ``G`` groups: ``mix [G, T, C]`` (one per group),
    ``est [P, T, C]``, ``hand [P, T, H]``, ``mask [P, T]``, ``targets [P, 4]``, for a
    grounded judge ``clap [P, 3, E]``,
    ``group [P]`` (row of ``mix``); ``index.json`` holds texts, kinds and presence flags.

    Item ``i`` is pair ``perm_e[i % P]`` with ``e = i // P`` and ``perm_e`` a permutation
    drawn from ``(seed, e)``: the order is a function of the index alone.
    """

    def __init__(self, folder: str | Path, seed: int = 0):
        from safetensors.torch import load_file

        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text())
        self.meta = index["meta"]
        if not index["chunks"]:
            raise RuntimeError(f"the feature cache {self.folder} is empty (raise data.cache_budget_s or data.groups)")
        mix, est, hand, mask, targets, group, clap = [], [], [], [], [], [], []
        self.texts: list[str] = []
        self.kinds: list[str] = []
        self.present: list[bool] = []
        offset = 0
        for ch in index["chunks"]:
            t = load_file(str(self.folder / ch["file"]))
            mix.append(t["mix"])
            est.append(t["est"])
            mask.append(t["mask"])
            targets.append(t["targets"])
            group.append(t["group"] + offset)
            if "hand" in t:
                hand.append(t["hand"])
            if "clap" in t:
                clap.append(t["clap"])
            offset += t["mix"].shape[0]
            self.kinds += ch["kinds"]
            self.present += ch["present"]
            self.texts += [ch["texts"][g] for g in t["group"].tolist()]
        self.mix = torch.cat(mix)
        self.est = torch.cat(est)
        self.mask = torch.cat(mask)
        self.targets = torch.cat(targets)
        self.group = torch.cat(group)
        self.hand = torch.cat(hand) if hand else None
        self.clap = torch.cat(clap) if clap else None
        self.distill: torch.Tensor | None = None  # [P, 4] normalised scores of the starting judge (loss.distill_weight)
        self.seed = int(seed)
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None
        order = torch.argsort(self.group, stable=True)
        counts = torch.bincount(self.group, minlength=self.num_groups).tolist()
        self.members: list[list[int]] = [m.tolist() for m in torch.split(order, counts)]

    @property
    def num_pairs(self) -> int:
        return int(self.est.shape[0])

    @property
    def num_groups(self) -> int:
        return int(self.mix.shape[0])

    def __len__(self) -> int:
        return 10**9

    def pair(self, j: int) -> dict[str, Any]:
        out = {"mix": self.mix[self.group[j]], "est": self.est[j], "mask": self.mask[j], "targets": self.targets[j],
               "text": self.texts[j], "kind": self.kinds[j], "present": self.present[j]}
        if self.hand is not None:
            out["hand"] = self.hand[j]
        if self.clap is not None:
            out["clap"] = self.clap[j]
        if self.distill is not None:
            out["distill"] = self.distill[j]
        return out

    def __getitem__(self, i: int) -> list[dict[str, Any]]:
        """Item ``i`` of the endless stream: one whole group (its pairs, with ``group`` set), the
        groups in a per-epoch permutation seeded by ``(seed, epoch)``."""
        g = self.num_groups
        epoch = int(i) // g
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(g)
            self._perm_epoch = epoch
        grp = int(self._perm[int(i) % g])
        return [{**self.pair(j), "group": grp} for j in self.members[grp]]

    def all_pairs(self) -> list[dict[str, Any]]:
        return [self.pair(j) for j in range(self.num_pairs)]


def collate_features(items: list[dict[str, Any]] | list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Stack cached pairs (or whole groups of pairs, flattened) into a batch for
    :meth:`judge.model.Judge.forward_features`; with groups the batch has ``group [P]``."""
    if items and isinstance(items[0], list):
        items = [p for grp in items for p in grp]
    out: dict[str, Any] = {}
    for k in ("mix", "est", "mask", "targets", "hand", "clap", "distill"):
        if k in items[0]:
            out[k] = torch.stack([it[k] for it in items])
    out["text"] = [it["text"] for it in items]
    out["kind"] = [it["kind"] for it in items]
    out["present"] = [it["present"] for it in items]
    if "group" in items[0]:
        out["group"] = torch.tensor([it["group"] for it in items], dtype=torch.long)
    return out


def rank_loss(overall: torch.Tensor, target: torch.Tensor, group: torch.Tensor, min_diff: float = 0.25,
              temperature: float = RANK_TEMPERATURE) -> torch.Tensor:
    """Pairwise logistic ranking loss on predicted overall scores within groups.

    For every ordered pair ``(i, j)`` of the same group whose target overall differs by at
    least ``min_diff`` (``t_i > t_j``): ``softplus(-(o_i - o_j) / temperature)``, averaged over
    the pairs (0 when there are none).

    Args:
        overall: ``[P]`` predicted overall (1..5 units, unclamped).
        target: ``[P]`` reference overall (1..5).
        group: ``[P]`` group id of every pair.
        min_diff: smallest target difference that makes a pair.
        temperature: logistic scale in score units.

    Returns:
        scalar loss.
    """
    same = group[:, None] == group[None, :]
    better = (target[:, None] - target[None, :]) >= min_diff
    sel = same & better
    if not bool(sel.any()):
        return overall.sum() * 0.0
    d = overall[:, None] - overall[None, :]
    return torch.nn.functional.softplus(-d[sel] / temperature).mean()


def _release_fingerprint(path: str) -> str:
    """A release folder's identity for the cache fingerprint: its path and weights' SHA-256."""
    from promptsep.release import sha256_file

    w = Path(path) / "model.safetensors"
    return f"{path}@{sha256_file(w) if w.is_file() else 'missing'}"


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@torch.no_grad()
def build_feature_cache(judge, dataset, folder: str | Path, groups: int, chunk_groups: int = 16,
                        meta: dict | None = None, progress: bool = True, deadline: float | None = None) -> Path:
    """Generate ``groups`` groups of ``dataset`` and store their features under ``folder``.

    Chunks already present (same ``meta``) are kept, so the build resumes after an interruption
    and a larger ``groups`` extends an existing cache (a smaller one keeps the chunks that start
    below it).

    Args:
        judge: the :class:`~judge.model.Judge` whose frozen parts give the features.
        dataset: a :class:`~judge.data.JudgeDataset`.
        folder: output folder.
        groups: number of groups (items ``0 .. groups - 1``).
        chunk_groups: groups per chunk file.
        meta: anything identifying the data (a mismatch discards the old cache).
        deadline: a ``time.time()`` after which no new chunk is started (the cache then holds
            the chunks finished so far; a later call with more time completes it).

    Returns:
        The folder.
    """
    from safetensors.torch import save_file
    from tqdm import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # items are pure functions of their index: a larger `groups` extends a cache, a smaller one reads a prefix
    # as it reads back from index.json (tuples become lists), so an unchanged cache compares equal
    meta = json.loads(json.dumps(dict(meta or {}, version=CACHE_VERSION, chunk_groups=int(chunk_groups)), default=str))
    index_path = folder / "index.json"
    index = {"meta": meta, "chunks": []}
    if index_path.is_file():
        old = json.loads(index_path.read_text())
        if old.get("meta") == meta:
            index = old
        else:
            logger.info("feature cache %s was built with other settings: rebuilding", folder)
            for f in folder.glob("chunk_*.safetensors"):
                f.unlink()
    index["chunks"] = [c for c in index["chunks"] if c["start"] < groups]
    done = {c["start"] for c in index["chunks"]}
    judge.eval()
    starts = [s for s in range(0, groups, chunk_groups) if s not in done]
    bar = tqdm(total=groups, initial=groups - sum(min(chunk_groups, groups - s) for s in starts),
               desc=f"features {folder.name}", disable=not progress)
    for s in starts:
        if deadline is not None and time.time() > deadline:
            logger.warning("feature cache %s: time budget reached after %d of %d groups", folder,
                           sum(min(chunk_groups, groups - c["start"]) for c in index["chunks"]), groups)
            break
        items = [dataset[i] for i in range(s, min(groups, s + chunk_groups))]
        mixes, ests, hands, masks, tg, grp, kinds, present, texts, claps = [], [], [], [], [], [], [], [], [], []
        for g, it in enumerate(items):
            m = it["estimates"].shape[0]
            f = judge.audio_features(it["mixture"][None].expand(m, -1, -1), it["estimates"])
            mixes.append(f["mix"][0])
            ests.append(f["est"])
            masks.append(f["mask"])
            if "hand" in f:
                hands.append(f["hand"])
            if "clap" in f:
                claps.append(f["clap"])
            tg.append(it["targets"])
            grp += [g] * m
            kinds += list(it["kinds"])
            present += [bool(it["target_present"])] * m
            texts.append(it["text"])
            bar.update(1)
        tensors = {"mix": torch.stack(mixes).float().contiguous(), "est": torch.cat(ests).float().contiguous(),
                   "mask": torch.cat(masks).contiguous(), "targets": torch.cat(tg).float().contiguous(),
                   "group": torch.tensor(grp, dtype=torch.long)}
        if hands:
            tensors["hand"] = torch.cat(hands).float().contiguous()
        if claps:
            tensors["clap"] = torch.cat(claps).float().contiguous()
        name = f"chunk_{s:06d}.safetensors"
        tmp = folder / (name + ".tmp")
        save_file(tensors, str(tmp))
        tmp.replace(folder / name)
        index["chunks"].append({"start": s, "file": name, "texts": texts, "kinds": kinds, "present": present})
        index["chunks"].sort(key=lambda c: c["start"])
        tmp = folder / "index.json.tmp"
        tmp.write_text(json.dumps(index))
        tmp.replace(index_path)
    bar.close()
    tmp = folder / "index.json.tmp"
    tmp.write_text(json.dumps(index))
    tmp.replace(index_path)
    return folder


# ------------------------------------------------------------------- metrics
def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two ``[N]`` tensors (torchmetrics; nan when either is constant)."""
    from torchmetrics.functional import pearson_corrcoef

    x, y = x.double().flatten(), y.double().flatten()
    if len(x) < 2 or float(x.std()) == 0 or float(y.std()) == 0:
        return float("nan")
    return float(pearson_corrcoef(x, y))


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (torchmetrics; average ranks for ties; nan when either is constant)."""
    from torchmetrics.functional import spearman_corrcoef

    x, y = x.double().flatten(), y.double().flatten()
    if len(x) < 2 or float(x.std()) == 0 or float(y.std()) == 0:
        return float("nan")
    return float(spearman_corrcoef(x, y))


@torch.no_grad()
def predict_cached(judge, pairs: list[dict[str, Any]], batch_size: int = 64, raw: bool = False) -> torch.Tensor:
    """1..5 predictions ``[P, 4]`` for cached pairs (``raw``: the unclamped normalised outputs ``[P, 4]``)."""
    was = judge.training
    judge.eval()
    out = []
    for s in range(0, len(pairs), batch_size):
        b = collate_features(pairs[s : s + batch_size])
        y = judge.forward_features(b, b["text"])
        out.append((y[:, :4] if raw else judge.denormalise(y)).cpu())
    judge.train(was)
    return torch.cat(out) if out else torch.zeros(0, 4)


# ---------------------------------------------------------------- lightning
class JudgeModule(L.LightningModule):
    """Lightning wrapper: weighted MSE on normalised scores; validation Pearson per axis.

    Validation runs through Lightning's loop over the cached valid pairs (batches of
    :func:`collate_features`); the epoch logs the Pearson correlation per axis and the MAE.
    """

    def __init__(self, judge, cfg):
        super().__init__()
        self.judge = judge
        self.cfg = cfg
        self.axis_weights = torch.tensor([float(w) for w in cfg.loss.axis_weights])
        self.strict_loading = False  # frozen weights are not in the resume checkpoints
        self._pred: list[torch.Tensor] = []
        self._ref: list[torch.Tensor] = []

    def on_train_batch_start(self, batch, batch_idx):
        # train mode for the judge's own layers (dropout as configured: building the feature cache leaves the
        # judge in eval mode, and Lightning keeps a module's mode), while parts with nothing to train
        # (finetune_only; Judge.train keeps the codec, text encoder and clap in eval) run as at inference
        self.judge.train()
        for mod in self.judge.children():
            if not any(p.requires_grad for p in mod.parameters()):
                mod.eval()

    def training_step(self, batch, batch_idx):
        out = self.judge.forward_features(batch, batch["text"])
        raw = out[:, :4]
        target = self.judge.normalise(batch["targets"].to(raw.device))
        w = self.axis_weights.to(raw.device)
        lc = self.cfg.loss
        mse = ((raw - target).pow(2) * w).sum(-1).mean() / w.sum()
        loss = float(lc.get("grade_weight", 1.0)) * mse
        n = raw.shape[0]
        self.log("train/mse", mse, batch_size=n)
        dw = float(lc.get("distill_weight", 0.0))
        if dw > 0 and "distill" in batch:
            # keep the starting judge's scores on the chosen kinds (learning without forgetting)
            kinds = set(lc.get("distill_kinds") or [])
            sel = torch.tensor([k in kinds for k in batch["kind"]], device=raw.device)
            if bool(sel.any()):
                d = ((raw[sel] - batch["distill"].to(raw.device)[sel]).pow(2) * w).sum(-1).mean() / w.sum()
                loss = loss + dw * d
                self.log("train/distill", d, batch_size=n)
        if out.shape[-1] == 5:
            present = torch.tensor([float(p) for p in batch["present"]], device=raw.device)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 4], present)
            loss = loss + float(lc.get("presence_weight", 1.0)) * bce
            self.log("train/presence_bce", bce, batch_size=n)
        rank_w = float(lc.get("rank_weight", 1.0))
        if rank_w > 0 and "group" in batch:
            rl = rank_loss(3.0 + 2.0 * raw[:, 3], batch["targets"][:, 3].to(raw.device), batch["group"].to(raw.device),
                           float(lc.get("rank_min_diff", 0.25)))
            loss = loss + rank_w * rl
            self.log("train/rank", rl, batch_size=n)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def configure_optimizers(self):
        o = self.cfg.optim
        params = [p for p in self.judge.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=float(o.lr), weight_decay=float(o.weight_decay))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, harness.cosine_warmup(self.cfg.trainer.max_steps, o.warmup_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith(tuple("judge." + p for p in FROZEN_PREFIXES))]:
            del sd[k]

    def on_validation_epoch_start(self):
        self._pred, self._ref = [], []

    def validation_step(self, batch, batch_idx):
        self._pred.append(self.judge.denormalise(self.judge.forward_features(batch, batch["text"])).cpu())
        self._ref.append(batch["targets"].cpu())

    def on_validation_epoch_end(self):
        if not self._pred:
            return
        pred, ref = torch.cat(self._pred), torch.cat(self._ref)
        for a, name in enumerate(AXES):
            v = pearson(pred[:, a], ref[:, a])
            self.log(f"val/pcc_{name}", v if v == v else 0.0, prog_bar=name == "overall")
        self.log("val/mae", float((pred[:, :4] - ref).abs().mean()))


# --------------------------------------------------------------------- train
#: Seconds kept free of a ``time_budget_s`` for the final checkpoint, validation and export.
BUDGET_RESERVE_S = 45.0


def _training_time_limit(cfg, elapsed_s: float):
    """``trainer.max_time`` for Lightning, shortened so that the whole run (feature cache
    included) fits in ``time_budget_s`` when that is set.

    Raises:
        RuntimeError: the feature cache alone used up the budget.
    """
    import datetime

    max_time = cfg.trainer.get("max_time")
    budget = cfg.get("time_budget_s")
    if budget is None:
        return max_time
    left = float(budget) - elapsed_s - BUDGET_RESERVE_S
    if left <= 0:
        raise RuntimeError(f"time_budget_s={budget} is used up by the feature cache ({elapsed_s:.0f} s): lower "
                           "data.groups or raise the budget (the cache is kept and reused)")
    limit = datetime.timedelta(seconds=int(left))
    if max_time:
        d, h, m, sec = (int(x) for x in str(max_time).split(":"))
        limit = min(limit, datetime.timedelta(days=d, hours=h, minutes=m, seconds=sec))
    logger.info("training time limit %s (time_budget_s=%s, %.0f s spent before training)", limit, budget, elapsed_s)
    return limit


def train_judge(cfg) -> dict[str, Any]:
    """Train a judge from a composed ``conf/train_judge.yaml``; returns metrics and paths.

    Returns:
        ``{"out_dir", "last_checkpoint", "export_dir", "global_step", "train_pairs", "val": {...},
        "cache_seconds", "train_seconds", "wall_seconds", "val_pairs"}``.
    """
    from judge.data import JudgeDataset
    from judge.model import build_judge

    t_start = time.time()
    torch.set_num_threads(int(cfg.trainer.get("threads", 2)))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    jcfg = judge_config_from(cfg)
    mix_cfg = mix_config_from(cfg)  # bad keys fail before any work
    cand_cfg = candidate_config_from(cfg)
    init_from = cfg.get("init_from") or None
    init_info = None
    lc = cfg.loss
    distill = float(lc.get("distill_weight", 0.0)) > 0
    if distill:  # checked before any work (the cache takes many minutes)
        from judge.data import KINDS

        if not init_from:
            raise ValueError("loss.distill_weight > 0 keeps the scores of the judge training starts from: set init_from")
        kinds = [str(k) for k in (lc.get("distill_kinds") or [])]
        bad = [k for k in kinds if k not in KINDS]
        if not kinds or bad:
            raise ValueError(f"loss.distill_kinds must be a non-empty list of candidate kinds with distill_weight > 0, "
                             f"got {kinds} (unknown: {bad}); known: {list(KINDS)}")
    if "codec" in cand_cfg.anchors and not cfg.get("codec_checkpoint"):
        raise ValueError("candidates.anchors has 'codec' but codec_checkpoint is null: no codec release to round-trip through")
    if init_from:
        # fine-tuning: the release's own architecture, codec, grounding and weights; the `judge:` node is unused
        from judge.model import Judge
        from promptsep.release import sha256_file

        judge = Judge.from_pretrained(init_from)  # frozen parts stay frozen, as in build_judge
        only = [str(x) for x in (cfg.get("finetune_only") or [])]
        if only:  # train only the named submodules (e.g. [head]); the rest of the release stays as it was
            names = {n for n, _ in judge.named_parameters()}
            unknown = [o for o in only if not any(n.startswith(o + ".") for n in names)]
            if unknown:
                raise ValueError(f"finetune_only: no parameters under {unknown}")
            for n, prm in judge.named_parameters():
                if not any(n.startswith(o + ".") for o in only):
                    prm.requires_grad_(False)
            if not any(p.requires_grad for p in judge.parameters()):
                raise ValueError(f"finetune_only={only}: nothing left to train (those parts are frozen)")
        init_info = {"path": str(init_from), "weights_sha256": sha256_file(Path(init_from) / "model.safetensors"),
                     "finetune_only": only}
        logger.info("judge initialised from %s (its config replaces the judge: node)", init_from)
    else:
        if cfg.get("finetune_only"):
            raise ValueError("finetune_only names parts of the release training starts from: set init_from")
        judge = build_judge(jcfg)
    codec_for_data = cfg.get("codec_checkpoint") or None
    if codec_for_data is None and cand_cfg.weights.get("codec", 0) > 0:
        from separation.codec import build_codec

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            codec_for_data = build_codec(judge.cfg.codec).eval()
    seps = [str(p) for p in (cfg.get("separator_checkpoints") or [])]
    sep = seps or None
    meta = {"mix": dataclasses.asdict(mix_cfg), "cand": dataclasses.asdict(cand_cfg), "seed": int(cfg.seed),
            # the loaded codec's weights hash (or, for a seeded random codec, its full config): a retrained
            # codec release invalidates the cache
            "codec": judge.cfg.codec_sha256 or _fingerprint(judge.cfg.codec.to_dict()), "separators": [_release_fingerprint(p) for p in seps],
            "targets": int(cand_cfg.grade_recipe),
            "hand": bool(judge.cfg.hand_features), "bands": int(judge.cfg.bands), "root": str(cfg.data.root),
            "clap": judge.cfg.clap_sha256}
    t0 = time.time()
    val_groups = int(cfg.val.groups)
    if val_groups > 0:
        val_ds = JudgeDataset(cfg.data.root, "valid", mix_cfg, cand_cfg, seed=int(cfg.seed) + 1, length=val_groups,
                              codec=codec_for_data, separator=sep)
        build_feature_cache(judge, val_ds, out_dir / "cache" / "valid", val_groups, int(cfg.data.chunk_groups),
                            meta={**meta, "split": "valid", "seed": int(cfg.seed) + 1})
    train_ds = JudgeDataset(cfg.data.root, "train", mix_cfg, cand_cfg, seed=int(cfg.seed),
                            length=int(cfg.data.groups), codec=codec_for_data, separator=sep)
    cache_budget = cfg.data.get("cache_budget_s")
    deadline = None if cache_budget is None else t_start + float(cache_budget)
    build_feature_cache(judge, train_ds, out_dir / "cache" / "train", int(cfg.data.groups),
                        int(cfg.data.chunk_groups), meta={**meta, "split": "train"}, deadline=deadline)
    cache_seconds = time.time() - t0
    train_cache = FeatureCache(out_dir / "cache" / "train", seed=int(cfg.seed))
    logger.info("feature cache: %d train pairs (%.0f s)", train_cache.num_pairs, cache_seconds)

    if distill:
        # the starting judge's normalised scores on every cached pair, computed once before any step
        train_cache.distill = predict_cached(judge, train_cache.all_pairs(), raw=True)
        logger.info("distillation targets: the starting judge's scores on %d pairs", train_cache.num_pairs)
    module = JudgeModule(judge, cfg)
    per_group = max(1, round(train_cache.num_pairs / max(1, train_cache.num_groups)))
    val_pairs = FeatureCache(out_dir / "cache" / "valid").all_pairs() if val_groups > 0 else []

    ckpt_path = harness.resume_checkpoint(cfg, out_dir)
    start_step = harness.resume_step(ckpt_path)
    bs = max(1, round(int(cfg.data.batch_size) / per_group))  # whole groups per batch (~data.batch_size pairs)
    loader = DataLoader(train_cache, batch_size=bs, sampler=harness.StepSampler(start_step * bs, 10**9),
                        collate_fn=collate_features, num_workers=0)
    val_loader = DataLoader(val_pairs, batch_size=64, collate_fn=collate_features) if val_pairs else None
    val_every = min(int(cfg.val.every), int(cfg.trainer.max_steps)) if val_pairs else None
    max_time = _training_time_limit(cfg, time.time() - t_start)
    trainer = harness.build_trainer(cfg.trainer, out_dir, int(cfg.trainer.max_steps), grad_clip=float(cfg.optim.grad_clip),
                            ckpt_every=int(cfg.trainer.ckpt_every), val_every=val_every, max_time=max_time,
                            deterministic=False)
    t1 = time.time()
    last = harness.fit(trainer, module, loader, ckpt_path, out_dir, val_loader=val_loader)
    train_seconds = time.time() - t1

    result: dict[str, Any] = {"out_dir": str(out_dir), "last_checkpoint": str(last), "global_step": trainer.global_step,
                              "train_pairs": train_cache.num_pairs, "train_groups": int(train_cache.mix.shape[0]), "cache_seconds": round(cache_seconds, 1),
                              "train_seconds": round(train_seconds, 1)}
    result["val_pairs"] = len(val_pairs)
    result["grade_recipe"] = int(cand_cfg.grade_recipe)
    result["anchors"] = list(cand_cfg.anchors)
    result["loss"] = {k: (list(v) if k == "distill_kinds" else float(v)) for k, v in cfg.loss.items() if k != "axis_weights"}
    result["init_from"] = init_info
    val = {}
    if val_pairs:
        pred = predict_cached(judge, val_pairs)
        ref = torch.stack([p["targets"] for p in val_pairs])
        val = {f"pcc_{a}": pearson(pred[:, i], ref[:, i]) for i, a in enumerate(AXES)}
    result["val"] = val
    if cfg.get("export_dir") and trainer.is_global_zero:
        judge.eval()
        result["export_dir"] = str(judge.save_pretrained(cfg.export_dir))
        logger.info("exported the judge to %s", result["export_dir"])
        (Path(cfg.export_dir) / "train_result.json").write_text(json.dumps(
            {**result, "wall_seconds": round(time.time() - t_start, 1)}, indent=2, default=str))
    result["wall_seconds"] = round(time.time() - t_start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    """Hydra entry point: ``python -m judge.train [overrides]`` (multirun and launchers work)."""
    return harness.hydra_entry("train_judge", train_judge, argv)


if __name__ == "__main__":
    raise SystemExit(main())
