"""The foundation package: one release format, checksums, strict configs, resolution."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
import torch

from promptsep import release


@dataclass
class _Inner:
    rates: tuple[int, ...] = (2, 4)
    width: int = 8


@dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    name: str = "x"
    opt: _Inner | None = None


def test_config_from_dict_is_strict_and_names_the_key():
    cfg = release.config_from_dict(_Outer, {"inner": {"rates": [3, 5]}, "opt": {"width": 2}})
    assert cfg.inner.rates == (3, 5) and cfg.opt.width == 2 and cfg.name == "x"
    with pytest.raises(ValueError, match="'inner.widht'"):
        release.config_from_dict(_Outer, {"inner": {"widht": 3}})
    with pytest.raises(ValueError, match="'nmae'"):
        release.config_from_dict(_Outer, {"nmae": "y"})


def test_release_round_trip_atomic_and_checksummed(tmp_path):
    t = {"w": torch.arange(6.0).reshape(2, 3)}
    out = release.save_release(tmp_path / "r", t, {"a": 1}, "toy", extra={"note": "hi"})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # no temp files left
    meta = json.loads((out / "config.json").read_text())
    assert meta["weights_sha256"] == release.sha256_file(out / "model.safetensors")
    root, meta, tensors = release.read_release(out, "toy")
    assert torch.equal(tensors["w"], t["w"]) and meta["note"] == "hi"
    with pytest.raises(ValueError, match="not 'other'"):
        release.read_release(out, "other")


def test_tampered_weights_are_refused_old_releases_still_load(tmp_path):
    out = release.save_release(tmp_path / "r", {"w": torch.ones(64)}, {}, "toy")
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-3] ^= 0x01  # one flipped bit inside the tensor data
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt or was modified"):
        release.read_release(out, "toy")
    meta = json.loads((out / "config.json").read_text())
    del meta["weights_sha256"]  # a release written before checksums existed
    (out / "config.json").write_text(json.dumps(meta))
    _, _, tensors = release.read_release(out, "toy")
    assert tensors["w"].shape == (64,)


def test_shipped_releases_carry_and_pass_their_checksum():
    for name in ("promptsep-v2", "promptsep-v2-video", "promptsep-tiny", "promptsep-tiny/codec", "promptsep-judge-tiny",
                 "promptsep-judge-tiny/clap",
                 "promptsep-clap-tiny", "promptsep-mosaic-tiny"):
        root, meta = release.read_meta(release.packaged_checkpoint(name))
        assert "weights_sha256" in meta, name
        release.verify_weights(root, meta)


def test_shipped_clap_is_trained_on_the_wide_corpus_from_the_mosaic_tower_and_the_judge_keeps_its_own_grounding():
    """clap-tiny is trained on the wide corpus's train split (86 labels; no reserved package among
    its training groups) from the self-supervised mosaic-tiny tower, whose weights it names by
    checksum; the judge loads the embedding it was trained with from its own folder."""
    from separation.data import EXCLUDED_COMPOSERS, is_reserved_package

    _, meta = release.read_meta(release.packaged_checkpoint("promptsep-clap-tiny"))
    train = meta["training"]
    assert train["train_labels"] == 86 and train["init_audio_from"]["kind"] == "promptsep_mosaic"
    assert len(train["init_audio_from"]["weights_sha256"]) == 64
    assert train["cut_schedule"] is None
    packages = {g.split(":", 1)[0] for g in train["train_groups"]}
    assert len(packages) > 10 and not any(is_reserved_package(p) for p in packages), sorted(packages)
    assert not [g for g in train["train_groups"] if any(c in g.lower() for c in EXCLUDED_COMPOSERS)]
    judge_dir = release.packaged_checkpoint("promptsep-judge-tiny")
    _, jmeta = release.read_meta(judge_dir)
    assert jmeta["config"]["clap_path"] == "clap"
    _, old = release.read_meta(judge_dir / "clap")
    assert old["weights_sha256"] != meta["weights_sha256"]


def test_resolution_errors_say_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="no folder 'nobody/nothing', and the hub id 'nobody/nothing' could not"):
        release.resolve_checkpoint("nobody/nothing")
    with pytest.raises(FileNotFoundError, match="no folder"):
        release.resolve_checkpoint(str(tmp_path / "missing"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        release.resolve_checkpoint(tmp_path / "half")


def test_every_model_family_loads_by_hub_id_error_and_rejects_unknown_config_keys(tmp_path, monkeypatch):
    """Separator, codec and judge load through the same resolver (a missing hub id is one clear error),
    and an unknown key in a release's config.json fails naming it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from judge.model import Judge
    from separation.codec import DACVAE
    from separation.model import SeparationModel

    for cls in (SeparationModel, DACVAE, Judge):
        with pytest.raises(FileNotFoundError, match="hub id 'nobody/nothing' could not be fetched"):
            cls.from_pretrained("nobody/nothing")
    import shutil

    dst = tmp_path / "codec"
    shutil.copytree(release.packaged_checkpoint("promptsep-tiny/codec"), dst)
    meta = json.loads((dst / "config.json").read_text())
    meta["config"]["latnet_dim"] = 3
    (dst / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'latnet_dim'"):
        DACVAE.from_pretrained(dst)


def test_foundation_imports_nothing_of_the_project():
    code = ("import sys, promptsep, promptsep.errors, promptsep.audio, promptsep.release, promptsep.cli, "
            "promptsep.__main__\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('separation', 'prompts', 'judge', 'bench', 'demo', 'embeddings'))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_python_m_promptsep_help():
    r = subprocess.run([sys.executable, "-m", "promptsep", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage: promptsep" in r.stdout and "separate IN" in r.stdout


def test_atomic_file_leaves_the_destination_untouched_on_error_and_no_temporary(tmp_path):
    """Release files and training checkpoints are written through one atomic writer."""
    from promptsep.release import atomic_file

    dest = tmp_path / "last.ckpt"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(dest) as f:
            f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert dest.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    with atomic_file(dest) as f:
        f.write(b"new")
    assert dest.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
