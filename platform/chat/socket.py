"""The chat WebSocket: ``/ws/chat/<slug>``. Anyone may read; signed-in users may write.

A plain ASGI application behind Channels' routing and auth middleware: a Channels consumer
would also register every socket with the channel layer and run a database clean-up
hand-off per message, neither of which fan-out through `chat.hub` needs.

Frames from the client (JSON, at most 2 KiB): ``{"t": "send", "text", "nonce"}``;
moderators also ``del`` (id), ``timeout`` (user, seconds, reason), ``ban`` (user,
reason), ``unban`` (user), ``modes`` (slow, followers, age, links). Frames to the client:
``hello``, ``history``, ``state``, ``msg``, ``del``, ``purge``, ``viewers``, ``refused``,
``notice``, ``ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from . import actions
from .hub import (
    SLOW_CLOSE_CODE,
    TRANSPORT_LIMIT,
    Hub,
    Subscriber,
    encode,
    get_hub,
    history_event,
)
from .service import database, limiter

log = logging.getLogger(__name__)

MAX_FRAME = 2048
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

find_room = database(actions.find_room)
role_of = database(actions.role_of)


def _post(room: actions.Room, user: Any, text: str) -> dict[str, object] | actions.Refused:
    return actions.post_message(room, user, text, limiter())


post = database(_post)


def _moderate(room: actions.Room, user: Any, frame: dict[str, Any]) -> Any:
    kind = frame.get("t")
    who = str(frame.get("user", ""))[:150]
    reason = str(frame.get("reason", ""))[:200]
    if kind == "del":
        return actions.delete_message(room, user, _int(frame.get("id")))
    if kind == "timeout":
        return actions.timeout_user(room, user, who, _int(frame.get("seconds", 600)), reason)
    if kind == "ban":
        return actions.ban_user(room, user, who, reason)
    if kind == "unban":
        return actions.lift_restrictions(room, user, who)
    if kind == "modes":
        followers = frame.get("followers", False)
        return actions.set_modes(
            room, user,
            slow_seconds=_int(frame["slow"]) if "slow" in frame else None,
            followers_only_minutes=(
                False if followers is False else None if followers is None else _int(followers)
            ),
            account_age_minutes=_int(frame["age"]) if "age" in frame else None,
            links_allowed=bool(frame["links"]) if "links" in frame else None,
        )
    return actions.Refused("Unknown request.", "bad_request")


moderate = database(_moderate)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def transport_buffer(send: Send) -> Callable[[], int]:
    """How many bytes the server holds for this socket, when the server lets us see it.

    Daphne's ``send`` is ``partial(server.handle_reply, protocol)`` and its writes never
    wait, so a slow reader's backlog grows in Twisted's transport instead of our queue.
    Anything else: 0 (a server whose ``send`` waits fills the queue instead)."""
    protocol = getattr(send, "args", (None,))[0]
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "dataBuffer"):
        return lambda: 0

    def size() -> int:
        return (
            len(transport.dataBuffer) - getattr(transport, "offset", 0)
            + getattr(transport, "_tempDataLen", 0)
        )

    return size


class ChatSocket:
    """One connection's life: accept, join the room, then read frames until it closes."""

    def __init__(self, hub_factory: Callable[[], Hub] = get_hub) -> None:
        self.hub_factory = hub_factory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        slug = scope["url_route"]["kwargs"]["slug"]
        user = scope.get("user")
        room = await find_room(slug)
        if room is None:
            await send({"type": "websocket.close", "code": 4404})
            return
        # AuthMiddlewareStack's user: a signed-in one, AnonymousUser, or none at all.
        member = user if user is not None and user.is_authenticated else None
        signed_in = member is not None
        role = await role_of(room, user) if signed_in else actions.Role.VIEWER
        await send({"type": "websocket.accept"})
        hub = self.hub_factory()
        subscriber = Subscriber()
        state = await hub.join(slug, subscriber)
        subscriber.push(encode({
            "t": "hello", "user": member.get_username() if member is not None else None,
            "role": role,
            "moderator": role in actions.MODERATING,
        }))
        subscriber.push(encode(history_event(state)))
        if state.state:
            subscriber.push(encode(state.state))
        if state.viewers >= 0:
            subscriber.push(encode({"t": "viewers", "n": state.viewers}))
        writer = asyncio.get_running_loop().create_task(
            self._write(subscriber, send, transport_buffer(send))
        )
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message["type"] != "websocket.receive":
                    continue
                text = message.get("text") or ""
                if message.get("bytes") or len(text) > MAX_FRAME:
                    subscriber.push(encode(actions.Refused(
                        "That request is too large.", "too_large").as_event()))
                    continue
                if not signed_in:
                    subscriber.push(encode(actions.Refused("Sign in to chat.", "sign_in")
                                           .as_event(_nonce(text))))
                    continue
                await self._handle(hub, room, user, text, subscriber)
        finally:
            await hub.leave(slug, subscriber)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _handle(
        self, hub: Hub, room: actions.Room, user: Any, text: str, subscriber: Subscriber
    ) -> None:
        try:
            frame = json.loads(text)
            if not isinstance(frame, dict):
                raise ValueError
        except ValueError:
            subscriber.push(encode(actions.Refused("Not a chat request.", "bad_request")
                                   .as_event()))
            return
        nonce = str(frame.get("nonce", ""))[:32]
        try:
            if frame.get("t") == "send":
                result = await post(room, user, str(frame.get("text", "")))
            else:
                result = await moderate(room, user, frame)
        except Exception:
            log.exception("chat request failed in %s", room.slug)
            result = actions.Refused("Something went wrong; try again.", "error")
        if isinstance(result, actions.Refused):
            subscriber.push(encode(result.as_event(nonce)))
        elif isinstance(result, dict):
            if result.get("t") == "notice":
                subscriber.push(encode(result))
            else:
                await hub.publish(room.slug, result)
            if nonce:
                subscriber.push(encode({"t": "ok", "nonce": nonce}))

    async def _write(self, subscriber: Subscriber, send: Send, buffered: Callable[[], int]) -> None:
        queue = subscriber.queue
        while True:
            await subscriber.wake.wait()
            subscriber.wake.clear()
            while queue:
                await send({"type": "websocket.send", "text": queue.popleft()})
            if subscriber.dropped or buffered() > TRANSPORT_LIMIT:
                subscriber.drop()
                log.info("chat: closed a socket that could not keep up")
                await send({"type": "websocket.close", "code": SLOW_CLOSE_CODE})
                return


def _nonce(text: str) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(text).get("nonce", ""))[:32]
    return ""
