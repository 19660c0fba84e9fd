"""The local stack's mail catcher keeps what the approval service sends as ``.eml`` files:
a real message over SMTP (aiosmtplib) comes back byte for byte, with its envelope."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import aiosmtplib
import pytest
from pressroom_deploy.mailcatcher import MailCatcher

pytestmark = pytest.mark.integration


async def test_every_message_is_kept_as_a_file(tmp_path: Path) -> None:
    lines: list[str] = []
    catcher = MailCatcher(tmp_path / "mail", port=0, log=lines.append)
    await catcher.start()
    try:
        # A second catcher on the same port moves to a free one instead of failing.
        other = MailCatcher(tmp_path / "other", port=catcher.port, log=lines.append)
        await other.start()
        assert other.port != catcher.port
        await other.stop()
        for n in range(2):
            message = EmailMessage()
            message["From"] = "pressroom@localhost"
            message["To"] = f"mo{n}@example.com"
            message["Subject"] = f"Erinnerung {n}: „Winterschlussverkauf“"
            message.set_content("Grüße")
            await aiosmtplib.send(message, hostname="127.0.0.1", port=catcher.port)
    finally:
        await catcher.stop()
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 2 and not list((tmp_path / "mail").glob("*.part"))
    kept = email.message_from_bytes(files[1].read_bytes(), policy=default_policy)
    assert kept["Subject"] == "Erinnerung 1: „Winterschlussverkauf“"
    assert kept["X-Pressroom-Envelope-To"] == "mo1@example.com"
    assert kept.get_content().strip() == "Grüße"  # type: ignore[attr-defined]
    assert any(str(files[0]) in line for line in lines)
