"""Viewer accounts: sign up, sign in and out, password reset by mail, following."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from accounts.models import Follow

pytestmark = pytest.mark.django_db


def test_a_viewer_signs_up_and_is_signed_in(client) -> None:
    response = client.post("/accounts/signup/", {
        "username": "dora", "email": "dora@example.com",
        "password1": "a-long-pass-phrase-9", "password2": "a-long-pass-phrase-9",
    })
    assert response.status_code == 302
    page = client.get("/")
    assert 'id="nav-user">dora<' in page.content.decode()
    assert "Sign out" in page.content.decode()


def test_sign_up_refuses_an_address_already_used(client, charlie) -> None:
    charlie.email = "c@example.com"
    charlie.save()
    response = client.post("/accounts/signup/", {
        "username": "other", "email": "C@example.com",
        "password1": "a-long-pass-phrase-9", "password2": "a-long-pass-phrase-9",
    })
    assert response.status_code == 200
    assert "An account with this address exists" in response.content.decode()


def test_the_sign_in_page_is_the_sites_own_styled_form(client) -> None:
    page = client.get("/accounts/login/").content.decode()
    assert "golive.css" in page
    assert 'class="card auth"' in page
    assert "Forgot your password?" in page
    assert "/accounts/signup/" in page


def test_a_signed_in_user_signs_out_from_the_navigation(client, charlie) -> None:
    client.force_login(charlie)
    page = client.get("/").content.decode()
    assert 'action="/accounts/logout/"' in page
    client.post("/accounts/logout/")
    assert "Sign in" in client.get("/").content.decode()


def test_password_reset_mails_a_link_that_sets_a_new_password(client, charlie) -> None:
    charlie.email = "charlie@example.com"
    charlie.save()
    response = client.post("/accounts/password/reset/", {"email": "charlie@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"http://[^/]+(/accounts/password/reset/\S+/)", mail.outbox[0].body)
    assert link
    form = client.get(link.group(1), follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(form.redirect_chain[-1][0], {
        "new_password1": "brand-new-phrase-42", "new_password2": "brand-new-phrase-42",
    })
    assert done.status_code == 302
    assert client.login(username="charlie", password="brand-new-phrase-42")


def test_following_and_unfollowing_a_channel(client, charlie, alice) -> None:
    client.force_login(charlie)
    client.post(f"/c/{alice.channel.slug}/follow", {"follow": "1"})
    client.post(f"/c/{alice.channel.slug}/follow", {"follow": "1"})  # idempotent
    assert Follow.objects.filter(user=charlie, channel=alice.channel).count() == 1
    assert "Following" in client.get(f"/c/{alice.channel.slug}").content.decode()
    client.post(f"/c/{alice.channel.slug}/follow", {"follow": "0"})
    assert not Follow.objects.filter(user=charlie).exists()


def test_following_needs_a_signed_in_user(client, alice) -> None:
    response = client.post(f"/c/{alice.channel.slug}/follow", {"follow": "1"})
    assert "/accounts/login/" in response["Location"]
    assert not Follow.objects.exists()


def test_favicon_ico_leads_to_the_sites_icon(client) -> None:
    from django.contrib.staticfiles import finders

    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.svg"
    icon = finders.find("favicon.svg")
    assert icon
    with open(icon, "rb") as file:
        assert b"<svg" in file.read()
    assert 'rel="icon"' in client.get("/").content.decode()
