"""The sandbox's insights through the adapter: deterministic, and moved by what the account
published (a post's day is its best, then it fades; followers grow with posts)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pressroom_publishing.platforms.base import PostContent, PublishRequest, RejectedError
from pressroom_publishing.sandbox.state import day_of
from sandbox_testkit import SandboxEnv, sandbox_env

pytestmark = pytest.mark.integration

DAY = 24 * 3600


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[SandboxEnv]:
    async with sandbox_env() as shared:
        yield shared


@pytest.fixture(autouse=True)
def _fresh(env: SandboxEnv) -> None:
    env.fresh()


def request(text: str) -> PublishRequest:
    post_id = uuid.uuid4()
    return PublishRequest(post_id=post_id, reference=str(post_id), content=PostContent(text=text))


async def test_insights_are_deterministic_and_follow_the_posts(env: SandboxEnv):
    await env.client.settings(token_lifetime_s=30 * DAY)  # days pass in this test
    platform = env.platform()
    credentials = await env.connect("metrics-account")
    start = day_of(env.clock())
    env.clock.advance(DAY)  # a quiet day first
    post = await platform.publish(credentials, request("launch day"))
    env.clock.advance(3 * DAY)
    today = day_of(env.clock())

    report = await platform.fetch_metrics(
        credentials, start, today + timedelta(days=5), [post.platform_post_id, "404404"]
    )
    assert report == await platform.fetch_metrics(
        credentials, start, today + timedelta(days=5), [post.platform_post_id, "404404"]
    )
    days = [d.day for d in report.account]
    assert days == [start + timedelta(days=n) for n in range(5)]  # nothing after today
    quiet, launch, *after = report.account
    assert launch.followers > quiet.followers
    assert launch.impressions > quiet.impressions
    assert launch.impressions > after[0].impressions > after[1].impressions

    per_post = report.posts
    assert [m.day for m in per_post] == days[1:]
    assert {m.platform_post_id for m in per_post} == {post.platform_post_id}
    first, second, *_ = per_post
    assert first.impressions > second.impressions > 0
    assert first.engagement == first.likes + first.comments + first.shares
    assert 0 < first.reach <= first.impressions


async def test_another_account_has_other_numbers_and_no_access_to_the_posts(env: SandboxEnv):
    platform = env.platform()
    alice = await env.connect("alice")
    bob = await env.connect("bob")
    post = await platform.publish(alice, request("alice's"))
    today = day_of(env.clock())
    mine = await platform.fetch_metrics(alice, today, today, [post.platform_post_id])
    theirs = await platform.fetch_metrics(bob, today, today, [post.platform_post_id])
    assert len(mine.posts) == 1
    assert theirs.posts == []
    assert mine.account[0].followers != theirs.account[0].followers


async def test_more_posts_more_followers(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    today = day_of(env.clock())
    before = (await platform.fetch_metrics(credentials, today, today)).account[0]
    for n in range(3):
        await platform.publish(credentials, request(f"post {n}"))
    after = (await platform.fetch_metrics(credentials, today, today)).account[0]
    assert after.followers >= before.followers + 9
    assert after.impressions > before.impressions + 3 * 100


async def test_bad_windows_are_rejected(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    today = day_of(env.clock())
    with pytest.raises(RejectedError) as backwards:
        await platform.fetch_metrics(credentials, today, today - timedelta(days=1))
    assert backwards.value.status == 400
    with pytest.raises(RejectedError):
        await platform.fetch_metrics(credentials, today - timedelta(days=200), today)
    headers = {"Authorization": f"Bearer {credentials.access_token}"}
    for query in ("since=yesterday&until=2026-01-01", "until=2026-01-01", "since=2026-01-01"):
        async with env.session.get(
            f"{env.base_url}/v1/insights/account?{query}", headers=headers
        ) as answer:
            assert answer.status == 400
    async with env.session.get(
        f"{env.base_url}/v1/insights/posts?since={today}&until={today}", headers=headers
    ) as answer:
        assert answer.status == 400  # no ids


async def test_insight_failures_are_classified(env: SandboxEnv):
    platform = env.platform()
    credentials = await env.connect()
    today = day_of(env.clock())
    await env.client.fail("insights", "rate_limited", retry_after_s=60)
    from pressroom_publishing.platforms.base import TransientError

    with pytest.raises(TransientError) as limited:
        await platform.fetch_metrics(credentials, today, today)
    assert limited.value.retry_after_s == 60
