"""The console's access rules and data endpoints through the Flask test client (the browser tests are in
test_console_browser.py): cookie attributes, CSRF, read-only visitors, ROLLOUT_CONSOLE=off, and the figures
over time agreeing with the dashboard."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from analytics_rows import NOW, insert, record
from helpers import ADMIN_TOKEN, admin_headers, load_and_embed

from rollout.api.history import DECISION_FIELDS, FLAG_FIELDS
from rollout.app import create_app
from rollout.console.sessions import COOKIE


def csrf_of(page: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)


def login(client, name="alice", token=ADMIN_TOKEN) -> str:
    """Log in through the form; the admin session's CSRF token."""
    visitor = client.get("/console").get_data(as_text=True)
    response = client.post("/console/login", data={"token": token, "name": name, "csrf_token": csrf_of(visitor)})
    assert response.status_code == 303
    return csrf_of(client.get("/console").get_data(as_text=True))


def test_the_page_is_served_with_a_strict_policy_and_a_safe_cookie(client):
    response = client.get("/console")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    page = response.get_data(as_text=True)
    assert 'id="controls"' not in page and 'id="history"' in page and 'id="decision-kind"' in page
    assert "<script>" not in page and "http://" not in page.replace('xmlns="http://www.w3.org', "")
    for asset in ("console.js", "console.css", "favicon.svg"):
        assert client.get(f"/console/assets/{asset}").status_code == 200
    assert client.get("/console/assets/../app.py").status_code == 404


def test_the_cookie_is_secure_over_https(client):
    assert "Secure" in client.get("/console", base_url="https://localhost").headers["Set-Cookie"]


def test_a_visitor_cannot_act_and_a_wrong_token_does_not_log_in(client):
    client.get("/console")
    refused = client.post("/api/rollout/stage", json={"action": "advance"})
    assert refused.status_code == 401 and refused.get_json()["error"] == "unauthorized"
    assert client.get("/api/flags/audit").status_code == 401
    csrf = csrf_of(client.get("/console").get_data(as_text=True))
    wrong = client.post("/console/login", data={"token": "not-it", "csrf_token": csrf})
    assert wrong.headers["Location"].endswith("/console?login=failed")
    assert client.post("/api/rollout/stage", json={"action": "advance"}).status_code == 401
    no_csrf = client.post("/console/login", data={"token": ADMIN_TOKEN})
    assert no_csrf.headers["Location"].endswith("login=expired")
    assert 'id="controls"' not in client.get("/console").get_data(as_text=True)


