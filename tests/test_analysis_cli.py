"""Loading run directories, the extrapolation check, and `rlscale analyze` end to end on
small recorded run directories written by the test in the documented format."""

import base64
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rlscale.analysis import RunDirError, extrapolation_check, load_runs, load_zoo
from rlscale.analysis.synthetic import write_run, write_zoo_model
from rlscale.cli import main
from rlscale.runlog import METRIC_FIELDS


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Three runs (two seeds of one setting, one with another learning rate and a lower
    ceiling) and a zoo of four sizes."""
    root = tmp_path_factory.mktemp("analysis")
    runs = root / "runs"
    write_run(runs / "base-s0", seed=0, steps=120, eval_every=6, flops_per_step=2e12)
    write_run(runs / "base-s1", seed=1, steps=120, eval_every=6, flops_per_step=2e12)
    write_run(runs / "lowlr", A=0.5, c_mid=5e13, seed=2, steps=120, eval_every=6, flops_per_step=2e12,
              overrides=("algo.lr=3e-4",))
    for size in ("xs", "s", "m", "l"):
        write_zoo_model(root / "zoo", size, steps=1500)
    return root


def test_load_runs_one_row_per_step_with_config_columns(recorded):
    df = load_runs([recorded / "runs"])
    assert len(df) == 3 * 121
    assert set(METRIC_FIELDS) <= set(df.columns)
    assert {"algo.lr", "rollout.group_size", "eval.n_problems", "n_params"} <= set(df.columns)
    lr = df.groupby("run")["algo.lr"].first()
    assert lr["lowlr"] == pytest.approx(3e-4) and lr["base-s0"] == pytest.approx(1e-3)
    settings = df.groupby("run")["setting"].first()
    assert settings["base-s0"] == settings["base-s1"] != settings["lowlr"]  # seeds pool, other lr does not


def test_load_zoo(recorded):
    zoo = load_zoo([recorded / "zoo"])
    assert zoo["model"].nunique() == 4
    assert zoo.groupby("model")["final"].sum().eq(1).all()
    assert zoo["heldout_accuracy_sampled"].between(0, 1).all()


def test_bad_paths_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(RunDirError, match="no such directory"):
        load_runs([tmp_path / "missing"])
    (tmp_path / "notarun").mkdir()
    with pytest.raises(RunDirError, match="notarun: not a run directory"):
        load_runs([tmp_path / "notarun"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    with pytest.raises(RunDirError, match="empty.*has not logged a step"):
        load_runs([tmp_path / "empty"])
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "metrics.jsonl").write_text('{"step": 0}\n{"step": 1,\n{"step": 2}\n')
    with pytest.raises(RunDirError, match="metrics.jsonl:2: not valid JSON"):
        load_runs([tmp_path / "damaged"])
    with pytest.raises(RunDirError, match="not a zoo checkpoint"):
        load_zoo([tmp_path / "notarun"])


def test_a_run_still_writing_loads_without_its_cut_off_line(tmp_path):
    run = write_run(tmp_path / "live", steps=20, eval_every=5)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 21, "reward_me')
    df = load_runs([run])
    assert df["step"].max() == 20


def test_seeds_pooled_extrapolation_predicts_their_mean_final(tmp_path):
    """Three seeds drawn from one law (A 0.8, half the gain by a third of the budget): the
    sigmoid pooled over their first halves predicts their mean final accuracy within noise."""
    from rlscale.analysis import setting_extrapolation

    for seed in range(3):
        write_run(tmp_path / f"s{seed}", A=0.8, r0=0.3, c_mid=5e13, seed=seed, steps=160, eval_every=5,
                  flops_per_step=1e12, n_problems=500, overrides=("sweep_setting=base",))
    runs = load_runs([tmp_path])
    check = setting_extrapolation(runs, 0.5, "val_mean_at_k", "cumulative_flops", n_boot=100)
    assert check["members"] == 3 and check["c_cut"] == pytest.approx(0.5 * 160e12, rel=0.01)
    assert check["fit"].n_points < len(runs[runs.val_mean_at_k.notna()])  # only the first half was fitted
    assert check["inside"] and abs(check["error"]) < 0.03
    lo, hi = check["band95"]
    assert lo < check["observed"] < hi and hi - lo < 0.2


def test_extrapolation_check_predicts_the_final_evaluation(recorded):
    run = load_runs([recorded / "runs" / "base-s0"])
    check = extrapolation_check(run, 0.6, "val_mean_at_k", "cumulative_flops", n_boot=100)
    assert "refused" not in check, check.get("refused")
    assert check["c_cut"] == pytest.approx(0.6 * check["c_final"])
    assert check["n_held_out"] >= 1 and check["fit"].fixed["c_range"][1] <= check["c_cut"]
    assert check["error"] == pytest.approx(check["predicted"] - check["observed"])
    assert abs(check["error"]) < 0.08  # the law is the one the data were drawn from
    with pytest.raises(ValueError, match="fraction"):
        extrapolation_check(run, 1.5, "val_mean_at_k", "cumulative_flops")


def test_analyze_writes_every_file(recorded, tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["analyze", str(recorded / "runs"), "--out", str(out), "--zoo", str(recorded / "zoo"),
               "--fit-until", "0.6", "--n-boot", "40"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "EXTRAPOLATION CHECK" in printed and "predicted" in printed and str(out / "report.html") in printed
    pngs = {"reward_vs_compute.png", "reward_by_setting.png", "reward_vs_entropy.png", "step_panels.png",
            "zoo_frontier.png"}  # reward_by_setting: base-s0 and base-s1 are two seeds of one setting
    assert pngs | {"report.md", "report.html", "fits.json"} <= {p.name for p in out.iterdir()}
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)  # self-contained
    embedded = html.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(embedded)[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "Extrapolation check" in md and "![" in md
    fits = json.loads((out / "fits.json").read_text())
    assert set(fits["sigmoid"]) == {"base-s0", "base-s1", "lowlr"}
    a = fits["sigmoid"]["base-s0"]
    assert a["law"].startswith("ScaleRL") and len(a["ci95"]["A"]) == 2 and a["bootstrap"]["n_ok"] > 0
    assert fits["checks"]["base-s0"]["predicted"] is not None
    assert fits["setting_sigmoid"]  # the two seeds pooled into one curve
    assert fits["comparison"] and fits["entropy"]["lowlr"]["params"]["a"] > 0
    assert fits["zoo"]["chinchilla"]["params"]["alpha"] > 0
    assert "at least 3 sizes" in fits["across_sizes"]["refused"]  # all runs share one base model


def test_analyze_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    rc = main(["analyze", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "nope: no such directory" in capsys.readouterr().err


def test_analysis_never_imports_the_training_code():
    code = ("import sys, rlscale.analysis.analyze, rlscale.analysis.synthetic; "
            "print(sorted(m for m in sys.modules if m.split('.')[-1] in "
            "('learner', 'rollout', 'orchestrator', 'vllm', 'ray', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_report_numbers_are_finite(recorded, tmp_path):
    out = tmp_path / "r"
    main(["analyze", str(recorded / "runs" / "lowlr"), "--out", str(out), "--fit-until", "0", "--n-boot", "20"])
    fits = json.loads((out / "fits.json").read_text())
    assert fits["checks"] == {} and fits["zoo"] is None
    assert all(np.isfinite(v) for v in fits["sigmoid"]["lowlr"]["params"].values())


def test_analyze_a_sweep_dir_groups_by_setting_and_compares_paired(tmp_path, capsys):
    """A sweep directory (sweep.json + runs labelled by their setting), 2 settings x 3 seeds
    drawn from curves whose ceilings differ by 0.25: `rlscale analyze SWEEP_DIR` pools each
    setting's seeds (whole runs resampled), and the paired bootstrap finds the gap in A."""
    out = tmp_path / "sweep"
    names = []
    for lr, A in (("0.0001", 0.6), ("0.001", 0.85)):
        for seed in range(3):
            name = f"lr={lr}-seed{seed}"
            write_run(out / name, A=A, r0=0.3, seed=seed, steps=120, eval_every=6, flops_per_step=2e12,
                      n_problems=1000, k=1, overrides=(f"algo.lr={lr}", f"sweep_setting=algo.lr={lr}"))
            names.append(name)
    (out / "sweep.json").write_text(json.dumps({"runs": [{"name": n} for n in names]}))
    assert main(["analyze", str(out), "--out", str(tmp_path / "report"), "--n-boot", "200", "--fit-until", "0"]) == 0
    fits = json.loads((tmp_path / "report" / "fits.json").read_text())
    pooled = {k.split(" (")[0]: v for k, v in fits["setting_sigmoid"].items()}
    assert set(pooled) == {"algo.lr=0.0001", "algo.lr=0.001"}
    assert all(f["bootstrap"]["resampled"].startswith("runs") for f in pooled.values())
    (row,) = fits["comparison"]
    assert row["paired"]["A"]["differs"] and row["paired"]["A"]["ci95"][1] < 0  # A(1e-4) - A(1e-3) < 0
    assert "algo.lr=0.001 (" in row["A"].split(": ")[-1] and "higher ceiling" in row["A"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "paired bootstrap" in report and "A differs" in report
    assert "reward_by_setting.png" in report and (tmp_path / "report" / "reward_by_setting.png").stat().st_size > 10_000

    # scripts/study_tables.py reads the same sweep directory and report into docs/study.md's tables.
    shutil.copytree(tmp_path / "report", out / "report")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "recipes").symlink_to(out)
    printed = subprocess.run([sys.executable, "scripts/study_tables.py", "--study", str(tmp_path / "study")],
                             capture_output=True, text=True, check=True).stdout
    assert "missing: " + str(tmp_path / "study" / "zoo") in printed  # the parts not run are named
    rows = [line for line in printed.splitlines() if line.startswith("| algo.lr=0.0001 | algo.lr=0.001 |")]
    assert len(rows) == 1 and "| yes |" in rows[0]  # the paired comparison, A differs


def test_study_tables_names_each_scanned_cells_best_learning_rate():
    """docs/study.md part 0d picks each zoo size's rate from a scan: the lowest final loss of
    the rates tried in one (size, steps) cell; cells with one rate are not a scan."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_tables", "scripts/study_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)

    def model(size, steps, lr, loss):
        return {"size": size, "settings": {"steps": steps, "lr": lr}, "final_text_loss": loss}

    infos = [model("xs", 1000, 3e-3, 1.59), model("xs", 1000, 1e-2, 1.57), model("xs", 1000, 3e-2, 1.59),
             model("xs", 2000, 1e-2, 1.46), model("l", 400, 1e-3, 1.57), model("l", 400, 3e-3, 1.66)]
    assert tables.best_rates(infos, "text_loss") == {("xs", 1000): (1e-2, [3e-3, 1e-2, 3e-2]),
                                                      ("l", 400): (1e-3, [1e-3, 3e-3])}
