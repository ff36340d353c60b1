"""An empty MLflow store kept once per MLflow schema, copied for every new local store.

MLflow makes a new SQLite store by running each of its migrations in turn: 2-3 s of Python on
one core, the largest single cost of a first sweep in a new folder (the script a user would
write by hand pays it too). Before any experiment exists, that store is the same file for every
store of one MLflow schema, so the first build keeps a copy in the user's cache
(``$VAE_SWEEP_CACHE_DIR``, else ``$XDG_CACHE_HOME/vae-sweep``, else ``~/.cache/vae-sweep``, as
pip keeps its wheels) and every later new store is that copy: milliseconds. The copy holds no
experiment: MLflow makes its Default experiment when it first opens the store, where the store
is. A template that is not what it should be (edited, cut short) is removed and the store is
migrated as before; a cache that cannot be written costs only the speed-up.

Kept free of MLflow's import: the parent of a sweep copies the template before it needs MLflow.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import sqlite3
from pathlib import Path

from vae_sweep.local_stores import build_file, remove_abandoned_builds

CACHE_ENV = "VAE_SWEEP_CACHE_DIR"


def cache_folder() -> Path:
    """Where vae-sweep keeps what it can rebuild at any time."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vae-sweep"


def template_path() -> Path | None:
    """The template for the installed MLflow, named by its migrations (the schema they build),
    so that an upgrade, or a development install between releases, never gets another's; None
    when MLflow's migrations cannot be found."""
    spec = importlib.util.find_spec("mlflow")  # finds the package without importing it
    if spec is None or spec.origin is None:
        return None
    versions = Path(spec.origin).parent / "store" / "db_migrations" / "versions"
    try:
        names = sorted(name for name in os.listdir(versions) if name.endswith(".py"))
    except OSError:
        return None
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return cache_folder() / f"mlflow-store-{digest}.db"


def template_ready() -> bool:
    path = template_path()
    return path is not None and path.is_file()


def copy_template(target: Path) -> bool:
    """``target``, a new file, made a copy of the template; False (and no ``target``) when there
    is no usable template. One that is not an empty migrated store is removed."""
    template = template_path()
    if template is None:
        return False
    try:
        shutil.copyfile(template, target)
    except OSError:
        target.unlink(missing_ok=True)
        return False
    if is_empty_store(target):
        return True
    target.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        template.unlink()
    return False


def save_template(store: Path) -> None:
    """The store just migrated at ``store``, its experiments removed, kept as the template
    (written beside it under a temporary name, then moved into place in one step)."""
    template = template_path()
    if template is None:
        return
    temporary = build_file(template, os.getpid())
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_builds(template)  # a save cut short by a kill
        shutil.copyfile(store, temporary)
        with contextlib.closing(sqlite3.connect(temporary)) as db, db:
            db.execute("DELETE FROM experiments")  # MLflow makes its Default one where each copy is opened
        if is_empty_store(temporary):
            os.replace(temporary, template)
    except (OSError, sqlite3.Error):
        pass  # no cache this time: the next new store is migrated again
    finally:
        with contextlib.suppress(OSError):  # not there, or no folder to be in
            temporary.unlink()


def is_empty_store(path: Path) -> bool:
    """Whether ``path`` is a whole SQLite file with MLflow's migrations recorded and no experiment."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return (
                db.execute("PRAGMA quick_check").fetchone() == ("ok",)
                and db.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
                and db.execute("SELECT count(*) FROM experiments").fetchone() == (0,)
            )
    except sqlite3.Error:
        return False