def test_an_admin_acts_with_the_csrf_token_and_only_with_it(client, runtime, caplog):
    csrf = login(client, "alice")
    page = client.get("/console").get_data(as_text=True)
    assert 'id="controls"' in page and "console:alice" in page
    refused = client.post("/api/rollout/stage", json={"action": "advance", "reason": "go"})
    assert refused.status_code == 403 and refused.get_json()["error"] == "csrf_failed"
    assert runtime.stages.status()["percentage"] == 0
    wrong = client.post("/api/rollout/stage", json={"action": "advance"}, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    done = client.post("/api/rollout/stage", json={"action": "advance", "reason": "go"},
                       headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["decision"]["actor"] == "console:alice"
    assert runtime.flag_audit.recent(1)[0]["actor"] == "console:alice"
    assert client.get("/api/flags/audit").status_code == 200  # reads need no CSRF token
    assert ADMIN_TOKEN not in caplog.text


def test_logging_out_ends_the_admin_session(client):
    csrf = login(client)
    assert client.post("/console/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.post("/api/rollout/stage", json={"action": "advance"},
                       headers={"X-CSRF-Token": csrf}).status_code == 401


def test_a_session_signed_with_another_token_is_not_accepted(make_runtime, client):
    login(client)
    other = create_app(runtime=make_runtime(ROLLOUT_ADMIN_TOKEN="another-token")).test_client()
    other.set_cookie(COOKIE, client.get_cookie(COOKIE).value)
    assert other.get("/api/flags/audit").status_code == 401


def test_the_console_can_be_turned_off(make_runtime):
    app = create_app(runtime=make_runtime(ROLLOUT_CONSOLE="off"))
    client = app.test_client()
    assert client.get("/console").status_code == 404
    assert not [path for path in client.get("/openapi.json").get_json()["paths"] if path.startswith("/console")]
    assert client.post("/api/rollout/stage", json={"action": "advance"}).status_code == 401


def test_the_series_adds_up_to_the_dashboard(client, runtime):
    rows = [record(logged_at=NOW - timedelta(hours=h, minutes=m), routed_version=v,
                   served_version=None if (v == "v2" and m == 7) else v, latency_ms=10.0 + m + h,
                   error_kind="database" if (v == "v2" and m == 7) else None)
            for h in range(6) for m in range(0, 50, 7) for v in ("v1", "v2")]
    insert(runtime.pool, rows)
    dashboard = client.get("/api/monitoring/dashboard?range=24h").get_json()
    series = client.get("/api/monitoring/series?range=24h").get_json()
    assert series["step_s"] == 900
    for version in ("v1", "v2"):
        points = series["versions"][version]
        assert sum(p["requests"] for p in points) == dashboard["versions"][version]["requests"] == 48
        errors = sum(p["error_rate"] * p["requests"] for p in points)
        assert round(errors) == dashboard["versions"][version]["errors"]
    assert any(p["error_rate"] > 0 for p in series["versions"]["v2"]) and dashboard["versions"]["v2"]["errors"] == 6
    assert client.get("/api/monitoring/series?range=2d").status_code == 400


def test_charts_are_svg_drawn_from_the_series(client, runtime):
    insert(runtime.pool, [record(routed_version="v2", served_version="v2", latency_ms=123.0)])
    response = client.get("/console/charts/p95.svg?range=1h")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    svg = response.get_data(as_text=True)
    assert svg.startswith("<svg") and "v1 (baseline)" in svg and "v2 (candidate)" in svg and "<circle" in svg
    assert "<script" not in svg
    assert client.get("/console/charts/nothing.svg").status_code == 404
    assert client.get("/console/charts/p95.svg?range=1y").status_code == 400


def test_gate_history_comes_from_stored_evaluations(client, runtime):
    assert client.get("/api/rollout/gates").get_json()["evaluations"] == []
    client.post("/api/rollout/stage", json={"action": "advance"}, headers=admin_headers())
    [evaluation] = runtime.stages.evaluate(now=runtime.stages.store.read().state.stage_started_at + 1)
    history = client.get("/api/rollout/gates?range=1h").get_json()
    [stored] = history["evaluations"]
    assert stored["id"] == evaluation["id"] and stored["action"] == evaluation["action"]
    assert stored["gates"] == runtime.stages.store.decision(evaluation["id"])["verdict"]["gates"]
    assert stored["gates"] and all("values" in g and "thresholds" in g for g in stored["gates"])
    assert client.get("/console/charts/gates/latency/p95_ratio.svg?range=1h").status_code == 200


def test_the_demo_prints_the_console_address_unless_it_is_off(settings, capsys):
    from rollout.cli.server import _print_demo_banner

    _print_demo_banner("http://127.0.0.1:8000", settings, [], "v2")
    assert "console: http://127.0.0.1:8000/console" in capsys.readouterr().out
    _print_demo_banner("http://127.0.0.1:8000", settings.with_overrides(console=False), [], "v2")
    assert "/console" not in capsys.readouterr().out


def test_coverage_per_category_comes_from_the_routing_guard(client, runtime):
    load_and_embed(runtime)
    runtime.coverage.refresh()
    body = client.get("/api/monitoring/coverage").get_json()
    assert body["counted"] and body["error"] is None
    for version in ("v1", "v2"):
        counts = body["versions"][version]
        total = counts.pop("all")
        assert total["embedded"] == total["total"] == sum(c["total"] for c in counts.values()) > 0
        assert all(c["ratio"] == 1.0 and c["routable"] for c in counts.values())


def test_ended_points_are_kept_and_only_new_rows_counted(runtime):
    """The second read counts the rows since the last ended point; a recount sees rows written late."""
    series = runtime.figures._series
    insert(runtime.pool, [record(logged_at=NOW - timedelta(hours=2), routed_version="v2", served_version="v2")])
    first = runtime.figures.series("6h", until=NOW)
    assert sum(p["requests"] for p in first["versions"]["v2"]) == 1
    insert(runtime.pool, [record(logged_at=NOW - timedelta(hours=2), routed_version="v2", served_version="v2"),
                          record(logged_at=NOW - timedelta(seconds=10), routed_version="v2", served_version="v2")])
    second = runtime.figures.series("6h", until=NOW + timedelta(seconds=1))
    assert sum(p["requests"] for p in second["versions"]["v2"]) == 2  # the late row's point had ended
    series.forget()
    recounted = runtime.figures.series("6h", until=NOW + timedelta(seconds=2))
    assert sum(p["requests"] for p in recounted["versions"]["v2"]) == 3


def test_a_visitor_reads_the_history_without_what_only_admins_may_see(client, runtime):
    """Decisions with their evidence, the flag audit and alert events, without notification results, errors,
    plans or the alerts' payloads; nothing of the admin token or the webhook secret."""
    from alert_payloads import alertmanager
    from helpers import WEBHOOK_SECRET

    client.post("/api/rollout/stage", json={"action": "advance", "reason": "first stage"}, headers=admin_headers())
    [evaluation] = runtime.stages.evaluate(now=runtime.stages.store.read().state.stage_started_at + 1)
    assert client.post("/api/alerts/webhook", json=alertmanager(),
                       headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"}).status_code == 200
    visitor = create_app(runtime=runtime).test_client()  # no login, no token
    decisions = visitor.get("/api/history/decisions").get_json()["decisions"]
    assert {d["kind"] for d in decisions} >= {"command", "evaluation"}
    assert all(set(d) <= set(DECISION_FIELDS) for d in decisions)
    assert [d["id"] for d in visitor.get("/api/history/decisions?kind=evaluation").get_json()["decisions"]] == \
        [evaluation["id"]]
    detail = visitor.get(f"/api/history/decisions/{evaluation['id']}").get_json()
    stored = runtime.stages.store.decision(evaluation["id"])
    assert detail["verdict"]["gates"] and detail["evidence"] == stored["evidence"]
    assert "plan" not in detail and "notification" not in detail and "error" not in detail
    flag = runtime.flag_audit.recent(1)[0]["flag"]
    changes = visitor.get(f"/api/history/flags?flag={flag}").get_json()["changes"]
    assert changes and all(c["flag"] == flag for c in changes) and all(set(c) <= set(FLAG_FIELDS) for c in changes)
    events = visitor.get("/api/history/alerts?kind=alert&severity=critical").get_json()["events"]
    assert events and events[0]["alertname"] == "RagCandidateErrorRateHigh"
    assert not {"labels", "annotations", "source", "fingerprint", "value"} & set(events[0])
    bodies = "".join(visitor.get(path).get_data(as_text=True) for path in (
        "/api/history/decisions", f"/api/history/decisions/{evaluation['id']}", "/api/history/flags",
        "/api/history/alerts"))
    assert ADMIN_TOKEN not in bodies and WEBHOOK_SECRET not in bodies and "runbooks.example" not in bodies
    assert visitor.get("/api/history/decisions/999999").status_code == 404
    assert visitor.get("/api/history/decisions?kind=other").status_code == 400
    assert visitor.get("/api/history/alerts?limit=0").status_code == 400
    assert visitor.post("/api/rollout/stage", json={"action": "hold"}).status_code == 401  # controls stay admin-only


def test_query_embedding_tokens_and_their_cost_per_version(make_runtime):
    """The local model's estimated tokens reach query_log, the rollup, the series and the dashboard; its price is
    0, a cloud model's price comes from EMBEDDING_PRICES_PER_MTOK and a model without one has no cost."""
    from test_shadow import QUERY

    runtime = make_runtime(FF_ENABLE_QUERY_ANALYTICS="true", EMBEDDING_CACHE="false")
    load_and_embed(runtime)
    client = create_app(runtime=runtime).test_client()
    for _ in range(3):
        assert client.post("/api/rag/query", json=QUERY).status_code == 200
    assert runtime.query_log.flush()
    expected = -(-len(QUERY["query"]) // 4)
    with runtime.pool.connection() as conn:
        assert {row[0] for row in conn.execute("SELECT embed_tokens FROM query_log")} == {expected}
    series = client.get("/api/monitoring/series?range=1h").get_json()
    dashboard = client.get("/api/monitoring/dashboard?range=1h").get_json()
    served = dashboard["versions"]["v1"]
    assert served["embed_tokens"] == series["cost"]["v1"]["embed_tokens"] == 3 * expected
    assert served["price_per_mtok_usd"] == 0.0 and served["cost_usd"] == 0.0
    assert sum(p["embed_tokens"] for p in series["versions"]["v1"]) == 3 * expected
    assert client.get("/console/charts/cost.svg?range=1h").status_code == 200
    assert runtime.price_per_mtok("nothing") is None


def test_a_price_per_model_prices_the_tokens(runtime):
    insert(runtime.pool, [record(routed_version="v2", served_version="v2", embed_tokens=500_000)])
    runtime.figures._series.price_per_mtok = {"v1": None, "v2": 0.02}.get
    series = runtime.figures.series("1h")
    assert series["cost"]["v2"] == {"embed_tokens": 500_000, "price_per_mtok_usd": 0.02, "cost_usd": 0.01}
    assert series["cost"]["v1"]["cost_usd"] is None
    assert [p["cost_usd"] for p in series["versions"]["v2"]] == [0.01]


def test_an_axis_over_zeros_or_tiny_values_reads_in_round_numbers():
    from rollout.console.charts import Line, _label, axis, line_chart

    assert axis(0.0, 0.0, "%") == [0.0, 0.0005, 0.001]
    assert axis(0.0, 1e-8, "%") == axis(0.0, 0.0, "%")
    assert axis(0.0, 123.4, "ms") == [0, 50, 100, 150]
    assert axis(0.0, 0.0, "ms")[-1] == 1.0
    assert [_label(v, "$") for v in axis(0.0, 0.0, "$")] == ["$0", "$0.00005", "$0.0001"]
    svg = line_chart("Error rate", [Line("v1", [(NOW - timedelta(minutes=m), 0.0) for m in range(5)])],
                     NOW - timedelta(hours=1), NOW, unit="%")
    labels = re.findall(r'text-anchor="end" fill="#57606a">([^<]+)<', svg)[:-1]  # the last: the time axis
    assert labels == ["0 %", "0.05 %", "0.1 %"] and not re.search(r"\de-\d", svg)


def test_gate_charts_draw_the_threshold_the_gate_registry_names():
    from rollout.controller.gates.registry import GATES, threshold_of

    assert threshold_of("latency", "p95_ratio", {"latency_margin": 0.1}) == pytest.approx(1.1)
    assert threshold_of("latency", "p95_candidate_ms", {"max_p95_ms": 800.0}) == 800.0
    assert threshold_of("errors", "error_rate_candidate", {"max_error_rate": 0.001}) == 0.001
    assert threshold_of("quality", "shadow_overlap", {"min_shadow_overlap": 0.5}) == 0.5
    assert threshold_of("latency", "p95_ratio", {}) is None  # the stored thresholds lack it
    assert threshold_of("nothing", "p95_ratio", {"latency_margin": 0.1}) is None
    named = {gate.name for gate in GATES if gate.limits}
    assert {"latency", "errors", "quality"} <= named
