"""Bluesky (AT Protocol): an app password for a session on the account's PDS, posts as
``app.bsky.feed.post`` records with facets and image embeds.

Followed: docs.bsky.app, the HTTP reference and the "Creating a post" guide (2025):
``com.atproto.server.createSession`` (``{identifier, password}`` -> ``accessJwt``, 2 hours,
and ``refreshJwt``; the PDS in ``didDoc``), ``com.atproto.server.refreshSession`` and
``deleteSession`` (both with the refresh JWT as bearer), ``getSession``,
``com.atproto.identity.resolveHandle`` (mention facets need DIDs),
``com.atproto.repo.uploadBlob`` (raw bytes, ``Content-Type``; images up to 1,000,000 bytes),
``com.atproto.repo.createRecord`` / ``deleteRecord`` / ``listRecords``, the richtext facet
lexicon (``app.bsky.richtext.facet#link|#mention|#tag``, UTF-8 byte offsets), the post
lexicon (text of at most 300 graphemes and 3,000 UTF-8 bytes),
``app.bsky.embed.images`` (alt text, aspect ratio) and ``app.bsky.embed.external``, and
``app.bsky.actor.getProfile`` / ``app.bsky.feed.getPosts`` for counts. XRPC errors are
``{"error": "ExpiredToken", "message": ...}``, mostly with status 400.

Per connection (``Credentials.extra``): ``service_url`` (the PDS) and ``handle``. Config:
``service_url`` (default ``https://bsky.social``, where sessions are created), ``web_url``
(default ``https://bsky.app``, for post links), ``clock``.

Reconciliation: every record carries our reference in an extra field
(``pressroomReference``; records are open, the app view ignores unknown fields), and
``find_published`` looks for it among the account's 50 newest posts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urlencode

from pressroom_publishing.platforms.base import (
    Account,
    AuthExpiredError,
    Capabilities,
    Credentials,
    DailyMetrics,
    MediaItem,
    MetricsReport,
    NotSupportedError,
    OAuthContext,
    Platform,
    PlatformError,
    PlatformHTTP,
    PostContent,
    PostMetrics,
    Problem,
    PublishedPost,
    PublishRequest,
    RejectedError,
    Response,
    RevokedError,
    TextCount,
    TokenGrant,
    TransientError,
    retry_after_seconds,
)
from pressroom_publishing.platforms.common import (
    as_int,
    clock_of,
    json_object,
    parse_datetime,
    today_within,
)
from pressroom_publishing.platforms.media_stream import open_media, upload_timeout
from pressroom_publishing.platforms.text import spans

POST = "app.bsky.feed.post"
REFERENCE_FIELD = "pressroomReference"
MAX_IMAGE_BYTES = 1_000_000
MAX_TEXT_BYTES = 3000  # the post lexicon's maxLength, besides its 300 graphemes
GET_POSTS_MAX = 25
_AUTH_ERRORS = {"ExpiredToken", "InvalidToken"}
_GONE = {"AccountTakedown", "AccountDeactivated", "AccountSuspended"}


class BlueskyPlatform(Platform):
    capabilities = Capabilities(
        platform="bluesky",
        display_name="Bluesky",
        text_limit=300,
        text_count=TextCount.GRAPHEMES,
        media_kinds=frozenset({"image"}),
        max_images=4,
        max_videos=0,
        image_types=frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"}),
        max_image_bytes=MAX_IMAGE_BYTES,
        connect="app_password",
        pkce=False,
        token_lifetime_s=2 * 3600,
        refreshable=True,
        lookup_by_reference=True,
        deletable=True,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        self.service_url = str(config.get("service_url") or "https://bsky.social").rstrip("/")
        self.web_url = str(config.get("web_url") or "https://bsky.app").rstrip("/")
        self.clock = clock_of(config)

    def _pds(self, credentials: Credentials) -> str:
        pds = credentials.extra.get("service_url")
        return (pds if isinstance(pds, str) and pds else self.service_url).rstrip("/")

    def _xrpc(self, base: str, method: str) -> str:
        return f"{base}/xrpc/{method}"

    # --- connecting ------------------------------------------------------------------------

    async def create_session(
        self, identifier: str, app_password: str, service_url: str | None = None
    ) -> tuple[TokenGrant, Account]:
        """Sign in with a handle (or email) and an app password; the grant's tokens and the
        account, whose ``extra`` (``service_url``: the account's own PDS, ``handle``) the
        connection keeps for ``Credentials.extra``. A wrong password is ``RejectedError``."""
        base = (service_url or self.service_url).rstrip("/")
        try:
            answer = await self.http.request(
                self,
                "POST",
                self._xrpc(base, "com.atproto.server.createSession"),
                json={"identifier": identifier, "password": app_password},
                ok=(200,),
            )
        except AuthExpiredError as exc:  # 401 AuthenticationRequired: wrong credentials
            raise RejectedError(self.id, exc.message, code=exc.code, status=exc.status) from exc
        body = json_object(self, answer)
        grant = self._grant(body)
        did, handle = body.get("did"), body.get("handle")
        if not isinstance(did, str) or not did:
            raise RejectedError(self.id, "the session answer has no did")
        pds = _pds_of(body.get("didDoc")) or base
        account = Account(
            account_id=did,
            name=handle if isinstance(handle, str) else did,
            extra={"service_url": pds, "handle": handle},
        )
        return grant, account

    async def authorization_url(self, context: OAuthContext) -> str:
        raise NotSupportedError(self.id, "Bluesky connects with an app password")

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        raise NotSupportedError(self.id, "Bluesky connects with an app password")

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        if not credentials.refresh_token:
            raise AuthExpiredError(self.id, "no refresh token", code="no_refresh_token")
        answer = await self.http.request(
            self,
            "POST",
            self._xrpc(self._pds(credentials), "com.atproto.server.refreshSession"),
            token=credentials.refresh_token,
            ok=(200,),
        )
        return self._grant(json_object(self, answer))

    def _grant(self, body: Mapping[str, Any]) -> TokenGrant:
        access, refresh = body.get("accessJwt"), body.get("refreshJwt")
        if not isinstance(access, str) or not access:
            raise RejectedError(self.id, "the session answer has no accessJwt")
        return TokenGrant(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=_jwt_expiry(access),
            scopes=("com.atproto.appPass",),
        )

    async def verify(self, credentials: Credentials) -> Account:
        pds = self._pds(credentials)
        answer = await self.http.request(
            self,
            "GET",
            self._xrpc(pds, "com.atproto.server.getSession"),
            token=credentials.access_token,
            ok=(200,),
        )
        body = json_object(self, answer)
        did, handle = body.get("did"), body.get("handle")
        if not isinstance(did, str) or not did:
            raise RejectedError(self.id, "the session answer has no did")
        if body.get("active") is False:
            raise RevokedError(self.id, f"the account is {body.get('status') or 'inactive'}")
        return Account(
            account_id=did,
            name=handle if isinstance(handle, str) else did,
            extra={"service_url": pds, "handle": handle},
        )

    async def revoke(self, credentials: Credentials) -> None:
        if not credentials.refresh_token:
            return
        await self.http.request(
            self,
            "POST",
            self._xrpc(self._pds(credentials), "com.atproto.server.deleteSession"),
            token=credentials.refresh_token,
            ok=(200,),
        )

    # --- publishing ------------------------------------------------------------------------

    def validate(self, content: PostContent) -> list[Problem]:
        problems = super().validate(content)
        size = len(content.text.encode("utf-8"))
        if size > MAX_TEXT_BYTES:
            problems.append(
                Problem("text", f"{size} UTF-8 bytes over Bluesky's limit of {MAX_TEXT_BYTES}")
            )
        return problems

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        problems = self.validate(request.content)
        if problems:
            raise RejectedError(self.id, "; ".join(p.message for p in problems), code="validation")
        pds = self._pds(credentials)
        content = request.content
        record: dict[str, Any] = {
            "$type": POST,
            "text": content.text,
            "createdAt": self.clock().astimezone(UTC).isoformat().replace("+00:00", "Z"),
            REFERENCE_FIELD: request.reference,
        }
        facets = await self._facets(credentials, content.text)
        if facets:
            record["facets"] = facets
        if content.media:
            images = [await self._image(credentials, item) for item in content.media]
            record["embed"] = {"$type": "app.bsky.embed.images", "images": images}
        elif content.link:
            record["embed"] = {
                "$type": "app.bsky.embed.external",
                "external": {"uri": content.link, "title": content.link, "description": ""},
            }
        answer = await self.http.request(
            self,
            "POST",
            self._xrpc(pds, "com.atproto.repo.createRecord"),
            token=credentials.access_token,
            json={"repo": credentials.account_id, "collection": POST, "record": record},
            ok=(200,),
        )
        body = json_object(self, answer)
        return self._published(credentials, body.get("uri"), record["createdAt"])

    async def _facets(self, credentials: Credentials, text: str) -> list[dict[str, Any]]:
        """Links, mentions (resolved to DIDs; an unknown handle stays plain text) and tags."""
        facets = []
        for span in spans(text):
            if span.kind == "link":
                feature = {"$type": "app.bsky.richtext.facet#link", "uri": span.value}
            elif span.kind == "tag":
                feature = {"$type": "app.bsky.richtext.facet#tag", "tag": span.value}
            else:
                did = await self._resolve(credentials, span.value)
                if did is None:
                    continue
                feature = {"$type": "app.bsky.richtext.facet#mention", "did": did}
            facets.append(
                {
                    "index": {"byteStart": span.byte_start, "byteEnd": span.byte_end},
                    "features": [feature],
                }
            )
        return facets

    async def _resolve(self, credentials: Credentials, handle: str) -> str | None:
        try:
            answer = await self.http.request(
                self,
                "GET",
                self._xrpc(self._pds(credentials), "com.atproto.identity.resolveHandle"),
                token=credentials.access_token,
                params={"handle": handle},
                ok=(200,),
            )
        except RejectedError:  # 400 "Unable to resolve handle"
            return None
        did = json_object(self, answer).get("did")
        return did if isinstance(did, str) and did.startswith("did:") else None

    async def _image(self, credentials: Credentials, item: MediaItem) -> dict[str, Any]:
        async with open_media(self, item) as media:
            headers = {"Content-Type": media.content_type}
            if media.size is not None:
                headers["Content-Length"] = str(media.size)
            answer = await self.http.request(
                self,
                "POST",
                self._xrpc(self._pds(credentials), "com.atproto.repo.uploadBlob"),
                token=credentials.access_token,
                data=media.payload(),
                headers=headers,
                ok=(200,),
                client_timeout=upload_timeout(self),
            )
        blob = json_object(self, answer).get("blob")
        if not isinstance(blob, dict):
            raise RejectedError(self.id, "the upload answer has no blob")
        image: dict[str, Any] = {"alt": item.alt_text or "", "image": blob}
        if item.width and item.height:
            image["aspectRatio"] = {"width": item.width, "height": item.height}
        return image

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        answer = await self.http.request(
            self,
            "GET",
            self._xrpc(self._pds(credentials), "com.atproto.repo.listRecords"),
            token=credentials.access_token,
            params={"repo": credentials.account_id, "collection": POST, "limit": "50"},
            ok=(200,),
        )
        records = json_object(self, answer).get("records")
        for entry in records if isinstance(records, list) else []:
            value = entry.get("value") if isinstance(entry, dict) else None
            if isinstance(value, dict) and value.get(REFERENCE_FIELD) == request.reference:
                return self._published(credentials, entry.get("uri"), value.get("createdAt"))
        return None

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        """``platform_post_id`` is the record's ``at://`` URI; deleting a gone record is
        fine (the PDS answers a delete of a missing record with success)."""
        repo, collection, rkey = _parts(platform_post_id)
        await self.http.request(
            self,
            "POST",
            self._xrpc(self._pds(credentials), "com.atproto.repo.deleteRecord"),
            token=credentials.access_token,
            json={"repo": repo, "collection": collection, "rkey": rkey},
            ok=(200,),
        )

    def _published(self, credentials: Credentials, uri: Any, created: Any) -> PublishedPost:
        if not isinstance(uri, str) or not uri.startswith("at://"):
            raise RejectedError(self.id, "the record answer has no at:// uri")
        _, _, rkey = _parts(uri)
        handle = credentials.extra.get("handle")
        profile = handle if isinstance(handle, str) and handle else credentials.account_id
        return PublishedPost(
            platform_post_id=uri,
            url=f"{self.web_url}/profile/{quote(profile)}/post/{rkey}",
            published_at=parse_datetime(created),
        )

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        """Bluesky reports counts, not history: today's followers and per-post likes,
        reposts + quotes (shares) and replies (comments), when the window holds today."""
        day = today_within(self.clock, since, until)
        if day is None:
            return MetricsReport()
        pds = self._pds(credentials)
        answer = await self.http.request(
            self,
            "GET",
            self._xrpc(pds, "app.bsky.actor.getProfile"),
            token=credentials.access_token,
            params={"actor": credentials.account_id},
            ok=(200,),
        )
        followers = as_int(json_object(self, answer).get("followersCount"))
        posts: list[PostMetrics] = []
        uris = list(dict.fromkeys(platform_post_ids))
        for start in range(0, len(uris), GET_POSTS_MAX):
            chunk = uris[start : start + GET_POSTS_MAX]
            answer = await self.http.request(
                self,
                "GET",
                f"{self._xrpc(pds, 'app.bsky.feed.getPosts')}?"
                + urlencode([("uris", uri) for uri in chunk]),
                token=credentials.access_token,
                ok=(200,),
            )
            found = json_object(self, answer).get("posts")
            for view in found if isinstance(found, list) else []:
                if not isinstance(view, dict) or not isinstance(view.get("uri"), str):
                    continue
                likes = as_int(view.get("likeCount"))
                shares = as_int(view.get("repostCount")) + as_int(view.get("quoteCount"))
                comments = as_int(view.get("replyCount"))
                posts.append(
                    PostMetrics(
                        platform_post_id=view["uri"],
                        day=day,
                        engagement=likes + shares + comments,
                        likes=likes,
                        comments=comments,
                        shares=shares,
                    )
                )
        return MetricsReport(account=[DailyMetrics(day=day, followers=followers)], posts=posts)

    # --- errors ----------------------------------------------------------------------------

    def error_details(self, response: Response) -> tuple[str | None, str]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"], str(body.get("message") or body["error"])
        return super().error_details(response)

    def classify(self, response: Response) -> PlatformError:
        """XRPC answers an expired or revoked token with 400 ``ExpiredToken`` (a revoked
        refresh token says so in its message), a wrong password with 401
        ``AuthenticationRequired``, rate limits with 429 and ``ratelimit-reset`` (epoch s)."""
        code, message = self.error_details(response)
        status = response.status
        if code in _GONE:
            return RevokedError(self.id, message, code=code, status=status)
        if code in _AUTH_ERRORS and status < 500:
            if "revoked" in message.lower():
                return RevokedError(self.id, message, code=code, status=status)
            return AuthExpiredError(self.id, message, code=code, status=status)
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            reset = response.headers.get("ratelimit-reset")
            if wait is None and reset and reset.isdigit():
                wait = max(0.0, int(reset) - self.clock().timestamp())
            return TransientError(self.id, message, code=code, status=status, retry_after_s=wait)
        return super().classify(response)


def _jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` claim of a JWT, read without verifying (the PDS verifies it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(float(claims["exp"]), UTC)
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def _pds_of(did_doc: Any) -> str | None:
    if not isinstance(did_doc, dict):
        return None
    for service in did_doc.get("service") or []:
        if isinstance(service, dict) and str(service.get("id", "")).endswith("#atproto_pds"):
            endpoint = service.get("serviceEndpoint")
            if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")):
                return endpoint.rstrip("/")
    return None


def _parts(uri: str) -> tuple[str, str, str]:
    """``at://<repo>/<collection>/<rkey>``."""
    pieces = uri.removeprefix("at://").split("/")
    if len(pieces) != 3 or not all(pieces):
        raise RejectedError("bluesky", f"not a record URI: {uri!r}", code="bad_uri")
    return pieces[0], pieces[1], pieces[2]
