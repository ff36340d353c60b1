"""Smoke test of ``python -m vae_sweep.bench``: it runs end to end and writes both rows with numbers.

No timing is asserted: the numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_quick_bench_writes_both_rows(tmp_path: Path) -> None:
    out = tmp_path / "perf.md"
    result = subprocess.run(
        [sys.executable, "-m", "vae_sweep.bench", "--quick", "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    number = r"[\d,]+(\.\d+)?"
    assert re.search(rf"\| ours \(`vae_sweep.train.train`\) \| {number} \| {number} \|", page), page
    assert re.search(rf"\| plain loop \(pytorch/examples\) \| {number} \| {number} \|", page), page
    assert re.search(rf"\*\*ratio ours / plain\*\* \| {number} \| \*\*{number}\*\*", page), page
    assert re.search(rf"\*\*{number} GFLOP/s\*\*", page), page
    for side in ("ours", "plain loop"):
        assert re.search(rf"\| {side} \| {number} \| {number}% \| >= 45% \| (yes|no) \|", page), page
