import subprocess
import sys
from pathlib import Path

import pytest

from rlscale.config import ConfigError, RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_config_validates():
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        if path.name.startswith("sweep_"):  # a sweep file (rlscale sweep): every run's config validates
            from rlscale.sweep import plan_sweep

            assert plan_sweep(path).runs
        else:
            assert isinstance(load_config(path), RunConfig)


def test_dotted_overrides_apply_and_coerce():
    cfg = load_config(ROOT / "configs/quickstart.yaml", ["rollout.group_size=4", "algo.lr=0.5", "run_dir=/tmp/x"])
    assert cfg.rollout.group_size == 4 and cfg.algo.lr == 0.5 and cfg.run_dir == "/tmp/x"


def test_mapping_override_replaces_and_dotted_key_edits(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"question": "{a}+1", "answer": "{a + 1}"}}\n' for a in range(40)))
    # The quickstart's Arith kwargs must not leak into the new env's kwargs.
    cfg = load_config(ROOT / "configs/quickstart.yaml",
                      ["env.id=rlscale/MathJSONL-v0", f"env.kwargs={{path: {data}, val_fraction: 0.25}}",
                       "eval.n_problems=8"])  # the val split holds ~10 problems (a config error above that)
    assert cfg.env.kwargs == {"path": str(data), "val_fraction": 0.25}
    cfg = load_config(ROOT / "configs/quickstart.yaml", ["env.kwargs.max_difficulty=2"])
    assert cfg.env.kwargs == {"min_difficulty": 1, "max_difficulty": 2, "max_operand": 9}


@pytest.mark.parametrize("override, fragment", [
    (["rollout.grup_size=4"], "rollout.grup_size: unknown key; did you mean 'group_size'?"),
    (["bogus=1"], "bogus: unknown key"),
    (["rollout.group_size=many"], "rollout.group_size"),
    (["rollout.group_size=1"], "rollout.group_size"),
    (["algo.loss.clip_eps=1.5"], "algo.loss.clip_eps"),
    (["algo.clip_eps=0.3"], "algo.clip_eps: this key moved to algo.loss.clip_eps"),
    (["model.zoo_size=xxl"], "model.zoo_size"),
    (["algo.minibatches=7"], "algo.minibatches=7 must divide"),
    (["pretrain.min_difficulty=5", "pretrain.max_difficulty=2"], "min_difficulty must be <= max_difficulty"),
    (["rollout.max_tokens=500"], "rollout.max_tokens must be < rollout.max_model_len"),
    (["no_equals_sign"], "must look like dotted.key=value"),
])
def test_bad_values_name_the_field(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/quickstart.yaml", override)
    assert fragment in str(e.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_cli_rejects_bad_config_before_writing_anything(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "rlscale.cli", "run", str(ROOT / "configs/quickstart.yaml"),
         "rollout.temprature=0.5", f"run_dir={run_dir}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "rollout.temprature: unknown key; did you mean 'temperature'?" in proc.stderr
    assert not run_dir.exists()


def test_bad_model_path_is_a_clear_error(tmp_path):
    from rlscale.modelpath import ModelPathError, check_model_path

    with pytest.raises(ModelPathError, match="does not exist"):
        check_model_path(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelPathError, match="no config.json"):
        check_model_path(str(tmp_path / "empty"))


def test_recipe_axes_by_bare_name_with_their_own_settings():
    cfg = load_config(ROOT / "configs/quickstart.yaml", ["algo.loss=dapo", "algo.loss.clip_high=0.3"])
    assert (cfg.algo.loss.name, cfg.algo.loss.clip_low, cfg.algo.loss.clip_high) == ("dapo", 0.2, 0.3)
    # A loss brings its paper's advantage and aggregation unless the config sets them.
    cfg = load_config(ROOT / "configs/quickstart.yaml", ["algo.loss=dr_grpo"])
    assert cfg.algo.advantage.name == "group_mean" and cfg.algo.aggregation.name == "seq_mean_token_sum_norm"
    assert cfg.algo.aggregation.length == cfg.rollout.max_tokens  # Dr.GRPO's constant, resolved
    cfg = load_config(ROOT / "configs/quickstart.yaml", ["algo.loss=dr_grpo", "algo.aggregation=token_mean"])
    assert cfg.algo.aggregation.name == "token_mean"
    cfg = load_config(ROOT / "configs/quickstart.yaml", ["algo.advantage.std_level=batch"])
    assert (cfg.algo.advantage.name, cfg.algo.advantage.std_level) == ("group_norm", "batch")
    # A new name replaces the old variant's settings instead of merging into them.
    cfg = load_config(ROOT / "configs/quickstart.yaml", ["algo.loss={name: dapo, clip_high: 0.4}", "algo.loss=cispo"])
    assert cfg.algo.loss.name == "cispo"
    for loss in ("grpo", "dapo", "dr_grpo", "cispo", "gspo", "ppo"):
        assert load_config(ROOT / "configs/quickstart.yaml", [f"algo.loss={loss}"]).algo.loss.name == loss


@pytest.mark.parametrize("override, fragment", [
    (["algo.loss=cispo", "algo.loss.clip_high=0.3"], "algo.loss.clip_high: unknown key; known keys: name, eps_max"),
    (["algo.loss=dapo", "algo.loss.clip_hihg=0.3"], "algo.loss.clip_hihg: unknown key; did you mean 'clip_high'?"),
    (["algo.loss=reinforce"], "algo.loss: Input tag 'reinforce' found using 'name' does not match"),
    (["algo.advantage=gae"], "algo.advantage: gae needs a critic, which only algo.loss=ppo trains"),
    (["algo.loss=ppo", "algo.advantage=rloo"], "algo.loss: ppo trains a value head that only algo.advantage=gae"),
    (["algo.loss=gspo", "algo.advantage=reinforce_pp", "algo.advantage=gae"], "gspo clips a sequence-level ratio"),
    (["algo.off_policy.is_level=token", "algo.off_policy.old_logp=behaviour"], "algo.off_policy.is_level: with old_logp"),
    (["algo.filter=dynamic_sampling", "rollout.prompts_per_step=2"], "raise rollout.prompts_per_step to at least 4"),
    (["algo.filter.max_rounds=2"], "algo.filter: name the variant first"),
    (["algo.entropy_control=clip_cov", "algo.entropy_control.ratio=2"], "algo.entropy_control.ratio"),
])
def test_bad_recipe_combinations_name_their_fields(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/quickstart.yaml", override)
    assert fragment in str(e.value)


def test_bad_recipe_exits_2_before_anything_starts(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rlscale.cli", "run", str(ROOT / "configs/quickstart.yaml"),
                        "algo.advantage=gae", f"run_dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "algo.advantage: gae needs a critic" in r.stderr
    assert not (tmp_path / "run").exists()
