"""The commands' exit skips the garbage collector's passes over the objects still alive, and
loses nothing on the way: the other atexit handlers run, temporary folders are removed, log
files are flushed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

EXIT_CHECK = """
import atexit, gc, logging, sys, tempfile, weakref
from pathlib import Path
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))  # runs after ours (LIFO)
kept = tempfile.TemporaryDirectory()
Path({marker!r}).write_text(kept.name)
handler = logging.FileHandler({log!r})
logging.getLogger("check").addHandler(handler)
logging.getLogger("check").warning("written at exit")
from vae_sweep import cli
sys.argv = [{prog!r}, "--help"]
cli.{entry}()
"""


@pytest.mark.parametrize(
    ("entry", "prog"),
    [("compare_main", "vae-compare"), ("reproduce_main", "vae-reproduce"), ("replicate_main", "vae-replicate")],
)
def test_a_command_exits_without_collecting_but_loses_nothing(tmp_path, entry, prog) -> None:
    marker, log = tmp_path / "tempdir", tmp_path / "check.log"
    code = EXIT_CHECK.format(marker=str(marker), log=str(log), prog=prog, entry=entry)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "frozen at exit: True" in done.stdout
    assert not (tmp_path / marker.read_text()).exists()  # weakref.finalize removed it at exit
    assert log.read_text() == "written at exit\n"


def test_vae_train_exits_the_same_way(tmp_path) -> None:
    code = textwrap.dedent(
        """
        import atexit, gc, sys
        atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
        from vae_sweep.cli import train_app
        sys.argv = ["vae-train", "--cfg", "job", "--package", "trainer"]
        train_app()
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "epochs:" in done.stdout and "frozen at exit: True" in done.stdout


def test_importing_the_package_keeps_pythons_exit() -> None:
    code = "import atexit, gc\natexit.register(lambda: print(gc.get_freeze_count()))\nimport vae_sweep.cli"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
