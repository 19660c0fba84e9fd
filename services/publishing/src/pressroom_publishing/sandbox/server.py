"""The sandbox platform's HTTP API: a fake social network shaped like a real one.

OAuth 2 with a consent page, PKCE and refresh-token rotation; an account endpoint; posts
created idempotently (``Idempotency-Key``) and looked up by that key; daily insights; and a
``/_control`` API through which tests and developers make the next calls fail, expire or
revoke tokens and count what was published. Errors are JSON like a platform's own:
``{"error": {"code", "message"}}`` on the API, RFC 6749 ``{"error", "error_description"}``
on ``/oauth/token``. Nothing here is Pressroom's: adapters meet it exactly as they meet a
real platform, over HTTP.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from litestar import Litestar, MediaType, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp

from pressroom_publishing.platforms.base import TextCount, count_text
from pressroom_publishing.sandbox import insights
from pressroom_publishing.sandbox.state import (
    FAILURE_MODES,
    OPERATIONS,
    Clock,
    Failure,
    SandboxError,
    SandboxState,
    Settings,
    day_of,
    oauth_error,
)

Work = Callable[[], Awaitable[Response[Any]]]
MAX_KEY_LENGTH = 255


def create_sandbox_app(
    state: SandboxState | None = None,
    *,
    clock: Clock | None = None,
    control: bool = True,
    public_url: str | None = None,
) -> ASGIApp:
    """The sandbox API as an ASGI app. ``clock`` and ``public_url`` (the base of post URLs)
    replace the state's; ``control=False`` leaves the ``/_control`` API out."""
    state = state or SandboxState()
    if clock is not None:
        state.clock = clock
    if public_url is not None:
        state.public_url = public_url.rstrip("/")
    sandbox = _Sandbox(state)
    routes: list[tuple[Any, str, str]] = [
        (get, "/oauth/authorize", "authorize_page"),
        (post, "/oauth/authorize", "authorize_decision"),
        (post, "/oauth/token", "token"),
        (post, "/oauth/revoke", "revoke"),
        (get, "/v1/me", "me"),
        (post, "/v1/posts", "create_post"),
        (get, "/v1/posts", "lookup_posts"),
        (get, "/v1/posts/{post_id:str}", "get_post"),
        (delete, "/v1/posts/{post_id:str}", "delete_post"),
        (get, "/v1/insights/account", "account_insights"),
        (get, "/v1/insights/posts", "post_insights"),
        (get, "/{handle:str}/{post_id:str}", "post_page"),
    ]
    if control:
        routes += [
            (post, "/_control/failures", "control_failures"),
            (delete, "/_control/failures", "control_clear_failures"),
            (get, "/_control/posts", "control_posts"),
            (get, "/_control/calls", "control_calls"),
            (post, "/_control/reset", "control_reset"),
            (post, "/_control/tokens/expire", "control_expire"),
            (post, "/_control/tokens/revoke", "control_revoke"),
            (post, "/_control/settings", "control_settings"),
            (get, "/_control/settings", "control_get_settings"),
        ]
    # Handlers are bound methods of one ``_Sandbox``: every app has its own state. Every
    # handler answers a ``Response`` with its own status, so no default status is set here.
    handlers = [
        method(path, status_code=200, include_in_schema=False)(getattr(sandbox, name))
        for method, path, name in routes
    ]
    app = Litestar(
        route_handlers=handlers,
        exception_handlers={SandboxError: _sandbox_error, HTTPException: _http_error},
        state=State({"sandbox": state}),
        openapi_config=None,
        on_shutdown=[state.release_held],
    )
    return app


def _sandbox_error(_: Request[Any, Any, Any], exc: SandboxError) -> Response[Any]:
    return Response(exc.body(), status_code=exc.status, headers=exc.headers)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    code = codes.get(exc.status_code, "invalid_request")
    return Response({"error": {"code": code, "message": exc.detail}}, status_code=exc.status_code)


