"""The whole money workflow in Django admin, driven in Debian's Chromium by two admins.

ada writes a deal (typing dollars), grace signs it; grace computes March, ada approves,
grace marks it paid; ada corrects the paid month with an adjustment, grace approves it, ada
pays it. Each step the other admin may not take is seen refused (a disabled button with its
reason). Then the ledger's balances, and alice's earnings page with both payouts.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.platform.delivery.browser import ARTIFACTS, CHROMIUM_FLAGS

pytestmark = pytest.mark.slow


def log_in(browser: Any, base: str, username: str, then: str) -> Any:
    """A page of a fresh browser context (its own cookies) logged in as ``username``."""
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    page.goto(f"{base}/admin/login/?next={then}")
    page.fill("#id_username", username)
    page.fill("#id_password", f"{username}-pw-1234")
    page.click("input[type=submit]")
    page.wait_for_url(f"**{then}")
    return page


def first_link(page: Any, base: str) -> str:
    """The first row's change page in an admin list, without the list's filters."""
    href = page.get_attribute("#result_list tbody th a", "href") or ""
    return base + href.split("?", 1)[0]


def messages(page: Any) -> list[str]:
    return [text.strip() for text in page.locator("ul.messagelist li").all_inner_texts()]


def test_two_admins_create_sign_compute_approve_pay_and_correct_in_chromium(
    alice, ada, grace, live_server
) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (./golive test installs it with apt)")
    # Inside the Playwright block the test reads ids from the pages, never the database:
    # Playwright's sync API runs in a greenlet, where Django would open (and leave open) a
    # connection of its own.
    from playwright.sync_api import sync_playwright

    from deals.models import Deal, LedgerEntry, Payout

    for day in range(1, 11):  # March 2025: 10 streams of 4 h, over the 40 h and 8 streams
        start = datetime(2025, 3, day, 18, tzinfo=UTC)
        alice.channel.sessions.create(started_at=start, ended_at=start + timedelta(hours=4))
    base = live_server.url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
        )
        ada_page = log_in(browser, base, "ada", "/admin/deals/deal/add/")
        grace_page = log_in(browser, base, "grace", "/admin/")
        for page in (ada_page, grace_page):
            page.on("pageerror", lambda error: errors.append(str(error)))

        # ada writes the deal. A third decimal is refused; dollars are dollars.
        page = ada_page
        page.click("#deal_form .field-streamer .select2-selection")
        page.fill(".select2-search__field", "ali")
        page.click(".select2-results__option:has-text('alice')")
        page.select_option("#id_currency", "USD")
        page.select_option("#id_kind", "flat")
        page.fill("#id_amount", "5000.005")
        page.fill("#id_starts_on", "2025-01-01")
        page.fill("#id_ends_on", "2025-12-31")
        page.fill("#id_min_hours", "40")
        page.fill("#id_min_streams", "8")
        page.click("input[name=_save]")
        assert "5000.005 has 3 decimals" in page.inner_text(".field-amount")
        page.screenshot(path=str(ARTIFACTS / "deals-deal-form.png"), full_page=True)
        page.fill("#id_amount", "5000.00")
        page.click("input[name=_save]")
        page.wait_for_url("**/admin/deals/deal/")
        assert any("another admin signs it" in text for text in messages(page))
        assert "$5,000.00 / month (unsigned)" in page.inner_text("#result_list")
        deal_url = first_link(page, base)
        page.goto(deal_url)
        assert "You wrote these terms: another admin must sign them." in page.inner_text(
            "#deal-signature"
        )
        assert page.locator("#deal-sign").count() == 0

        # grace signs it.
        page = grace_page
        page.goto(deal_url)
        page.click("#deal-sign")
        assert "flat monthly guarantee $5,000.00 a month" in page.inner_text("#sign-terms")
        page.screenshot(path=str(ARTIFACTS / "deals-sign.png"), full_page=True)
        page.click("#sign-confirm")
        page.wait_for_url(deal_url)
        assert any(text.startswith("Signed") for text in messages(page))

        # grace closes March.
        page.goto(f"{base}/admin/deals/payout/")
        page.click("text=Compute for a period")
        page.fill("#id_period", "2025-03")
        page.click("input[type=submit][value=Compute]")
        page.wait_for_url("**/admin/deals/payout/?period=2025-03")
        assert page.locator("ul.messagelist li.success").inner_text().strip() == (
            "Alice: computed $5,000.00 (requirements met)"
        )
        payout_url = first_link(page, base)
        page.goto(payout_url)
        assert page.is_disabled("#payout-approve")
        assert "another admin must approve it" in page.inner_text("#payout-workflow")

        # ada approves; then she may not pay what she approved.
        page = ada_page
        page.goto(payout_url)
        assert page.inner_text("#payout-approve") == "Approve $5,000.00"
        page.click("#payout-approve")
        page.wait_for_url(payout_url)
        assert any(text.startswith("Approved: $5,000.00") for text in messages(page))
        assert page.is_disabled("#payout-pay")
        page.screenshot(path=str(ARTIFACTS / "deals-payout-approved.png"), full_page=True)

        # grace marks it paid.
        page = grace_page
        page.goto(payout_url)
        page.fill("#payout-reference", "WIRE-2025-04-001")
        assert page.inner_text("#payout-pay") == "Mark paid $5,000.00"
        page.click("#payout-pay")
        page.wait_for_url(payout_url)
        assert "(paid)" in page.inner_text("#payout-workflow h2")

        # ada corrects the paid month: +$250.00, which grace approves and ada pays.
        page = ada_page
        page.goto(payout_url)
        page.click("#payout-correct")
        page.check("input[name=kind][value=adjustment]")
        page.fill("#id_amount", "250.00")
        page.fill("#id_reason", "two streams were recorded after the close")
        page.click("#correction-submit")
        page.wait_for_selector("#payout-workflow")
        correction_url = page.url
        assert correction_url != payout_url
        assert page.inner_text("#payout-workflow h2").startswith("Adjustment for 2025-03: +$250")
        assert page.is_disabled("#payout-approve")
        page = grace_page
        page.goto(correction_url)
        assert page.inner_text("#payout-approve") == "Approve +$250.00"
        page.click("#payout-approve")
        page.wait_for_url(correction_url)
        page = ada_page
        page.goto(correction_url)
        page.fill("#payout-reference", "WIRE-2025-04-077")
        page.click("#payout-pay")
        page.wait_for_url(correction_url)
        assert "(paid)" in page.inner_text("#payout-workflow h2")

        # The ledger, as either admin sees it.
        page.goto(f"{base}/admin/deals/ledgerentry/")
        balances = page.inner_text("#ledger-balances")
        page.screenshot(path=str(ARTIFACTS / "deals-ledger.png"), full_page=True)

        # alice's earnings.
        alice_page = browser.new_context().new_page()
        alice_page.on("pageerror", lambda error: errors.append(str(error)))
        alice_page.goto(f"{base}/accounts/login/?next=/earnings")
        alice_page.fill("#id_username", "alice")
        alice_page.fill("#id_password", "alice-pw-1234")
        alice_page.click("button[type=submit], input[type=submit]")
        alice_page.wait_for_url("**/earnings")
        earnings = alice_page.inner_text("main") if alice_page.locator("main").count() else \
            alice_page.inner_text("body")
        alice_page.screenshot(path=str(ARTIFACTS / "deals-earnings.png"), full_page=True)
        browser.close()

    assert errors == []
    assert "-$5,250.00" in balances  # cash
    assert "$0.00" in balances  # nothing left owed to streamers
    assert "Every transaction balances" in balances
    assert "$5,000.00" in earnings
    assert "+$250.00" in earnings
    assert "Paid (corrections included): $5,250.00" in earnings
    payout, correction = Payout.objects.get(kind="regular"), Payout.objects.get(kind="adjustment")
    assert Deal.objects.get().versions.get().amount_cents == 500_000
    assert (payout.computed_by, payout.approved_by, payout.paid_by) == (grace, ada, grace)
    assert (correction.computed_by, correction.approved_by, correction.paid_by) == (
        ada, grace, ada
    )
    assert LedgerEntry.objects.count() == 8
