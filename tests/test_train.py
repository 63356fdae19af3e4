"""Training: every config composes, the debug experiment trains and exports, resume is exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from separation.harness import CONF_DIR

GROUPS = {g: sorted(p.stem for p in (Path(CONF_DIR) / g).glob("*.yaml")) for g in ("model", "codec", "data", "trainer")}


def _compose(name="train", overrides=()):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_config_option_composes(group, option):
    from separation.train import model_config_from

    cfg = _compose(overrides=[f"{group}={option}"])
    assert cfg[group] is not None
    mcfg = model_config_from(cfg)
    assert mcfg.dit.width > 0 and mcfg.codec.sample_rate > 0


@pytest.mark.parametrize("name", ["train_codec"] + sorted(p.stem for p in Path(CONF_DIR).glob("*.yaml") if p.stem != "train"))
def test_top_level_configs_compose(name):
    assert _compose(name) is not None


def test_experiments_compose():
    for exp in sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")):
        cfg = _compose(overrides=[f"experiment={exp}"])
        assert cfg.trainer.max_steps > 0


def _debug_cfg(tiny_corpus, out, steps, extra=()):
    return _compose(overrides=["experiment=debug", f"data.root={tiny_corpus}", f"out_dir={out}",
                                f"trainer.max_steps={steps}", *extra])


def test_debug_experiment_trains_validates_and_exports(tiny_corpus, tmp_path):
    from separation.separator import Separator
    from separation.train import train

    cfg = _debug_cfg(tiny_corpus, tmp_path / "run", 4, [f"export_dir={tmp_path / 'release'}"])
    result = train(cfg)
    assert result["global_step"] == 4
    assert "val/si_sdri" in result["val"]
    assert Path(result["last_checkpoint"]).is_file()
    sep = Separator.from_pretrained(result["export_dir"])
    out = sep.separate(torch.randn(1, 4000) * 0.1, 16000, text="tone", steps=2)
    assert out.target.shape == (1, 4000)


def test_resume_matches_uninterrupted_run(tiny_corpus, tmp_path):
    from separation.train import train

    full = train(_debug_cfg(tiny_corpus, tmp_path / "a", 4))
    train(_debug_cfg(tiny_corpus, tmp_path / "b", 2))           # stopped after 2 steps
    resumed = train(_debug_cfg(tiny_corpus, tmp_path / "b", 4))  # resume=auto picks up last.ckpt
    assert resumed["global_step"] == 4
    a = torch.load(full["last_checkpoint"], map_location="cpu", weights_only=True)
    b = torch.load(resumed["last_checkpoint"], map_location="cpu", weights_only=True)
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)
    for k, v in a["ema"].items():
        torch.testing.assert_close(b["ema"][k], v, rtol=0, atol=1e-6, msg=k)


def test_schedule_steps_sets_the_cosine_length_of_a_leg_stopped_early(tiny_corpus, tmp_path):
    """optim.schedule_steps: a run stopped at trainer.max_steps follows the longer run's LR path
    (the ablation legs); without it the cosine ends at max_steps."""
    from separation.harness import cosine_warmup
    from separation.train import train

    lrs = {}
    for sched in ("null", "12"):
        cfg = _debug_cfg(tiny_corpus, tmp_path / sched, 3, ["optim.warmup_steps=1", f"optim.schedule_steps={sched}"])
        ck = torch.load(train(cfg)["last_checkpoint"], map_location="cpu", weights_only=True)
        lrs[sched] = ck["lr_schedulers"][0]["_last_lr"][0] / float(cfg.optim.lr)
    assert lrs["null"] == pytest.approx(cosine_warmup(3, 1)(3))        # the floor: the cosine ended
    assert lrs["12"] == pytest.approx(cosine_warmup(12, 1)(3)) and lrs["12"] > 0.8


class _Payload:
    """Unpickling this creates ``path`` (a harmless stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = Path(path)

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_malicious_resume_pickle_is_refused_and_never_executed(tiny_corpus, tmp_path):
    """Issue 11 item 2: resume state loads with weights_only=True everywhere (ours and Lightning's)."""
    from separation.harness import ResumeError, _safe_checkpoint_io
    from separation.train import train

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"global_step": 1, "state_dict": {}, "x": _Payload(marker)}, evil)
    # the payload is live: what unpickling calls (its __reduce__) runs code; shown without unpickling
    probe = tmp_path / "probe"
    fn, args = _Payload(probe).__reduce__()
    fn(*args)
    assert probe.exists()

    with pytest.raises(ResumeError, match="weights_only=True"):
        train(_debug_cfg(tiny_corpus, tmp_path / "run", 2, [f"resume={evil}"]))
    assert not marker.exists()
    with pytest.raises(ResumeError):  # the checkpoint I/O Lightning itself resumes through
        _safe_checkpoint_io().load_checkpoint(evil)
    assert not marker.exists()


