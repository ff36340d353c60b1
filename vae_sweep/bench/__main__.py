"""``python -m vae_sweep.bench [--quick] [--rows 1,3] [--out docs/performance.md] [--json PATH] [--threads T]``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import torch

from vae_sweep.bench.flops import matmul_peak_gflops, training_flops_per_sample
from vae_sweep.bench.gpu import measure_gpu
from vae_sweep.bench.overhead import VARIANTS, measure_overhead
from vae_sweep.bench.page import merged
from vae_sweep.bench.progress import PROGRESS, say
from vae_sweep.bench.report import Results, render
from vae_sweep.bench.scale import DATA_SIZES, data_scaling, long_sweep_rss
from vae_sweep.bench.sweeps import FULL_SIZES, QUICK_SIZES, parallel_scaling, pruning, sampler_efficiency
from vae_sweep.bench.trainer import CONV_MODEL, measure_throughput
from vae_sweep.bench.versus_script import RUNS_PER_REPEAT, versus_script
from vae_sweep.train.config import RunConfig

# Rows 1-2: (training samples, epochs per run, repeats); full is MNIST's 60k, quick only checks that it all runs.
FULL = (60_000, 2, 3)
QUICK = (3_000, 1, 1)
# Rows 1-2 for model=conv: (training samples, epochs, repeats); convolutions on a CPU are slow.
FULL_CONV = (6_000, 1, 5)
QUICK_CONV = (256, 1, 1)
# Row 3: (trials per sweep, repeats, variants, epochs per trial); row 7: trials of the long sweep
# (full runs only).
FULL_OVERHEAD = (11, 2, tuple(VARIANTS), 20)
QUICK_OVERHEAD = (4, 1, tuple(VARIANTS)[:1], 3)
LONG_SWEEP_TRIALS = 200
# Row 8: (trials, epochs) of the longer sweep, repeats.
FULL_VERSUS = (10, 20, 5)  # 5 repeats: a whole process moves by 10-15% between runs here
QUICK_VERSUS = (2, 1, 1)
# Digits trains faster, and with a steadier time, on one thread than on two here: the framework's
# milliseconds stand out of the noise. (A sweep with n_jobs=2 gives each trial one thread too.)
OVERHEAD_THREADS = 1
ROWS = (1, 2, 3, 4, 5, 6, 7, 8, 9)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vae_sweep.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run of every row")
    parser.add_argument("--rows", default=",".join(map(str, ROWS)), help="rows to measure, e.g. 1,2 (default all)")
    parser.add_argument("--out", type=Path, default=Path("docs/performance.md"), help="the Markdown page to write")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads for the trainer rows (1, 2, 7); row 3 trains on 1, rows 4-6 as the sweeper sets",
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:
        args.rows = {int(row) for row in args.rows.split(",")}
    except ValueError:
        parser.error(f"--rows takes row numbers separated by commas, got {args.rows!r}")
    if not args.rows <= set(ROWS):
        parser.error(f"--rows: unknown row(s) {sorted(args.rows - set(ROWS))}; rows are {ROWS}")
    return args


def flops_of(config: RunConfig) -> int:
    shape = (1, config.data.side, config.data.side)
    return training_flops_per_sample(config.model.build(shape), shape)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "quick" if args.quick else "full"
    n_train, epochs, repeats = QUICK if args.quick else FULL
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    load_before = os.getloadavg()[0]
    # Rows 1 and 2 share one measurement: the page always has them.
    PROGRESS.start_row("rows 1-2 (trainer vs plain loop, MLP and conv)", runs=0)
    peak = matmul_peak_gflops(threads=args.threads)
    throughput, config = measure_throughput(n_train=n_train, epochs=epochs, threads=args.threads, repeats=repeats)
    conv_train, conv_epochs, conv_repeats = QUICK_CONV if args.quick else FULL_CONV
    conv, conv_config = measure_throughput(
        n_train=conv_train, epochs=conv_epochs, threads=args.threads, repeats=conv_repeats, model=CONV_MODEL
    )
    results = Results(
        command=shlex.join(["python", "-m", "vae_sweep.bench", *(sys.argv[1:] if argv is None else argv)]),
        load_before=load_before,
        repeats=repeats,
        throughput=throughput,
        flops_per_sample=flops_of(config),
        peak_gflops=peak,
        conv=conv,
        conv_flops_per_sample=flops_of(conv_config),
    )
    if 3 in args.rows:
        trials, overhead_repeats, variants, trial_epochs = QUICK_OVERHEAD if args.quick else FULL_OVERHEAD
        PROGRESS.start_row("row 3 (per-trial overhead)", runs=overhead_repeats * len(variants))
        results.overhead = measure_overhead(
            trials=trials, threads=OVERHEAD_THREADS, repeats=overhead_repeats, variants=variants, epochs=trial_epochs
        )
    if 4 in args.rows:
        PROGRESS.start_row("row 4 (one worker vs two)", runs=2)
        results.scaling = parallel_scaling(sizes)
    if 5 in args.rows:
        PROGRESS.start_row("row 5 (pruners)", runs=len(sizes.pruners) * len(sizes.pruning_seeds))
        results.pruning = pruning(sizes)
    if 6 in args.rows:
        PROGRESS.start_row("row 6 (samplers)", runs=len(sizes.samplers) * len(sizes.sampler_seeds))
        results.samplers = sampler_efficiency(sizes)
    if 7 in args.rows:
        long_sweep = not (args.quick and 3 in args.rows)  # a smoke run reads row 3's sweep instead
        PROGRESS.start_row("row 7 (data sizes, memory)", runs=len(DATA_SIZES[mode]) + long_sweep)
        results.data_scaling = data_scaling(mode, args.threads)
        if long_sweep:
            results.long_sweep_rss_mb = long_sweep_rss(LONG_SWEEP_TRIALS)
        else:  # the RSS that row 3's sweep recorded
            results.long_sweep_rss_mb = [r["rss_mb"] for runs in results.overhead.sweeps.values() for r in runs]
    if 8 in args.rows:
        versus = QUICK_VERSUS if args.quick else FULL_VERSUS
        PROGRESS.start_row("row 8 (vs the hand-written script)", runs=versus[-1] * RUNS_PER_REPEAT)
        results.versus = versus_script(*versus)
    if 9 in args.rows:
        PROGRESS.start_row("row 9 (GPU)", runs=0)
        results.gpu = measure_gpu(args.quick)
    previous = args.out.read_text() if args.out.is_file() else None
    page = merged(render(results), previous, args.rows | {1, 2})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results.as_dict(), indent=2) + "\n")
    print(page, end="")
    say(f"wrote {args.out}" + (f" and {args.json}" if args.json is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
