"""experiments/tabular_suite.py end to end on two tiny tables: records, report, same test rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_suite_module():
    return load_script("tabular_suite")


def write_suite(folder: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    color = rng.choice(["red", "green", "blue"], size=60)
    label = np.where(x + (color == "red") > 0.3, "yes", "no")
    pd.DataFrame({"x": x, "color": color, "label": label}).to_csv(folder / "toy_class.csv", index=False)
    a, b = rng.normal(size=60), rng.uniform(size=60)
    y = 3 * a - 2 * b + rng.normal(scale=0.1, size=60) + 10
    pd.DataFrame({"a": a, "b": b, "y": y}).to_csv(folder / "toy_reg.csv", index=False)
    suite = {
        "toy_class": {"file": "toy_class.csv", "target": "label", "task": "classification", "rows": 60},
        "toy_reg": {"file": "toy_reg.csv", "target": "y", "task": "regression", "rows": 60},
    }
    (folder / "suite.json").write_text(json.dumps(suite, indent=1))


def test_tabular_suite_runs_nmsnn_and_baselines_on_the_same_rows(tmp_path):
    suite = load_suite_module()
    assert suite.split_overrides("model.hidden=[64,64],trainer.max_epochs=3,+x=a,b") == [
        "model.hidden=[64,64]",
        "trainer.max_epochs=3",
        "+x=a,b",
    ]
    write_suite(tmp_path)
    out = tmp_path / "out"
    args = ["--suite-dir", str(tmp_path), "--seeds", "0", "--variants", "fast"]
    args += ["--variant", "fast=trainer.max_epochs=1", "--baselines", "linear,hgb", "--out", str(out)]
    args += ["--sweep", "pick=trainer.max_epochs=1,model.neuron.decay=0.8,0.9"]
    args += ["--cache", str(tmp_path / "cache.json"), "--work-dir", str(tmp_path / "logs")]
    assert suite.main(args) == 0

    store = json.loads(Path(f"{out}.json").read_text())
    records = {(r["table"], r["kind"], r["name"]): r for r in store["records"]}
    assert set(records) == {
        (t, k, n)
        for t in ("toy_class", "toy_reg")
        for k, n in (
            ("nmsnn", "fast"),
            ("nmsnn", "pick"),
            ("nmsnn", "pick-lowest"),
            ("baseline", "linear"),
            ("baseline", "hgb"),
        )
    }
    for table in ("toy_class", "toy_reg"):  # the summary's pick and the lowest val/loss, of 2 jobs
        sweep, lowest = records[(table, "nmsnn", "pick")], records[(table, "nmsnn", "pick-lowest")]
        assert sweep["status"] == lowest["status"] == "ok" and sweep["jobs"] == 2, sweep.get("error")
        frame = pd.read_csv(next((tmp_path / "logs" / "sweeps").glob(f"{table}-s0-pick-*")) / "summary.csv")
        assert sweep["picked_job"] == int(frame.loc[frame["pick"], "job"].iloc[0])
        assert lowest["picked_job"] == int(frame.loc[frame["val/loss"].idxmin(), "job"])
        for record in (sweep, lowest):
            assert (
                "model.neuron.decay=0.8" in record["picked"] or "model.neuron.decay=0.9" in record["picked"]
            )
    for table in ("toy_class", "toy_reg"):
        run = records[(table, "nmsnn", "fast")]
        assert run["status"] == "ok", run.get("error")
        assert run["epochs"] == 1 and run["wall_s"] > 0 and run["synops_per_row"] > 0
        assert (
            run["test_rows"] == run["split"]["test"] == records[(table, "baseline", "hgb")]["split"]["test"]
        )
        assert (tmp_path / "logs" / "train" / "runs" / run["run_name"] / "metrics.json").is_file()
    assert 0 <= records[("toy_class", "nmsnn", "fast")]["metrics"]["acc"] <= 1
    assert records[("toy_reg", "baseline", "linear")]["metrics"]["r2"] > 0.9
    assert json.loads((tmp_path / "cache.json").read_text()).keys() >= {"toy_class|0|linear", "toy_reg|0|hgb"}

    markdown = Path(f"{out}.md").read_text()
    for table, task in (("toy_class", "classification"), ("toy_reg", "regression")):
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {table} | {task} |"))
        cells = row.split("|")[4:8]  # nmsnn fast, nmsnn pick, linear, HGB: "mean" (one seed)
        numbers = [float(c) for c in cells]
        assert len(numbers) == 4 and all(v <= 1 for v in numbers), row
        if task == "classification":
            assert all(v >= 0 for v in numbers), row
    assert "fast" in markdown and "`pick`: a sweep" in markdown and "failed" not in markdown

    # The sweeps read back (experiments/sweep_picks.py): its picks are the harness's; its paired
    # rule's row losses, recomputed from each job's checkpoint, are the terms of its val/loss
    sweep_picks = load_script("sweep_picks")
    for sweep_dir in (tmp_path / "logs" / "sweeps").iterdir():
        frame = pd.read_csv(sweep_dir / "summary.csv").set_index("job")
        for job in frame.index:
            losses = sweep_picks.validation_losses(sweep_dir / str(job))
            # 10 validation rows; with folds (the regression table) all 48 non-test rows, out of fold
            assert len(losses) in (10, 48) and abs(losses.mean() - frame.loc[job, "val/loss"]) < 1e-5
    picks_out = tmp_path / "picks"
    argv = ["--sweeps", str(tmp_path / "logs" / "sweeps"), "--out", str(picks_out)]
    argv += ["--suite-dir", str(tmp_path), "--cache", str(tmp_path / "cache.json")]
    assert sweep_picks.main(argv) == 0
    for read in json.loads(picks_out.with_suffix(".json").read_text()):
        sweep, lowest = (records[(read["table"], "nmsnn", n)] for n in ("pick", "pick-lowest"))
        assert read["jobs"]["one-SE pick"] == [sweep["picked_job"]] and read["finished"] == 2
        assert read["jobs"]["lowest val/loss"] == [lowest["picked_job"]]
        assert read["jobs"]["paired one-SE"] in ([0], [lowest["picked_job"]])
        single = [read["scores"][rule] for rule in sweep_picks.SINGLE]
        assert read["scores"]["best on test"] == max(single)
        assert read["jobs"]["mean of all"] == [0, 1] and read["jobs"]["top-4 mean"] == [0, 1]
        assert set(read["jobs"]["greedy ensemble"]) <= {0, 1} and read["jobs"]["greedy ensemble"]
        metric = "acc" if read["table"] == "toy_class" else "r2"
        baselines = (records[(read["table"], "baseline", b)]["metrics"][metric] for b in ("linear", "hgb"))
        assert read["bar"] == max(baselines)
    picks = picks_out.with_suffix(".md").read_text()
    assert "| toy_class | 0 |" in picks and "- best on test:" in picks and "- greedy ensemble:" in picks

    # Each pick refitted on its training and validation rows (experiments/sweep_refit.py): real
    # nmsnn-train runs with no validation split, as long as the pick trained, on the same test rows
    sweep_refit = load_script("sweep_refit")
    refit_out = tmp_path / "refit"
    argv = ["--sweeps", str(tmp_path / "logs" / "sweeps"), "--out", str(refit_out), "--jobs", "2"]
    argv += ["--suite-dir", str(tmp_path), "--cache", str(tmp_path / "cache.json")]
    assert sweep_refit.main([*argv, "--work-dir", str(tmp_path / "refits")]) == 0
    for read in json.loads(refit_out.with_suffix(".json").read_text()):
        assert read["job"] == records[(read["table"], "nmsnn", "pick")]["picked_job"]
        assert (
            read["length"]["tested_epoch"] == 1 and read["length"]["total_steps"] == read["length"]["batches"]
        )
        for rule in sweep_refit.RULES:
            run = tmp_path / "refits" / "train" / "runs" / f"{read['table']}-s0-{rule}"
            saved = json.loads((run / "metrics.json").read_text())
            assert saved["metrics"][f"test/{read['metric']}"] == read["scores"][rule]
            assert not any(k.startswith("val/") for k in saved["metrics"]) and saved["run"]["epochs"] == 1
            predicted = pd.read_csv(run / "test_predictions.csv")
            assert len(predicted) == records[(read["table"], "nmsnn", "pick")]["split"]["test"]
    refit_md = refit_out.with_suffix(".md").read_text()
    assert "- replay: accuracy" in refit_md and "R²" in refit_md
    assert sweep_refit.main(["--report-only", "--out", str(refit_out)]) == 0
    again = refit_out.with_suffix(".md").read_text()
    assert [line for line in again.splitlines() if not line.startswith("Date:")] == [
        line for line in refit_md.splitlines() if not line.startswith("Date:")
    ]

    Path(f"{out}.md").unlink()
    assert suite.main(["--report-only", "--out", str(out)]) == 0
    assert Path(f"{out}.md").read_text() == markdown

    # A sweep's JSON shown as a second table of another report, beside that report's default.
    main = dict(store, records=[dict(r, name="default") for r in store["records"] if r["name"] == "fast"])
    main["records"] += [r for r in store["records"] if r["kind"] == "baseline"]
    Path(f"{tmp_path / 'main'}.json").write_text(json.dumps(main))
    argv = ["--report-only", "--out", str(tmp_path / "main"), "--sweep-results", f"{out}.json"]
    assert suite.main(argv) == 0
    both = Path(f"{tmp_path / 'main'}.md").read_text()
    third = both.split("## Table 3")[1]
    assert "(rank and gaps: nmsnn `pick`)" in third and "`pick`: a sweep" in third
    row = next(line for line in third.splitlines() if line.startswith("| toy_reg | regression |"))
    default, picked = (float(c) for c in row.split("|")[4:6])
    assert abs(default - records[("toy_reg", "nmsnn", "fast")]["metrics"]["r2"]) <= 5e-4
    assert abs(picked - records[("toy_reg", "nmsnn", "pick")]["metrics"]["r2"]) <= 5e-4
    assert json.loads(Path(f"{tmp_path / 'main'}.json").read_text())["sweep_results"] == f"{out}.json"


def test_float32_and_float64_scores_of_the_same_rows_tie():
    """28 of 38 rows right: torchmetrics' float32 accuracy and scikit-learn's float64 one tie."""
    suite = load_suite_module()
    assert 0.7368420958518982 < 28 / 38 and suite.gap(0.7368420958518982, 28 / 38) == 0.0
    assert suite.gap(0.74, 28 / 38) > 0 and suite.gap(27 / 38, 28 / 38) < 0
    run = {"status": "ok", "metrics": {"acc": 0.7368420958518982}}
    entry = {
        "task": "classification",
        "models": {
            ("nmsnn", "default"): [run],
            ("baseline", "linear"): [{"status": "ok", "metrics": {"acc": 28 / 38}, "fit_s": 0.1}],
        },
    }
    stats = suite.table_stats(entry, "default", ["linear"])
    assert stats["rank"] == 1 and stats["gap_best"] == 0.0 and stats["gap_linear"] == 0.0


def test_sweep_ensembles_average_predictions_and_select_on_validation_rows():
    """sweep_picks' scores are scikit-learn's; ensemble selection keeps the jobs whose average
    predicts the validation rows best, and an ensemble's test score is that of the averaged rows."""
    from types import SimpleNamespace

    from sklearn.metrics import accuracy_score, log_loss, r2_score

    picks = load_script("sweep_picks")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=50)
    proba = rng.dirichlet(np.ones(3), size=50)
    assert picks.score(proba, y, "classification") == accuracy_score(y, proba.argmax(1))
    assert np.isclose(picks.ensemble_loss(proba, y, "classification"), log_loss(y, proba, labels=[0, 1, 2]))
    t = rng.normal(size=50)
    v = t + rng.normal(scale=0.5, size=50)
    assert np.isclose(picks.score(v, t, "regression"), r2_score(t, v))
    assert np.isclose(picks.ensemble_loss(v, t, "regression"), np.mean((v - t) ** 2))

    # jobs 0 and 1 err in opposite directions on every row (their mean is nearly exact); job 2
    # errs more than either, in job 0's direction
    noise = rng.normal(scale=1.0, size=(2, 50))
    targets = {"val": t, "test": t}

    def job(val, test):
        return SimpleNamespace(values={"val": val, "test": test}, targets=targets)

    outputs = {
        0: job(t + 1 + noise[0] * 0.1, t + 1),
        1: job(t - 1 + noise[1] * 0.1, t - 1),
        2: job(t + 1.5, t + 1.5),
    }
    chosen = picks.greedy_selection(outputs, "regression")
    assert set(chosen) == {0, 1}  # job 2 adds error to any mix of them

    def val_loss(jobs):
        return picks.ensemble_loss(sum(outputs[j].values["val"] for j in jobs) / len(jobs), t, "regression")

    assert val_loss(chosen) <= min(val_loss([0, 1]), *(val_loss([j]) for j in outputs))
    assert picks.ensemble_score(outputs, [0, 1], "regression") == 1.0
    assert np.isclose(picks.ensemble_score(outputs, [0, 2, 2], "regression"), r2_score(t, t + 4 / 3))
    assert picks.jobs_text([3, 1, 3, 3]) == "1, 3×3"


