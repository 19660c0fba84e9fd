"""Signed, expiring file URLs: ``/media-files/<key>?expires=<unix>&signature=<hmac>``.

The signature is HMAC-SHA256 over the key and the expiry. Expiries are rounded up to the
next whole hour so that the URL of a file stays the same for an hour (caches and platforms
that fetch by URL see one URL, not one per API call).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from urllib.parse import quote

from pressroom_kit.errors import Forbidden

PREFIX = "/media-files/"
ROUND_S = 3600


class UrlSigner:
    def __init__(self, key: bytes, *, base_url: str, ttl_s: int) -> None:
        if not key:
            raise ValueError("the URL signing key is empty")
        self._key = key
        self.base_url = base_url.rstrip("/")
        self.ttl_s = ttl_s

    def _signature(self, key: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def expiry(self, now: float) -> int:
        return math.ceil((now + self.ttl_s) / ROUND_S) * ROUND_S

    def url(self, key: str, now: float) -> str:
        expires = self.expiry(now)
        path = quote(key, safe="/")
        signature = self._signature(key, expires)
        return f"{self.base_url}{PREFIX}{path}?expires={expires}&signature={signature}"

    def verify(self, key: str, expires: str | None, signature: str | None, now: float) -> int:
        """The expiry of a valid signature; ``Forbidden`` for a missing, tampered or expired
        one (the same answer for each, so nothing is learnt from trying)."""
        try:
            when = int(expires or "")
        except ValueError:
            when = 0
        expected = self._signature(key, when)
        if not signature or not hmac.compare_digest(expected, signature) or when < now:
            raise Forbidden(
                "this file link is invalid or has expired; ask the API for a fresh URL",
                code="bad_signature",
            )
        return when
