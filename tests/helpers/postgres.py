"""A throwaway PostgreSQL server for tests: the fixtures ``postgres_url`` and ``fresh_postgres_url``.

Load it from a test module with ``pytest_plugins = ["helpers.postgres"]`` (``tests/`` is on
``sys.path`` through pytest's default ``prepend`` import mode). The server is a fresh cluster
in a temporary folder: ``initdb`` with trust auth, listening only on 127.0.0.1 at a free port,
its unix socket inside that folder, stopped (``pg_ctl stop -m fast``) at the end of the session.
The binaries come from ``PATH`` or Debian's ``/usr/lib/postgresql/<version>/bin``. As root,
they run as the ``postgres`` user (``initdb`` refuses root). Without binaries, that user or
``psycopg2`` the tests are skipped, except under ``CI=true``, where they fail, so a broken CI
setup cannot hide them.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

SERVER_USER = "postgres"
DATABASE = "vae_sweep_test"
DEBIAN_BIN_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT_S = 60
# Durability is worthless for a throwaway cluster; turning it off makes every commit cheap.
SERVER_OPTIONS = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


class PostgresUnavailable(Exception):
    """This machine cannot run a PostgreSQL server for the tests; the message says why."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail in CI: there the server is part of the setup and must not be missing quietly."""
    message = f"no PostgreSQL server for the tests: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: install the 'postgresql' package, as .ci/run does)", pytrace=False)
    pytest.skip(message)


def find_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: from PATH, else the newest Debian install."""
    candidates = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)  # /usr/local/bin/initdb may link into Debian's folder
    versions = DEBIAN_BIN_ROOT.glob("*/bin") if DEBIAN_BIN_ROOT.is_dir() else []
    newest_first = sorted(versions, key=lambda path: [int(n) for n in re.findall(r"\d+", path.parent.name)])[::-1]
    candidates += newest_first
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise PostgresUnavailable(f"initdb, pg_ctl and postgres are neither on PATH nor in {DEBIAN_BIN_ROOT}/<version>/bin")


def as_server_user() -> tuple[Callable[[list[str]], list[str]], pwd.struct_passwd | None]:
    """How to run the server's commands: as ourselves, or, as root, as the ``postgres`` user."""
    if os.geteuid() != 0:
        return list, None
    try:
        user = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresUnavailable(f"running as root, and there is no {SERVER_USER!r} user to run initdb as") from None
    runuser, su = shutil.which("runuser"), shutil.which("su")
    if runuser:
        return lambda command: [runuser, "-u", SERVER_USER, "--", *command], user
    if su:
        return lambda command: [su, "-s", "/bin/sh", SERVER_USER, "-c", shlex.join(command)], user
    raise PostgresUnavailable(f"running as root, and neither runuser nor su is there to run initdb as {SERVER_USER!r}")


def check_reachable_by_others(folder: Path) -> None:
    """The server user must be able to walk down to ``folder``: every folder above it needs o+x."""
    for parent in folder.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise RuntimeError(
                f"the {SERVER_USER!r} user cannot reach {folder}: {parent} is not traversable by others "
                "(point TMPDIR at a folder such as /tmp)"
            )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One cluster in ``folder``: ``data/`` (the cluster), ``server.log``, and its socket."""

    def __init__(self, bin_dir: Path, folder: Path, as_user: Callable[[list[str]], list[str]]) -> None:
        self.bin_dir = bin_dir
        self.folder = folder
        self.as_user = as_user
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = free_port()

    def run(self, tool: str, *args: str) -> None:
        command = self.as_user([str(self.bin_dir / tool), *args])
        # cwd: the server user may not be allowed into ours (e.g. /root); LC_ALL: a locale set here
        # but not installed would make initdb fail.
        env = {**os.environ, "LC_ALL": "C"}
        done = subprocess.run(command, cwd=self.folder, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            server_log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            output = f"{done.stdout}{done.stderr}\n{server_log}".rstrip()
            raise RuntimeError(f"{shlex.join(command)} exited with {done.returncode}:\n{output}")

    def init(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", SERVER_USER, "-A", "trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = ["-c", "listen_addresses=127.0.0.1", "-p", str(self.port), "-k", str(self.folder), *SERVER_OPTIONS]
        waiting = ["-w", "-t", str(START_TIMEOUT_S)]
        self.run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), *waiting, "-o", " ".join(options))

    def stop(self) -> None:
        self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{SERVER_USER}@127.0.0.1:{self.port}/{database}"


def create_database(server_url: str, name: str) -> None:
    import sqlalchemy

    # CREATE DATABASE cannot run inside a transaction.
    engine = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg2://postgres@127.0.0.1:PORT/vae_sweep_test`` on a server of this session's own."""
    try:
        import psycopg2  # noqa: F401  (SQLAlchemy's driver for the URL we hand out)
    except ImportError:
        unavailable("psycopg2 is not installed (pip install -e '.[dev]')")
    try:
        bin_dir = find_bin_dir()
        as_user, user = as_server_user()
    except PostgresUnavailable as error:
        unavailable(str(error))
    # In the system temp folder, not pytest's: that one is private to us (0700), so the server
    # user could not reach a folder inside it.
    folder = Path(tempfile.mkdtemp(prefix="vae-sweep-postgres-"))
    server = Server(bin_dir, folder, as_user)
    try:
        if user is not None:
            os.chown(folder, user.pw_uid, user.pw_gid)
            check_reachable_by_others(folder)
        server.init()
        server.start()
        try:
            create_database(server.url("postgres"), DATABASE)
            yield server.url(DATABASE)
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def new_database(server_url: str) -> str:
    """The URL of a new, empty database on the server of ``server_url`` (any database's URL on it)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    create_database(server_url, name)
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> str:
    """A new, empty database on the session's server: for tests whose processes must meet an
    uninitialised storage (no tables yet), whatever other tests did before them. A test that
    needs more than one (say, a second one for an MLflow server) calls ``new_database(postgres_url)``."""
    return new_database(postgres_url)