_KILL_STEPS = 30  # long enough that a busy machine still kills it mid-run (after step 2)


def _spy_steps(monkeypatch):
    """Record (global_step, batch fingerprint) of every real training step run in this process."""
    from separation.train import SeparationModule

    seen = []
    real = SeparationModule.training_step

    def step(self, batch, batch_idx):
        seen.append((int(self.global_step), float(batch["mixture"].double().sum())))
        return real(self, batch, batch_idx)

    monkeypatch.setattr(SeparationModule, "training_step", step)
    return seen


def _kill_and_resume(tiny_corpus, tmp_path, monkeypatch, resume: str):
    import os
    import signal
    import subprocess
    import sys
    import time

    from separation.train import train

    out = tmp_path / "killed"
    over = ["experiment=debug", f"data.root={tiny_corpus}", f"out_dir={out}", f"trainer.max_steps={_KILL_STEPS}",
            "trainer.ckpt_every=1", "val.every=1000"]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "separation.train", *over], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "last.ckpt"
    killed_at = None
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.is_file():
                step = int(torch.load(last, map_location="cpu", weights_only=True)["global_step"])
                if step >= 2:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the training process finished before it could be killed"
    killed_at = int(torch.load(last, map_location="cpu", weights_only=True)["global_step"])
    assert 2 <= killed_at < _KILL_STEPS
    seen = _spy_steps(monkeypatch)
    result = train(_compose(overrides=[*over, f"resume={resume}"]))
    return killed_at, seen, result


def _assert_same_state(a, b):
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)
    for k, v in a["ema"].items():
        torch.testing.assert_close(b["ema"][k], v, rtol=0, atol=1e-6, msg=f"ema {k}")
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for name, v in sa[i].items():
            torch.testing.assert_close(sb[i][name], v, rtol=0, atol=1e-6, msg=f"optimizer {i} {name}")
    assert a["global_step"] == b["global_step"]


def test_killed_training_process_resumes_exactly(tiny_corpus, tmp_path, monkeypatch):
    """Issue 11 item 6: a real training process is SIGKILLed mid-run; the resumed run trains only the
    remaining steps on the same data and ends with the weights, EMA, optimizer state and step of
    an uninterrupted run."""
    from separation.train import train

    killed_at, seen, resumed = _kill_and_resume(tiny_corpus, tmp_path, monkeypatch, "auto")
    seen_resumed = list(seen)  # (the spy below wraps this one, which would keep recording)
    assert [s for s, _ in seen_resumed] == list(range(killed_at, _KILL_STEPS)), "resumed run retrained steps"
    seen_full = _spy_steps(monkeypatch)
    full = train(_compose(overrides=["experiment=debug", f"data.root={tiny_corpus}", f"out_dir={tmp_path / 'full'}",
                                     f"trainer.max_steps={_KILL_STEPS}", "trainer.ckpt_every=1", "val.every=1000"]))
    assert seen_full[killed_at:] == seen_resumed  # same data order from the resume point on
    assert resumed["global_step"] == full["global_step"] == _KILL_STEPS
    a = torch.load(full["last_checkpoint"], map_location="cpu", weights_only=True)
    b = torch.load(resumed["last_checkpoint"], map_location="cpu", weights_only=True)
    _assert_same_state(a, b)


def test_kill_and_resume_test_fails_without_resuming(tiny_corpus, tmp_path, monkeypatch):
    """The check above is not vacuous: with resuming disabled the rerun retrains from step 0."""
    killed_at, seen, _ = _kill_and_resume(tiny_corpus, tmp_path, monkeypatch, "null")
    assert [s for s, _ in seen] != list(range(killed_at, _KILL_STEPS))