def test_wages_panel_recognises_people_on_a_row_split_and_holds_them_out_on_a_person_split(tmp_path):
    """experiments/wages_panel.py on a toy panel whose target is mostly a person's own level:
    the person mean wins the row split; the person split's models never see a held-out person."""
    panel = load_script("wages_panel")
    rng = np.random.default_rng(0)
    people, years = 40, panel.ROWS_PER_PERSON
    level = np.repeat(rng.normal(size=people), years)
    frame = pd.DataFrame(
        {
            "exp": np.tile(np.arange(years), people) + np.repeat(rng.integers(1, 20, people), years),
            "ed": np.repeat(rng.integers(8, 17, people), years),
            "sex": np.repeat(rng.choice(["male", "female"], people), years),
        }
    )
    frame["lwage"] = 5 + 2 * level + 0.02 * frame["exp"] + rng.normal(scale=0.05, size=len(frame))
    frame.to_csv(tmp_path / "wages.csv", index=False)
    cache = {f"wages|0|{name}": {"metrics": {"r2": 0.5}} for name in ("rf", "linear")}
    (tmp_path / "cache.json").write_text(json.dumps(cache))
    run = {
        "table": "wages",
        "kind": "nmsnn",
        "name": "default",
        "status": "ok",
        "seed": 0,
        "metrics": {"r2": 0.4},
    }
    (tmp_path / "suite.json").write_text(json.dumps({"records": [run]}))
    out = tmp_path / "panel"
    argv = ["--seeds", "0", "--suite-dir", str(tmp_path), "--cache", str(tmp_path / "cache.json")]
    argv += ["--suite-results", str(tmp_path / "suite.json"), "--baselines", "linear,rf", "--out", str(out)]
    assert panel.main(argv) == 0
    (record,) = json.loads(out.with_suffix(".json").read_text())
    assert record["row split"]["person mean"] > 0.9 and record["row split"]["nmsnn"] == 0.4
    person = record["person split"]
    assert set(person) == {"nmsnn", "linear", "rf"}
    assert all(value < 0.9 for value in person.values())  # a new person's level is unknown
    assert "| person mean (no model) |" in out.with_suffix(".md").read_text()
