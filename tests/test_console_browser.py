"""The console in a real browser: headless Chromium (the system's chromium and chromedriver, driven by
Selenium) against a gateway on 127.0.0.1 over the embedded services.

Screenshots at 1280x800 and 390x844 are written under test-artifacts/ (ignored by git).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from analytics_rows import insert, record
from helpers import ADMIN_TOKEN, admin_headers, load_and_embed
from werkzeug.serving import make_server

from rollout.app import create_app
from rollout.controller import Action, Command
from rollout.services.ports import free_port

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
REFRESH_S = 1
PLAN = {"ROLLOUT_STAGES": "10,25,50,100", "ROLLOUT_MIN_STAGE_S": "60", "ROLLOUT_EVALUATION_INTERVAL_S": "30",
        "ROLLOUT_MIN_SAMPLES": "50", "ROLLOUT_MIN_SAMPLES_TO_ROLL_BACK": "20",
        "ROLLOUT_CONSOLE_REFRESH_S": str(REFRESH_S)}

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    if os.environ.get("CI") == "true":
        pytest.fail("chromium and chromium-driver must be installed in CI", pytrace=False)
    pytest.skip("the Debian packages chromium and chromium-driver are not installed", allow_module_level=True)


@pytest.fixture
def gateway(make_runtime):
    """The app on 127.0.0.1 in a thread, with a stage started and an hour of queries of both versions."""
    runtime = make_runtime(**PLAN)
    load_and_embed(runtime)
    runtime.coverage.refresh()
    app = create_app(runtime=runtime)
    started = time.time() - 3600
    runtime.stages.command(Command(Action.ADVANCE, actor="alice", reason="first stage"), now=started)
    rng = np.random.default_rng(13)
    # a day of queries: every minute before the stage, every 3 s during it; one in ten routed to the candidate
    moments = [started - 82800 + 60 * i for i in range(1380)] + [started + 1 + 3 * i for i in range(1190)]
    insert(runtime.pool, [
        record(logged_at=datetime.fromtimestamp(at, UTC), routed_version=version, served_version=version,
               latency_ms=float(rng.lognormal(np.log(46 if version == "v2" else 40), 0.3)),
               top_similarity=float(rng.beta(8, 2)), user_hash=f"{version}-{uuid.uuid4().hex[:8]}",
               other_version="v1" if version == "v2" else "v2", overlap=float(rng.uniform(0.5, 0.9)), rbo=0.7,
               top1_agreement=bool(i % 3), cache_hit=bool(rng.random() < 0.8), embed_tokens=int(rng.integers(5, 20)),
               other_embed_tokens=int(rng.integers(5, 20)))
        for i, at in enumerate(moments) for version in ("v2" if i % 10 == 0 else "v1",)])
    runtime.stages.evaluate(now=started + 3590)
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield runtime, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--lang=en-GB"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, predicate, timeout_s: float = 15):
    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(lambda d: predicate(d))


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def loaded(driver) -> bool:
    return text(driver, "updated").startswith("updated")


def full_page(driver, name: str, width: int, part_height: int = 1600) -> list[Path]:
    """The whole page at `width` in parts of `part_height`, for a person to look at (the viewport pictures
    show the first screen only)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600})
    driver.execute_script("document.querySelector('header.top').style.position = 'static'")  # not repeated
    height = driver.execute_script("return document.documentElement.scrollHeight")
    ARTIFACTS.mkdir(exist_ok=True)
    paths = []
    for number, top in enumerate(range(0, height, part_height), start=1):
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": {
            "x": 0, "y": top, "width": width, "height": min(part_height, height - top), "scale": 1}})
        paths.append(ARTIFACTS / f"{name}-{width}-full-{number}.png")
        paths[-1].write_bytes(base64.b64decode(shot["data"]))
    driver.execute_script("document.querySelector('header.top').style.position = ''")
    return paths


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver, name: str, width: int, height: int) -> Path:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)  # let the layout settle before the picture (not an assertion)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}-{width}x{height}.png"
    assert driver.save_screenshot(str(path))
    return path


