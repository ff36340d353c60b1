"""When the commands let the garbage collector run: only the young generations while they start,
as Python would once a run or sweep is set up (with what start-up left frozen), and never over
the live objects at exit, losing nothing there (the other atexit handlers run, temporary folders
are removed, log files are flushed). Each check runs in a process of its own, whose collector it
may change."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Registered before the command's own handler, so it runs after it (last in, first out).
AT_EXIT = """
import atexit, gc
defaults = gc.get_threshold()
atexit.register(lambda: print("at exit:", "frozen" if gc.get_freeze_count() else "not frozen",
                              "defaults" if gc.get_threshold() == defaults else f"held {gc.get_threshold()}"))
"""

KEEPS_EVERYTHING = """
import logging, sys, tempfile
from pathlib import Path
kept = tempfile.TemporaryDirectory()
Path({marker!r}).write_text(kept.name)
handler = logging.FileHandler({log!r})
logging.getLogger("check").addHandler(handler)
logging.getLogger("check").warning("written at exit")
from vae_sweep import cli
sys.argv = [{prog!r}, "--help"]
cli.{entry}()
"""


def python(code: str, cwd=None) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("entry", "prog"),
    [("compare_main", "vae-compare"), ("reproduce_main", "vae-reproduce"), ("replicate_main", "vae-replicate")],
)
def test_a_command_exits_without_collecting_but_loses_nothing(tmp_path, entry, prog) -> None:
    marker, log = tmp_path / "tempdir", tmp_path / "check.log"
    out = python(AT_EXIT + KEEPS_EVERYTHING.format(marker=str(marker), log=str(log), prog=prog, entry=entry))
    assert "at exit: frozen defaults" in out
    assert not (tmp_path / marker.read_text()).exists()  # weakref.finalize removed it at exit
    assert log.read_text() == "written at exit\n"


def test_holding_collects_the_young_generations_until_start_up_is_over() -> None:
    out = python(
        textwrap.dedent(
            """
            import gc
            from vae_sweep.garbage import hold_full_collections, release_after_startup
            defaults = gc.get_threshold()
            release_after_startup()
            print("release alone:", gc.get_freeze_count(), gc.get_threshold() == defaults)
            hold_full_collections()
            hold_full_collections()
            print("held:", gc.get_threshold()[:2] == defaults[:2], gc.get_threshold()[2] > 10**6)
            cycle = []; cycle.append(cycle); del cycle
            print("young garbage collected:", gc.collect(1) >= 1)
            release_after_startup()
            print("released:", gc.get_freeze_count() > 0, gc.get_threshold() == defaults)
            """
        )
    )
    assert "release alone: 0 True" in out
    assert "held: True True" in out
    assert "young garbage collected: True" in out
    assert "released: True True" in out


@pytest.mark.parametrize("sweep", [False, True], ids=["single-run", "sweep"])
def test_vae_train_collects_as_before_once_set_up(tmp_path, sweep) -> None:
    arguments = ["-m", "study=quick", "hydra.sweeper.n_trials=1"] if sweep else []
    code = AT_EXIT + textwrap.dedent(
        f"""
        import gc, sys
        from vae_sweep.cli import train_app
        import vae_sweep.track.training as training
        train = training.train_and_track
        def checked(*args, **kwargs):  # collections as Python makes them, while the run trains
            print("while training:", gc.get_threshold() == defaults, gc.get_freeze_count() > 0)
            return train(*args, **kwargs)
        training.train_and_track = checked
        sys.argv = ["vae-train", *{arguments!r}, "debug=tiny", "trainer.epochs=1", "tracking=none"]
        train_app()
        """
    )
    out = python(code, cwd=tmp_path)
    assert "while training: True True" in out
    assert "at exit: frozen defaults" in out


def test_a_process_that_goes_on_after_a_command_gets_pythons_collector_back() -> None:
    out = python(
        AT_EXIT
        + textwrap.dedent(
            """
            from vae_sweep.garbage import (
                collect_as_python_does, collect_nothing_at_exit, hold_full_collections, release_after_startup,
            )
            hold_full_collections(); release_after_startup(); hold_full_collections(); collect_nothing_at_exit()
            collect_as_python_does()
            print("after:", gc.get_freeze_count(), gc.get_threshold() == defaults)
            """
        )
    )
    assert "after: 0 True" in out
    assert "at exit: not frozen defaults" in out


def test_importing_the_package_keeps_pythons_collector() -> None:
    out = python(AT_EXIT + "import vae_sweep.cli, vae_sweep.sweep.worker")
    assert "at exit: not frozen defaults" in out
