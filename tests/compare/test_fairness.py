"""vae-compare's fairness rules on the constructed study (tests/compare/conftest.py): completed
runs only by default, ``--at-epoch``, ``--min-runs`` and thin options, the header printed once
and terminal tables within 100 columns. Expected values come from the constructed runs."""

from __future__ import annotations

import contextlib
import html
import io
import json
import statistics

import pandas as pd
import pytest

from vae_sweep.cli import compare
from vae_sweep.compare import Basis, fit_table, label

FORMATS = ("terminal", "markdown", "html", "json", "csv")


def vae_compare(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = compare(argv)
    return code, out.getvalue(), err.getvalue()


def json_rows(constructed, *args: str) -> tuple[dict, pd.DataFrame]:
    code, out, err = vae_compare(constructed.argv("--format", "json", *args))
    assert code == 0, err
    report = json.loads(out)
    return report, pd.DataFrame(report["techniques"]["optimizer"]).set_index("option")


def expected_winner(medians: dict[str, float | None], counts: dict[str, int], min_runs: int) -> list[str]:
    """The option with the lowest median among those with at least ``min_runs`` compared runs."""
    eligible = {option: m for option, m in medians.items() if m is not None and counts[option] >= min_runs}
    return [min(eligible, key=eligible.get)] if eligible else []


def test_median_compares_completed_runs_only(constructed):
    report, rows = json_rows(constructed)
    assert report["basis"]["compared"] == "completed" and "completed runs only" in report["basis"]["note"]
    adam = constructed.of("adam")
    with_pruned = statistics.median(t.last for t in adam if t.last is not None)
    assert with_pruned != constructed.completed_median("adam")  # the constructed runs make the rule matter
    for option in constructed.options():
        row, completed = rows.loc[option], constructed.of(option, "COMPLETE")
        assert row["count"] == len(constructed.of(option))
        assert row["compared"] == row["completed"] == len(completed)
        assert row["pruned"] == len(constructed.of(option, "PRUNED"))
        assert row["failed"] == len(constructed.of(option, "FAIL"))
        assert row["median"] == pytest.approx(constructed.completed_median(option))
        assert row["best"] == pytest.approx(min(t.last for t in completed))
    top = pd.DataFrame(report["top_trials"])
    assert set(top["state"]) == {"COMPLETE"}  # pruned runs' values are not ranked either
    assert top["val_loss"].tolist() == sorted(t.last for t in constructed.trials if t.state == "COMPLETE")[:10]


@pytest.mark.parametrize("min_runs", [1, 3, 5])
def test_winner_needs_min_runs_and_thin_options_cannot_win(constructed, min_runs):
    _, rows = json_rows(constructed, "--min-runs", str(min_runs))
    counts = {o: len(constructed.of(o, "COMPLETE")) for o in constructed.options()}
    medians = {o: constructed.completed_median(o) for o in constructed.options()}
    assert rows.index[rows["winner"]].tolist() == expected_winner(medians, counts, min_runs)
    assert rows["thin"].to_dict() == {o: counts[o] < min_runs for o in counts}
    assert not (rows["thin"] & rows["winner"]).any()
    single_best = min((t for t in constructed.trials if t.state == "COMPLETE"), key=lambda t: t.last)
    if counts[single_best.optimizer] < min_runs:  # the lowest single value does not make a winner
        assert not rows.loc[single_best.optimizer, "winner"]
    ranked = rows.reset_index()
    assert ranked["thin"].is_monotonic_increasing  # options that may win come first


def test_at_epoch_compares_every_run_that_reached_it(constructed):
    epoch = 2
    report, rows = json_rows(constructed, "--at-epoch", str(epoch))
    assert report["basis"]["compared"] == f"epoch {epoch}" and report["basis"]["at_epoch"] == epoch
    reached = [t for t in constructed.trials if t.at(epoch) is not None]
    assert any(t.state == "PRUNED" for t in reached)  # a pruned run counts at an epoch it reached
    for option in constructed.options():
        values = [t.at(epoch) for t in reached if t.optimizer == option]
        assert rows.loc[option, "compared"] == len(values)
        assert rows.loc[option, "median"] == pytest.approx(statistics.median(values))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_says_what_was_compared(constructed, fmt):
    code, out, err = vae_compare(constructed.argv("--format", fmt, "--at-epoch", "3"))
    assert code == 0, err
    says = Basis("val_loss", at_epoch=3).describe()
    flat = " ".join((html.unescape(out) if fmt == "html" else out).split())  # the terminal wraps it
    assert says in (json.loads(out)["basis"]["note"] if fmt == "json" else flat)


@pytest.mark.parametrize("fmt", ["terminal", "markdown", "html", "json"])
def test_the_header_is_printed_once(constructed, fmt):
    code, out, err = vae_compare(constructed.argv("--format", fmt))
    assert code == 0, err
    header = f"study 'constructed' (parent run {constructed.parent_run_id}"
    assert html.unescape(out + err).count(header) == 1
    if fmt == "json":  # stdout is data: the line saying what was read goes to stderr
        assert err.startswith(f"vae-compare: {header}")


@pytest.mark.parametrize("by", ["optimizer", "optimizer,optimizer.lr"])
def test_terminal_report_fits_100_columns(constructed, by):
    code, out, err = vae_compare(constructed.argv("--by", by, "--top", "20"))
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 100
    for option in constructed.options():  # long labels are wrapped, not cut
        assert set(option.split()) <= set(out.split())
    sgd = [line for line in out.splitlines() if " sgd " in f" {line} " and "thin" in line]
    assert sgd and len(constructed.of("sgd", "COMPLETE")) < 3


def test_fit_table_wraps_then_drops_columns_in_order():
    table = pd.DataFrame({"option": ["a long option label"], **{f"column{i}": [1.23456789] for i in range(12)}})
    text, dropped = fit_table(table, wrap={"option": 8}, drop=[f"column{i}" for i in range(12)], limit=60)
    assert max(len(line) for line in text.splitlines()) <= 60
    assert dropped == [f"column{i}" for i in range(len(dropped))] and len(dropped) < 12
    assert "column11" in text and "1.235" in text  # four significant digits
    assert len(text.splitlines()) == 2 + len(["a long", "option", "label"])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--at-epoch", "2", "--metric", "test_loss"], "--at-epoch needs a per-epoch metric"),
        (["--at-epoch", "0"], "--at-epoch must be at least 1"),
        (["--min-runs", "0"], "--min-runs must be at least 1, got 0"),
    ],
)
def test_bad_basis_exits_2_with_one_message(constructed, args, says):
    code, out, err = vae_compare(constructed.argv(*args))
    assert code == 2 and out == "" and err.count("\n") == 1 and says in err


def test_labels_carry_units_and_no_direction_for_kl():
    assert label("val_loss") == "val_loss (nats per example, lower is better)"
    assert "better" not in label("test_kl") and "nats" in label("test_kl")  # KL near 0 is collapse, not good
    assert label("test_bpd", at_epoch=None).endswith("(bits per dim, lower is better)")
    assert label("val_kl", at_epoch=3).startswith("val_kl at epoch 3 (")
