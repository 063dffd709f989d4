"""The chat's write path: who may write what, and every refusal's reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.actions import follow
from chat import actions
from chat.limits import Limits, MemoryLimiter
from chat.models import Message, ModerationEvent

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def room(alice):
    return actions.find_room(alice.channel.slug)


@pytest.fixture
def limiter():
    return MemoryLimiter(Clock())


def test_a_signed_in_viewer_posts_and_the_text_is_kept_as_written(room, charlie, limiter) -> None:
    event = actions.post_message(room, charlie, "<script>alert(1)</script>", limiter)
    assert event["t"] == "msg"
    assert event["text"] == "<script>alert(1)</script>"  # the page draws it as text
    assert event["user"] == "charlie"
    assert Message.objects.get().text == "<script>alert(1)</script>"


def test_anonymous_visitors_cannot_post(room, limiter) -> None:
    from django.contrib.auth.models import AnonymousUser

    refused = actions.post_message(room, AnonymousUser(), "hi", limiter)
    assert isinstance(refused, actions.Refused)
    assert refused.code == "sign_in"


def test_messages_are_at_most_500_characters(room, charlie, limiter) -> None:
    assert actions.post_message(room, charlie, "x" * 500, limiter)["t"] == "msg"
    refused = actions.post_message(room, charlie, "x" * 501, limiter)
    assert refused.code == "too_long"
    assert "500" in refused.reason


def test_control_and_bidi_characters_are_removed_and_blank_is_refused(room, charlie, limiter):
    event = actions.post_message(room, charlie, "a\u202eb\u0000c", limiter)
    assert event["text"] == "abc"
    assert actions.post_message(room, charlie, " \u200f\u202e ", limiter).code in {"empty"}


def test_a_viewer_may_send_20_messages_per_30_seconds(room, charlie, limiter) -> None:
    for n in range(20):
        limiter._clock.now += 0.5  # under the room's cap of 10 a second
        assert actions.post_message(room, charlie, f"m{n}", limiter)["t"] == "msg"
    refused = actions.post_message(room, charlie, "one more", limiter)
    assert refused.code == "rate_limited"
    assert refused.retry_after > 0


def test_the_streamer_may_send_more_than_a_viewer(room, alice, limiter) -> None:
    for n in range(50):
        assert actions.post_message(room, alice.user, f"m{n}", limiter)["t"] == "msg"


def test_a_timed_out_user_is_refused_with_the_reason_and_time_left(room, alice, charlie, limiter):
    purge = actions.timeout_user(room, alice.user, "charlie", 600, "spoilers")
    assert purge == {"t": "purge", "user": "charlie", "kind": "timeout", "seconds": 600,
                     "reason": "spoilers"}
    refused = actions.post_message(room, charlie, "hello?", limiter)
    assert refused.code == "timed_out"
    assert "timed out" in refused.reason
    assert "spoilers" in refused.reason
    assert 590 < refused.retry_after <= 600


def test_a_timeout_ends_by_itself_and_a_ban_only_when_lifted(room, alice, charlie, limiter):
    actions.timeout_user(room, alice.user, "charlie", 1, "")
    from chat.models import Restriction

    Restriction.objects.update(until=timezone.now() - timedelta(seconds=1))
    assert actions.post_message(room, charlie, "back", limiter)["t"] == "msg"
    actions.ban_user(room, alice.user, "charlie", "rude")
    refused = actions.post_message(room, charlie, "again", limiter)
    assert refused.code == "banned"
    assert "rude" in refused.reason
    actions.lift_restrictions(room, alice.user, "charlie")
    assert actions.post_message(room, charlie, "sorry", limiter)["t"] == "msg"


def test_only_the_streamer_moderators_and_staff_moderate(room, alice, charlie, ada, limiter):
    from django.contrib.auth import get_user_model

    eve = get_user_model().objects.create_user("eve", password="x")
    message = actions.post_message(room, eve, "hi", limiter)
    assert actions.delete_message(room, charlie, message["id"]).code == "not_moderator"
    assert actions.add_moderator(room, charlie, "charlie").code == "not_streamer"
    assert actions.add_moderator(room, alice.user, "charlie") is None
    assert actions.delete_message(room, charlie, message["id"]) == {"t": "del", "id": message["id"]}
    assert Message.objects.get(pk=message["id"]).deleted_at is not None
    # A moderator cannot act on the streamer, or on staff.
    assert actions.timeout_user(room, charlie, "alice", 60).code == "protected"
    assert actions.ban_user(room, charlie, "ada").code == "protected"
    assert actions.ban_user(room, ada, "eve")["t"] == "purge"
    assert set(ModerationEvent.objects.values_list("action", flat=True)) == {"mod", "delete", "ban"}


def test_deleted_and_purged_messages_leave_the_history(room, alice, charlie, limiter) -> None:
    first = actions.post_message(room, charlie, "one", limiter)
    actions.post_message(room, alice.user, "two", limiter)
    actions.delete_message(room, alice.user, first["id"])
    assert [m["text"] for m in actions.recent_messages(room)] == ["two"]
    actions.post_message(room, charlie, "three", limiter)
    actions.ban_user(room, alice.user, "charlie")
    assert [m["text"] for m in actions.recent_messages(room)] == ["two"]


def test_history_is_the_last_50_in_order(room, alice, limiter) -> None:
    for n in range(60):
        actions.post_message(room, alice.user, f"m{n}", limiter)
    history = actions.recent_messages(room)
    assert len(history) == 50
    assert history[0]["text"] == "m10"
    assert history[-1]["text"] == "m59"
    assert history[-1]["role"] == "streamer"


def test_slow_mode_makes_viewers_wait_but_not_moderators(room, alice, charlie, limiter) -> None:
    assert actions.set_modes(room, alice.user, slow_seconds=30)["slow"] == 30
    assert actions.post_message(room, charlie, "first", limiter)["t"] == "msg"
    refused = actions.post_message(room, charlie, "second", limiter)
    assert refused.code == "slow_mode"
    assert "30 s" in refused.reason
    limiter._clock.now += 31
    assert actions.post_message(room, charlie, "third", limiter)["t"] == "msg"
    assert actions.post_message(room, alice.user, "a", limiter)["t"] == "msg"
    assert actions.post_message(room, alice.user, "b", limiter)["t"] == "msg"


def test_followers_only_mode_needs_a_follow_old_enough(room, alice, charlie, limiter) -> None:
    actions.set_modes(room, alice.user, followers_only_minutes=10)
    assert actions.post_message(room, charlie, "hi", limiter).code == "followers_only"
    follow(charlie, alice.channel)
    refused = actions.post_message(room, charlie, "hi", limiter)
    assert refused.code == "followers_only"
    assert "10" in refused.reason
    from accounts.models import Follow

    Follow.objects.update(created_at=timezone.now() - timedelta(minutes=11))
    assert actions.post_message(room, charlie, "hi", limiter)["t"] == "msg"
    actions.set_modes(room, alice.user, followers_only_minutes=None)
    assert actions.room_state(room)["followers"] is None


def test_account_age_mode_refuses_new_accounts(room, alice, charlie, limiter) -> None:
    actions.set_modes(room, alice.user, account_age_minutes=60)
    refused = actions.post_message(room, charlie, "hi", limiter)
    assert refused.code == "account_age"
    charlie.date_joined = timezone.now() - timedelta(hours=2)
    charlie.save()
    assert actions.post_message(room, charlie, "hi", limiter)["t"] == "msg"


def test_the_room_cap_samples_messages_past_ten_a_second(room, django_user_model) -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    users = [django_user_model.objects.create_user(f"v{n}", password="x") for n in range(40)]
    # One second of 40 senders: the first ten pass, the rest are told the room is busy.
    results = [actions.post_message(room, user, "hey", limiter) for user in users]
    passed = [r for r in results if isinstance(r, dict)]
    assert len(passed) == 10
    assert {r.code for r in results if isinstance(r, actions.Refused)} == {"room_busy"}
    # The next second samples: about cap / previous of every message, never over the cap.
    clock.now += 1
    passed_next = [
        r for r in (actions.post_message(room, user, "again", limiter) for user in users[:20])
        if isinstance(r, dict)
    ]
    assert len(passed_next) <= 10


def test_modes_refuse_values_out_of_range(room, alice) -> None:
    assert actions.set_modes(room, alice.user, slow_seconds=99999).code == "bad_value"
    assert actions.timeout_user(room, alice.user, "nobody", 0).code == "bad_value"
    assert actions.timeout_user(room, alice.user, "nobody", 10).code == "not_found"


def test_the_room_limits_are_configurable(room, charlie) -> None:
    limiter = MemoryLimiter(Clock())
    limits = Limits(viewer_limit=2)
    assert actions.post_message(room, charlie, "a", limiter, limits)["t"] == "msg"
    assert actions.post_message(room, charlie, "b", limiter, limits)["t"] == "msg"
    assert actions.post_message(room, charlie, "c", limiter, limits).code == "rate_limited"