def call(url: str, body: dict | None = None, cookies: dict | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    if cookies:
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def shown_percentage(driver) -> float:
    return float(text(driver, "now-percentage").removesuffix(" %"))


def browser_cookies(driver) -> dict:
    return {c["name"]: c["value"] for c in driver.get_cookies()}


def test_a_visitor_reads_the_rollout_and_the_numbers_are_the_apis(gateway, browser):
    _, url = gateway
    browser.get(f"{url}/console")
    wait(browser, loaded)
    status = call(f"{url}/api/rollout/status")[1]
    dashboard = call(f"{url}/api/monitoring/dashboard?range=24h")[1]
    assert shown_percentage(browser) == status["percentage"]
    assert text(browser, "now-status") == status["status"]
    assert text(browser, "summary") == status["summary"]
    for version in ("v1", "v2"):
        figures = dashboard["versions"][version]

        def cell(figure: str, version: str = version) -> str:
            return browser.find_element(By.CSS_SELECTOR, f'td[data-version="{version}"][data-figure="{figure}"]').text

        assert cell("requests") == f"{figures['requests']:,}"
        assert cell("p95_ms") == f"{figures['p95_ms']:.1f} ms"
        assert cell("p99_ms") == f"{figures['p99_ms']:.1f} ms"
        assert cell("mean_top_similarity") == f"{figures['mean_top_similarity']:.3f}"
    assert text(browser, "verdict") == dashboard["verdict"]
    coverage = call(f"{url}/api/monitoring/coverage")[1]["versions"]["v2"]
    shown = dict(browser.execute_script(  # in one go: the page refills the table every second
        "return [...document.querySelectorAll('#coverage tbody tr')].map((r) => [r.cells[0].innerText, r.innerText])"))
    assert set(shown) == set(coverage) and len(shown) > 1
    assert all(f"({c['embedded']}/{c['total']})" in shown[name] for name, c in coverage.items())
    gates = status["last_evaluation"]["gates"]
    assert browser.execute_script("return document.querySelectorAll('#gate-table tbody tr').length") == len(gates) > 0
    charts = browser.find_elements(By.CSS_SELECTOR, "#charts img")
    wait(browser, lambda d: all(d.execute_script("return arguments[0].naturalWidth", img) > 0 for img in charts))
    assert len(charts) == 10 and charts[-1].get_attribute("alt").startswith("cost")
    assert browser.find_elements(By.CSS_SELECTOR, "#gate-charts img"), "no gate band chart was drawn"
    for version in ("v1", "v2"):  # the cost rows: the local model's estimated tokens, at its price of 0
        tokens = browser.find_element(By.CSS_SELECTOR, f'td[data-version="{version}"][data-figure="embed_tokens"]')
        assert tokens.text == f"{dashboard['versions'][version]['embed_tokens']:,}" != "0"
        cost = browser.find_element(By.CSS_SELECTOR, f'td[data-version="{version}"][data-figure="cost_usd"]')
        assert cost.text == "$0"

    assert not browser.find_elements(By.ID, "controls") and not browser.find_elements(By.ID, "do-advance")
    history = call(f"{url}/api/history/decisions?limit=50")[1]["decisions"]
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#decisions li")) == len(history) > 0)
    evaluation = next(d for d in history if d["kind"] == "evaluation")
    item = browser.find_element(By.CSS_SELECTOR, f'#decisions li[data-id="{evaluation["id"]}"]')
    item.find_element(By.TAG_NAME, "summary").click()
    wait(browser, lambda d: item.find_elements(By.CSS_SELECTOR, "pre.evidence"))
    shown = json.loads(item.find_element(By.CSS_SELECTOR, "pre.evidence").text)
    assert shown["verdict"]["gates"] == call(f"{url}/api/history/decisions/{evaluation['id']}")[1]["verdict"]["gates"]
    wait(browser, lambda d: "alice" in text(d, "audit"))
    browser.find_element(By.ID, "decision-kind").send_keys("command")
    wait(browser, lambda d: {t.split(" ")[1] for t in d.execute_script(
        "return [...document.querySelectorAll('#decisions li')].map((li) => li.innerText)")} == {"command"})
    errors_svg = urllib.request.urlopen(f"{url}/console/charts/errors.svg?range=24h", timeout=10).read().decode()
    assert not re.search(r"\de-\d", errors_svg)  # every error rate is 0: round ticks, not 8e-07 %
    latency = urllib.request.urlopen(f"{url}/console/charts/gates/latency/p95_ratio.svg?range=24h",
                                     timeout=10).read().decode()
    assert "threshold 1.1" in latency  # 1 + ROLLOUT_LATENCY_MARGIN, as the gate registry names it
    cookies = browser_cookies(browser)
    assert call(f"{url}/api/rollout/stage", {"action": "advance"}, cookies)[0] == 401
    assert call(f"{url}/api/monitoring/circuit-breaker", {"action": "open"}, cookies)[0] == 401
    assert call(f"{url}/api/flags/audit", cookies=cookies)[0] == 401  # the full rows stay admin-only

    full_page(browser, "console-visitor", 1280)
    screenshot(browser, "console-visitor", 1280, 800)
    screenshot(browser, "console-visitor", 390, 844)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
    assert console_errors(browser) == []


def test_a_stage_change_through_the_api_appears_within_the_refresh_interval(gateway, browser):
    _, url = gateway
    browser.get(f"{url}/console")
    wait(browser, loaded)
    before = shown_percentage(browser)
    status, _ = call(f"{url}/api/rollout/stage", {"action": "set", "percentage": 50, "reason": "by the API"},
                        headers=admin_headers())
    assert status == 200 and before == 10
    wait(browser, lambda d: shown_percentage(d) == 50, timeout_s=3 * REFRESH_S + 2)
    assert "by the API" in text(browser, "now-decision")
    assert console_errors(browser) == []


def test_an_admin_logs_in_advances_and_sees_the_audit_row(gateway, browser, caplog):
    runtime, url = gateway
    caplog.set_level(logging.INFO)
    browser.get(f"{url}/console")
    wait(browser, loaded)
    browser.find_element(By.CSS_SELECTOR, "details.login summary").click()
    browser.find_element(By.ID, "login-token").send_keys(ADMIN_TOKEN)
    browser.find_element(By.ID, "login-name").send_keys("alice")
    browser.find_element(By.ID, "login-submit").click()
    wait(browser, lambda d: d.find_elements(By.ID, "controls"))
    wait(browser, loaded)
    assert text(browser, "actor") == "console:alice"
    assert ADMIN_TOKEN not in browser.current_url and ADMIN_TOKEN not in browser.page_source
    cookie = next(c for c in browser.get_cookies() if c["name"] == "rollout_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in cookie["value"]

    before = runtime.stages.status()["percentage"]
    browser.find_element(By.ID, "do-advance").click()
    assert "Advance from 10 % to 25 %" in text(browser, "confirm-text")
    browser.find_element(By.ID, "confirm-reason").send_keys("healthy for an hour")
    browser.find_element(By.ID, "confirm-yes").click()
    wait(browser, lambda d: "Decision #" in text(d, "result"))
    result = text(browser, "result")
    after = runtime.stages.status()
    assert after["percentage"] == 25.0 and before == 10.0
    decision = runtime.stages.decisions(1)[0]
    assert f"Decision #{decision['id']} by console:alice" in result and "healthy for an hour" in result
    audit = runtime.flag_audit.recent(1)[0]
    assert audit["actor"] == "console:alice" and "Flag audit: FF_NEW_EMBEDDINGS_PERCENTAGE 10 → 25" in result
    wait(browser, lambda d: f"#{decision['id']} command advance" in text(d, "decisions"))
    wait(browser, lambda d: "console:alice" in text(d, "audit"))

    cookies = browser_cookies(browser)
    status, body = call(f"{url}/api/rollout/stage", {"action": "hold"}, cookies)
    assert (status, body["error"]) == (403, "csrf_failed")
    assert runtime.stages.status()["status"] == after["status"]

    full_page(browser, "console-admin", 1280)
    full_page(browser, "console-admin", 390)
    screenshot(browser, "console-admin", 1280, 800)
    screenshot(browser, "console-admin", 390, 844)
    assert console_errors(browser) == []
    assert ADMIN_TOKEN not in caplog.text
