"""Mastodon: one OAuth app per instance, statuses with uploaded media.

Followed: the Mastodon REST API documentation (docs.joinmastodon.org, Mastodon 4.3):
``POST /api/v1/apps``; ``/oauth/authorize`` and ``POST /oauth/token`` (authorization code,
PKCE S256 since 4.3; tokens do not expire and there is no refresh token); ``POST
/oauth/revoke``; ``GET /api/v1/accounts/verify_credentials``; ``GET /api/v2/instance``
(``configuration.statuses.max_characters``, ``max_media_attachments``,
``characters_reserved_per_url``, ``configuration.media_attachments``); ``POST /api/v2/media``
(200 when processed, 202 with ``url: null`` while it processes; ``GET /api/v1/media/:id``
answers 206 until done); ``POST /api/v1/statuses`` with ``Idempotency-Key`` (the instance
keeps keys for an hour); ``GET /api/v1/accounts/:id/statuses``; ``DELETE
/api/v1/statuses/:id``. Errors are ``{"error": "..."}``: 401 for a bad token, 422 for
validation, 429 with ``X-RateLimit-Reset``.

Per connection (``Credentials.extra`` / ``OAuthContext.extra``): ``instance_url``,
``client_id``, ``client_secret`` (what ``register_app`` returned for that instance). Config
(defaults for a single instance): ``instance_url``, ``client_id``, ``client_secret``,
``apps`` (``{instance_url: {client_id, client_secret}}`` for instances registered ahead),
``client_name`` (default "Pressroom"), ``website``, ``scopes``, ``visibility`` (default
``public``), ``instance_ttl_s`` (instance limits are cached this long, default 3600),
``media_poll_s`` (1.0), ``media_timeout_s`` (60).

Reconciliation: statuses carry no client reference. ``find_published`` reads the account's
40 newest statuses and takes the newest whose text (HTML stripped) and number of media
match the request; a retried ``publish`` within the hour is safe anyway, the instance
answers a repeated ``Idempotency-Key`` with the status it created.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any
from urllib.parse import urlencode

import aiohttp

from pressroom_publishing.platforms.base import (
    Account,
    AuthExpiredError,
    Capabilities,
    Credentials,
    DailyMetrics,
    MediaItem,
    MetricsReport,
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
    validate_against,
)
from pressroom_publishing.platforms.common import (
    as_int,
    clock_of,
    json_list,
    json_object,
    parse_datetime,
    pause,
    pkce_challenge,
    today_within,
)
from pressroom_publishing.platforms.media_stream import open_media, upload_timeout
from pressroom_publishing.platforms.text import mastodon_length

DEFAULT_SCOPES = ("read:accounts", "read:statuses", "write:statuses", "write:media")
NOT_PROCESSED = "finished processing"  # 422 while an attachment is still processing


@dataclass(frozen=True)
class InstanceLimits:
    """What one instance accepts, from ``/api/v2/instance``."""

    max_characters: int = 500
    max_media: int = 4
    url_length: int = 23
    mime_types: frozenset[str] = frozenset()
    image_size_limit: int | None = None
    video_size_limit: int | None = None


class MastodonPlatform(Platform):
    capabilities = Capabilities(
        platform="mastodon",
        display_name="Mastodon",
        text_limit=500,  # the default; each instance's own limit is checked at publish
        text_count=TextCount.GRAPHEMES,
        max_images=4,
        max_videos=1,
        mixed_media=False,
        image_types=frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"}),
        video_types=frozenset({"video/mp4", "video/quicktime", "video/webm"}),
        pkce=True,
        token_lifetime_s=None,
        refreshable=False,
        lookup_by_reference=True,
        deletable=True,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        self.clock = clock_of(config)
        self.client_name = str(config.get("client_name") or "Pressroom")
        self.website = config.get("website")
        scopes = config.get("scopes")
        self.scopes = tuple(scopes) if isinstance(scopes, list | tuple) else DEFAULT_SCOPES
        self.visibility = str(config.get("visibility") or "public")
        self.instance_ttl_s = float(config.get("instance_ttl_s", 3600))
        self.media_poll_s = float(config.get("media_poll_s", 1.0))
        self.media_timeout_s = float(config.get("media_timeout_s", 60.0))
        self._instances: dict[str, tuple[float, InstanceLimits]] = {}

    # --- per-instance configuration ------------------------------------------------------

    def _setting(self, extra: Mapping[str, Any], key: str) -> str:
        """A per-connection value, else the app registered for its instance in
        ``config["apps"]`` (``{instance_url: {client_id, client_secret}}``), else the
        single-instance default in the config."""
        value = extra.get(key)
        if not value and key != "instance_url":
            apps = self.config.get("apps")
            instance = str(extra.get("instance_url") or self.config.get("instance_url") or "")
            app = apps.get(instance.rstrip("/")) if isinstance(apps, dict) else None
            value = app.get(key) if isinstance(app, dict) else None
            default_instance = str(self.config.get("instance_url") or "").rstrip("/")
            if not value and instance.rstrip("/") != default_instance:
                # The single-instance app's credentials belong to that instance only: never
                # hand them to another server (a brand admin chooses the instance URL).
                raise RejectedError(
                    self.id, f"no Mastodon app registered for {instance}", code="config"
                )
        value = value or self.config.get(key)
        if not isinstance(value, str) or not value:
            raise RejectedError(self.id, f"no {key} for this Mastodon connection", code="config")
        return value.rstrip("/") if key == "instance_url" else value

    async def register_app(self, instance_url: str, redirect_uri: str) -> dict[str, str]:
        """Register Pressroom as an OAuth app on ``instance_url`` (once per instance);
        returns ``{"instance_url", "client_id", "client_secret"}`` for the connections
        code to keep and pass back in ``OAuthContext.extra`` / ``Credentials.extra``."""
        instance = instance_url.rstrip("/")
        form = {
            "client_name": self.client_name,
            "redirect_uris": redirect_uri,
            "scopes": " ".join(self.scopes),
        }
        if isinstance(self.website, str):
            form["website"] = self.website
        answer = await self.http.request(
            self, "POST", f"{instance}/api/v1/apps", data=form, ok=(200,)
        )
        body = json_object(self, answer)
        client_id, client_secret = body.get("client_id"), body.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(client_secret, str):
            raise RejectedError(self.id, "the instance registered no client credentials")
        return {"instance_url": instance, "client_id": client_id, "client_secret": client_secret}

    async def instance_limits(self, instance_url: str) -> InstanceLimits:
        """The instance's limits, cached for ``instance_ttl_s``."""
        instance = instance_url.rstrip("/")
        cached = self._instances.get(instance)
        if cached is not None and time.monotonic() - cached[0] < self.instance_ttl_s:
            return cached[1]
        answer = await self.http.request(self, "GET", f"{instance}/api/v2/instance", ok=(200,))
        configuration = json_object(self, answer).get("configuration")
        limits = _limits(configuration if isinstance(configuration, dict) else {})
        self._instances[instance] = (time.monotonic(), limits)
        return limits

    def validate(self, content: PostContent) -> list[Problem]:
        """Against the configured instance's limits when they are cached, else Mastodon's
        defaults (500 characters, 4 media, URLs as 23); ``publish`` checks the connection's
        own instance again."""
        instance = self.config.get("instance_url")
        cached = self._instances.get(instance.rstrip("/")) if isinstance(instance, str) else None
        return _validate(self.capabilities, cached[1] if cached else InstanceLimits(), content)

    async def validate_for(self, credentials: Credentials, content: PostContent) -> list[Problem]:
        """``validate`` against the connection's own instance limits."""
        limits = await self.instance_limits(self._setting(credentials.extra, "instance_url"))
        return _validate(self.capabilities, limits, content)

    # --- connecting ------------------------------------------------------------------------

    async def authorization_url(self, context: OAuthContext) -> str:
        instance = self._setting(context.extra, "instance_url")
        params = {
            "response_type": "code",
            "client_id": self._setting(context.extra, "client_id"),
            "redirect_uri": context.redirect_uri,
            "scope": " ".join(context.scopes or self.scopes),
            "state": context.state,
        }
        if context.code_verifier:
            params["code_challenge"] = pkce_challenge(context.code_verifier)
            params["code_challenge_method"] = "S256"
        return f"{instance}/oauth/authorize?{urlencode(params)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        instance = self._setting(context.extra, "instance_url")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": self._setting(context.extra, "client_id"),
            "client_secret": self._setting(context.extra, "client_secret"),
            "redirect_uri": context.redirect_uri,
        }
        if context.code_verifier:
            form["code_verifier"] = context.code_verifier
        try:
            answer = await self.http.request(
                self, "POST", f"{instance}/oauth/token", data=form, ok=(200,)
            )
        except (AuthExpiredError, RevokedError) as exc:  # a bad code, not a dead token
            raise RejectedError(self.id, exc.message, code=exc.code, status=exc.status) from exc
        body = json_object(self, answer)
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise RejectedError(self.id, "the token answer has no access_token")
        scope = body.get("scope")
        return TokenGrant(
            access_token=access,
            refresh_token=None,
            expires_at=None,  # Mastodon tokens live until revoked
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        )

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        raise AuthExpiredError(
            self.id, "Mastodon tokens cannot be refreshed; connect again", code="no_refresh"
        )

    async def verify(self, credentials: Credentials) -> Account:
        instance = self._setting(credentials.extra, "instance_url")
        answer = await self.http.request(
            self,
            "GET",
            f"{instance}/api/v1/accounts/verify_credentials",
            token=credentials.access_token,
            ok=(200,),
        )
        body = json_object(self, answer)
        account_id = body.get("id")
        if not isinstance(account_id, str) or not account_id:
            raise RejectedError(self.id, "the account answer has no id")
        username = body.get("username")
        return Account(
            account_id=account_id,
            name=str(body.get("display_name") or username or account_id),
            extra={
                "instance_url": instance,
                "username": username,
                "acct": body.get("acct"),
                "url": body.get("url"),
                "followers": as_int(body.get("followers_count")),
            },
        )

    async def revoke(self, credentials: Credentials) -> None:
        instance = self._setting(credentials.extra, "instance_url")
        await self.http.request(
            self,
            "POST",
            f"{instance}/oauth/revoke",
            data={
                "client_id": self._setting(credentials.extra, "client_id"),
                "client_secret": self._setting(credentials.extra, "client_secret"),
                "token": credentials.access_token,
            },
            ok=(200,),
        )

    # --- publishing ------------------------------------------------------------------------

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        instance = self._setting(credentials.extra, "instance_url")
        content = request.content
        problems = _validate(self.capabilities, await self.instance_limits(instance), content)
        if problems:
            raise RejectedError(self.id, "; ".join(p.message for p in problems), code="validation")
        media_ids = [
            await self._upload(instance, credentials.access_token, item) for item in content.media
        ]
        text = content.text
        if content.link and content.link not in text:
            text = f"{text}\n\n{content.link}" if text else content.link
        body: dict[str, Any] = {"status": text, "visibility": self.visibility}
        if media_ids:
            body["media_ids"] = media_ids
        answer = await self.http.request(
            self,
            "POST",
            f"{instance}/api/v1/statuses",
            token=credentials.access_token,
            json=body,
            headers={"Idempotency-Key": request.reference},
            ok=(200,),
        )
        return self._published(json_object(self, answer))

    async def _upload(self, instance: str, token: str, item: MediaItem) -> str:
        """``POST /api/v2/media`` with the file streamed, then poll until it is processed."""
        async with open_media(self, item) as media:
            form = aiohttp.MultipartWriter("form-data")
            part = form.append_payload(media.payload())
            part.set_content_disposition(
                "form-data", name="file", filename=item.filename or f"{item.media_id}"
            )
            if item.alt_text:
                form.append(item.alt_text).set_content_disposition("form-data", name="description")
            answer = await self.http.request(
                self,
                "POST",
                f"{instance}/api/v2/media",
                token=token,
                data=form,
                ok=(200, 202),
                client_timeout=upload_timeout(self),
            )
        body = json_object(self, answer)
        media_id = body.get("id")
        if not isinstance(media_id, str) or not media_id:
            raise RejectedError(self.id, "the media answer has no id")
        deadline = time.monotonic() + self.media_timeout_s
        while answer.status != 200 or body.get("url") is None:
            if time.monotonic() > deadline:
                raise TransientError(self.id, f"media {item.media_id} is still processing")
            await pause(self.media_poll_s)
            answer = await self.http.request(
                self, "GET", f"{instance}/api/v1/media/{media_id}", token=token, ok=(200, 206)
            )
            body = json_object(self, answer)
        return media_id

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        instance = self._setting(credentials.extra, "instance_url")
        answer = await self.http.request(
            self,
            "GET",
            f"{instance}/api/v1/accounts/{credentials.account_id}/statuses",
            token=credentials.access_token,
            params={"limit": "40", "exclude_reblogs": "true"},
            ok=(200,),
        )
        wanted = _normalized(request.content.text)
        link = request.content.link
        for status in json_list(self, answer):
            if not isinstance(status, dict):
                continue
            text = _normalized(_plain(status.get("content")))
            attachments = status.get("media_attachments")
            count = len(attachments) if isinstance(attachments, list) else 0
            matches = text == wanted or (
                link is not None and text == _normalized(f"{request.content.text} {link}")
            )
            if matches and count == len(request.content.media):
                return self._published(status)
        return None

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        instance = self._setting(credentials.extra, "instance_url")
        await self.http.request(
            self,
            "DELETE",
            f"{instance}/api/v1/statuses/{platform_post_id}",
            token=credentials.access_token,
            ok=(200, 404),
        )

    def _published(self, status: Mapping[str, Any]) -> PublishedPost:
        status_id = status.get("id")
        if not isinstance(status_id, str) or not status_id:
            raise RejectedError(self.id, "the status answer has no id")
        url = status.get("url") or status.get("uri")
        return PublishedPost(
            platform_post_id=status_id,
            url=url if isinstance(url, str) else None,
            published_at=parse_datetime(status.get("created_at")),
        )

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        """Mastodon has no insights: today's counts (followers; favourites, boosts and
        replies per status) as one snapshot row each, when the window holds today."""
        day = today_within(self.clock, since, until)
        if day is None:
            return MetricsReport()
        instance = self._setting(credentials.extra, "instance_url")
        account = await self.verify(credentials)
        posts: list[PostMetrics] = []
        for status_id in dict.fromkeys(platform_post_ids):
            answer = await self.http.request(
                self,
                "GET",
                f"{instance}/api/v1/statuses/{status_id}",
                token=credentials.access_token,
                ok=(200, 404),
            )
            if answer.status == 404:
                continue
            status = json_object(self, answer)
            likes = as_int(status.get("favourites_count"))
            shares = as_int(status.get("reblogs_count"))
            comments = as_int(status.get("replies_count"))
            posts.append(
                PostMetrics(
                    platform_post_id=status_id,
                    day=day,
                    engagement=likes + shares + comments,
                    likes=likes,
                    comments=comments,
                    shares=shares,
                )
            )
        followers = as_int(account.extra.get("followers"))
        return MetricsReport(account=[DailyMetrics(day=day, followers=followers)], posts=posts)

    # --- errors ----------------------------------------------------------------------------

    def error_details(self, response: Response) -> tuple[str | None, str]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            error = body["error"]
            description = body.get("error_description")
            if isinstance(description, str):  # an OAuth error: a code and its description
                return error, description
            return None, error
        return super().error_details(response)

    def classify(self, response: Response) -> PlatformError:
        code, message = self.error_details(response)
        status = response.status
        details = {"status": status}
        if status == 401:
            if "expired" in message.lower():
                return AuthExpiredError(self.id, message, code=code, status=status)
            # Mastodon tokens do not expire: a refused token was revoked or never valid.
            return RevokedError(self.id, message, code=code or "invalid_token", status=status)
        if status == 422 and NOT_PROCESSED in message:
            return TransientError(self.id, message, code="processing", status=status)
        if status == 422:
            return RejectedError(self.id, message, code=code or "validation", status=status)
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is None:
                reset = parse_datetime(response.headers.get("X-RateLimit-Reset"))
                wait = max(0.0, (reset - self.clock()).total_seconds()) if reset else None
            return TransientError(
                self.id, message, code=code, status=status, details=details, retry_after_s=wait
            )
        return super().classify(response)


