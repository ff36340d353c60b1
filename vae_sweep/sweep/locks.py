"""One process at a time sets a study up: creates or loads it, fills its budget, opens its parent run.

Several processes starting the same study at once (``n_jobs`` commands on a cluster, a user who
raises ``n_trials`` in two terminals) would otherwise each count the budget's missing slots and
add them, or each create a parent run. The lock lives with the storage, so it holds across
machines: a PostgreSQL advisory lock, MySQL's ``GET_LOCK``, and for a SQLite file (one machine)
an ``flock`` on the folder that holds it. Other databases go unlocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy
from optuna.storages import RDBStorage

LOCK_TIMEOUT_S = 600


@contextlib.contextmanager
def study_lock(storage: RDBStorage, study_name: str) -> Iterator[None]:
    engine = storage.engine
    dialect = engine.dialect.name
    key = f"vae_sweep:{study_name}"
    if dialect == "sqlite":
        with folder_lock(Path(engine.url.database or ".").resolve().parent):
            yield
    elif dialect == "postgresql":
        number = zlib.crc32(key.encode()) - 2**31  # advisory locks take a signed 64-bit key
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": number})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": number})
    elif dialect in ("mysql", "mariadb"):
        with engine.connect() as connection:
            connection.execute(
                sqlalchemy.text("SELECT GET_LOCK(:key, :timeout)"), {"key": key, "timeout": LOCK_TIMEOUT_S}
            )
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:key)"), {"key": key})
    else:
        yield


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` itself: no lock file is left behind."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
