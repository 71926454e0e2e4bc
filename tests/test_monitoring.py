"""GET /api/monitoring/dashboard: every figure checked against rows this test writes into query_log."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from analytics_rows import insert, record

from flags import GRADUAL_MIGRATION, V2_PERCENTAGE


def f32(values) -> np.ndarray:
    """What a `real` column gives back."""
    return np.asarray(values, dtype=np.float32).astype(float)


@pytest.fixture
def traffic(runtime):
    """A known hour of traffic: V1 and V2 routed queries, fallbacks, a failure, shadows, merged queries."""
    rng = np.random.default_rng(42)
    now = datetime.now(UTC)  # the test's own: the range is counted back from the request's time
    at = lambda minutes: now - timedelta(minutes=minutes)  # noqa: E731
    v1 = [record(request_id=f"v1-{n}", logged_at=at(rng.uniform(1, 55)), latency_ms=float(rng.lognormal(3, 0.4)),
                 top_similarity=float(rng.uniform(0.6, 0.9)), other_version="v2" if n % 2 == 0 else None,
                 other_top_similarity=float(rng.uniform(0.5, 0.9)) if n % 2 == 0 else None,
                 overlap=float(rng.uniform(0, 1)) if n % 2 == 0 else None,
                 rbo=float(rng.uniform(0, 1)) if n % 2 == 0 else None,
                 top1_agreement=bool(n % 4 == 0) if n % 2 == 0 else None)
          for n in range(150)]
    v2 = [record(request_id=f"v2-{n}", logged_at=at(rng.uniform(1, 55)), routed_version="v2", served_version="v2",
                 latency_ms=float(rng.lognormal(2.8, 0.3)), top_similarity=float(rng.uniform(0.65, 0.95)),
                 cache_hit=bool(n % 5 != 0))
          for n in range(120)]
    fallbacks = [record(request_id=f"fb-{n}", logged_at=at(10), routed_version="v2", served_version="v1",
                        fallback=True, fallback_reason="timeout", latency_ms=900.0, top_similarity=0.7)
                 for n in range(2)]
    failed = [record(request_id="failed", logged_at=at(20), routed_version="v2", served_version=None, fallback=True,
                     fallback_reason="timeout", error_kind="timeout", latency_ms=2500.0, top_similarity=None,
                     result_count=0, embed_ms=None, search_ms=None)]
    merged = [record(request_id=f"m-{n}", logged_at=at(5), mode="merged", served_version="merged", latency_ms=5000.0)
              for n in range(3)]
    earlier = [record(request_id="earlier", logged_at=now - timedelta(hours=3), latency_ms=7000.0),
               record(request_id="critical-earlier", logged_at=now - timedelta(hours=10), served_version=None,
                      error_kind="database", top_similarity=None),
               record(request_id="last-month", logged_at=now - timedelta(days=30))]
    insert(runtime.pool, v1 + v2 + fallbacks + failed + merged + earlier)
    runtime.flags.set(GRADUAL_MIGRATION, True, actor="test")
    runtime.flags.set(V2_PERCENTAGE, 40, actor="test")
    return {"v1": v1, "v2": v2, "fallbacks": fallbacks, "failed": failed}


def test_the_dashboard_figures_match_the_rows(client, traffic):
    response = client.get("/api/monitoring/dashboard?range=1h")
    assert response.status_code == 200
    d = response.get_json()
    v1, v2 = d["versions"]["v1"], d["versions"]["v2"]
    routed_v2 = traffic["v2"] + traffic["fallbacks"] + traffic["failed"]

    assert d["range"] == "1h" and d["queries"] == 150 + 120 + 2 + 1 + 3 and d["merged_queries"] == 3
    assert d["failed_queries"] == 1 and d["critical_errors_24h"] == 2  # the 10-hour-old failure counts too
    assert v1["requests"] == 150 and v2["requests"] == 123
    assert v1["served"] == 152 and v2["served"] == 120  # fallbacks are served by V1

    for figures, rows in ((v1, traffic["v1"]), (v2, routed_v2)):
        expected = np.percentile(f32([r.latency_ms for r in rows]), [50, 95, 99])
        assert [figures["p50_ms"], figures["p95_ms"], figures["p99_ms"]] == pytest.approx(expected, rel=1e-9)

    assert v1["errors"] == 0 and v1["error_rate"] == 0
    assert v2["errors"] == 3 and v2["fallbacks"] == 3 and v2["error_rate"] == pytest.approx(3 / 123)

    # similarity: what each version served, plus what it found as the shadow
    v1_similarities = [r.top_similarity for r in traffic["v1"] + traffic["fallbacks"]]
    v2_similarities = [r.top_similarity for r in traffic["v2"]] + [r.other_top_similarity for r in traffic["v1"]
                                                                    if r.other_top_similarity is not None]
    assert v1["mean_top_similarity"] == pytest.approx(f32(v1_similarities).mean(), rel=1e-9)
    assert v1["similarity_samples"] == 152
    assert v2["mean_top_similarity"] == pytest.approx(f32(v2_similarities).mean(), rel=1e-9)
    assert v2["similarity_samples"] == 120 + 75

    assert v1["cache_hit_rate"] is None and v1["cache_samples"] == 0
    assert v2["cache_hit_rate"] == pytest.approx(96 / 120) and v2["cache_samples"] == 120

    assert v1["actual_share"] == pytest.approx(150 / 273) and v2["actual_share"] == pytest.approx(123 / 273)
    assert v1["target_share"] == pytest.approx(0.6) and v2["target_share"] == pytest.approx(0.4)

    shadowed = [r for r in traffic["v1"] if r.overlap is not None]
    assert v1["shadow"]["compared"] == 75
    assert v1["shadow"]["mean_overlap"] == pytest.approx(f32([r.overlap for r in shadowed]).mean(), rel=1e-9)
    assert v1["shadow"]["mean_rbo"] == pytest.approx(f32([r.rbo for r in shadowed]).mean(), rel=1e-9)
    assert v1["shadow"]["top1_agreement_rate"] == pytest.approx(
        np.mean([r.top1_agreement for r in shadowed]))
    assert v2["shadow"]["compared"] == 0 and v2["shadow"]["mean_overlap"] is None

    criteria = {c["name"]: c for c in d["criteria"]}
    latency_ok = v2["p95_ms"] <= v1["p95_ms"] and v2["p95_ms"] < 800
    assert criteria["v2_p95_latency"]["status"] == ("pass" if latency_ok else "fail")
    assert criteria["v2_p95_latency"]["value"] == v2["p95_ms"] and criteria["v2_p95_latency"]["threshold"] == 800
    # too few scores to calibrate: raw similarity is a signal only, never held against a raw 0.7
    assert criteria["v2_mean_similarity"]["status"] == "insufficient_data"
    assert "signal only" in criteria["v2_mean_similarity"]["detail"]
    assert criteria["critical_errors_24h"]["status"] == "fail" and criteria["critical_errors_24h"]["value"] == 2
    assert criteria["v2_error_rate"]["status"] == "fail"  # 2.4 % > 0.1 %
    assert criteria["v2_cache_hit_rate"]["status"] == "pass"  # 80 % > 70 %
    assert d["verdict"] == "fail"


def test_similarity_passes_or_fails_only_against_the_calibrated_floor(runtime, traffic):
    from rollout.analytics.figures import Figures
    from rollout.relevance.calibration import Calibration

    def criterion(candidate_scale):
        calibration = Calibration(None, "v1", min_samples=100)
        calibration.learn({"v1": (np.linspace(0.6, 0.9, 301), "shadow_pairs"), "v2": (candidate_scale, "traffic")})
        figures = Figures(runtime.pool, runtime.figures.limits, roles=lambda: runtime.router.roles,
                          calibration=calibration)
        dashboard = figures.dashboard("1h", runtime.flags.snapshot())
        return next(c for c in dashboard.criteria if c.name == "v2_mean_similarity"), dashboard.versions["v2"]

    # the candidate's scale sits at 0.3-0.5 (the floor 0.7, a third of the way up the baseline's, is 0.367 there)
    low_scale, v2 = criterion(np.linspace(0.3, 0.5, 201))
    assert low_scale.threshold == pytest.approx(0.3 + 0.2 / 3, abs=1e-6)
    assert low_scale.status == "pass" and v2.mean_top_similarity > low_scale.threshold
    assert "0.367 on v2's" in low_scale.description and "own scale" in low_scale.detail
    # a candidate whose scale runs higher than its answers here (0.95-0.99): the mapped floor fails them
    high_scale, v2 = criterion(np.linspace(0.95, 0.99, 201))
    assert high_scale.threshold > v2.mean_top_similarity and high_scale.status == "fail"


def test_longer_ranges_take_older_rows(client, traffic):
    day = client.get("/api/monitoring/dashboard?range=24h").get_json()
    week = client.get("/api/monitoring/dashboard?range=7d").get_json()
    assert day["queries"] == 276 + 2 and week["queries"] == 276 + 2
    assert day["versions"]["v1"]["requests"] == 152  # the two V1 queries of 3 and 10 hours ago
    assert day["versions"]["v1"]["errors"] == 1 and day["failed_queries"] == 2
    assert client.get("/api/monitoring/dashboard").get_json()["range"] == "24h"


@pytest.mark.parametrize("value", ["2h", "", "1H", "24h;drop"])
def test_an_invalid_range_is_a_400(client, value):
    response = client.get(f"/api/monitoring/dashboard?range={value}")
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_range" and "15m, 1h, 6h, 24h, 7d" in body["detail"]


def test_thresholds_come_from_the_settings(make_runtime, traffic):
    from rollout.app import create_app
    lenient = make_runtime(ROLLOUT_MAX_ERROR_RATE="0.05", ROLLOUT_MAX_CRITICAL_ERRORS="5",
                           CRITERIA_MIN_CACHE_HIT_RATE="0.9")
    d = create_app(lenient.settings, runtime=lenient).test_client().get("/api/monitoring/dashboard?range=1h").get_json()
    criteria = {c["name"]: c for c in d["criteria"]}
    assert criteria["v2_error_rate"]["status"] == "pass" and criteria["v2_error_rate"]["threshold"] == 0.05
    assert criteria["critical_errors_24h"]["status"] == "pass"
    assert criteria["v2_cache_hit_rate"]["status"] == "fail"


def test_too_few_samples_is_not_a_pass(client, runtime):
    insert(runtime.pool, [record(routed_version="v2", served_version="v2", latency_ms=5.0) for _ in range(10)])
    d = client.get("/api/monitoring/dashboard?range=1h").get_json()
    statuses = {c["name"]: c["status"] for c in d["criteria"]}
    assert statuses == {"v2_p95_latency": "insufficient_data", "v2_mean_similarity": "insufficient_data",
                        "critical_errors_24h": "pass", "v2_error_rate": "insufficient_data",
                        "v2_cache_hit_rate": "insufficient_data"}
    assert d["verdict"] == "incomplete"


def test_at_full_rollout_v2_latency_is_judged_against_the_stored_v1_baseline(runtime, client):
    insert(runtime.pool, [record(latency_ms=float(n)) for n in range(1, 201)])  # V1: p95 190.05 ms
    runtime.figures.store_baseline(runtime.figures.dashboard("1h", runtime.flags.snapshot()), "before V2")
    with runtime.pool.connection() as conn:
        conn.execute("DELETE FROM query_log")
    insert(runtime.pool, [record(routed_version="v2", served_version="v2", latency_ms=float(n) / 2)
                          for n in range(1, 201)])
    d = client.get("/api/monitoring/dashboard?range=1h").get_json()
    latency = next(c for c in d["criteria"] if c["name"] == "v2_p95_latency")
    assert latency["status"] == "pass" and "baseline" in latency["detail"]
    assert d["baseline"]["note"] == "before V2"
    assert d["baseline"]["figures"]["p95_ms"] == pytest.approx(np.percentile(np.arange(1, 201), 95))


def test_the_dashboard_is_documented(client):
    document = client.get("/openapi.json").get_json()
    operation = document["paths"]["/api/monitoring/dashboard"]["get"]
    assert operation["parameters"][0]["name"] == "range" and "400" in operation["responses"]
    query_body = document["components"]["schemas"]["QueryRequest"]["properties"]
    assert query_body["mode"]["enum"] == ["routed", "merged"]
