"""Smoke test of ``python -m vae_sweep.bench --quick``: every row runs end to end and lands on the
page with numbers. No timing is asserted: the numbers depend on the machine and its load."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

NUMBER = r"-?[\d,]+(\.\d+)?"


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    folder = tmp_path_factory.mktemp("bench")
    out, raw = folder / "perf.md", folder / "perf.json"
    command = [sys.executable, "-m", "vae_sweep.bench", "--quick", "--threads", "1", "--out", str(out)]
    result = subprocess.run([*command, "--json", str(raw)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out.read_text(), json.loads(raw.read_text())


@pytest.mark.slow
def test_rows_1_and_2_compare_the_trainer_with_the_plain_loop_and_the_peak(quick_bench) -> None:
    page, _ = quick_bench
    assert re.search(rf"\| ours \(`vae_sweep.train.train`\) \| {NUMBER} \| {NUMBER} \|", page), page
    assert re.search(rf"\| plain loop \(pytorch/examples\) \| {NUMBER} \| {NUMBER} \|", page), page
    assert re.search(rf"\*\*ratio ours / plain\*\* \| {NUMBER} \| \*\*{NUMBER}\*\*", page), page
    assert re.search(rf"\*\*{NUMBER} GFLOP/s\*\*", page), page
    for side in ("ours", "plain loop"):
        assert re.search(rf"\| {side} \| {NUMBER} \| {NUMBER}% \| >= 45% \| (yes|no) \|", page), page


@pytest.mark.slow
def test_row_3_breaks_a_sweep_trial_down_into_steps_that_add_up(quick_bench) -> None:
    page, raw = quick_bench
    for step in ("Hydra: compose", "Hydra: run_job", "Optuna: claim", "MLflow: metrics", "MLflow: images"):
        assert re.search(rf"\| {re.escape(step)}[^|]* \| {NUMBER} \|", page), step
    assert re.search(r"Below 130 ms: \*\*(yes|no)\*\*; <= 5%: \*\*(yes|no)\*\*", page), page
    for record in raw["overhead"]["sweeps"]["sweep trial"]:  # the timed steps cover the trial's period
        steps = sum(ms for label, ms in record.items() if label not in ("period", "rss_mb"))
        assert 0.9 * record["period"] <= steps <= record["period"] * 1.001, record


@pytest.mark.slow
def test_rows_4_to_7_report_sweeps_and_scale(quick_bench) -> None:
    page, raw = quick_bench
    assert re.search(rf"Speed-up {NUMBER}x\. Target >= 1\.8x\. Met: \*\*(yes|no)\*\*", page), page
    assert set(raw["pruning"]) == {"median (the study's)"}
    assert all(run["epochs"] > 0 for runs in raw["pruning"].values() for run in runs)
    assert re.search(rf"\| random \| {NUMBER} \| {NUMBER} \| {NUMBER} \|", page), page
    assert re.search(rf"\| digits 8x8 \| 1,\d\d\d \| {NUMBER} \| {NUMBER} \| {NUMBER} \|", page), page
    assert len(raw["long_sweep_rss_mb"]) == 3 and all(rss > 0 for rss in raw["long_sweep_rss_mb"])  # row 3's trials
