"""Escalation rules and client settings (admin), and the public one-click unsubscribe.

Reads ``app.state.pool``, ``clock``, ``escalation_box`` (``SecretBox`` for Slack webhook
URLs: a webhook URL is a credential, so it is sealed at rest and only a hint of it is ever
returned) and ``unsubscribe_tokens``. Every change writes an audit row in its transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

import asyncpg
from litestar import Controller, MediaType, Request, Response, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, PathParameter
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Conflict, Invalid, NotFound
from pressroom_kit.http import PUBLIC, requires_role
from pressroom_kit.problems import html_page, problems
from pressroom_kit.schemas import NOT_NULL
from pressroom_kit.secrets import SecretBox
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator

from pressroom_approval import audit
from pressroom_approval.escalations import pages
from pressroom_approval.escalations.hours import is_known_zone
from pressroom_approval.escalations.messages import LANGUAGES
from pressroom_approval.escalations.tokens import BadToken, UnsubscribeTokens

ADMIN = [requires_role("admin")]
RULE_TYPE = r"^(reminder|escalate)_[1-9][0-9]{0,3}h$"
CLIENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@+|-]{0,199}$"
Role = Literal["viewer", "manager", "admin"]
Channel = Literal["email", "slack"]
Language = Literal["en", "es", "fr", "de"]
assert set(LANGUAGES) == {"en", "es", "fr", "de"}


def _unique(channels: list[str]) -> list[str]:
    if len(set(channels)) != len(channels):
        raise ValueError("each channel once")
    return channels


def _zone(name: str) -> str:
    if not is_known_zone(name):
        raise ValueError(f"{name!r} is not an IANA timezone (e.g. Europe/Berlin)")
    return name


RuleType = Annotated[
    str,
    Field(
        pattern=RULE_TYPE,
        description="`reminder_<N>h` or `escalate_<N>h`; one rule of each type per brand",
    ),
]
Hours = Annotated[int, Field(strict=True, ge=1, le=8760, description="hours after the request")]
Channels = Annotated[list[Channel], Field(min_length=1, max_length=2), AfterValidator(_unique)]
WebhookUrl = Annotated[
    str,
    Field(
        min_length=10,
        max_length=2048,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$",
        description="a Slack incoming-webhook URL; stored sealed, never returned",
    ),
]
TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_zone)]
TypeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule_type: RuleType
    trigger_hours: Hours
    target_type: Literal["role"] = "role"
    escalate_to_role: Role
    notify_via: Channels = Field(default_factory=lambda: list[Channel](["email"]))
    enabled: StrictBool = True
    respect_timezone: StrictBool = Field(
        default=True, description="hold sends outside 09:00-18:00 Mon-Fri, recipient's time"
    )
    slack_webhook_url: WebhookUrl | None = None

    @model_validator(mode="after")
    def _slack_needs_url(self) -> Self:
        if "slack" in self.notify_via and self.slack_webhook_url is None:
            raise ValueError("notify_via slack needs a slack_webhook_url")
        return self


class RulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule_type: Annotated[RuleType | None, NOT_NULL] = None
    trigger_hours: Annotated[Hours | None, NOT_NULL] = None
    target_type: Annotated[Literal["role"] | None, NOT_NULL] = None
    escalate_to_role: Annotated[Role | None, NOT_NULL] = None
    notify_via: Annotated[Channels | None, NOT_NULL] = None
    enabled: Annotated[StrictBool | None, NOT_NULL] = None
    respect_timezone: Annotated[StrictBool | None, NOT_NULL] = None
    slack_webhook_url: WebhookUrl | None = Field(default=None, description="null removes it")


class RuleOut(BaseModel):
    id: uuid.UUID
    rule_type: str
    trigger_hours: int
    target_type: str
    escalate_to_role: str
    notify_via: list[str]
    send_email: bool
    send_slack: bool
    enabled: bool
    respect_timezone: bool
    slack_webhook: str | None = Field(description="a hint of the URL (its host), or null")
    created_at: datetime
    updated_at: datetime


class RuleList(BaseModel):
    items: list[RuleOut]


class ClientSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    timezone: TimeZone | None = Field(default=None, description="else the brand's timezone")
    language: Language = "en"
    email_preferences: dict[TypeName, StrictBool] = Field(
        default_factory=dict,
        max_length=50,
        description="per rule type or kind (`reminder`), false: no such emails",
    )
    unsubscribed_from_all: StrictBool = False
    unsubscribed_types: list[TypeName] = Field(default_factory=list, max_length=50)


class ClientSettingsOut(BaseModel):
    client_id: str
    email: str | None
    name: str | None
    timezone: str | None
    language: str
    email_preferences: dict[str, bool]
    unsubscribed_from_all: bool
    unsubscribed_types: list[str]
    created_at: datetime
    updated_at: datetime


def _principal(request: Request[Any, Any, Any]) -> tuple[Principal, uuid.UUID]:
    principal = request.user
    assert isinstance(principal, Principal) and principal.brand_id is not None
    return principal, principal.brand_id


def _hint(sealed: str | None) -> str | None:
    return "configured" if sealed else None


def _rule_out(row: asyncpg.Record) -> RuleOut:
    data = dict(row)
    data["notify_via"] = list(data["notify_via"])
    data["slack_webhook"] = _hint(data.pop("slack_webhook_url"))
    data.pop("brand_id", None)
    return RuleOut(**data)


def _seal(box: SecretBox, rule_id: uuid.UUID, url: str | None) -> str | None:
    return None if url is None else box.encrypt(url, context=str(rule_id))


RULE_COLUMNS = (
    "id, rule_type, trigger_hours, target_type, escalate_to_role, notify_via, send_email, "
    "send_slack, enabled, respect_timezone, slack_webhook_url, created_at, updated_at"
)


class EscalationRuleController(Controller):
    path = "/v1/escalation-rules"
    tags = ["escalations"]
    guards = ADMIN

    @get("/")
    async def list_rules(self, request: Request[Any, Any, Any], state: State) -> RuleList:
        """The brand's rules by trigger time. A brand has the default rules (a reminder to
        managers at 24 h, an escalation to admins at 48 h) from its first approval."""
        _, brand = _principal(request)
        async with tenant_transaction(state.pool, brand) as conn:
            rows = await conn.fetch(
                f"SELECT {RULE_COLUMNS} FROM escalation_rules ORDER BY trigger_hours, rule_type"
            )
        return RuleList(items=[_rule_out(r) for r in rows])

    @get("/{rule_id:uuid}")
    async def read_rule(
        self, request: Request[Any, Any, Any], state: State, rule_id: FromPath[uuid.UUID]
    ) -> RuleOut:
        _, brand = _principal(request)
        async with tenant_transaction(state.pool, brand) as conn:
            return _rule_out(await _rule(conn, rule_id))

    @post("/", status_code=201, opt=problems(409))
    async def create_rule(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[RuleIn]
    ) -> RuleOut:
        """A new rule; it applies to approvals requested from now on. 409 `rule_exists` for a
        second rule of one type."""
        principal, brand = _principal(request)
        rule_id, now = uuid.uuid4(), state.clock()
        async with tenant_transaction(state.pool, brand) as conn:
            try:
                row = await conn.fetchrow(
                    "INSERT INTO escalation_rules (id, brand_id, rule_type, trigger_hours, "
                    "target_type, escalate_to_role, notify_via, enabled, respect_timezone, "
                    "slack_webhook_url, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) "
                    "ON CONFLICT (brand_id, rule_type) DO NOTHING "
                    f"RETURNING {RULE_COLUMNS}",
                    rule_id,
                    brand,
                    data.rule_type,
                    data.trigger_hours,
                    data.target_type,
                    data.escalate_to_role,
                    data.notify_via,
                    data.enabled,
                    data.respect_timezone,
                    _seal(state.escalation_box, rule_id, data.slack_webhook_url),
                    now,
                )
            except asyncpg.UniqueViolationError:
                row = None
            if row is None:
                raise Conflict(f"the brand has a {data.rule_type} rule", code="rule_exists")
            await _mark_defaults_made(conn, brand, now)
            await audit.record(
                conn,
                brand_id=brand,
                actor=audit.actor_from_request(request, principal),
                action="escalation_rule.created",
                at=now,
                metadata=_audit_meta(row),
            )
        return _rule_out(row)

    @patch("/{rule_id:uuid}", opt=problems(409))
    async def update_rule(
        self,
        request: Request[Any, Any, Any],
        state: State,
        rule_id: FromPath[uuid.UUID],
        data: JSONBody[RulePatch],
    ) -> RuleOut:
        """Change a rule; steps already scheduled keep their time. 422 `slack_needs_url` when
        the rule would notify Slack without a webhook."""
        principal, brand = _principal(request)
        now = state.clock()
        given = data.model_dump(exclude_unset=True)
        async with tenant_transaction(state.pool, brand) as conn:
            current = await _rule(conn, rule_id, lock=True)
            merged = {**dict(current), **given}
            if "slack_webhook_url" in given:
                merged["slack_webhook_url"] = _seal(
                    state.escalation_box, rule_id, given["slack_webhook_url"]
                )
            if "slack" in merged["notify_via"] and not merged["slack_webhook_url"]:
                raise Invalid("notify_via slack needs a slack_webhook_url", code="slack_needs_url")
            try:
                row = await conn.fetchrow(
                    "UPDATE escalation_rules SET rule_type = $2, trigger_hours = $3, "
                    "target_type = $4, escalate_to_role = $5, notify_via = $6, enabled = $7, "
                    "respect_timezone = $8, slack_webhook_url = $9, updated_at = $10 "
                    f"WHERE id = $1 RETURNING {RULE_COLUMNS}",
                    rule_id,
                    merged["rule_type"],
                    merged["trigger_hours"],
                    merged["target_type"],
                    merged["escalate_to_role"],
                    list(merged["notify_via"]),
                    merged["enabled"],
                    merged["respect_timezone"],
                    merged["slack_webhook_url"],
                    now,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(
                    f"the brand has a {merged['rule_type']} rule", code="rule_exists"
                ) from None
            assert row is not None
            await audit.record(
                conn,
                brand_id=brand,
                actor=audit.actor_from_request(request, principal),
                action="escalation_rule.updated",
                at=now,
                metadata={**_audit_meta(row), "changed": sorted(given)},
            )
        return _rule_out(row)

    @delete("/{rule_id:uuid}", status_code=204)
    async def delete_rule(
        self, request: Request[Any, Any, Any], state: State, rule_id: FromPath[uuid.UUID]
    ) -> None:
        """Remove a rule and cancel its pending steps (sent ones stay in the history)."""
        principal, brand = _principal(request)
        now = state.clock()
        async with tenant_transaction(state.pool, brand) as conn:
            row = await _rule(conn, rule_id, lock=True)
            await conn.execute(
                """
                WITH closed AS (
                    UPDATE escalation_events
                    SET status = 'cancelled', closed_at = $2, lease_token = NULL,
                        lease_until = NULL
                    WHERE rule_id = $1 AND status = 'pending'
                    RETURNING id, brand_id, approval_id
                )
                INSERT INTO escalation_history (brand_id, escalation_id, approval_id, step,
                                                detail, at)
                SELECT brand_id, id, approval_id, 'cancelled',
                       '{"outcome": "rule_deleted"}'::jsonb, $2 FROM closed
                """,
                rule_id,
                now,
            )
            await conn.execute("DELETE FROM escalation_rules WHERE id = $1", rule_id)
            await audit.record(
                conn,
                brand_id=brand,
                actor=audit.actor_from_request(request, principal),
                action="escalation_rule.deleted",
                at=now,
                metadata=_audit_meta(row),
            )


async def _rule(conn: asyncpg.Connection, rule_id: uuid.UUID, *, lock: bool = False) -> Any:
    row = await conn.fetchrow(
        f"SELECT {RULE_COLUMNS} FROM escalation_rules WHERE id = $1"
        + (" FOR UPDATE" if lock else ""),
        rule_id,
    )
    if row is None:
        raise NotFound(f"escalation rule {rule_id} does not exist")
    return row


async def _mark_defaults_made(conn: asyncpg.Connection, brand: uuid.UUID, at: datetime) -> None:
    """A brand whose admin wrote rules before its first approval keeps only those."""
    await conn.execute(
        "INSERT INTO escalation_defaults (brand_id, created_at) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING",
        brand,
        at,
    )


def _audit_meta(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "rule_id": str(row["id"]),
        "rule_type": row["rule_type"],
        "trigger_hours": row["trigger_hours"],
        "escalate_to_role": row["escalate_to_role"],
        "notify_via": list(row["notify_via"]),
        "enabled": row["enabled"],
    }


CLIENT_COLUMNS = (
    "client_id, email, name, timezone, language, email_preferences, unsubscribed_from_all, "
    "unsubscribed_types, created_at, updated_at"
)


def _client_out(row: asyncpg.Record) -> ClientSettingsOut:
    data = dict(row)
    data["unsubscribed_types"] = list(data["unsubscribed_types"])
    return ClientSettingsOut(**data)


ClientId = Annotated[str, PathParameter(pattern=CLIENT_ID, max_length=200)]


class ClientSettingsController(Controller):
    path = "/v1/client-settings"
    tags = ["escalations"]
    guards = ADMIN

    @get("/{client_id:str}")
    async def read_settings(
        self, request: Request[Any, Any, Any], state: State, client_id: ClientId
    ) -> ClientSettingsOut:
        """A recipient's settings (``client_id``: a member's user id, or a client's own id).
        404 when none were ever set: the defaults apply (English, the brand's timezone)."""
        _, brand = _principal(request)
        async with tenant_transaction(state.pool, brand) as conn:
            row = await conn.fetchrow(
                f"SELECT {CLIENT_COLUMNS} FROM client_settings WHERE client_id = $1", client_id
            )
        if row is None:
            raise NotFound(f"no settings for {client_id}")
        return _client_out(row)

    @put("/{client_id:str}")
    async def put_settings(
        self,
        request: Request[Any, Any, Any],
        state: State,
        client_id: ClientId,
        data: JSONBody[ClientSettingsIn],
    ) -> ClientSettingsOut:
        """Replace a recipient's settings (the language and timezone of their emails, and
        what they receive). Unsubscriptions only grow here: a recipient who unsubscribed
        (one-click) is never subscribed again by an admin's edit."""
        principal, brand = _principal(request)
        now = state.clock()
        async with tenant_transaction(state.pool, brand) as conn:
            row = await conn.fetchrow(
                "INSERT INTO client_settings (brand_id, client_id, email, name, timezone, "
                "language, email_preferences, unsubscribed_from_all, unsubscribed_types, "
                "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) "
                "ON CONFLICT (brand_id, client_id) DO UPDATE SET email = $3, name = $4, "
                "timezone = $5, language = $6, email_preferences = $7, "
                # An opt-out is the recipient's own (one-click unsubscribe): an admin's
                # edit may add to it, never take it back.
                "unsubscribed_from_all = client_settings.unsubscribed_from_all OR $8, "
                "unsubscribed_types = ARRAY(SELECT DISTINCT t FROM unnest("
                "client_settings.unsubscribed_types || $9::text[]) AS t ORDER BY t), "
                "updated_at = $10 "
                f"RETURNING {CLIENT_COLUMNS}",
                brand,
                client_id,
                data.email,
                data.name,
                data.timezone,
                data.language,
                data.email_preferences,
                data.unsubscribed_from_all,
                sorted(set(data.unsubscribed_types)),
                now,
            )
            assert row is not None
            await audit.record(
                conn,
                brand_id=brand,
                actor=audit.actor_from_request(request, principal),
                action="client_settings.updated",
                at=now,
                metadata={
                    "client": audit.pseudonym(client_id),
                    "language": data.language,
                    "unsubscribed_from_all": row["unsubscribed_from_all"],
                    "unsubscribed_types": list(row["unsubscribed_types"]),
                },
            )
        return _client_out(row)


def _html(body: str, status: int = 200) -> Response[str]:
    return Response(
        content=body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


class UnsubscribeController(Controller):
    """One-click unsubscribe (RFC 8058): no login; the signed token is the authority."""

    path = "/v1/unsubscribe"
    tags = ["escalations"]
    opt = {**PUBLIC, **html_page()}

    @get("/{token:str}", media_type=MediaType.HTML)
    async def confirm_page(
        self, request: Request[Any, Any, Any], state: State, token: FromPath[str]
    ) -> Response[str]:
        """A page that asks to confirm with a button (a GET changes nothing: mail scanners
        follow links). 400 for a token we did not sign, 404 when it names nobody."""
        return await self._answer(request, state, token, apply=False)

    @post("/{token:str}", media_type=MediaType.HTML, status_code=200)
    async def unsubscribe(
        self, request: Request[Any, Any, Any], state: State, token: FromPath[str]
    ) -> Response[str]:
        """Unsubscribe (the mail client's one-click POST or the page's button); doing it
        again changes nothing."""
        return await self._answer(request, state, token, apply=True)

    async def _answer(
        self, request: Request[Any, Any, Any], state: State, token: str, *, apply: bool
    ) -> Response[str]:
        tokens: UnsubscribeTokens = state.unsubscribe_tokens
        try:
            claim = tokens.verify(token)
        except BadToken:
            return _html(pages.bad_token("en"), 400)
        async with tenant_transaction(state.pool, claim.brand_id) as conn:
            member = await conn.fetchrow(
                "SELECT email FROM approval_members WHERE user_id = $1", claim.client_id
            )
            current = await conn.fetchrow(
                "SELECT language, unsubscribed_from_all, unsubscribed_types FROM "
                "client_settings WHERE client_id = $1 FOR UPDATE",
                claim.client_id,
            )
            if member is None and current is None:
                return _html(pages.unknown("en"), 404)
            brand = await conn.fetchval(
                "SELECT name FROM approval_brands WHERE brand_id = $1", claim.brand_id
            )
            language = current["language"] if current is not None else "en"
            name = brand or "Pressroom"
            if not apply:
                return _html(pages.confirm(language, name, claim.type, request.url.path))
            already = current is not None and (
                current["unsubscribed_from_all"]
                or (claim.type is not None and claim.type in current["unsubscribed_types"])
            )
            if not already:
                now = state.clock()
                await conn.execute(
                    "INSERT INTO client_settings (brand_id, client_id, email, "
                    "unsubscribed_from_all, unsubscribed_types, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $6) "
                    "ON CONFLICT (brand_id, client_id) DO UPDATE SET "
                    "unsubscribed_from_all = client_settings.unsubscribed_from_all OR $4, "
                    "unsubscribed_types = CASE "
                    "WHEN $5::text[] <@ client_settings.unsubscribed_types "
                    "THEN client_settings.unsubscribed_types "
                    "ELSE client_settings.unsubscribed_types || $5::text[] END, updated_at = $6",
                    claim.brand_id,
                    claim.client_id,
                    member["email"] if member is not None else None,
                    claim.type is None,
                    [claim.type] if claim.type is not None else [],
                    now,
                )
                base = audit.actor_from_request(request, None)
                await audit.record(
                    conn,
                    brand_id=claim.brand_id,
                    actor=audit.Actor(claim.client_id, ip=base.ip, user_agent=base.user_agent),
                    action="unsubscribe",
                    at=now,
                    metadata={"type": claim.type or "all"},
                )
            return _html(pages.done(language, name, claim.type))


CONTROLLERS: list[Any] = [
    EscalationRuleController,
    ClientSettingsController,
    UnsubscribeController,
]
