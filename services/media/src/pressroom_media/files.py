"""``GET /media-files/<key>?expires&signature``: the bytes of a stored file while its
signature is valid, with ``ETag``, conditional requests and single byte ranges.

Stored keys are written once and never change (a new upload gets a new asset id), so the
ETag can be made from the key and the size, and no database lookup is needed to serve.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response, route
from litestar.datastructures import State
from litestar.enums import HttpMethod
from litestar.params import FromPath
from litestar.response import Stream
from pressroom_kit.http import PUBLIC, problem
from pressroom_kit.problems import problems

from pressroom_media.signing import PREFIX

CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "avif": "image/avif",
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
}
_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")


def etag(key: str, size: int) -> str:
    return '"' + hashlib.sha256(f"{key}\n{size}".encode()).hexdigest()[:32] + '"'


def parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """``(start, end)`` inclusive for one satisfiable range, ``None`` to send everything
    (no header, several ranges, an invalid one such as ``5-3``, or a header we do not
    understand), ``False`` when the range cannot be satisfied (416, RFC 9110 §14.1.2)."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return False
        return max(0, size - length), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        return False
    end = min(int(last), size - 1) if last else size - 1
    return start, end


def _matches(header: str | None, tag: str) -> bool:
    if not header:
        return False
    return header.strip() == "*" or tag in {t.strip().removeprefix("W/") for t in header.split(",")}


@route(
    PREFIX + "{key:path}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    opt={**PUBLIC, **problems(403, 416)},
    tags=["media files"],
)
async def serve_file(
    request: Request[Any, Any, Any], state: State, key: FromPath[str]
) -> Response[Any]:
    """The file behind a signed URL from the API (no token: the signature is the grant)."""
    key = key.lstrip("/")
    now = time.time()
    expires = state.signer.verify(
        key, request.query_params.get("expires"), request.query_params.get("signature"), now
    )
    stored = await state.storage.stat(key)
    if stored is None:
        return problem(404, "Not found", "the file is gone (the asset was deleted)", code="no_file")
    tag = etag(key, stored.size)
    extension = key.rsplit(".", 1)[-1].lower()
    headers = {
        "ETag": tag,
        "Accept-Ranges": "bytes",
        # Anyone holding the link may fetch it until it expires, so shared caches may too.
        "Cache-Control": f"public, max-age={max(0, int(expires - now))}, immutable",
        "Content-Disposition": "inline",
    }
    media_type = CONTENT_TYPES.get(extension, "application/octet-stream")
    if _matches(request.headers.get("if-none-match"), tag):
        return Response(b"", status_code=304, headers=headers, media_type=media_type)

    wanted = parse_range(request.headers.get("range", ""), stored.size)
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != tag:
        wanted = None  # the client's copy is another version: send it whole
    if wanted is False:
        headers["Content-Range"] = f"bytes */{stored.size}"
        return Response(b"", status_code=416, headers=headers, media_type=media_type)
    start, end, status = 0, stored.size - 1, 200
    if isinstance(wanted, tuple):
        start, end = wanted
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD" or stored.size == 0:
        return Response(b"", status_code=status, headers=headers, media_type=media_type)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in state.storage.read(key, start, end):
            yield chunk

    return Stream(body(), status_code=status, headers=headers, media_type=media_type)
