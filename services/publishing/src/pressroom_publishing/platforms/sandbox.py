"""The sandbox platform's adapter: the reference adapter, written exactly as a real one.

Config: ``api_url`` (server-to-server base, e.g. ``http://127.0.0.1:8102/sandbox-platform``),
``auth_url`` (the browser-facing base of the consent page; default ``api_url``),
``client_id`` and ``client_secret`` (default: the sandbox's built-in client), and optionally
``clock`` (a callable giving an aware ``datetime``; tests share one with the sandbox so that
``expires_at`` agrees with the platform's). Every call goes through ``PlatformHTTP``; this
module only reads the sandbox's error bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from pressroom_publishing.platforms.base import (
    Account,
    AuthExpiredError,
    Capabilities,
    Credentials,
    DailyMetrics,
    MetricsReport,
    OAuthContext,
    Platform,
    PlatformError,
    PlatformHTTP,
    PostMetrics,
    PublishedPost,
    PublishRequest,
    RejectedError,
    Response,
    RevokedError,
    TextCount,
    TokenGrant,
    TransientError,
)
from pressroom_publishing.platforms.common import pkce_challenge
from pressroom_publishing.sandbox.state import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_SCOPES,
)

MAX_IDS_PER_CALL = 100
__all__ = ["SandboxPlatform", "pkce_challenge"]
_T = TypeVar("_T")


class SandboxPlatform(Platform):
    capabilities = Capabilities(
        platform="sandbox",
        display_name="Sandbox",
        text_limit=500,
        text_count=TextCount.GRAPHEMES,
        max_images=4,
        max_videos=1,
        mixed_media=False,
        pkce=True,
        token_lifetime_s=3600,
        refreshable=True,
        lookup_by_reference=True,
        deletable=True,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        api_url = config.get("api_url")
        if not isinstance(api_url, str) or not api_url:
            raise ValueError("the sandbox adapter needs api_url")
        self.api_url = api_url.rstrip("/")
        self.auth_url = str(config.get("auth_url") or self.api_url).rstrip("/")
        self.client_id = str(config.get("client_id") or DEFAULT_CLIENT_ID)
        self.client_secret = str(config.get("client_secret") or DEFAULT_CLIENT_SECRET)
        clock = config.get("clock")
        self.clock: Callable[[], datetime] = clock if callable(clock) else _utcnow

    # --- connecting ------------------------------------------------------------------------

    async def authorization_url(self, context: OAuthContext) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": context.redirect_uri,
            "state": context.state,
            "scope": " ".join(context.scopes or DEFAULT_SCOPES),
        }
        if context.code_verifier:
            params["code_challenge"] = pkce_challenge(context.code_verifier)
            params["code_challenge_method"] = "S256"
        return f"{self.auth_url}/oauth/authorize?{urlencode(params)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": context.redirect_uri,
        }
        if context.code_verifier:
            form["code_verifier"] = context.code_verifier
        try:
            return await self._token(form)
        except AuthExpiredError as exc:
            # ``invalid_grant`` here is a bad, used or expired code, not a dead token.
            raise RejectedError(
                self.id, exc.message, code=exc.code, status=exc.status, details=exc.details
            ) from exc

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        if not credentials.refresh_token:
            raise AuthExpiredError(self.id, "no refresh token", code="no_refresh_token")
        grant = await self._token(
            {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token}
        )
        return grant

    async def _token(self, form: dict[str, str]) -> TokenGrant:
        answer = await self.http.request(
            self,
            "POST",
            f"{self.api_url}/oauth/token",
            data={**form, "client_id": self.client_id, "client_secret": self.client_secret},
            ok=(200,),
        )
        body = self._object(answer)
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise RejectedError(self.id, "the token answer has no access_token")
        expires_in = body.get("expires_in")
        expires_at = (
            self.clock() + timedelta(seconds=float(expires_in))
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
            else None
        )
        refresh = body.get("refresh_token")
        scope = body.get("scope")
        return TokenGrant(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=expires_at,
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        )

    async def verify(self, credentials: Credentials) -> Account:
        answer = await self.http.request(
            self, "GET", f"{self.api_url}/v1/me", token=credentials.access_token, ok=(200,)
        )
        body = self._object(answer)
        account_id = body.get("id")
        if not isinstance(account_id, str) or not account_id:
            raise RejectedError(self.id, "the account answer has no id")
        username = body.get("username")
        return Account(
            account_id=account_id,
            name=str(body.get("display_name") or username or account_id),
            extra={"username": username} if isinstance(username, str) else {},
        )

    async def revoke(self, credentials: Credentials) -> None:
        token = credentials.refresh_token or credentials.access_token
        await self.http.request(
            self,
            "POST",
            f"{self.api_url}/oauth/revoke",
            data={
                "token": token,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
            ok=(200,),
        )

    # --- publishing ------------------------------------------------------------------------

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        media = []
        for item in request.content.media:
            if not item.url:
                raise RejectedError(self.id, f"media {item.media_id} has no URL to fetch")
            media.append({"url": item.url, "kind": item.kind, "content_type": item.content_type})
        body: dict[str, Any] = {"text": request.content.text, "media": media}
        if request.content.link:
            body["link"] = request.content.link
        answer = await self.http.request(
            self,
            "POST",
            f"{self.api_url}/v1/posts",
            token=credentials.access_token,
            json=body,
            headers={"Idempotency-Key": request.reference},
            ok=(200, 201),
        )
        return self._published(self._object(answer))

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        answer = await self.http.request(
            self,
            "GET",
            f"{self.api_url}/v1/posts",
            token=credentials.access_token,
            params={"client_reference": request.reference},
            ok=(200,),
        )
        data = self._object(answer).get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            return None
        return self._published(data[0])

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        """Deleting a post that is already gone succeeds (a retried delete)."""
        await self.http.request(
            self,
            "DELETE",
            f"{self.api_url}/v1/posts/{platform_post_id}",
            token=credentials.access_token,
            ok=(200, 204, 404),
        )

    def _published(self, body: Mapping[str, Any]) -> PublishedPost:
        post_id = body.get("id")
        if not isinstance(post_id, str) or not post_id:
            raise RejectedError(self.id, "the post answer has no id")
        url = body.get("url")
        return PublishedPost(
            platform_post_id=post_id,
            url=url if isinstance(url, str) else None,
            published_at=_datetime(body.get("created_at")),
        )

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        window = {"since": since.isoformat(), "until": until.isoformat()}
        answer = await self.http.request(
            self,
            "GET",
            f"{self.api_url}/v1/insights/account",
            token=credentials.access_token,
            params=window,
            ok=(200,),
        )
        account = [self._parsed(_daily, row) for row in _rows(self._object(answer))]
        posts: list[PostMetrics] = []
        ids = list(dict.fromkeys(platform_post_ids))
        for start in range(0, len(ids), MAX_IDS_PER_CALL):
            chunk = ids[start : start + MAX_IDS_PER_CALL]
            answer = await self.http.request(
                self,
                "GET",
                f"{self.api_url}/v1/insights/posts",
                token=credentials.access_token,
                params={**window, "ids": ",".join(chunk)},
                ok=(200,),
            )
            posts.extend(self._parsed(_post_metrics, row) for row in _rows(self._object(answer)))
        return MetricsReport(account=account, posts=posts)

    # --- errors ----------------------------------------------------------------------------

    def classify(self, response: Response) -> PlatformError:
        """The sandbox's codes: ``token_revoked`` (the grant is gone) and ``token_expired``
        on the API; ``invalid_grant`` (a dead refresh token) and ``invalid_client`` (our
        configuration, not the user's token) on ``/oauth/token``."""
        code, message = self.error_details(response)
        status = response.status
        details = {"status": status}
        if code == "token_revoked":
            return RevokedError(self.id, message, code=code, status=status, details=details)
        if code in ("token_expired", "invalid_grant") and status < 500:
            return AuthExpiredError(self.id, message, code=code, status=status, details=details)
        if code == "invalid_client":
            return RejectedError(self.id, message, code=code, status=status, details=details)
        return super().classify(response)

    def _parsed(self, parse: Callable[[dict[str, Any]], _T], row: dict[str, Any]) -> _T:
        try:
            return parse(row)
        except (KeyError, TypeError, ValueError) as exc:
            raise TransientError(self.id, f"an unreadable insights row: {exc!r}") from exc

    def _object(self, response: Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # A garbled success: retrying is safe (publishing is idempotent by reference).
            raise TransientError(self.id, "the platform answered something that is not an object")
        return body


def _daily(row: dict[str, Any]) -> DailyMetrics:
    return DailyMetrics(
        day=date.fromisoformat(row["day"]),
        reach=int(row.get("reach", 0)),
        impressions=int(row.get("impressions", 0)),
        engagement=int(row.get("engagement", 0)),
        followers=int(row.get("followers", 0)),
    )


def _post_metrics(row: dict[str, Any]) -> PostMetrics:
    return PostMetrics(
        platform_post_id=str(row["post_id"]),
        day=date.fromisoformat(row["day"]),
        reach=int(row.get("reach", 0)),
        impressions=int(row.get("impressions", 0)),
        engagement=int(row.get("engagement", 0)),
        likes=int(row.get("likes", 0)),
        comments=int(row.get("comments", 0)),
        shares=int(row.get("shares", 0)),
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rows(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    data = body.get("data")
    return [row for row in data if isinstance(row, dict)] if isinstance(data, list) else []


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
