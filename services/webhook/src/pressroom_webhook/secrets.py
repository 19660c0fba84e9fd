"""Signing secrets: generated as ``whsec_<base64>``, stored sealed by the kit's ``SecretBox``
(AES-GCM with a key id; re-exported here for older imports)."""

from __future__ import annotations

import base64
import os

from pressroom_kit.secrets import SecretBox

__all__ = ["SecretBox", "new_secret", "secret_bytes"]


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))