def _bearer(request: Request[Any, Any, Any]) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _date_param(request: Request[Any, Any, Any], name: str) -> date:
    value = request.query_params.get(name)
    if not value:
        raise SandboxError(400, "invalid_request", f"{name} (YYYY-MM-DD) is required")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SandboxError(400, "invalid_request", f"{name}: {value!r} is not a date") from None


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _absolute_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    """Returns once the client has hung up (the rest of the body is read and dropped)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _json_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    try:
        body = await request.json()
    except Exception:
        raise SandboxError(400, "invalid_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise SandboxError(400, "invalid_request", "the body must be a JSON object")
    return body


class _Sandbox:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def base_url(self, request: Request[Any, Any, Any]) -> str:
        return self.state.public_url or str(request.base_url).rstrip("/")

    async def guarded(
        self,
        operation: str,
        request: Request[Any, Any, Any],
        work: Work,
        *,
        oauth: bool = False,
    ) -> Response[Any]:
        """Count the call; run it, unless a failure was asked for (then, with ``effect``,
        run it and still fail the answer)."""
        failure = self.state.take_failure(operation)
        if failure is None:
            return await work()
        if failure.effect:
            await work()
        return await self.fail(failure, request, oauth=oauth)

    async def fail(
        self, failure: Failure, request: Request[Any, Any, Any], *, oauth: bool
    ) -> Response[Any]:
        kind: Any = "oauth" if oauth else "api"
        mode = failure.mode
        if mode == "timeout":
            await self.state.hold(failure.delay_s, gone=lambda: _disconnected(request))
            raise SandboxError(504, "timeout", "the platform did not answer in time", kind=kind)
        if mode == "rate_limited":
            headers = {}
            if failure.retry_after_s is not None:
                headers["Retry-After"] = str(math.ceil(failure.retry_after_s))
            raise SandboxError(429, "rate_limited", "too many requests", kind=kind, headers=headers)
        if mode == "error_500":
            code = "server_error" if oauth else "internal_error"
            raise SandboxError(500, code, failure.message or "something broke", kind=kind)
        if mode in ("token_expired", "token_revoked"):
            if oauth:
                what = "expired" if mode == "token_expired" else "was revoked"
                raise SandboxError(400, "invalid_grant", f"the refresh token {what}", kind=kind)
            message = "the access token expired" if mode == "token_expired" else "access revoked"
            raise SandboxError(401, mode, failure.message or message)
        code = failure.code or ("invalid_request" if oauth else "content_rejected")
        raise SandboxError(422, code, failure.message or "the platform refused this", kind=kind)

    # --- OAuth ----------------------------------------------------------------------------

    async def authorize_page(self, request: Request[Any, Any, Any]) -> Response[Any]:
        params = dict(request.query_params)

        async def work() -> Response[Any]:
            problem = self.authorization_problem(params)
            if problem is not None:
                return _page("Invalid authorization request", f"<p>{html.escape(problem)}</p>", 400)
            return _page("Authorize application", _consent_form(params), 200)

        return await self.guarded("authorize", request, work)

    async def authorize_decision(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = dict(await request.form())
        params = {k: v for k, v in form.items() if isinstance(v, str)}

        async def work() -> Response[Any]:
            problem = self.authorization_problem(params)
            if problem is not None:
                raise oauth_error(400, "invalid_request", problem)
            decision = params.get("decision", "")
            answer = {"state": params["state"]} if params.get("state") else {}
            if decision == "deny":
                target = _with_query(params["redirect_uri"], {"error": "access_denied", **answer})
            elif decision == "allow":
                username = (params.get("username") or "sandbox-user").strip()[:64]
                if not username.isprintable() or not username:
                    raise oauth_error(400, "invalid_request", "bad username")
                code = self.state.issue_code(
                    client_id=params["client_id"],
                    redirect_uri=params["redirect_uri"],
                    username=username,
                    scopes=tuple(params.get("scope", "").split()),
                    challenge=params.get("code_challenge") or None,
                )
                target = _with_query(params["redirect_uri"], {"code": code, **answer})
            else:
                raise oauth_error(400, "invalid_request", "decision must be allow or deny")
            return Response(b"", status_code=303, headers={"Location": target})

        return await self.guarded("authorize", request, work, oauth=True)

    def authorization_problem(self, params: dict[str, str]) -> str | None:
        client_id = params.get("client_id")
        redirect_uri = params.get("redirect_uri")
        if not client_id:
            return "client_id is required"
        if not self.state.known_client(client_id):
            return f"unknown client_id {client_id!r}"
        if not redirect_uri or not _absolute_http(redirect_uri):
            return "redirect_uri must be an absolute http(s) URL"
        if params.get("response_type", "code") != "code":
            return "response_type must be code"
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge and method not in (None, "", "S256"):
            return "code_challenge_method must be S256"
        if method and not challenge:
            return "code_challenge_method without a code_challenge"
        if challenge and not 43 <= len(challenge) <= 128:
            return "code_challenge must be 43 to 128 characters"
        return None

    async def token(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = {k: v for k, v in dict(await request.form()).items() if isinstance(v, str)}

        async def work() -> Response[Any]:
            client_id, secret = _client_credentials(request, form)
            self.state.check_client(client_id, secret)
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                if not form.get("code"):
                    raise oauth_error(400, "invalid_request", "code is required")
                answer = self.state.redeem_code(
                    code=form["code"],
                    client_id=client_id,
                    redirect_uri=form.get("redirect_uri"),
                    verifier=form.get("code_verifier"),
                )
            elif grant_type == "refresh_token":
                if not form.get("refresh_token"):
                    raise oauth_error(400, "invalid_request", "refresh_token is required")
                answer = self.state.refresh(
                    refresh_token=form["refresh_token"], client_id=client_id
                )
            else:
                raise oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r}")
            return Response(answer, headers={"Cache-Control": "no-store"})

        return await self.guarded("token", request, work, oauth=True)

    async def revoke(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = {k: v for k, v in dict(await request.form()).items() if isinstance(v, str)}

        async def work() -> Response[Any]:
            client_id, secret = _client_credentials(request, form)
            self.state.check_client(client_id, secret)
            if not form.get("token"):
                raise oauth_error(400, "invalid_request", "token is required")
            self.state.revoke(form["token"], client_id)
            return Response(b"", status_code=200)

        return await self.guarded("revoke", request, work, oauth=True)

    # --- API ------------------------------------------------------------------------------

    async def me(self, request: Request[Any, Any, Any]) -> Response[Any]:
        async def work() -> Response[Any]:
            account = self.state.account_for(_bearer(request))
            return Response(
                {
                    "id": account.id,
                    "username": account.username,
                    "display_name": account.display_name,
                }
            )

        return await self.guarded("me", request, work)

    async def create_post(self, request: Request[Any, Any, Any]) -> Response[Any]:
        async def work() -> Response[Any]:
            account = self.state.account_for(_bearer(request))
            key = request.headers.get("idempotency-key")
            if key is not None and (
                not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable()
            ):
                raise SandboxError(400, "invalid_request", "Idempotency-Key: 1-255 ASCII chars")
            body = await _json_object(request)
            text, media, link = _post_fields(body, self.state.settings)
            if self.state.settings.fetch_media:
                await _check_media(media)
            created, new = self.state.create_post(
                account, text=text, media=media, link=link, key=key
            )
            headers = {} if new else {"Idempotent-Replayed": "true"}
            answer = created.public(self.base_url(request))
            return Response(answer, status_code=201 if new else 200, headers=headers)

        return await self.guarded("publish", request, work)

    async def lookup_posts(self, request: Request[Any, Any, Any]) -> Response[Any]:
        async def work() -> Response[Any]:
            account = self.state.account_for(_bearer(request))
            reference = request.query_params.get("client_reference")
            if not reference:
                raise SandboxError(400, "invalid_request", "client_reference is required")
            found = self.state.find_by_reference(account, reference)
            data = [] if found is None else [found.public(self.base_url(request))]
            return Response({"data": data})

        return await self.guarded("lookup", request, work)

    async def get_post(self, request: Request[Any, Any, Any]) -> Response[Any]:
        post_id = str(request.path_params["post_id"])

        async def work() -> Response[Any]:
            account = self.state.account_for(_bearer(request))
            found = self.state.get_post(account, post_id)
            return Response(found.public(self.base_url(request)))

        return await self.guarded("lookup", request, work)

    async def delete_post(self, request: Request[Any, Any, Any]) -> Response[Any]:
        post_id = str(request.path_params["post_id"])

        async def work() -> Response[Any]:
            account = self.state.account_for(_bearer(request))
            self.state.delete_post(account, post_id)
            return Response(b"", status_code=204)

        return await self.guarded("delete", request, work)

    async def account_insights(self, request: Request[Any, Any, Any]) -> Response[Any]:
        async def work() -> Response[Any]:
            account = self.state.account_for(_bearer(request))
            wanted = self.days(request)
            posts = self.state.account_posts(account.id)
            data = [insights.account_day(account.id, posts, day) for day in wanted]
            return Response({"account_id": account.id, "data": data})

        return await self.guarded("insights", request, work)

    async def post_insights(self, request: Request[Any, Any, Any]) -> Response[Any]:
        async def work() -> Response[Any]:
            account = self.state.account_for(_bearer(request))
            ids = [i for i in request.query_params.get("ids", "").split(",") if i]
            if not ids or len(ids) > 100:
                raise SandboxError(400, "invalid_request", "ids: 1 to 100 post ids")
            wanted = self.days(request)
            owned = {p.id: p for p in self.state.account_posts(account.id)}
            data = []
            for post_id in ids:
                found = owned.get(post_id)
                if found is None:
                    continue  # like real platforms: unknown ids are left out, not an error
                for day in wanted:
                    numbers = insights.post_day(found, day)
                    if numbers is not None:
                        data.append(numbers)
            return Response({"data": data})

        return await self.guarded("insights", request, work)

    def days(self, request: Request[Any, Any, Any]) -> list[date]:
        since, until = _date_param(request, "since"), _date_param(request, "until")
        if until < since:
            raise SandboxError(400, "invalid_request", "until is before since")
        if (until - since).days >= insights.MAX_DAYS:
            raise SandboxError(400, "invalid_request", f"at most {insights.MAX_DAYS} days")
        return insights.days(since, until, day_of(self.state.now()))

    async def post_page(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The public page of a post (the URL the API answers with)."""
        handle = str(request.path_params["handle"])
        post_id = str(request.path_params["post_id"])
        found = self.state.visible_post(post_id)
        if found is None or handle != f"@{found.username}":
            return _page("Not found", "<p>This post does not exist.</p>", 404)
        body = f"<p><b>@{html.escape(found.username)}</b></p><p>{html.escape(found.text)}</p>"
        return _page("Post", body, 200)

    # --- control ----------------------------------------------------------------------------

    async def control_failures(self, request: Request[Any, Any, Any]) -> Response[Any]:
        body = await _json_object(request)
        self.state.add_failure(_failure(body))
        return Response({"pending": len(self.state.failures)}, status_code=201)

    async def control_clear_failures(self) -> Response[Any]:
        self.state.clear_failures()
        return Response(b"", status_code=204)

    async def control_posts(self, request: Request[Any, Any, Any]) -> Response[Any]:
        posts = self.state.all_posts(self.base_url(request))
        return Response({"data": [{**p, "idempotency_key": p["client_reference"]} for p in posts]})

    async def control_calls(self) -> Response[Any]:
        return Response({"calls": self.state.call_counts()})

    async def control_reset(self) -> Response[Any]:
        self.state.reset()
        return Response(b"", status_code=204)

    async def control_expire(self, request: Request[Any, Any, Any]) -> Response[Any]:
        body = await _optional_json(request)
        account_id = _optional_str(body, "account_id")
        refresh = body.get("refresh", False)
        if not isinstance(refresh, bool):
            raise SandboxError(400, "invalid_request", "refresh must be a boolean")
        count = self.state.expire_tokens(account_id, refresh=refresh)
        return Response({"grants": count})

    async def control_revoke(self, request: Request[Any, Any, Any]) -> Response[Any]:
        body = await _optional_json(request)
        count = self.state.revoke_tokens(_optional_str(body, "account_id"))
        return Response({"grants": count})

    async def control_settings(self, request: Request[Any, Any, Any]) -> Response[Any]:
        body = await _json_object(request)
        current = self.state.settings
        changes: dict[str, Any] = {}
        for name, value in body.items():
            default = getattr(Settings(), name, None)
            if default is None or name.startswith("_"):
                raise SandboxError(400, "invalid_request", f"unknown setting {name!r}")
            wrong_type = type(value) is not type(default)
            if wrong_type or (type(value) is int and value <= 0):
                raise SandboxError(400, "invalid_request", f"{name}: a {type(default).__name__}")
            changes[name] = value
        for name, value in changes.items():
            setattr(current, name, value)
        return Response(vars(current))

    async def control_get_settings(self) -> Response[Any]:
        return Response(vars(self.state.settings))


