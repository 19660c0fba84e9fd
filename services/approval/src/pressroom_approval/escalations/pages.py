"""The unsubscribe pages (Jinja2, autoescaped) in the recipient's language."""

from __future__ import annotations

from pressroom_approval.escalations.delivery import TEMPLATES
from pressroom_approval.escalations.messages import words


def _page(language: str, message: str, *, action: str | None = None) -> str:
    w = words(language)
    return TEMPLATES.get_template("unsubscribe.html.j2").render(
        language=language,
        title=w["page_title"],
        message=message,
        action=action,
        button=w["page_button"],
    )


def confirm(language: str, brand: str, kind: str | None, action: str) -> str:
    w = words(language)
    text = (
        w["page_question_type"].format(type=kind, brand=brand)
        if kind
        else w["page_question_all"].format(brand=brand)
    )
    return _page(language, text, action=action)


def done(language: str, brand: str, kind: str | None) -> str:
    w = words(language)
    text = (
        w["page_done_type"].format(type=kind, brand=brand)
        if kind
        else w["page_done_all"].format(brand=brand)
    )
    return _page(language, text)


def bad_token(language: str) -> str:
    return _page(language, words(language)["page_bad"])


def unknown(language: str) -> str:
    return _page(language, words(language)["page_unknown"])
