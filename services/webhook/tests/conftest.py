"""Fixtures of the webhook tests; helpers live in ``webhook_testkit`` (a unique module name,
so test modules never import another folder's ``conftest``)."""

from webhook_testkit import topics

__all__ = ["topics"]