def _client_credentials(request: Request[Any, Any, Any], form: dict[str, str]) -> tuple[str, str]:
    """client_secret_basic (``Authorization: Basic``) or client_secret_post."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise oauth_error(401, "invalid_client", "bad Basic credentials") from None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            raise oauth_error(401, "invalid_client", "bad Basic credentials")
        from urllib.parse import unquote_plus

        return unquote_plus(client_id), unquote_plus(secret)
    form_id = form.get("client_id")
    form_secret = form.get("client_secret")
    if not form_id or not form_secret:
        raise oauth_error(401, "invalid_client", "client authentication is required")
    return form_id, form_secret


def _post_fields(
    body: dict[str, Any], settings: Settings
) -> tuple[str, list[dict[str, Any]], str | None]:
    text = body.get("text", "")
    if not isinstance(text, str):
        raise SandboxError(400, "invalid_request", "text must be a string")
    length = count_text(text, TextCount.GRAPHEMES)
    if length > settings.text_limit:
        raise SandboxError(
            422, "text_too_long", f"{length} characters; the limit is {settings.text_limit}"
        )
    raw_media = body.get("media", [])
    if not isinstance(raw_media, list):
        raise SandboxError(400, "invalid_request", "media must be a list")
    media: list[dict[str, Any]] = []
    for index, item in enumerate(raw_media):
        if not isinstance(item, dict):
            raise SandboxError(400, "invalid_request", f"media[{index}] must be an object")
        url, kind, content_type = item.get("url"), item.get("kind"), item.get("content_type")
        if not isinstance(url, str) or not _absolute_http(url):
            raise SandboxError(400, "invalid_request", f"media[{index}].url: an http(s) URL")
        if kind not in ("image", "video"):
            raise SandboxError(400, "invalid_request", f"media[{index}].kind: image or video")
        if not isinstance(content_type, str) or "/" not in content_type:
            raise SandboxError(400, "invalid_request", f"media[{index}].content_type: a type")
        if content_type.split("/", 1)[0] != kind:
            raise SandboxError(
                422,
                "unsupported_media_type",
                f"media[{index}]: {content_type} does not fit kind {kind}",
            )
        media.append({"url": url, "kind": kind, "content_type": content_type})
    images = sum(1 for m in media if m["kind"] == "image")
    videos = len(media) - images
    if images > settings.max_images:
        raise SandboxError(422, "too_many_images", f"at most {settings.max_images} images")
    if videos > settings.max_videos:
        raise SandboxError(422, "too_many_videos", f"at most {settings.max_videos} video")
    if images and videos:
        raise SandboxError(422, "mixed_media", "images and a video cannot be mixed")
    link = body.get("link")
    if link is not None and (not isinstance(link, str) or not _absolute_http(link)):
        raise SandboxError(400, "invalid_request", "link must be an http(s) URL")
    if not text.strip() and not media:
        raise SandboxError(422, "empty_post", "a post needs a text or media")
    return text, media, link


async def _check_media(media: list[dict[str, Any]]) -> None:
    """With ``fetch_media``: every media URL must answer (a real platform downloads it)."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for item in media:
            try:
                async with session.get(item["url"]) as answer:
                    ok = answer.status < 400
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if not ok:
                raise SandboxError(422, "media_unreachable", f"could not fetch {item['url']}")


