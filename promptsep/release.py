"""The one release format of promptsep, and where releases are found.

A release is a folder with ``config.json`` and ``model.safetensors``::

    config.json        {"format_version": 1, "kind": "...", "config": {...},
                        "weights_sha256": "<hex SHA-256 of model.safetensors>", ...extra}
    model.safetensors  the weights (no pickle anywhere)

Every model family (codec, separator, judge, clap-tiny, mosaic-tiny) writes and reads it
through :func:`save_release` and :func:`read_release`: both files are written atomically
(temporary file + :func:`os.replace`), the weights' SHA-256 is stored in ``config.json`` and
checked on load (a tampered or bit-flipped file is refused; releases written before the
checksum existed still load), and configs are rebuilt by :func:`config_from_dict`, which
rejects unknown keys by name.

:func:`resolve_checkpoint` turns a path or a hub id into a folder, with one error that says
what was tried; :func:`packaged_checkpoint` finds the shipped defaults through the installed
package (wheel) or the source checkout.

This module imports nothing of the project; ``torch`` and ``safetensors`` only when used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Version of the release layout (config.json + model.safetensors).
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Environment variable naming a folder of checkpoints that overrides the packaged ones.
CHECKPOINTS_ENV = "PROMPTSEP_CHECKPOINTS"


class ReleaseError(ValueError):
    """A release folder that cannot be used: wrong kind or version, bad JSON, checksum mismatch ..."""


# ------------------------------------------------------------------ configs
def config_from_dict(kls: type, d: Mapping[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``kls`` from a plain mapping, strictly.

    Nested dataclass fields are built recursively; lists become tuples where the field is a
    tuple. An unknown key is an error that names it (so a misspelt Hydra override or a bad
    ``config.json`` never passes silently).

    Args:
        kls: a dataclass type.
        d: its plain-JSON form (``None`` -> ``None``).
        where: dotted prefix used in error messages.

    Raises:
        ReleaseError: an unknown key (named in the message) or a non-mapping value.
    """
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise ReleaseError(f"{where or kls.__name__}: expected a mapping of {kls.__name__} options, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(kls) if f.init}
    unknown = [k for k in d if k not in fields]
    if unknown:
        names = ", ".join(repr(f"{where}.{k}" if where else k) for k in unknown)
        raise ReleaseError(f"unknown {kls.__name__} key {names}; known keys: {sorted(fields)}")
    try:
        hints = typing.get_type_hints(kls)
    except Exception:  # unresolvable forward references: fall back to the values as given
        hints = {}
    kw = {}
    for k, v in d.items():
        kw[k] = _convert(hints.get(k), v, f"{where}.{k}" if where else k)
    return kls(**kw)


def float_list(v: Any) -> list[float] | None:
    """``v`` (a list, tuple or 1-d array of numbers, e.g. from JSON or YAML) as a plain float list; None stays None."""
    return None if v is None else [float(x) for x in v]


class JsonConfig:
    """Mixin of the dataclass configs: ``to_dict`` (plain JSON form) and strict ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`; an unknown key is an error naming it (:func:`config_from_dict`)."""
        return config_from_dict(cls, d)


def _convert(tp: Any, v: Any, where: str) -> Any:
    """``v`` converted to annotation ``tp`` (dataclasses recursively, lists to tuples)."""
    if tp is None or v is None:
        return v
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _convert(args[0], v, where)
        return v
    if dataclasses.is_dataclass(tp) and isinstance(v, Mapping):
        return config_from_dict(tp, v, where)
    if (origin is tuple or tp is tuple) and isinstance(v, list):
        return tuple(v)
    return v


# ----------------------------------------------------------------- checksum
def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> typing.Iterator[typing.BinaryIO]:
    """Write ``path`` atomically: yields a binary file that takes the final name only on success.

    The temporary file comes from :func:`tempfile.mkstemp` in the destination folder (an
    unpredictable name opened with ``O_EXCL``, so a planted symlink is never followed), is
    fsynced, then renamed over ``path``; on any error it is removed and ``path`` is untouched.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


# ------------------------------------------------------------------- saving
def save_release(path: str | os.PathLike, tensors: Mapping[str, Any], config: Mapping[str, Any], kind: str,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write a release folder atomically: ``model.safetensors`` then ``config.json``.

    Args:
        path: the folder (created if missing).
        tensors: name -> tensor (moved to CPU, made contiguous).
        config: the model's plain-JSON config (``dataclasses.asdict`` form).
        kind: the model family (checked on load).
        extra: more top-level keys for ``config.json`` (e.g. training provenance).

    Returns:
        The folder.
    """
    from safetensors.torch import save as save_bytes

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    blob = save_bytes(state, metadata={"format_version": str(FORMAT_VERSION), "kind": kind})
    _write_atomic(out / WEIGHTS_NAME, blob)
    meta = {"format_version": FORMAT_VERSION, "kind": kind, "config": dict(config), **dict(extra or {}),
            "weights_sha256": hashlib.sha256(blob).hexdigest()}
    _write_atomic(out / CONFIG_NAME, json.dumps(meta, indent=2).encode())
    return out


# ------------------------------------------------------------------ loading
def read_meta(path: str | os.PathLike, kind: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Resolve a release and read its ``config.json`` (kind and format version checked).

    Returns:
        ``(folder, meta)``.
    """
    root = resolve_checkpoint(path)
    cfg_file = root / CONFIG_NAME
    try:
        meta = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ReleaseError(f"{cfg_file} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ReleaseError(f"{cfg_file} does not hold a JSON object")
    if kind is not None and meta.get("kind") != kind:
        raise ReleaseError(f"{root} holds a {meta.get('kind')!r} checkpoint (config.json kind), not {kind!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ReleaseError(f"{root}: format_version {meta.get('format_version')!r} is not {FORMAT_VERSION} "
                           "(the release layout this version of promptsep reads)")
    return root, meta


def verify_weights(root: Path, meta: Mapping[str, Any]) -> None:
    """Refuse weights whose SHA-256 differs from the one ``config.json`` records.

    Releases written before checksums existed (no ``weights_sha256``) pass with a debug note.
    """
    want = meta.get("weights_sha256")
    if want is None:
        logger.debug("%s records no weights_sha256; not verified", root)
        return
    got = sha256_file(root / WEIGHTS_NAME)
    if got != want:
        raise ReleaseError(f"{root / WEIGHTS_NAME} is corrupt or was modified: its SHA-256 is {got}, "
                           f"config.json records {want}; re-download or re-export the release")


def read_release(path: str | os.PathLike, kind: str | None = None,
                 map_location: Any = "cpu") -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Read a release: ``(folder, meta, tensors)`` after kind, version and checksum checks."""
    from safetensors.torch import load_file

    root, meta = read_meta(path, kind)
    verify_weights(root, meta)
    return root, meta, load_file(str(root / WEIGHTS_NAME), device=str(map_location))


def load_state_strict(module: Any, tensors: Mapping[str, Any], expected: typing.Iterable[str], where: Any) -> None:
    """Load ``tensors`` into ``module``: exactly the ``expected`` keys, none missing or extra."""
    expected = set(expected)
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise ReleaseError(f"{where}: checkpoint mismatch, missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
    try:
        module.load_state_dict(dict(tensors), strict=False)
    except RuntimeError as e:
        raise ReleaseError(f"{where}: weights do not match the config: {e}") from e


# --------------------------------------------------------------- resolution
def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "~")) and "\\" not in s


def resolve_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """A release folder from a local path (the folder or a file in it) or a hub id.

    A path that exists locally is used as is. Otherwise a string of the form ``owner/name``
    is fetched with ``huggingface_hub`` (needs the network or its cache).

    Raises:
        FileNotFoundError: with what was tried, e.g. ``no folder 'a/b', and the hub id 'a/b'
            could not be fetched: ...``.
    """
    p = Path(path).expanduser()
    if p.is_file():
        p = p.parent
    if p.is_dir():
        missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (p / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{p} is not a {what} folder: it has no {' and no '.join(missing)}")
        return p
    s = str(path)
    if not _looks_like_hub_id(s):
        raise FileNotFoundError(f"{what} not found: no folder {s!r} (and it is not a hub id of the form owner/name)")
    try:
        from huggingface_hub import snapshot_download

        got = Path(snapshot_download(s, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "*.md", "*.json"]))
    except Exception as e:  # offline, unknown repo, no huggingface_hub ...
        raise FileNotFoundError(f"{what} not found: no folder {s!r}, and the hub id {s!r} could not be fetched: "
                                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    return resolve_checkpoint(got, what)


def _package_data_dir(name: str) -> Path:
    """``promptsep/<name>`` inside the installed package (a wheel ships the data there), else the
    ``<name>/`` folder of a source checkout next to the installed ``promptsep`` package."""
    from importlib import resources

    pkg = Path(str(resources.files("promptsep")))
    for cand in (pkg / name, pkg.parent / name):
        if cand.is_dir():
            return cand
    return pkg / name


def checkpoints_dir() -> Path:
    """The folder holding the shipped checkpoints.

    Looked up, in order: ``$PROMPTSEP_CHECKPOINTS``; ``promptsep/checkpoints`` inside the
    installed package (a wheel ships them there as package data); the ``checkpoints/`` folder
    of a source checkout next to the installed ``promptsep`` package.
    """
    env = os.environ.get(CHECKPOINTS_ENV)
    if env:
        return Path(env)
    return _package_data_dir("checkpoints")


def config_dir() -> Path:
    """The Hydra config tree (``conf/``): ``promptsep/conf`` in a wheel, else the source checkout's.

    Also registers the config resolver ``${packaged:NAME}`` (:func:`register_config_resolvers`),
    with which the configs name the shipped releases, so whoever composes these configs has it.
    """
    register_config_resolvers()
    return _package_data_dir("conf")


def examples_dir() -> Path:
    """The bundled example recordings (``examples.json`` + audio): ``promptsep/examples`` in a wheel,
    else the source checkout's ``examples/``."""
    return _package_data_dir("examples")


def register_config_resolvers() -> None:
    """Register the OmegaConf resolver ``${packaged:NAME}``: the path of the shipped release ``NAME``
    (:func:`packaged_checkpoint`, e.g. ``${packaged:promptsep-tiny/codec}``), wherever the package is
    installed. Idempotent."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("packaged"):
        OmegaConf.register_new_resolver("packaged", lambda name: str(packaged_checkpoint(str(name))))


def conf_node(group: str, name: str) -> dict[str, Any]:
    """The plain content of ``conf/<group>/<name>.yaml`` (the one table of named sizes and layouts).

    Raises:
        ValueError: no such option (the message lists the known ones).
    """
    import yaml

    path = config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        raise ValueError(f"unknown {group} option {name!r}; known presets: {known}")
    return yaml.safe_load(path.read_text()) or {}


def packaged_checkpoint(name: str) -> Path:
    """A shipped release by name, e.g. ``packaged_checkpoint("promptsep-tiny")``."""
    return checkpoints_dir() / name


def stamp_weights_sha256(path: str | os.PathLike) -> str:
    """Record the SHA-256 of a release's current weights in its ``config.json`` (atomically).

    For releases written before checksums existed; the weights file is not touched.

    Returns:
        The hex digest.
    """
    root, meta = read_meta(path)
    digest = sha256_file(root / WEIGHTS_NAME)
    meta["weights_sha256"] = digest
    text = json.dumps(meta, indent=2)
    _write_atomic(root / CONFIG_NAME, (text + "\n").encode() if (root / CONFIG_NAME).read_text().endswith("\n")
                  else text.encode())
    return digest
