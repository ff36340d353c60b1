"""A new local MLflow store built in a child process while the sweep checks its configs.

MLflow's migrations of a new SQLite store are about a second of Python on one core, and a
sweep spends that second composing and validating configs and importing torch: a child process
builds the store on another core meanwhile. It builds it in a temporary file beside the store
(named as ``local_stores.create_sqlite_atomically`` names its own, so that one left by a killed
child is removed like theirs), which the sweep links into place only once every check has
passed: a refused sweep leaves no store behind, and when anything goes wrong the sweep builds
the store itself, as it would have, and reports what went wrong there. Once the migrated store
is cached (``store_template``), the sweep copies it instead and no child is started.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from vae_sweep.local_stores import build_file, remove_abandoned_builds, remove_build, sqlite_file
from vae_sweep.track.store_template import template_ready

BUILD = "import sys; from vae_sweep.track.store_ahead import build; build(sys.argv[1], int(sys.argv[2]))"
PARENT_CHECK_S = 0.2  # how soon a child whose sweep was killed stops building


class StoreAhead:
    """The child process building the store at ``path``; ``use`` or ``cancel`` it once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process = subprocess.Popen(
            [sys.executable, "-c", BUILD, str(path), str(os.getpid())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C is the sweep's to handle; it cancels the build
        )
        self.temporary = build_file(path, self.process.pid)

    @classmethod
    def start(cls, uri: str | None) -> StoreAhead | None:
        """The build of the store at ``uri`` when it is a local SQLite file yet to be made (a
        relative one is relative to this process's folder, as the sweep's stores are)."""
        path = sqlite_file(uri) if uri else None
        if path is None or path.exists() or not path.resolve().parent.is_dir() or template_ready():
            return None  # a copy of the cached template takes milliseconds: the sweep makes it
        remove_abandoned_builds(path.resolve())  # the sweep's own build, which would, is not run now
        return cls(path.resolve())

    def use(self, uri: str) -> None:
        """Put the built store in place for ``uri`` (the one the checks settled on); nothing
        when the build failed, or ``uri`` names another store: the sweep then builds its own."""
        path = sqlite_file(uri)
        built = self.process.wait() == 0
        if built and path is not None and path.resolve() == self.path:
            # Made meanwhile by another process (theirs is used), or not linkable here: the sweep's own
            # build then finds the store, or says what is wrong with its folder.
            with contextlib.suppress(OSError):
                os.link(self.temporary, self.path)
        self.cancel()

    def cancel(self) -> None:
        """Stop the build if it still runs, and remove its files."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        remove_build(self.temporary)


def build(path: str, sweep_pid: int) -> None:
    """In the child: the store's tables and every migration, in its temporary file; given up
    at once if the sweep is killed meanwhile (its file is then removed as abandoned)."""
    from vae_sweep.track.stores import initialize_mlflow_store

    threading.Thread(target=exit_without, args=(sweep_pid,), daemon=True).start()
    initialize_mlflow_store(f"sqlite:///{build_file(Path(path), os.getpid())}")


def exit_without(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)
