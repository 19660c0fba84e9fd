"""The reviewer's page: ``GET /review/{token}`` and ``POST /review/{token}/decision``.

Public (the gateway routes ``/review/*`` without a JWT): the signed token is the
credential. It names the link and its brand, so everything after the signature check runs
in a ``tenant_transaction`` of that brand: a token of brand A can never reach a row of
brand B. Every answer is HTML for a person (errors too, through the controller's own
exception handlers): never JSON, never a stack trace.

CSRF: the form posts back to the token's own URL, so a forged cross-site post would need
the token, which is the secret. The forms also carry a nonce bound to the link and to the
submission the page showed (``tokens.form_nonce``): a post without it is refused, and one
made after the post was re-submitted is refused with "reload the page" instead of deciding
on content the reviewer never saw.

A decision marks the link used, adds the reviewer's comment, and decides, in one
transaction: of two posts of one link, the row lock lets one decide and the other gets the
"already used" page; a decision that fails (the approval was decided meanwhile) leaves the
link unused.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Literal, cast
from uuid import UUID

import asyncpg
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.enums import MediaType
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath
from litestar.response import Redirect
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Conflict, Invalid, NotFound, PressroomError
from pressroom_kit.http import PUBLIC
from pressroom_kit.logs import get_logger
from pressroom_kit.problems import html_page
from pressroom_kit.text import unstorable

from pressroom_approval import audit
from pressroom_approval.approvals.commands import (
    MAX_COMMENT,
    ApprovalView,
    add_comment,
    decide,
    get_approval,
    list_comments,
)
from pressroom_approval.approvals.domain import DECIDABLE
from pressroom_approval.review import links, pages, tokens
from pressroom_approval.review.links import ReviewLink
from pressroom_approval.review.media import MediaThumbnails, origin

log = get_logger(__name__)
MAX_PAGE_COMMENTS = 200
MAX_FORM_BYTES = 64 * 1024
STATUS_LABELS = {
    "pending": "waiting for a decision",
    "approved": "approved",
    "rejected": "changes requested",
    "expired": "waiting for a decision (its publish time has passed)",
    "voided": "withdrawn",
}


DONE = {
    "approve": (
        "Thank you: the post is approved",
        "Your approval was recorded and the team has been told.",
    ),
    "reject": (
        "Thank you: changes requested",
        "Your comment was sent to the team. They will change the post and may send you a new link.",
    ),
}


class LinkUnusable(PressroomError):
    """A link that is expired, revoked or used: 410 Gone, with what happened."""

    status, code, title = 410, "link_unusable", "This link can no longer be used"


GONE_TITLES = {
    "expired": "This review link has expired",
    "revoked": "This review link was withdrawn",
    "used": "This review link was already used",
}


def _gone(link: ReviewLink, status: str, tz: Any) -> LinkUnusable:
    if status == "expired":
        text = (
            f"The link expired {pages.local_time(link.expires_at, tz)}. "
            "Ask the team that sent it for a new one."
        )
    elif status == "revoked":
        text = "The team that sent this link has withdrawn it. Ask them for a new one."
    else:
        assert link.used_at is not None
        did = "approved the post" if link.used_decision == "approve" else "asked for changes"
        text = f"You {did} {pages.local_time(link.used_at, tz)} with this link. Thank you."
    return LinkUnusable(text, code=f"link_{status}", heading=GONE_TITLES[status])


def _not_found() -> NotFound:
    return NotFound(
        "This review link is not valid. Check that you copied the whole address, or ask the "
        "team that sent it for a new one.",
        code="bad_link",
        heading="Review link not found",
    )


def _claims(state: State, token: FromPath[str]) -> tokens.LinkClaims:
    try:
        return tokens.read_link(state.settings.link_signing_key.get_secret_value(), token)
    except tokens.BadToken:
        raise _not_found() from None


async def _brand(conn: asyncpg.Connection, brand_id: UUID) -> tuple[str, Any]:
    row = await conn.fetchrow(
        "SELECT name, timezone FROM approval_brands WHERE brand_id = $1", brand_id
    )
    if row is None:
        return "Your team", pages.zone(None)
    return row["name"], pages.zone(row["timezone"])


async def _open_link(
    conn: asyncpg.Connection, claims: tokens.LinkClaims, now: datetime, tz: Any
) -> ReviewLink:
    """The token's link when it can still be used; 404 or 410 pages otherwise."""
    link = await links.get_link(conn, claims.link_id)
    if link is None or link.brand_id != claims.brand_id or link.expires_at != claims.expires_at:
        raise _not_found()
    status = link.status(now)
    if status != "active":
        raise _gone(link, status, tz)
    return link