def test_codec_training_exports_a_normalised_codec(tiny_corpus, tmp_path):
    from separation.codec import DACVAE
    from separation.train_codec import train_codec

    cfg = _compose("train_codec", [f"corpus={tiny_corpus}", f"out_dir={tmp_path / 'codec_run'}",
                                   f"export_dir={tmp_path / 'codec'}", "max_steps=3", "batch_size=2",
                                   "num_workers=0", "segment_s=0.25", "stats_batches=2", "trainer.threads=1",
                                   "codec.encoder_dim=8", "codec.encoder_rates=[4,8]", "codec.latent_dim=8",
                                   "codec.decoder_dim=16", "codec.decoder_rates=[8,4]"])
    result = train_codec(cfg)
    assert result["global_step"] == 3
    codec = DACVAE.from_pretrained(result["export_dir"])
    assert codec.cfg.latent_std is not None and len(codec.cfg.latent_std) == 8
    z = codec.encode(torch.randn(1, 1, 4000) * 0.1)
    assert z.shape == (1, 8, codec.num_frames(4000))


def test_misspelt_override_or_unknown_config_key_fails_naming_it():
    from omegaconf import open_dict

    from separation.train import model_config_from

    with pytest.raises(Exception, match="widht"):
        _compose(overrides=["model.dit.widht=64"])  # Hydra's struct mode
    cfg = _compose(overrides=["experiment=debug"])
    with open_dict(cfg):
        cfg.model.dit.widht = 64  # e.g. a key a YAML adds that DiTConfig does not know
    with pytest.raises(ValueError, match="'model.dit.widht'"):
        model_config_from(cfg)
    with open_dict(cfg):
        del cfg.model.dit.widht
        cfg.model.size = "tiny"
    with pytest.raises(ValueError, match="model.size"):
        model_config_from(cfg)


def test_misspelt_data_override_fails_naming_it_in_both_trainers(tiny_corpus, tmp_path):
    """A ``data.*`` key that is no mixing option (nor a loader key) stops the separator and the
    judge trainers before any work, naming the key; so does an unknown prompt kind."""
    from judge.train import train_judge
    from separation.train import train

    with pytest.raises(Exception, match="segmnet_s"):
        _compose(overrides=["experiment=debug", "data.segmnet_s=1.0"])  # Hydra's struct mode
    common = [f"data.root={tiny_corpus}", "codec_checkpoint=null", "export_dir=null", "trainer.threads=1"]
    cfg = _compose(overrides=["experiment=debug", "+data.segmnet_s=1.0", f"out_dir={tmp_path / 'sep'}", *common])
    with pytest.raises(ValueError, match="'data.segmnet_s'"):
        train(cfg)
    cfg = _compose(overrides=["experiment=debug", "+data.prompt_kinds.vidoe=0.1", f"out_dir={tmp_path / 'sep'}",
                              *common])
    with pytest.raises(ValueError, match="'data.prompt_kinds.vidoe'"):
        train(cfg)
    cfg = _compose(overrides=["experiment=debug", "+data.augment.reverbb=true", f"out_dir={tmp_path / 'sep'}",
                              *common])
    with pytest.raises(ValueError, match="'data.augment.reverbb'"):
        train(cfg)
    assert not (tmp_path / "sep" / "last.ckpt").exists()
    cfg = _compose("train_judge", ["judge=debug", "+data.max_sourcse=3", f"out_dir={tmp_path / 'judge'}", *common])
    with pytest.raises(ValueError, match="'data.max_sourcse'"):
        train_judge(cfg)
    assert not (tmp_path / "judge" / "cache").exists()


