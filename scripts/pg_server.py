"""A throwaway PostgreSQL server for tests and benchmarks (Debian's binaries).

``with PostgresServer() as server: url = server.database("name")`` runs
``initdb`` into a temporary folder, starts ``postgres`` on a free port of
127.0.0.1 (and a unix socket in that folder), makes a user with a password
and gives each :meth:`PostgresServer.database` call a new, empty database
owned by that user; leaving the block stops the server and removes the folder.
Run as root, the server runs as the ``postgres`` user (``initdb`` refuses
root). Settings favour speed over durability (``fsync=off``): data is thrown
away anyway.

Used by ``tests/test_bench_tune_postgres.py`` and ``benchmarks/tune_storage.py``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresServer", "postgres_bin"]


def postgres_bin() -> Path:
    """The folder of ``initdb``/``pg_ctl``: the newest ``/usr/lib/postgresql/N/bin``, else PATH."""

    def version(path: str) -> tuple[int, ...]:
        found = re.search(r"postgresql/([\d.]+)/bin", path)
        return tuple(int(x) for x in found.group(1).split(".")) if found else (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise FileNotFoundError(
            "initdb not found: install PostgreSQL (Debian: apt-get install postgresql)"
        )
    return Path(initdb).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The watchdog's program (stdlib only): wait for stdin to close, then stop the
#: server (argv[1]: the pg_ctl command without "stop") and remove its folder.
_WATCHDOG = """
import ast, os, shutil, subprocess, sys
sys.stdin.buffer.read()
if os.path.exists(os.path.join(sys.argv[2], "data", "postmaster.pid")):
    subprocess.run([*ast.literal_eval(sys.argv[1]), "stop"], capture_output=True, timeout=60)
shutil.rmtree(sys.argv[2], ignore_errors=True)
"""


class PostgresServer:
    """A PostgreSQL server in a temporary folder, on 127.0.0.1 (see the module docstring).

    Attributes:
        user, password: The login every :meth:`database` URL carries.
        port: The TCP port on 127.0.0.1.
        folder: The temporary folder (data in ``data/``, the socket, ``server.log``).
    """

    def __init__(self, user: str = "lrkit", password: str = "pw-s3cr3t-tune") -> None:
        self.user, self.password = user, password
        self.port = 0
        self.folder = Path()
        self._bin = postgres_bin()
        self._as: list[str] = []
        self._count = 0
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- running commands as the server's owner --------------------------------
    def _run(self, *argv: str) -> str:
        done = subprocess.run(
            [*self._as, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({done.returncode}): {done.stderr or done.stdout}"
            )
        return done.stdout

    def _sql(self, statement: str, database: str = "postgres") -> str:
        return self._run(
            str(self._bin / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.folder),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            statement,
        )

    # -- life cycle ------------------------------------------------------------
    def start(self) -> PostgresServer:
        """initdb, start on a free port, create the user; returns ``self``."""
        self.folder = Path(tempfile.mkdtemp(prefix="lrkit-pg-", dir="/tmp"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.folder, 0o700)
        data = self.folder / "data"
        self._run(
            str(self._bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        for tries in range(3):  # the free port may be taken before the server binds it
            self.port = _free_port()
            try:
                self._run(
                    str(self._bin / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(self.folder / "server.log"),
                    "-o",
                    f"-p {self.port} {options}",
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
                break
            except RuntimeError:
                if tries == 2:
                    self.stop()
                    raise
                time.sleep(0.2)
        self._watch(data)
        self._sql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        return self

    def _watch(self, data: Path) -> None:
        """A process that stops the server and removes its folder if this one dies.

        pg_ctl leaves the server running on its own; a test run killed with
        SIGKILL never reaches :meth:`stop`. The watchdog waits for its stdin,
        a pipe from this process, to close (at :meth:`stop`, or when this
        process dies), then does what :meth:`stop` does.
        """
        pg_ctl = [*self._as, str(self._bin / "pg_ctl"), "-D", str(data), "-m", "immediate"]
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, repr(pg_ctl), str(self.folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the test run does not kill it first
        )

    def database(self, name: str | None = None) -> str:
        """A new empty database owned by the user; its ``postgresql://`` URL (password in it)."""
        self._count += 1
        name = name or f"db{self._count}"
        self._sql(f"CREATE DATABASE {name} OWNER {self.user}")
        return self.url(name)

    def url(self, name: str, *, password: bool = True) -> str:
        """``postgresql://user[:password]@127.0.0.1:port/name``."""
        login = f"{self.user}:{self.password}" if password else self.user
        return f"postgresql://{login}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server (immediately: nothing is kept) and remove the folder."""
        if self.folder == Path() or not self.folder.exists():
            return
        data = self.folder / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(str(self._bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._watchdog is not None:  # nothing left for it to do: let it go
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                assert self._watchdog.stdin is not None
                self._watchdog.stdin.close()
                self._watchdog.wait(timeout=30)
            self._watchdog = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
