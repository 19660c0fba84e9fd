"""Secrets at rest: AES-GCM sealed under a key id, so keys rotate without re-encrypting.

A sealed value is ``<key id>:<base64(nonce + ciphertext + tag)>``; the ``context`` (say the
row's id) is authenticated data, so a value copied onto another row does not open there.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class SecretBox:
    """Encrypts with the current key; decrypts with any known key (rotation by key id)."""

    def __init__(self, keys: dict[str, str], current: str) -> None:
        self.keys = {kid: AESGCM(base64.b64decode(key)) for kid, key in keys.items()}
        if current not in self.keys:
            raise ValueError(f"no encryption key with id {current!r}")
        self.current = current

    def encrypt(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self.keys[self.current].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{self.current}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, context: str) -> str:
        kid, _, blob = token.partition(":")
        if kid not in self.keys:
            raise ValueError(f"secret sealed with unknown key {kid!r}")
        raw = base64.b64decode(blob)
        try:
            return self.keys[kid].decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag as exc:
            raise ValueError("secret does not decrypt (wrong key or tampered)") from exc