def _limits(configuration: Mapping[str, Any]) -> InstanceLimits:
    statuses = configuration.get("statuses")
    statuses = statuses if isinstance(statuses, dict) else {}
    media = configuration.get("media_attachments")
    media = media if isinstance(media, dict) else {}
    defaults = InstanceLimits()
    types = media.get("supported_mime_types")
    return InstanceLimits(
        max_characters=as_int(statuses.get("max_characters")) or defaults.max_characters,
        max_media=as_int(statuses.get("max_media_attachments")) or defaults.max_media,
        url_length=as_int(statuses.get("characters_reserved_per_url")) or defaults.url_length,
        mime_types=frozenset(t for t in types if isinstance(t, str))
        if isinstance(types, list)
        else frozenset(),
        image_size_limit=as_int(media.get("image_size_limit")) or None,
        video_size_limit=as_int(media.get("video_size_limit")) or None,
    )


def _validate(caps: Capabilities, limits: InstanceLimits, content: PostContent) -> list[Problem]:
    """The capabilities' rules with the instance's numbers, and Mastodon's own count."""
    instance_caps = replace(
        caps,
        text_limit=None,
        max_images=limits.max_media,
        image_types=caps.image_types & limits.mime_types if limits.mime_types else caps.image_types,
        video_types=caps.video_types & limits.mime_types if limits.mime_types else caps.video_types,
        max_image_bytes=limits.image_size_limit,
        max_video_bytes=limits.video_size_limit,
    )
    problems = validate_against(instance_caps, content)
    text = content.text
    if content.link and content.link not in text:
        text = f"{text}\n\n{content.link}"
    length = mastodon_length(text, url_length=limits.url_length)
    if length > limits.max_characters:
        problems.insert(
            0,
            Problem(
                "text",
                f"{length} characters over this instance's limit of {limits.max_characters}",
            ),
        )
    return problems


_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<br\s*/?>|</p>\s*<p>", re.IGNORECASE)


def _plain(content: Any) -> str:
    """A status's HTML as the text it was written from."""
    if not isinstance(content, str):
        return ""
    return html.unescape(_TAG.sub("", _BREAK.sub("\n", content)))


def _normalized(text: str) -> str:
    return " ".join(text.split())
