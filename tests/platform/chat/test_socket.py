"""The chat socket through the real ASGI application (embedded mode: in-memory bus)."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)


def cookie_for(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def connect(slug: str, cookie: bytes | None = None, origin: bytes = b"http://testserver"):
    from golive.asgi import application

    headers = [(b"origin", origin), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    socket = WebsocketCommunicator(application, f"/ws/chat/{slug}", headers=headers)
    connected, code = await socket.connect(timeout=5)
    return socket, connected, code


async def next_of(socket, kind: str, timeout: float = 5.0) -> dict:  # noqa: ASYNC109
    while True:
        frame = json.loads(await socket.receive_from(timeout=timeout))
        if frame["t"] == kind:
            return frame


def test_anyone_reads_signed_in_viewers_write_and_everyone_sees_it(alice, charlie) -> None:
    charlie_cookie = cookie_for(charlie)

    async def scenario():
        anonymous, ok, _ = await connect(alice.channel.slug)
        assert ok
        hello = await next_of(anonymous, "hello")
        assert hello["user"] is None
        await next_of(anonymous, "history")
        writer, ok, _ = await connect(alice.channel.slug, charlie_cookie)
        assert ok
        assert (await next_of(writer, "hello"))["user"] == "charlie"
        await writer.send_to(text_data=json.dumps({"t": "send", "text": "<b>hi</b>", "nonce": "1"}))
        seen = await next_of(anonymous, "msg")
        own = await next_of(writer, "msg")
        await anonymous.send_to(text_data=json.dumps({"t": "send", "text": "me too", "nonce": "7"}))
        refused = await next_of(anonymous, "refused")
        # A late joiner gets the message in the history.
        late, _, _ = await connect(alice.channel.slug)
        history = await next_of(late, "history")
        for socket in (anonymous, writer, late):
            await socket.disconnect()
        return seen, own, refused, history

    seen, own, refused, history = asyncio.run(scenario())
    assert seen["text"] == "<b>hi</b>"
    assert seen == own
    assert refused["code"] == "sign_in"
    assert refused["nonce"] == "7"
    assert [m["text"] for m in history["messages"]] == ["<b>hi</b>"]


def test_a_page_of_another_site_cannot_open_a_chat_socket(alice) -> None:
    async def scenario():
        return await connect(alice.channel.slug, origin=b"http://evil.example")

    _, connected, code = asyncio.run(scenario())
    assert not connected
    assert code == 4403


def test_an_unknown_channel_has_no_chat(db) -> None:
    async def scenario():
        _, connected, code = await connect("nobody-here")
        return connected, code

    connected, code = asyncio.run(scenario())
    assert not connected
    assert code == 4404


def test_oversized_and_malformed_frames_are_refused_without_closing(alice, charlie) -> None:
    cookie = cookie_for(charlie)

    async def scenario():
        socket, _, _ = await connect(alice.channel.slug, cookie)
        await socket.send_to(text_data="x" * 5000)
        too_large = await next_of(socket, "refused")
        await socket.send_to(text_data="not json")
        malformed = await next_of(socket, "refused")
        await socket.send_to(text_data=json.dumps({"t": "send", "text": "still here"}))
        message = await next_of(socket, "msg")
        await socket.disconnect()
        return too_large, malformed, message

    too_large, malformed, message = asyncio.run(scenario())
    assert too_large["code"] == "too_large"
    assert malformed["code"] == "bad_request"
    assert message["text"] == "still here"
