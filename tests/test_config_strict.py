"""Config conversion is strict everywhere: a misspelt override fails naming the key."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from promptsep.release import config_dir


def _bench(overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="bench", overrides=["manifest=items.jsonl", *overrides])


def test_bench_settings_reject_unknown_keys_but_not_the_training_keys_of_the_trainer_preset():
    from bench.separation import BenchSettings

    s = BenchSettings.from_cfg(_bench(["trainer.max_steps=7", "bench.batch_size=3"]))  # trainer keys of training
    assert s.batch_size == 3 and s.accelerator == "cpu" and s.checkpoint.endswith("promptsep-v2")
    with pytest.raises(ValueError, match="'batch_sise'"):
        BenchSettings.from_cfg(_bench(["+bench.batch_sise=4"]))
    with pytest.raises(ValueError, match="'chekpoint'"):
        BenchSettings.from_cfg({"manifest": "m", "checkpoint": "c", "chekpoint": "d"})


def test_embedding_bench_mixtures_reject_unknown_keys(tiny_corpus):
    from bench.embedding.data import make_mixture_items

    with pytest.raises(ValueError, match="'items.mix.max_sourcse'"):
        make_mixture_items(tiny_corpus, "test", 2, 0, {"max_sourcse": 2})


def test_candidate_and_augment_configs_name_the_unknown_key():
    from judge.data import CandidateConfig
    from separation.data.augment import AugmentConfig

    with pytest.raises(ValueError, match="'candidates.per_mixtrue'"):
        CandidateConfig.from_dict({"per_mixtrue": 3})
    with pytest.raises(ValueError, match="unknown candidate kinds"):
        CandidateConfig.from_dict({"weights": {"perfekt": 1.0}})
    c = CandidateConfig.from_dict({"weights": {"leak": 1.0}, "separator_steps": [2, 4]})
    assert c.weights["leak"] == 1.0 and c.weights["perfect"] == 0.0 and c.separator_steps == (2, 4)
    with pytest.raises(ValueError, match="'augment.p_reverbb'"):
        AugmentConfig.from_dict({"p_reverbb": 0.5})
