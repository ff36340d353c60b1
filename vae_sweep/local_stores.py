"""The local files every part writes: SQLite stores (MLflow's ``mlflow.db``, Optuna's
``optuna.db``) and output folders. A store or folder that cannot be written, or a store that is
damaged or another application's, is refused before anything is written anywhere; a new store
is built whole under a temporary name, so a kill or a full disk never leaves it half made.

Kept free of torch and MLflow so every command can check its files first and fast.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from vae_sweep.errors import ConfigError


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL; None for other URLs."""
    if not uri.startswith("sqlite:///") or ":memory:" in uri:
        return None
    return Path(unquote(uri.removeprefix("sqlite:///").split("?", 1)[0]))


def absolute_sqlite_url(uri: str, base: Path) -> str:
    """A ``sqlite:///relative`` URL made absolute against ``base``; every other URL as it is.

    Relative store paths mean "relative to where the command was started": a job that Hydra runs
    in its own folder (``hydra.job.chdir=true``) must not open a new, empty store there.

    >>> absolute_sqlite_url("sqlite:///optuna.db?timeout=5", Path("/work"))
    'sqlite:////work/optuna.db?timeout=5'
    >>> absolute_sqlite_url("sqlite:////tmp/x.db", Path("/work"))
    'sqlite:////tmp/x.db'
    """
    path = sqlite_file(uri)
    if path is None or path.is_absolute():
        return uri
    query = uri.partition("?")[2]
    return f"sqlite:///{(base / path).resolve()}" + (f"?{query}" if query else "")


def unwritable_folder(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (made, with its parents, when missing); None if one can.

    Tried for real rather than with ``os.access``: as root that ignores permission bits, and
    it cannot tell an immutable folder or a read-only mount either.
    """
    existing = next((path for path in (folder, *folder.parents) if path.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create {error.filename or folder} ({error.strerror})"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return f"cannot create files in {folder} ({error.strerror})"
    return None


def check_writable_sqlite(uri: str, *, key: str, store: str) -> None:
    """A SQLite store (``store`` names it in the message) must be writable, and so must its folder,
    where SQLite keeps its write-ahead log; other URLs are left to their server."""
    path = sqlite_file(uri)
    if path is None:
        return
    problem = unwritable_folder(path.parent)
    if problem is None and path.is_dir():
        problem = "it is a folder, not a database file"
    elif problem is None and path.exists():
        try:
            with path.open("r+b"):
                pass
        except OSError as error:
            problem = f"cannot open it for writing ({error.strerror})"
    if problem:
        raise ConfigError(key, f"cannot write the {store} {path}: {problem}")


def create_sqlite_atomically(path: Path, initialize: Callable[[str], object]) -> bool:
    """Make a new SQLite store at ``path`` so that no process ever sees it half made.

    ``initialize(url)`` builds the store (its tables and migrations, seconds for MLflow) in a
    temporary file beside ``path``, which is then linked into place in one step. A process
    killed meanwhile, or a full disk, leaves only its temporary file, which the next call
    removes; two processes creating one store at once both end up using the first one's.
    Returns False when ``path`` already exists.
    """
    path = path.resolve()
    if path.exists():
        return False
    remove_abandoned_builds(path)
    temporary = build_file(path, os.getpid())
    try:
        initialize(f"sqlite:///{temporary}")
        os.link(temporary, path)  # unlike a rename, never replaces a store another process just made
    except FileExistsError:
        return False
    finally:
        remove_build(temporary)
    return True


def build_file(path: Path, pid: int) -> Path:
    """Where process ``pid`` builds the new store at ``path``, until it is linked into place."""
    return path.with_name(f".{path.name}.{pid}.new")


def remove_build(temporary: Path) -> None:
    """A build's temporary file and SQLite's files beside it."""
    for leftover in (temporary, *(temporary.with_name(temporary.name + s) for s in ("-journal", "-wal", "-shm"))):
        leftover.unlink(missing_ok=True)


def remove_abandoned_builds(path: Path) -> None:
    """Temporary files of ``create_sqlite_atomically`` whose process is gone (killed mid-build)."""
    for leftover in path.parent.glob(f".{path.name}.*.new*"):
        pid = leftover.name.removeprefix(f".{path.name}.").split(".", 1)[0]
        if pid.isdigit() and not process_exists(int(pid)):
            leftover.unlink(missing_ok=True)


def process_exists(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped, as a killed sweep's child is for
    a moment) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    with contextlib.suppress(OSError, IndexError):  # no /proc (not Linux): it runs
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def check_sqlite_store(uri: str, *, key: str, store: str, marker_table: str) -> None:
    """An existing SQLite store must be a whole database of the right kind: ``marker_table``
    (MLflow's ``experiments``, Optuna's ``studies``) tells ours apart from another application's
    file, whose tables MLflow or Optuna would otherwise add their own to. A file with pages
    overwritten fails SQLite's ``quick_check``. Each is one message, before anything is written."""
    path = sqlite_file(uri)
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)) as connection:
            check = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:  # "file is not a database", "database disk image is malformed"
        if "malformed" in str(error):
            raise ConfigError(key, f"the {store} {path.resolve()} is damaged (SQLite: {error}); {ELSEWHERE}") from None
        raise ConfigError(
            key, f"the {store} {path.resolve()} is not a SQLite database (SQLite: {error}); {ELSEWHERE}"
        ) from None
    if check != ["ok"]:
        raise ConfigError(key, f"the {store} {path.resolve()} is damaged (SQLite: {check[0]}); {ELSEWHERE}")
    if tables and marker_table not in tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise ConfigError(
            key, f"{path.resolve()} is not an {store} (it holds another application's tables: {shown}); {ELSEWHERE}"
        )


def check_local_store(uri: str, *, key: str, store: str, marker: str) -> None:
    """A SQLite store (other URLs are left to their server) that can be written, and that is a
    whole store of its kind if it exists."""
    check_writable_sqlite(uri, key=key, store=store)
    check_sqlite_store(uri, key=key, store=store, marker_table=marker)


ELSEWHERE = "restore it from a backup, or point the key at another file (a new one is made whole)"
