"""A second sandbox-backed platform id (``sandbox_b``): the built-in sandbox under another id,
for a local stack or a test that posts to several platforms without any real one."""

from __future__ import annotations

import pytest
from pressroom_publishing.platforms import build_platforms, known_platform
from pressroom_publishing.platforms.sandbox import SandboxPlatform

pytestmark = pytest.mark.unit


def test_a_sandbox_alias_is_the_sandbox_under_its_own_id() -> None:
    built = build_platforms(
        None,  # type: ignore[arg-type]  # no call is made
        {
            "sandbox": {"api_url": "http://127.0.0.1:9/sandbox-platform"},
            "sandbox_b": {"adapter": "sandbox", "api_url": "http://127.0.0.1:9/sandbox-platform"},
        },
    )
    alias = built["sandbox_b"]
    assert isinstance(alias, SandboxPlatform)
    assert alias.id == "sandbox_b" and alias.capabilities.display_name == "Sandbox B"
    assert built["sandbox"].id == "sandbox"  # the original class is untouched
    assert "adapter" not in alias.config


@pytest.mark.parametrize(
    "configs",
    [
        {"facebook_b": {"adapter": "sandbox", "api_url": "http://x"}},  # not a sandbox_ id
        {"sandbox_b": {"adapter": "mastodon"}},  # aliases name the sandbox only
        {"sandbox_B!": {"adapter": "sandbox", "api_url": "http://x"}},
    ],
)
def test_only_sandbox_ids_may_name_another_adapter(configs: dict[str, dict[str, str]]) -> None:
    with pytest.raises(ValueError, match="sandbox"):
        build_platforms(None, configs)  # type: ignore[arg-type]


def test_known_platforms() -> None:
    assert known_platform("x") and known_platform("sandbox_b")
    assert not known_platform("sandbox_") and not known_platform("myspace")
