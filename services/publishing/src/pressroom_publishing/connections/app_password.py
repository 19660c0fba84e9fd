"""Connecting without a redirect: an app password (Bluesky).

The admin hands us the account's identifier and an app password once; the adapter trades
them for a session (atproto ``com.atproto.server.createSession``: an access JWT and a
refresh JWT) and the password is dropped at once — it is never stored, logged, put in an
event or echoed in an error. The refresh JWT is all a connection needs from then on:
``refresh`` (``com.atproto.server.refreshSession``) turns it into a new pair, rotating it,
which the vault's single-flight refresh already handles. When the refresh JWT dies (about
two months unused, or the app password revoked in the account's settings) the connection
becomes ``expired`` and the admin enters an app password again.

Only app passwords are taken, not the account's own password: Bluesky's app passwords read
``xxxx-xxxx-xxxx-xxxx`` (lower-case letters and digits), and anything else is refused with a
422 that says where to create one. An app password can be revoked on its own and cannot
change the account's credentials.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

import asyncpg
from pressroom_kit.errors import Invalid

from pressroom_publishing.connections.oauth import (
    Completed,
    PlatformFailed,
    public_extra,
    save_connection,
)
from pressroom_publishing.connections.vault import Vault
from pressroom_publishing.platforms.base import (
    Account,
    Platform,
    PlatformError,
    TokenGrant,
    TransientError,
)

DEFAULT_SERVICE_URL = "https://bsky.social"
APP_PASSWORD = re.compile(r"^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$")
# A handle (domain name), a DID, or the account's email address.
IDENTIFIER = re.compile(
    r"^(did:[a-z]+:[A-Za-z0-9._:%-]{1,2000}"
    r"|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
    r"|[^\s@]{1,64}@[^\s@]{1,255})$"
)


@runtime_checkable
class AppPasswordPlatform(Protocol):
    """A platform that connects with an identifier and an app password
    (``Capabilities.connect == "app_password"``)."""

    async def create_session(
        self, identifier: str, app_password: str, service_url: str
    ) -> tuple[TokenGrant, Account]: ...


class CredentialsRefused(Invalid):
    code = "credentials_refused"


def check_identifier(raw: str) -> str:
    identifier = raw.strip().removeprefix("@")
    if not IDENTIFIER.match(identifier):
        raise Invalid(
            "identifier: a handle (alice.bsky.social), a DID (did:plc:…) or the account's "
            "email address",
            code="invalid",
            errors=[{"field": "identifier", "message": "not a handle, DID or email address"}],
        )
    return identifier


def check_app_password(raw: str) -> str:
    password = raw.strip()
    if not APP_PASSWORD.match(password):
        raise Invalid(
            "app_password: an app password reads xxxx-xxxx-xxxx-xxxx; create one in the "
            "account's Settings → Privacy and security → App passwords (the account's own "
            "password is not accepted)",
            code="not_an_app_password",
            errors=[{"field": "app_password", "message": "not an app password"}],
        )
    return password


async def connect(
    pool: asyncpg.Pool,
    vault: Vault,
    platform: Platform,
    *,
    brand_id: UUID,
    user_id: str,
    identifier: str,
    app_password: str,
    service_url: str,
    timeout_s: float,
    now: datetime,
) -> Completed:
    """Trade the app password for a session and store the connection like a callback does
    (one per brand and platform; a reconnect keeps the id). ``CredentialsRefused`` (422) when
    the server refuses them, ``PlatformFailed`` (502) when it cannot answer."""
    assert isinstance(platform, AppPasswordPlatform)
    try:
        async with asyncio.timeout(timeout_s + 5):
            grant, account = await platform.create_session(identifier, app_password, service_url)
    except TimeoutError as exc:
        raise PlatformFailed(f"{platform.id}: {service_url} did not answer in time") from exc
    except TransientError as exc:
        raise PlatformFailed(f"{platform.id}: {exc.message}") from exc
    except PlatformError as exc:  # refused: a wrong password, an unknown or suspended account
        raise CredentialsRefused(
            f"{platform.id} refused the identifier or app password: {exc.message}",
            code="credentials_refused",
        ) from exc
    return await save_connection(
        pool,
        vault,
        platform,
        brand_id=brand_id,
        user_id=user_id,
        grant=grant,
        account=account,
        extra=public_extra({"service_url": service_url}, account.extra),
        now=now,
    )