def _failure(body: dict[str, Any]) -> Failure:
    operation, mode = body.get("operation", "any"), body.get("mode")
    if operation not in OPERATIONS:
        raise SandboxError(400, "invalid_request", f"operation: one of {', '.join(OPERATIONS)}")
    if mode not in FAILURE_MODES:
        raise SandboxError(400, "invalid_request", f"mode: one of {', '.join(FAILURE_MODES)}")
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10_000:
        raise SandboxError(400, "invalid_request", "count: an integer from 1 to 10000")
    numbers: dict[str, float | None] = {}
    for name, default in (("retry_after_s", 30.0), ("delay_s", 30.0)):
        value = body.get(name, default)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise SandboxError(400, "invalid_request", f"{name}: a number >= 0")
        numbers[name] = None if value is None else float(value)
    effect = body.get("effect", False)
    if not isinstance(effect, bool):
        raise SandboxError(400, "invalid_request", "effect must be a boolean")
    code, message = body.get("code"), body.get("message")
    for name, value in (("code", code), ("message", message)):
        if value is not None and not isinstance(value, str):
            raise SandboxError(400, "invalid_request", f"{name} must be a string")
    return Failure(
        operation=operation,
        mode=mode,
        count=count,
        retry_after_s=numbers["retry_after_s"],
        delay_s=numbers["delay_s"] or 0.0,
        effect=effect,
        code=code,
        message=message,
    )


async def _optional_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    if not await request.body():
        return {}
    return await _json_object(request)


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise SandboxError(400, "invalid_request", f"{name} must be a string")
    return value


def _page(title: str, body: str, status: int) -> Response[Any]:
    document = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} - Sandbox</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Response(document, status_code=status, media_type=MediaType.HTML)


def _consent_form(params: dict[str, str]) -> str:
    kept = (
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "scope",
        "code_challenge",
        "code_challenge_method",
    )
    hidden = "".join(
        f"<input type='hidden' name='{name}' value='{html.escape(params[name], quote=True)}'>"
        for name in kept
        if name in params
    )
    scopes = html.escape(params.get("scope") or "read write")
    client = html.escape(params["client_id"])
    return (
        f"<p><b>{client}</b> asks to read your profile and publish posts ({scopes}).</p>"
        "<form method='post' action=''>"
        f"{hidden}"
        "<label>Account <input name='username' value='sandbox-user'></label> "
        "<button type='submit' name='decision' value='allow'>Authorize</button> "
        "<button type='submit' name='decision' value='deny'>Deny</button>"
        "</form>"
    )
