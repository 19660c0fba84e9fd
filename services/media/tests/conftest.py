"""Fixtures of the media tests; helpers live in ``media_testkit``, ``media_samples`` and
``seaweed_testkit`` (unique module names, so no test imports another folder's conftest)."""

from seaweed_testkit import s3_server

__all__ = ["s3_server"]
