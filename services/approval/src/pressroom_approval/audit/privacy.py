"""GDPR access and erasure for one data subject, within one brand.

A subject is named by a user id, ``client:<email>`` (a reviewer) or a bare email. What the
service holds about them, and where:

- ``audit_personal_data``: the email, IP, user agent and name of the entries they made
  (found by the keyed hash of their id, by their id, or by their email);
- ``approval_comments``: the author's email and name on their comments;
- ``review_links``: the reviewer's email and name on links sent to them;
- ``client_settings``: their preferences, with email and name;
- ``approval_members``: the email of a member (a copy of the gateway's membership);
- ``post_approvals``: actor ids (``author``, ``decided_by``...), personal only if one holds
  an email (reviewers are ``client:<link id>``, so normally none).

The chained audit rows and the event store hold no personal data by construction (ids and
pseudonyms only: ``audit.log``), so erasure never needs to change an append-only row and the
chain still verifies. Erasure is one transaction of plain UPDATEs and DELETEs on those
tables, recorded as a ``privacy.erased`` entry naming the subject by pseudonym only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from pressroom_approval.audit.entries import ENTRY_SELECT, entry
from pressroom_approval.audit.log import chained_actor_id, normalize_subject, pseudonym

ERASED_NAME = "erased"
# Free text of plain tables where an address may have been typed or quoted (a comment, an
# SMTP error): occurrences of the subject's emails are replaced by their pseudonym. (Text
# that reached the event store, a decision's comment or reason, cannot be changed.)
FREE_TEXT = (
    ("approval_comments", "body"),
    ("escalation_events", "last_error"),
    ("escalation_history", "detail"),
)


@dataclass
class Subject:
    given: str
    ids: set[str] = field(default_factory=set)  # actor ids, as recorded
    emails: set[str] = field(default_factory=set)  # lower case

    @property
    def refs(self) -> list[str]:
        return sorted({pseudonym(i) for i in self.ids})

    @property
    def id_list(self) -> list[str]:
        return sorted(self.ids)

    @property
    def email_list(self) -> list[str]:
        return sorted(self.emails)


async def _tables(conn: asyncpg.Connection) -> set[str]:
    """The other features' tables that exist (each feature's migration adds its own)."""
    rows = await conn.fetch(
        "SELECT t FROM unnest($1::text[]) t WHERE to_regclass(t) IS NOT NULL",
        ["approval_comments", "review_links", "client_settings", "approval_members"],
    )
    return {r["t"] for r in rows}


def _parse(given: str) -> Subject:
    subject = Subject(given=given)
    norm = normalize_subject(given)
    if norm.startswith("client:"):
        rest = norm[len("client:") :]
        subject.ids.add(norm)
        if "@" in rest:
            subject.emails.add(rest)
    elif "@" in norm:
        subject.emails.add(norm)
        subject.ids.add("client:" + norm)
    else:
        subject.ids.add(norm)
    return subject


async def resolve(conn: asyncpg.Connection, given: str) -> Subject:
    """The subject's ids and emails as the brand's data knows them: from the ids, the
    emails recorded with them; from the emails, the ids recorded with them (a reviewer's
    ``client:<link id>``, an account that used that address)."""
    subject = _parse(given)
    tables = await _tables(conn)
    emails = await conn.fetch(
        "SELECT lower(email) AS e FROM audit_personal_data "
        "WHERE (actor_ref = ANY($1) OR subject = ANY($2)) AND email IS NOT NULL",
        subject.refs,
        subject.id_list,
    )
    subject.emails |= {r["e"] for r in emails}
    if "approval_members" in tables:
        rows = await conn.fetch(
            "SELECT lower(email) AS e FROM approval_members "
            "WHERE user_id = ANY($1) AND email IS NOT NULL",
            subject.id_list,
        )
        subject.emails |= {r["e"] for r in rows}
    if "client_settings" in tables:
        rows = await conn.fetch(
            "SELECT lower(email) AS e FROM client_settings "
            "WHERE client_id = ANY($1) AND email IS NOT NULL",
            subject.id_list,
        )
        subject.emails |= {r["e"] for r in rows}
    ids = await conn.fetch(
        "SELECT DISTINCT subject AS i FROM audit_personal_data WHERE lower(email) = ANY($1)",
        subject.email_list,
    )
    subject.ids |= {r["i"] for r in ids}
    if "review_links" in tables:
        rows = await conn.fetch(
            "SELECT 'client:' || id AS i FROM review_links WHERE lower(email) = ANY($1)",
            subject.email_list,
        )
        subject.ids |= {r["i"] for r in rows}
    if "client_settings" in tables:
        rows = await conn.fetch(
            "SELECT client_id AS i FROM client_settings WHERE lower(email) = ANY($1)",
            subject.email_list,
        )
        subject.ids |= {r["i"] for r in rows}
    subject.emails |= {e.lower() for e in subject.emails}
    return subject


PERSONAL_ROWS = """
SELECT p.audit_id FROM audit_personal_data p
WHERE p.actor_ref = ANY($1) OR p.subject = ANY($2) OR lower(p.email) = ANY($3)
"""


async def export(conn: asyncpg.Connection, subject: Subject) -> dict[str, Any]:
    """Everything the brand holds about ``subject``: its audit entries with their personal
    data, its comments, other people's comments quoting its address (``mentions``), review
    links, client settings and memberships."""
    tables = await _tables(conn)
    args = (subject.refs, subject.id_list, subject.email_list)
    rows = await conn.fetch(
        f"{ENTRY_SELECT} WHERE actor_ref = ANY($1) OR id IN ({PERSONAL_ROWS}) ORDER BY seq",
        *args,
    )
    out: dict[str, Any] = {
        "subject": subject.given,
        "ids": subject.id_list,
        "emails": subject.email_list,
        "audit_entries": [entry(r).model_dump(mode="json") for r in rows],
    }
    queries = {
        "comments": (
            "approval_comments",
            "SELECT id, approval_id, author_id, author_email, author_name, body, created_at "
            "FROM approval_comments WHERE author_id = ANY($2) OR lower(author_email) = ANY($3) "
            "ORDER BY created_at, id",
        ),
        "mentions": (
            "approval_comments",
            "SELECT id, approval_id, author_id, body, created_at FROM approval_comments "
            "WHERE NOT (author_id = ANY($2) OR coalesce(lower(author_email) = ANY($3), false)) "
            "AND EXISTS (SELECT 1 FROM unnest($4::text[]) e WHERE body ~* e) "
            "ORDER BY created_at, id",
        ),
        "review_links": (
            "review_links",
            "SELECT id, approval_id, name, email, created_at, expires_at, revoked_at, used_at, "
            "used_decision FROM review_links "
            "WHERE ('client:' || id) = ANY($2) OR lower(email) = ANY($3) ORDER BY created_at, id",
        ),
        "client_settings": (
            "client_settings",
            "SELECT * FROM client_settings WHERE client_id = ANY($2) OR lower(email) = ANY($3) "
            "ORDER BY client_id",
        ),
        "memberships": (
            "approval_members",
            "SELECT user_id, email, role, updated_at FROM approval_members "
            "WHERE user_id = ANY($2) OR lower(email) = ANY($3) ORDER BY user_id",
        ),
    }
    patterns = [_pattern(e) for e in subject.email_list]
    for key, (table, sql) in queries.items():
        if table in tables:
            sql = sql.replace("$2", "$1").replace("$3", "$2").replace("$4", "$3")
            params = [*args[1:], patterns] if "$3" in sql else list(args[1:])
            found = await conn.fetch(sql, *params)
            out[key] = [_jsonable(dict(r)) for r in found]
        else:
            out[key] = []
    return out


# What may continue an address on either side: a character of a local part before it, a
# character of a domain (or a dot and another label) after it. ``ann@x.org`` is not in
# ``joann@x.org`` nor in ``ann@x.org.uk``; it is in ``<ann@x.org>`` and ``ann@x.org.``.
_BEFORE = "(?<![[:alnum:].!#$%&'*+/=?^_`{|}~-])"
_AFTER = "(?![[:alnum:]_-]|[.][[:alnum:]])"


def _pattern(email: str) -> str:
    """A case-insensitive regular expression matching ``email`` literally and whole, never
    as part of a longer address (PostgreSQL's AREs take a backslash before any
    non-alphanumeric character as that character)."""
    return _BEFORE + "".join(c if c.isalnum() else "\\" + c for c in email) + _AFTER


async def _scrub_free_text(conn: asyncpg.Connection, emails: list[str]) -> int:
    if not emails:
        return 0
    present = await conn.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND (table_name, column_name) IN "
        "(SELECT * FROM unnest($1::text[], $2::text[]))",
        [t for t, _ in FREE_TEXT],
        [c for _, c in FREE_TEXT],
    )
    total = 0
    for column in present:
        table, name = column["table_name"], column["column_name"]
        as_text = f"{name}::text" if column["data_type"] in ("json", "jsonb") else name
        back = f"::{column['data_type']}" if as_text != name else ""
        for email in emails:
            total += int(
                (
                    await conn.execute(
                        f"UPDATE {table} SET {name} = regexp_replace({as_text}, $1, $2, 'gi')"
                        f"{back} WHERE {as_text} ~* $1",
                        _pattern(email),
                        "~" + pseudonym(email)[:20],
                    )
                ).rsplit(" ", 1)[-1]
            )
    return total


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if v is None or isinstance(v, (str, int, bool, float, list, dict)) else str(v)
        for k, v in row.items()
    }


async def erase(conn: asyncpg.Connection, subject: Subject) -> dict[str, int]:
    """Remove the subject's personal data from the brand's tables, in the caller's
    transaction; returns how many rows each step changed. Ids that hold an email are
    replaced by their pseudonym (``client:~...``), the form the audit chain uses."""
    tables = await _tables(conn)
    ids, emails = subject.id_list, subject.email_list
    counts: dict[str, int] = {}

    def changed(status: str) -> int:
        return int(status.rsplit(" ", 1)[-1])

    counts["audit_personal_data"] = changed(
        await conn.execute(
            f"DELETE FROM audit_personal_data WHERE audit_id IN ({PERSONAL_ROWS})",
            subject.refs,
            ids,
            emails,
        )
    )
    with_email = [i for i in ids if "@" in i]
    pseudonyms = [chained_actor_id(i) for i in with_email]
    if "approval_comments" in tables:
        counts["approval_comments"] = changed(
            await conn.execute(
                """UPDATE approval_comments
                   SET author_email = NULL, author_name = $3,
                       author_id = coalesce(
                           (SELECT p FROM unnest($4::text[], $5::text[]) AS m(i, p)
                            WHERE m.i = author_id), author_id)
                   WHERE author_id = ANY($1) OR lower(author_email) = ANY($2)""",
                ids,
                emails,
                ERASED_NAME,
                with_email,
                pseudonyms,
            )
        )
    if "review_links" in tables:
        counts["review_links"] = changed(
            await conn.execute(
                "UPDATE review_links SET email = NULL, name = $3 "
                "WHERE ('client:' || id) = ANY($1) OR lower(email) = ANY($2)",
                ids,
                emails,
                ERASED_NAME,
            )
        )
    if "client_settings" in tables:
        # A client whose id is an address keeps no row: the id itself is the personal data.
        deleted = changed(
            await conn.execute(
                "DELETE FROM client_settings WHERE client_id LIKE '%@%' "
                "AND (client_id = ANY($1) OR lower(client_id) = ANY($2) "
                "OR lower(email) = ANY($2))",
                ids,
                emails,
            )
        )
        counts["client_settings"] = deleted + changed(
            await conn.execute(
                "UPDATE client_settings SET email = NULL, name = NULL "
                "WHERE client_id = ANY($1) OR lower(email) = ANY($2)",
                ids,
                emails,
            )
        )
    if "approval_members" in tables:
        counts["approval_members"] = changed(
            await conn.execute(
                "UPDATE approval_members SET email = NULL "
                "WHERE user_id = ANY($1) OR lower(email) = ANY($2)",
                ids,
                emails,
            )
        )
    counts["free_text"] = await _scrub_free_text(conn, emails)
    if with_email:
        total = 0
        for column in ("author", "submitted_by", "decided_by"):
            total += changed(
                await conn.execute(
                    f"""UPDATE post_approvals SET {column} =
                           (SELECT p FROM unnest($1::text[], $2::text[]) AS m(i, p)
                            WHERE m.i = {column})
                        WHERE {column} = ANY($1)""",
                    with_email,
                    pseudonyms,
                )
            )
        counts["post_approvals"] = total
    return counts
