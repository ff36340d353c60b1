"""``python -m vae_sweep.bench [--quick] [--out docs/performance.md] [--json PATH] [--threads T]``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import torch

from vae_sweep.bench.flops import matmul_peak_gflops, training_flops_per_sample
from vae_sweep.bench.report import Results, render
from vae_sweep.bench.trainer import measure_throughput

# (training samples, epochs per run, repeats): full is MNIST's 60k; quick only checks that it all runs.
FULL = (60_000, 2, 3)
QUICK = (3_000, 1, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vae_sweep.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few thousand samples, one repeat: a smoke run")
    parser.add_argument("--out", type=Path, default=Path("docs/performance.md"), help="the Markdown page to write")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads for every measurement"
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n_train, epochs, repeats = QUICK if args.quick else FULL
    load_before = os.getloadavg()[0]
    peak = matmul_peak_gflops(threads=args.threads)
    throughput, config = measure_throughput(n_train=n_train, epochs=epochs, threads=args.threads, repeats=repeats)
    results = Results(
        command=shlex.join(["python", "-m", "vae_sweep.bench", *(sys.argv[1:] if argv is None else argv)]),
        load_before=load_before,
        repeats=repeats,
        throughput=throughput,
        flops_per_sample=training_flops_per_sample(config.model.build(config.data.side**2)),
        peak_gflops=peak,
    )
    page = render(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results.as_dict(), indent=2) + "\n")
    print(page, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
