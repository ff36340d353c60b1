"""Smoke test of ``python -m vae_sweep.bench --quick``: the rows run end to end and land on the page
with numbers. No timing is asserted: the numbers depend on the machine and its load.

Rows 4-6 run whole studies (about 15 s each even when tiny), so CI runs the quick mode for rows
1-3 and 7, and checks rows 4-6 on the session's finished sweep: the same reading of a study's
stores and the same tables."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch.utils.flop_counter import FlopCounterMode

from vae_sweep.bench import progress
from vae_sweep.bench.flops import training_flops_per_sample
from vae_sweep.bench.gpu import GpuRun, gpu_section
from vae_sweep.bench.page import merged, sections
from vae_sweep.bench.report import (
    pruning_section,
    sampler_section,
    scaling_section,
    versus_script_section,
)
from vae_sweep.bench.sweeps import read_sweep
from vae_sweep.bench.trainer import ThroughputRun, run_config
from vae_sweep.bench.versus_script import VersusScript, WholeRun, timed
from vae_sweep.names import epoch_key

NUMBER = r"-?[\d,]+(\.\d+)?"


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, str]:
    folder = tmp_path_factory.mktemp("bench")
    out, raw = folder / "perf.md", folder / "perf.json"
    command = [sys.executable, "-m", "vae_sweep.bench", "--quick", "--rows", "3,7", "--threads", "1", "--out", str(out)]
    result = subprocess.run([*command, "--json", str(raw)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out.read_text(), json.loads(raw.read_text()), result.stderr


@pytest.mark.slow
def test_rows_1_and_2_compare_the_trainer_with_the_plain_loop_and_the_peak(quick_bench) -> None:
    page, _, _ = quick_bench
    assert re.search(rf"\| ours \(`vae_sweep.train.train`\) \| {NUMBER} \| {NUMBER} \|", page), page
    assert re.search(rf"\| plain loop \(pytorch/examples\) \| {NUMBER} \| {NUMBER} \|", page), page
    assert re.search(rf"\*\*ratio ours / plain\*\* \| {NUMBER} \| \*\*{NUMBER}\*\*", page), page
    assert re.search(rf"\*\*{NUMBER} GFLOP/s\*\*", page), page
    assert re.search(rf"\| ours, `model=conv` \| {NUMBER} \| {NUMBER} \|", page), page
    assert re.search(rf"\| plain loop, `ExampleConvVAE` \| {NUMBER} \| {NUMBER} \|", page), page
    assert page.count("Target: ratio >= 1.05. Met: **") == 2  # the MLP and the conv model
    for side in ("ours", "plain loop", "ours, conv", "plain loop, conv"):
        assert re.search(rf"\| {side} \| {NUMBER} \| {NUMBER}% \| >= 45% \| (yes|no) \|", page), page


@pytest.mark.slow
def test_row_3_breaks_a_sweep_trial_down_into_steps_that_add_up(quick_bench) -> None:
    page, raw, _ = quick_bench
    for step in ("Hydra: compose", "Hydra: run_job", "Optuna: claim", "MLflow: metrics", "MLflow: images"):
        assert re.search(rf"\| {re.escape(step)}[^|]* \| {NUMBER} \|", page), step
    assert re.search(r"Below 130 ms: \*\*(yes|no)\*\*; <= 5%: \*\*(yes|no)\*\*", page), page
    for record in raw["overhead"]["sweeps"]["sweep trial"]:  # the timed steps cover the trial's period
        steps = sum(ms for label, ms in record.items() if label not in ("period", "rss_mb"))
        assert 0.9 * record["period"] <= steps <= record["period"] * 1.001, record


@pytest.mark.slow
def test_row_7_reports_time_per_row_and_memory(quick_bench) -> None:
    page, raw, _ = quick_bench
    assert re.search(rf"\| digits 8x8 \| 1,\d\d\d \| {NUMBER} \| {NUMBER} \| {NUMBER} \|", page), page
    assert len(raw["long_sweep_rss_mb"]) == 3 and all(rss > 0 for rss in raw["long_sweep_rss_mb"])  # row 3's trials
    assert "Parallel scaling" not in page  # rows not asked for are not on the page


@pytest.mark.slow
def test_the_bench_says_each_row_as_it_starts_and_each_run_k_of_n_as_it_ends(quick_bench) -> None:
    *_, progress = quick_bench
    assert "rows 1-2 (trainer vs plain loop, MLP and conv): in this process" in progress
    assert re.search(r"row 3 \(per-trial overhead\): run 1/1 \(sweep trial\) took \d+ s\n", progress), progress
    # Row 7's probes, each data size in a process of its own; its memory comes from row 3's sweep.
    runs = re.findall(r"row 7 \(data sizes, memory\): run (\d+)/(\d+) \(([^)]+)\) took", progress)
    assert [int(k) for k, _, _ in runs] == list(range(1, len(runs) + 1)) and runs[-1][0] == runs[-1][1], progress
    assert progress.rstrip().endswith("perf.json")


def test_a_rows_progress_estimates_the_time_left_from_the_runs_that_ended(capsys) -> None:
    clock = iter([0.0, 0.0, 60.0, 180.0])  # made and started at 0 s; runs end at 1 and 3 minutes
    row = progress.Progress(clock=lambda: next(clock))
    row.start_row("row 5 (pruners)", runs=3)
    row.run_ended("pruner none, seed 0", 60.0)
    row.run_ended("pruner none, seed 1", 120.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("] row 5 (pruners): 3 run(s)")
    assert lines[1].endswith("run 1/3 (pruner none, seed 0) took 60 s, about 2.0 min left in the row")
    assert lines[2].endswith("run 2/3 (pruner none, seed 1) took 120 s, about 1.5 min left in the row")


@pytest.mark.slow
def test_rows_4_to_6_read_a_finished_sweep_and_tabulate_it(finished_study) -> None:
    result = read_sweep(finished_study.folder)
    trials = optuna.load_study(study_name=finished_study.study_name, storage=finished_study.storage).trials
    assert result.trials == len(trials) == 10
    assert result.best == min(t.value for t in trials if t.state is optuna.trial.TrialState.COMPLETE)
    client = MlflowClient(tracking_uri=finished_study.tracking_uri)
    epochs = [len(client.get_metric_history(t.user_attrs["mlflow_run_id"], epoch_key("train_loss"))) for t in trials]
    assert result.epochs == sum(epochs) and len(result.ends) == 10
    speed_up = result.per_hour(2) / result.per_hour(1)  # each worker's first trial left out
    assert f"Speed-up {speed_up:.2f}x" in "\n".join(scaling_section({1: result, 2: result}))
    pruned = "\n".join(pruning_section({"none": [result], "median": [result]}))
    assert f"| median | 0 | {result.epochs} | 100% | {result.best:.3f} | +0.00% |" in pruned
    assert "The study's pruner is median (n_startup_trials=" in pruned  # read from studies/techniques.yaml
    assert f"| random | {result.best:.3f} |" in "\n".join(sampler_section({"random": [result]}))


def test_a_run_of_some_rows_keeps_the_other_rows_of_the_previous_page() -> None:
    previous = "# Performance\n\nold head\n\n## 1. a\n\nold 1\n\n## 3. c\n\nold 3\n\n## 7. g\n\nold 7\n"
    page = "# Performance\n\nnew head\n\n## 1. a\n\nnew 1\n\n## 8. h\n\nnew 8\n"
    head, rows = sections(merged(page, previous, {1, 2, 8}))
    assert "new head" in head and "Rows 3, 7 are kept from the page's previous run" in head
    assert list(rows) == [1, 3, 7, 8]
    assert [rows[n].split("\n\n")[1].strip() for n in rows] == ["new 1", "old 3", "old 7", "new 8"]
    assert merged(page, previous, {1, 2, 3, 7, 8}) == page  # measured again: the new run's alone
    assert merged(page, None, {1, 2, 8}) == page


def test_row_8_judges_each_ratio_of_ours_to_the_script_against_its_target() -> None:
    run = VersusScript(trials=10, epochs=20, rerun_s=[1.0, 3.0, 2.0])
    run.one_trial = {"ours": [WholeRun(9.0, 0.5), WholeRun(8.0, 0.5)], "script": [WholeRun(8.0, 0.5)] * 2}
    run.sweep = {
        "ours": [WholeRun(30.0, 20.0, [100.0, 140.0]), WholeRun(30.0, 20.0, [120.0])],
        "script": [WholeRun(36.0, 24.0, [200.0, 300.0])] * 2,
    }
    text = "\n".join(versus_script_section(run))
    assert "| 1-trial, 1-epoch sweep: wall (s) | 8.50 | 8.00 | 1.06 | <= 1.00 | **no** |" in text
    assert "| 10 x 20 sweep: wall beyond training (s) | 10.00 | 12.00 | 0.83 | <= 1.00 | **yes** |" in text
    assert "| 10 x 20 sweep: a warm trial's bookkeeping (ms) | 120 | 250 | 0.48 | - | - |" in text
    assert "2.00 s = 0.24 of the\n1-trial sweep (target < 0.33), no new sweep folder. Met: **yes**" in text
    run.rerun_made_folder = True
    assert "a new sweep folder written (target: none). Met: **no**" in "\n".join(versus_script_section(run))


def test_row_8_reads_a_warm_trials_bookkeeping_from_the_gaps_between_its_runs(tmp_path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("sweep")
    parent = client.create_run(experiment, start_time=0).info.run_id
    # Trials start at 1, 3, 4.5, 7 (it fails: no train_seconds), 8 and 9 s; the one at 4.5 s spent
    # 0.1 s of its training window logging (the script's log_seconds).
    trials = [(1000, 1.9, None), (3000, 1.2, None), (4500, 2.3, 0.1), (7000, None, None), (8000, 0.5, None)]
    for start_ms, train_s, log_s in [*trials, (9000, 0.4, None)]:
        run = client.create_run(experiment, start_time=start_ms, tags={"mlflow.parentRunId": parent}).info.run_id
        for key, value in (("train_seconds", train_s), ("log_seconds", log_s)):
            if value is not None:
                client.log_metric(run, key, value)

    whole = timed(tmp_path, [sys.executable, "-c", "pass"], "a stand-in")

    assert whole.train_s == pytest.approx(6.3)
    # The first trial pays the first use of everything and the last has no next start: neither counts.
    # 3 -> 4.5 s less 1.2 s, 4.5 -> 7 s less 2.3 s plus 0.1 s, the failed trial skipped, 8 -> 9 s less 0.5 s.
    assert whole.trial_beyond_ms == pytest.approx([300.0, 300.0, 500.0])


@pytest.mark.parametrize("model", ["mlp_400_20", "conv"])
def test_the_training_flops_are_three_times_what_torch_counts_for_a_forward_pass(model: str) -> None:
    config = run_config(1000, epochs=1, threads=1, model=model)
    shape = (1, config.data.side, config.data.side)
    network = config.model.build(shape).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(torch.zeros(1, *shape))
    assert training_flops_per_sample(network, shape) == 3 * counter.get_total_flops()  # backward is twice forward


def test_row_9_says_when_there_is_no_gpu_and_judges_both_models_when_there_is() -> None:
    none = "\n".join(gpu_section(GpuRun("2026-12-03", None), {}))
    assert "Not measured: the machine that ran this benchmark on 2026-12-03 has no GPU" in none
    runs = {
        "mlp_400_20": ThroughputRun(60_000, 3, 1, ours=[2e5], plain=[1e5]),
        "conv": ThroughputRun(60_000, 3, 1, ours=[9e4], plain=[1e5]),
    }
    text = "\n".join(gpu_section(GpuRun("2026-12-03", "NVIDIA H200", 5e4, runs), {"mlp_400_20": 4e6, "conv": 2e7}))
    assert "| mlp_400_20 | 200,000 | 100,000 | 2.00 | yes | 800.0 | 2% | no |" in text
    assert "| conv | 90,000 | 100,000 | 0.90 | no | 1,800.0 | 4% | no |" in text