def test_embedding_trainer_validates_through_lightnings_loop(tiny_corpus, tmp_path):
    """The embedding trainer's validation runs over the valid bank in Lightning's loop (one
    validation_step per batch) and scores exactly what evaluate_bank scores on the same model."""
    from hydra import compose, initialize_config_dir

    from bench.embedding.train import CONF_DIR, EmbeddingModule, train_embedding

    calls = []
    real = EmbeddingModule.validation_step

    def spy(self, batch, batch_idx):
        calls.append(len(batch["idx"]))
        return real(self, batch, batch_idx)

    EmbeddingModule.validation_step = spy
    try:
        overrides = [
            f"corpus={tiny_corpus}", f"out_dir={tmp_path / 'run'}", f"export_dir={tmp_path / 'export'}",
            "model.text_kind=tiny_t5", "model.text_dim=32",
            "model.text_hidden=32", "model.embed_dim=16", "model.audio.channels=[4,8]", "model.audio.width=16",
            "model.audio.depth=1", "model.audio.heads=2", "data.batch_size=4", "data.crop_s=0.5",
            "trainer.max_steps=2", "trainer.val_every=2", "trainer.ckpt_every=2", "trainer.log_every=1",
            "progress=false", "final_eval=null",
        ]
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            result = train_embedding(compose(config_name="train_clap", overrides=overrides))
    finally:
        EmbeddingModule.validation_step = real
    assert calls and sum(calls) == result["evaluation"]["valid"]["clips"]  # every valid clip, once
    last = result["val_history"][-1]
    assert last["step"] == 2
    assert last["zero_shot_acc"] == pytest.approx(result["evaluation"]["valid"]["zero_shot_acc"])


def test_embedding_run_cut_by_its_wall_cap_mid_cosine_says_so(tiny_corpus, tmp_path):
    """With optim.schedule_by=steps, a trainer.max_time that ends the run before trainer.max_steps
    leaves the cosine cut: the result, the export's config.json and its model card record it;
    a run that reaches its steps records nothing."""
    import json

    from hydra import compose, initialize_config_dir

    from bench.embedding.train import CONF_DIR, train_embedding

    base = [
        f"corpus={tiny_corpus}", "model.text_kind=tiny_t5", "model.text_dim=32", "model.text_hidden=32",
        "model.embed_dim=16", "model.audio.channels=[4,8]", "model.audio.width=16", "model.audio.depth=1",
        "model.audio.heads=2", "data.batch_size=4", "data.crop_s=0.5", "trainer.val_every=100000",
        "trainer.ckpt_every=100000", "trainer.log_every=1", "progress=false", "final_eval=null",
        "optim.schedule_by=steps", "optim.warmup_steps=1",
    ]
    results = {}
    for name, extra in (("cut", ["trainer.max_steps=100000", "trainer.max_time=00:00:00:02"]),
                        ("full", ["trainer.max_steps=2"])):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="train_clap", overrides=base + extra + [
                f"out_dir={tmp_path / name}", f"export_dir={tmp_path / (name + '_export')}"])
            results[name] = train_embedding(cfg)
    cut = results["cut"]["cut_schedule"]
    assert 0 < cut["step"] < 100000 and cut["max_steps"] == 100000 and cut["lr_fraction"] > 0.9
    training = json.loads((tmp_path / "cut_export" / "config.json").read_text())["training"]
    assert training["cut_schedule"]["step"] == cut["step"]
    assert "stopped by the wall cap" in (tmp_path / "cut_export" / "MODEL_CARD.md").read_text()
    assert "cut_schedule" not in results["full"]
    assert json.loads((tmp_path / "full_export" / "config.json").read_text())["training"]["cut_schedule"] is None
    assert "stopped by the wall cap" not in (tmp_path / "full_export" / "MODEL_CARD.md").read_text()


def test_cut_schedule_flags_only_a_steps_schedule_stopped_by_its_wall_cap():
    """cut_schedule: a steps schedule stopped by trainer.max_time is flagged (in warmup or in the
    cosine, at the scheduler's own learning rate); a time schedule, a run without a wall cap and a
    finished run are not."""
    from omegaconf import OmegaConf

    from bench.embedding.train import cut_schedule, lr_fraction

    def cfg(schedule_by, max_time="00:00:10:00"):
        return OmegaConf.create({"optim": {"schedule_by": schedule_by, "warmup_steps": 10},
                                 "trainer": {"max_steps": 100, "max_time": max_time}})

    mid = cut_schedule(cfg("steps"), 55)
    assert mid["step"] == 55 and not mid["in_warmup"] and mid["lr_fraction"] == pytest.approx(0.525)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_fraction(s, 10, 100))
    for _ in range(55):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(mid["lr_fraction"])
    warm = cut_schedule(cfg("steps"), 4)
    assert warm["in_warmup"] and warm["lr_fraction"] == pytest.approx(0.5)
    assert cut_schedule(cfg("step"), 55) is not None          # anything but "time" is scheduled by steps
    assert cut_schedule(cfg("time"), 55) is None
    assert cut_schedule(cfg("steps", None), 55) is None
    assert cut_schedule(cfg("steps"), 100) is None
