"""The local stack's mail catcher: an SMTP server that keeps every message as a file.

``make run`` points the approval service's SMTP settings here, so reminders, escalations
and their unsubscribe links can be read without a real mail server:
``<PRESSROOM_DATA_DIR>/mail/<UTC timestamp>-<id>.eml``, each the message as received (open
it in any mail client), with ``X-Pressroom-Envelope-*`` headers in front naming the SMTP
envelope. Files are written to a temporary name and renamed, so a reader never sees half a
message. It accepts everything and relays nothing.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

Log = Callable[[str], None]


class _Keeper:
    def __init__(self, folder: Path, log: Log) -> None:
        self.folder = folder
        self.log = log

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or (
            envelope.content if isinstance(envelope.content, bytes) else b""
        )
        front = (
            f"X-Pressroom-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Pressroom-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        path = await asyncio.to_thread(self._write, front + raw)
        self.log(f"mail to {', '.join(envelope.rcpt_tos)} kept in {path}")
        return "250 OK kept"

    def _write(self, data: bytes) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.folder / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        partial = path.with_suffix(".eml.part")
        partial.write_bytes(data)
        os.replace(partial, path)
        return path


class MailCatcher:
    """``start()`` listens on ``host:port`` (port 0, or a port already taken: any free one;
    ``port`` says which after), ``stop()`` closes it. The stack passes the port it got to
    the approval service, so a busy 8025 never stops ``make run``."""

    def __init__(
        self, folder: Path, *, host: str = "127.0.0.1", port: int = 8025, log: Log = print
    ) -> None:
        self.folder = folder
        self.host = host
        self.port = port
        self.log = log
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        keeper = _Keeper(self.folder, self.log)
        loop = asyncio.get_running_loop()

        def protocol() -> SMTP:
            return SMTP(keeper, hostname="pressroom-mailcatcher", enable_SMTPUTF8=True)

        try:
            self._server = await loop.create_server(protocol, self.host, self.port)
        except OSError as exc:  # the port is taken (another stack): any free one will do
            self.log(f"port {self.port} is not free ({exc.strerror}); using another")
            self._server = await loop.create_server(protocol, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
