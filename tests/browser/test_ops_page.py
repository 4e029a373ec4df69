"""The ``/ops`` page in a real browser (headless Chromium from Debian's ``chromium`` package,
driven through its ``chromium-driver``): with the real broker, PostgreSQL, stages and an API
process, a complaint POSTed during the test shows up on the open page without a reload, its
hostile id is shown as text and never becomes markup, a person acknowledges it on the page (an
error from the API is shown first), the API agrees, the customer drill-down shows the complaint
in the timeline as the alert's evidence, and a resolution made elsewhere takes the row away."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.pipeline import api_process, running_stages, touchpoint

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
HOSTILE = "<img src=x onerror=alert(1)>"  # a complaint id the gateway accepts: plain text


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"no {' or '.join(missing)}: install Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager never downloads a browser
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1500,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


async def test_an_alert_arrives_live_is_shown_as_text_and_is_acknowledged_on_the_page(browser, settings):
    email = f"ops.{uuid.uuid4().hex[:6]}@example.com"
    async with running_stages(settings):
        with api_process(settings) as base:
            # the browser blocks: it runs in a thread while the stages run on this loop
            await asyncio.to_thread(use_the_page, browser, base, email)


ROWS = """return [...document.querySelectorAll('#alerts tbody tr.alert')].map((tr) => ({
  id: tr.dataset.alertId, status: tr.dataset.status, text: tr.textContent,
  reason: tr.querySelector('td.reason').textContent,
  reason_markup: tr.querySelector('td.reason').innerHTML}));"""


def rows(driver) -> list[dict]:
    return driver.execute_script(ROWS)


def text_of(driver, element_id: str) -> str:
    return driver.execute_script("const n = document.getElementById(arguments[0]); "
                                 "return n && !n.hidden ? n.textContent : '';", element_id)


def click(driver, css: str) -> None:
    """Click what ``css`` finds; found anew if a live update replaced it meanwhile."""
    WebDriverWait(driver, 5, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True)


def use_the_page(driver, base: str, email: str) -> None:
    wait = WebDriverWait(driver, 30, poll_frequency=0.1)
    driver.get(f"{base}/ops")
    assert "script-src 'nonce-" in httpx.get(f"{base}/ops").headers["content-security-policy"]
    wait.until(lambda d: d.execute_script("return document.body.dataset.stream") == "live")
    driver.execute_script("window.sameDocument = true")  # gone if the page were reloaded
    assert rows(driver) == []

    # a critical complaint, posted now: its alert arrives on the stream
    event = touchpoint("complaint", email=email, at=datetime.now(UTC), complaint_id=HOSTILE,
                       severity="critical", text=f"The parcel never came. {HOSTILE}")
    assert httpx.post(f"{base}/v1/touchpoints", json=event, timeout=10).status_code == 202
    row = wait.until(lambda d: next((r for r in rows(d) if HOSTILE in r["reason"]), None))
    assert driver.execute_script("return window.sameDocument") is True
    aid = row["id"]
    alert = httpx.get(f"{base}/v1/alerts/{aid}").json()
    assert row["reason"] == alert["reason"] == f"a critical complaint ({HOSTILE}) is open"
    assert "&lt;img" in row["reason_markup"]  # text, escaped: never an element
    assert driver.find_elements(By.TAG_NAME, "img") == []
    wait.until(lambda d: text_of(d, "count-severity-critical") == "1")
    assert text_of(driver, "count-active") == "1"

    # acting: without a name the page asks for one; the API's refusal is shown; then it is done
    click(driver, f'tr[data-alert-id="{aid}"] button.ack')
    assert "Enter your name" in text_of(driver, "error")
    driver.find_element(By.ID, "who").send_keys("Ana Ops")
    driver.execute_script("document.getElementById('note').value = 'x'.repeat(2001)")
    click(driver, f'tr[data-alert-id="{aid}"] button.ack')
    refused = wait.until(lambda d: "HTTP 422" in text_of(d, "error") and text_of(d, "error"))
    assert "note" in refused
    driver.execute_script("document.getElementById('note').value = 'calling them'")
    click(driver, f'tr[data-alert-id="{aid}"] button.ack')
    wait.until(lambda d: [r["status"] for r in rows(d) if r["id"] == aid] == ["acknowledged"])
    shown = next(r for r in rows(driver) if r["id"] == aid)
    assert "acknowledged by Ana Ops" in shown["text"] and "calling them" in shown["text"]
    assert text_of(driver, "error") == ""
    assert driver.execute_script("return localStorage.getItem('touchstream.ops.by')") == "Ana Ops"
    now = httpx.get(f"{base}/v1/alerts/{aid}").json()
    assert (now["status"], now["acknowledged_by"], now["note"]) == ("acknowledged", "Ana Ops", "calling them")
    assert [h["kind"] for h in now["history"]] == ["opened", "acknowledged"]

    # the drill-down: the complaint in the timeline, highlighted as the alert's evidence
    click(driver, f'tr[data-alert-id="{aid}"] td.reason')
    complaint = f"Complaint {HOSTILE} filed (critical, delivery)"
    wait.until(lambda d: complaint in text_of(d, "customer-timeline"))
    assert driver.execute_script(
        "return document.querySelector(`#customer-timeline tr[data-event-id='${arguments[0]}']`)"
        ".classList.contains('evidence')", event["event_id"])
    assert alert["reason"] in text_of(driver, "customer-alerts")
    assert email in text_of(driver, "customer-profile")

    # resolved by someone else: the row leaves the active list, the counts follow
    r = httpx.post(f"{base}/v1/alerts/{aid}/resolve", json={"by": "Bo"}, timeout=10)
    assert r.status_code == 200, r.text
    wait.until(lambda d: rows(d) == [] and text_of(d, "count-active") == "0")
    assert "resolved by Bo" in text_of(driver, "activity")
    assert driver.find_elements(By.TAG_NAME, "img") == []
    assert driver.execute_script("return window.sameDocument") is True

    refused_by_policy = [e["message"] for e in driver.get_log("browser")
                         if "Content Security Policy" in e["message"] or "Trusted" in e["message"]]
    assert refused_by_policy == []