def _reviewer(request: Request[Any, Any, Any], link: ReviewLink) -> audit.Actor:
    """``client:<link id>``, with the email and name as personal data (erasable: the id
    reaches the append-only event store, so it holds no email) and the address and browser
    the request came from (the gateway's ``X-Forwarded-For`` and ``User-Agent``)."""
    seen = audit.actor_from_request(request, None)
    return dataclasses.replace(seen, id=f"client:{link.id}", email=link.email, name=link.name)


def _html_error(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    if isinstance(exc, PressroomError):
        heading = exc.extra.get("heading")
        if not isinstance(heading, str):
            heading = {403: "Not allowed", 404: "Not found", 409: "Already decided"}.get(
                exc.status, "This did not work"
            )
        return pages.message(exc.status, heading, exc.detail)
    if isinstance(exc, HTTPException):
        return pages.message(exc.status_code, "This did not work", "This request is not valid.")
    log.exception("review page failed", path=request.url.path)
    return pages.message(
        500, "Something went wrong", "The page could not be shown. Please try again later."
    )


class ReviewPageController(Controller):
    path = "/review"
    include_in_schema = True
    tags = ["review page"]
    opt = {**PUBLIC, **html_page(409, 410)}
    # Every class the app maps to problem+json, mapped here to pages (Litestar picks the
    # most specific class over all layers, so ``Exception`` alone would not do).
    exception_handlers = {
        PressroomError: _html_error,
        ValidationException: _html_error,
        HTTPException: _html_error,
        Exception: _html_error,
    }

    @get("/", media_type=MediaType.HTML, include_in_schema=False)
    async def no_token(self) -> Response[str]:
        """``/review/`` alone: a link cut short."""
        raise _not_found()

    @get("/{token:str}/decision", status_code=303)
    async def decision_page(self, state: State, token: FromPath[str]) -> Redirect:
        """The form's address opened directly (a bookmark of the result): back to the page,
        which says where the link stands."""
        _claims(state, token)
        return Redirect(f"/review/{token}", status_code=303)

    @get("/{token:str}", media_type=MediaType.HTML)
    async def page(self, state: State, token: FromPath[str]) -> Response[str]:
        """The post as it will go out, per platform, its time in the brand's timezone, the
        comments, and the two forms (public; the token is the credential)."""
        claims = _claims(state, token)
        now: datetime = state.clock()
        async with tenant_transaction(state.pool, claims.brand_id) as conn:
            brand_name, tz = await _brand(conn, claims.brand_id)
            link = await _open_link(conn, claims, now, tz)
            approval = await get_approval(conn, link.approval_id)
            comments, _ = await list_comments(
                conn, link.approval_id, limit=MAX_PAGE_COMMENTS, after=None
            )
        thumbnails: MediaThumbnails = state.review_media
        media = await thumbnails.lookup(
            claims.brand_id, (m for ids in approval.media_by_platform.values() for m in ids)
        )
        platforms = [
            {
                "platform": platform,
                "text": approval.texts.get(platform, ""),
                "media": [media[m] for m in approval.media_by_platform.get(platform, [])],
            }
            for platform in approval.platforms or sorted(approval.texts)
        ]
        can_decide = approval.status in DECIDABLE
        key = state.settings.link_signing_key.get_secret_value()
        context = {
            "brand_name": brand_name,
            "reviewer": link.name,
            "status_label": STATUS_LABELS.get(approval.status, approval.status),
            "scheduled_local": (
                pages.local_time(approval.scheduled_at, tz) if approval.scheduled_at else None
            ),
            "expires_local": pages.local_time(link.expires_at, tz),
            "platforms": platforms,
            "comments": [
                {
                    "who": c["author"]["name"] or c["author"]["email"] or "Team member",
                    "when": pages.local_time(c["created_at"], tz),
                    "body": c["body"],
                }
                for c in comments
            ],
            "can_decide": can_decide,
            "closed_reason": (
                None
                if can_decide
                else f"This post is {STATUS_LABELS[approval.status]}: there is "
                "nothing to decide any more."
            ),
            "action": f"/review/{token}/decision",
            "nonce": tokens.form_nonce(key, link.id, _round(approval)),
            "max_comment": MAX_COMMENT,
        }
        return pages.render(
            "page.html",
            context,
            status=200 if can_decide else 409,
            image_origins={origin(t.url) for t in media.values() if t.url},
        )

    @post("/{token:str}/decision", media_type=MediaType.HTML, status_code=200)
    async def decision(
        self, request: Request[Any, Any, Any], state: State, token: FromPath[str]
    ) -> Response[str]:
        """Approve, or request changes with a comment (a rejection whose reason is the
        comment); the answer says what happened."""
        claims = _claims(state, token)
        choice, comment, nonce = await _read_form(request)
        key = state.settings.link_signing_key.get_secret_value()
        now: datetime = state.clock()
        async with tenant_transaction(state.pool, claims.brand_id) as conn:
            _, tz = await _brand(conn, claims.brand_id)
            link = await _open_link(conn, claims, now, tz)
            approval = await get_approval(conn, link.approval_id)
            _check_form(key, link, approval, nonce)
            if await links.consume_link(conn, link.id, choice, now) is None:
                # Another post of this link decided between our read and our update.
                raise Conflict(
                    "This review link was just used to decide; it decides once.",
                    code="link_used",
                    heading=GONE_TITLES["used"],
                )
            reviewer = _reviewer(request, link)
            if comment:
                await add_comment(
                    conn,
                    brand_id=claims.brand_id,
                    approval_id=link.approval_id,
                    actor=reviewer,
                    body=comment,
                    now=now,
                )
            decided = await decide(
                conn,
                brand_id=claims.brand_id,
                approval_id=link.approval_id,
                decision=choice,
                actor=reviewer,
                role=None,
                comment=(comment or None) if choice == "approve" else None,
                reason=comment if choice == "reject" else None,
                now=now,
            )
            # The approval was re-submitted between our read and decide's lock: undo all.
            _check_submission(key, link, decided, nonce)
        return pages.message(200, *DONE[choice])


def _check_form(key: str, link: ReviewLink, approval: ApprovalView, nonce: str) -> None:
    if approval.status not in DECIDABLE:
        raise Conflict(
            f"This post is {STATUS_LABELS[approval.status]} already: there is nothing to "
            "decide any more.",
            code="already_decided",
            heading="Already decided",
        )
    _check_submission(key, link, approval, nonce)


def _round(approval: ApprovalView) -> str:
    """The approval round a form was shown for: the submission number and the post's
    version (a submission without a number, which the contract allows, is told apart from
    the next one by its version only)."""
    return f"{approval.submission}:{approval.post_version}"


def _check_submission(key: str, link: ReviewLink, approval: ApprovalView, nonce: str) -> None:
    if not tokens.nonce_matches(key, link.id, _round(approval), nonce):
        raise Conflict(
            "The post changed since this page was opened. Reload the page to see the new "
            "version, then decide again.",
            code="stale_form",
            heading="The post changed",
        )


async def _read_form(
    request: Request[Any, Any, Any],
) -> tuple[Literal["approve", "reject"], str, str]:
    """The decision form's three fields, checked here so that a bad form is an HTML page,
    not a problem+json."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise PressroomError(
            "This page only takes its own form. Go back to the review page and use its buttons.",
            code="not_a_form",
            heading="This did not work",
        )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        raise Invalid("The comment is too long.", code="form_too_large", heading="Too long")
    form = await request.form()
    fields: dict[str, str] = {}
    for name in ("decision", "comment", "nonce"):
        value = form.get(name)
        if value is not None and not isinstance(value, str):
            value = None  # a file where text belongs
        if value is not None and unstorable(value) is not None:
            raise Invalid(
                "The comment holds characters that cannot be stored; please retype it.",
                code="unstorable_text",
                heading="This did not work",
            )
        fields[name] = value or ""
    choice = fields["decision"]
    if choice not in ("approve", "reject"):
        raise Invalid(
            "Please use the Approve or Request changes button.",
            code="bad_decision",
            heading="This did not work",
        )
    comment = fields["comment"].strip()
    if len(comment) > MAX_COMMENT:
        raise Invalid(
            f"The comment is too long: at most {MAX_COMMENT} characters.",
            code="comment_too_long",
            heading="Too long",
        )
    if choice == "reject" and not comment:
        raise Invalid(
            "Please say what should change: the comment is required to request changes.",
            code="comment_required",
            heading="A comment is needed",
        )
    return cast(Literal["approve", "reject"], choice), comment, fields["nonce"]
