"""Generate grafana/dashboards/rag-rollout.json, the baseline-beside-candidate dashboard, with grafana-foundation-sdk.

    python scripts/make_dashboard.py            # rewrite the JSON
    python scripts/make_dashboard.py --check    # exit 1 if the JSON is not what this script generates

Every panel plots the rollout's two versions (the `version` label, filtered by the
`$baseline` and `$candidate` variables, which read `rollout_version_role`) side by side.
Queries use Grafana's `$__rate_interval`; `scripts/check_dashboard.py` runs each of
them against a real Prometheus scraping a real gateway.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueColorMode, GraphTresholdsStyleMode
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)

OUTPUT = Path(__file__).resolve().parent.parent / "grafana" / "dashboards" / "rag-rollout.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
PAIR = '{version=~"$baseline|$candidate"}'  # the rollout's two versions, chosen by the variables


def role_variable(role: str) -> dashboard.QueryVariable:
    """$baseline / $candidate: the version holding that role, from rollout_version_role."""
    return (dashboard.QueryVariable(role).label(role.capitalize()).datasource(DATASOURCE)
            .query(f'label_values(rollout_version_role{{role="{role}"}}, version)').refresh(2))


def by_version(metric: str, extra: str = "") -> str:
    """sum by (version[, extra]) (rate(metric[$__rate_interval]))"""
    labels = "version" + (f", {extra}" if extra else "")
    return f"sum by ({labels}) (rate({metric}{PAIR}[{RATE}]))"


def mean(metric: str, labels: str = "version") -> str:
    """Mean of a histogram's observations over the interval, per `labels`."""
    return (f"sum by ({labels}) (rate({metric}_sum{PAIR}[{RATE}])) / "
            f"sum by ({labels}) (rate({metric}_count{PAIR}[{RATE}]))")


def quantile(q: float, metric: str, labels: str = "version") -> str:
    return f"histogram_quantile({q}, sum by ({labels}, le) (rate({metric}_bucket{PAIR}[{RATE}])))"


def target(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def thresholds(*steps: tuple[float | None, str]):
    return dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=value, color=color) for value, color in steps])


def series(title: str, description: str, queries: list[tuple[str, str]], *, unit: str = "short",
           width: int = 12, minimum: float | None = 0, maximum: float | None = None,
           limit: float | None = None) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
             .height(8).span(width).line_width(2).fill_opacity(8))
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    if limit is not None:  # the seed's threshold, drawn as a dashed line
        panel = panel.thresholds(thresholds((None, "transparent"), (limit, "red"))).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(GraphTresholdsStyleMode.DASHED))
    for n, (expr, legend) in enumerate(queries):
        panel = panel.with_target(target(expr, legend, chr(ord("A") + n)))
    return panel


def breaker_state() -> stat.Panel:
    names = {"0": ("closed", "green"), "1": ("half-open", "orange"), "2": ("open", "red")}
    mapping = ValueMap(options={
        value: ValueMappingResult(text=text, color=color, index=n) for n, (value, (text, color)) in
        enumerate(names.items())})
    return (stat.Panel().title("Circuit breaker state").datasource(DATASOURCE).height(8).span(6)
            .description("Per version: closed, half-open or open (shared by every worker through Redis).")
            .mappings([mapping]).color_mode(BigValueColorMode.BACKGROUND)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .with_target(target(f"max by (version) (circuit_breaker_state{PAIR})", "{{version}}", "A")))


def build() -> dict:
    rag_latency = "rag_request_duration_seconds"
    board = (
        dashboard.Dashboard("RAG rollout: baseline vs candidate").uid("rag-rollout-v1-v2").tags(["rag", "rollout"])
        .description("The baseline embedding version beside the candidate ($baseline, $candidate): latency, quality, "
                     "errors, traffic split, shadow comparisons, breaker, migration coverage, cache and alerts.")
        .refresh("30s").time("now-6h", "now").timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(role_variable("baseline"))
        .with_variable(role_variable("candidate"))
        .with_row(dashboard.Row("Latency"))
        .with_panel(series(
            "Latency p50 / p95 / p99 by version", "Time to answer, by the version that served (gateway side).",
            [(quantile(0.5, rag_latency), "{{version}} p50"), (quantile(0.95, rag_latency), "{{version}} p95"),
             (quantile(0.99, rag_latency), "{{version}} p99")], unit="s", limit=0.8))
        .with_panel(series(
            "Stage latency p95: embed and search", "Where the time goes in each version.",
            [(quantile(0.95, "rag_stage_duration_seconds", "version, stage"), "{{version}} {{stage}}")],
            unit="s"))
        .with_row(dashboard.Row("Quality"))
        .with_panel(series(
            "Mean top similarity", "Cosine of the best result, each version in its own space; 'shadow': the "
            "version that did not answer, on the same queries.",
            [(mean("rag_top_similarity"), "{{version}} served"),
             (mean("rag_shadow_top_similarity"), "{{version}} shadow")], unit="none", maximum=1, limit=0.7))
        .with_panel(series(
            "Shadow overlap (Jaccard and RBO)", "Agreement of the served list with the shadow list, by serving "
            "version: 1 = the same documents in the same order.",
            [(mean("rag_shadow_overlap", "version, measure"), "{{version}} {{measure}}")], unit="none",
            maximum=1))
        .with_panel(series(
            "Shadow top-1 agreement", "Share of compared queries whose first result is the same document.",
            [(f"{by_version('rag_shadow_top1_agreement_total')} / {by_version('rag_shadow_comparisons_total')}",
              "{{version}}")], unit="percentunit", maximum=1, width=8))
        .with_panel(series(
            "Shadow latency p95", "The other version's search time, measured in the background.",
            [(quantile(0.95, "rag_shadow_duration_seconds"), "{{version}} shadow p95")], unit="s", width=8))
        .with_panel(series(
            "Shadow failures and skips", "Shadows that failed (never seen by clients) or were not run.",
            [(by_version("rag_shadow_failures_total", "kind"), "{{version}} failed: {{kind}}"),
             (by_version("rag_shadow_skipped_total", "reason"), "{{version}} skipped: {{reason}}")],
            unit="reqps", width=8))
        .with_row(dashboard.Row("Errors and traffic"))
        .with_panel(series(
            "Error rate by version", "Failed searches of a version over the queries routed to it.",
            [(f"{by_version('rag_version_errors_total')} / {by_version('rag_routing_decisions_total')}",
              "{{version}}")], unit="percentunit", limit=0.001))
        .with_panel(series(
            "Fallbacks to V1 by cause", "V2-routed queries answered by V1 in the same request.",
            [(f"sum by (reason) (rate(rag_fallbacks_total[{RATE}]))", "{{reason}}"),
             (by_version("rag_shadow_fallback_served_total"), "answered by the {{version}} shadow")],
            unit="reqps"))
        .with_panel(series(
            "Traffic split: actual vs target", "Share of routing decisions per version against "
            "FF_NEW_EMBEDDINGS_PERCENTAGE (0 while the migration switch is off).",
            [(f"100 * {by_version('rag_routing_decisions_total')} / "
              f"scalar(sum(rate(rag_routing_decisions_total{PAIR}[{RATE}])))", "{{version}} actual"),
             ("max(rollout_percentage) * max(rollout_migration_enabled)", "$candidate target"),
             ("100 - max(rollout_percentage) * max(rollout_migration_enabled)", "$baseline target")],
            unit="percent", maximum=100))
        .with_panel(series(
            "Requests by version and outcome", "ok, fallback (answered by V1) or error (no answer).",
            [(by_version("rag_requests_total", "outcome"), "{{version}} {{outcome}}"),
             (by_version("rag_merged_requests_total"), "merged: {{version}}")], unit="reqps"))
        .with_row(dashboard.Row("Safety"))
        .with_panel(breaker_state())
        .with_panel(series(
            "Alerts received", "Alert webhooks by source, severity and status.",
            [(f"sum by (source, severity, status) (rate(alerts_received_total[{RATE}]))",
              "{{source}} {{severity}} {{status}}")], unit="reqps", width=9))
        .with_panel(series(
            "Rollbacks", "Rollbacks by trigger (alert, breaker, manual, controller).",
            [(f"sum by (trigger) (increase(rollout_rollbacks_total[{RATE}]))", "{{trigger}}")], width=9))
        .with_row(dashboard.Row("Migration, cache and plumbing"))
        .with_panel(series(
            "Migration coverage", "Share of documents embedded, per version and category.",
            [(f"max by (version, category) (rag_migration_coverage_ratio{PAIR})", "{{version}} {{category}}")],
            unit="percentunit", maximum=1))
        .with_panel(series(
            "Query embedding cache hit rate", "Hits over lookups of the query embedding cache.",
            [(f"{by_version('rag_embedding_cache_hits_total')} / ({by_version('rag_embedding_cache_hits_total')}"
              f" + {by_version('rag_embedding_cache_misses_total')})", "{{version}}")],
            unit="percentunit", maximum=1))
        .with_panel(series(
            "Flags: Redis and snapshot age", "Whether every worker reaches Redis, and the oldest flag snapshot.",
            [("min(flags_redis_up)", "redis up"), ("max(flags_snapshot_age_seconds)", "snapshot age (s)")],
            width=8))
        .with_panel(series(
            "query_log rows", "Rows written, dropped (queue full) or failed (database error).",
            [(f"sum by (outcome) (rate(rollout_query_log_rows_total[{RATE}]))", "{{outcome}}")],
            unit="reqps", width=8))
        .with_panel(series(
            "Anonymous queries", "Queries with no user or session id (bucketed at random).",
            [(f"sum(rate(rag_anonymous_requests_total[{RATE}]))", "anonymous")], unit="reqps", width=8))
        .with_row(dashboard.Row("Rollout controller"))
        .with_panel(series(
            "Controller: leader and stage", "Whether a controller holds the leader lock (1), and the rollout's "
            "percentage after its last decision.",
            [("max(rollout_controller_leader)", "leading"),
             ("max(rollout_controller_stage_percentage)", "stage %")], width=8))
        .with_panel(series(
            "Controller: evaluation runs", "Runs by result: ok, skipped (a service unreachable), failed.",
            [(f"sum by (result) (increase(rollout_controller_runs_total[{RATE}]))", "{{result}}")], width=8))
        .with_panel(series(
            "Controller: since the last run", "Seconds since the leading controller completed a run "
            "(the RolloutControllerStalled alert fires above 900 s for 5 minutes).",
            [("time() - max(rollout_controller_last_run_timestamp_seconds)", "seconds")], unit="s", width=8,
            limit=900))
        .with_panel(series(
            "Controller: decisions", "Decisions recorded by the controller, by kind and action.",
            [(f"sum by (kind, action) (increase(rollout_controller_decisions_total[{RATE}]))", "{{kind}} {{action}}")],
            width=12))
        .with_panel(series(
            "Controller: notifications sent again", "Notifications a stopped process left pending, redelivered.",
            [(f"sum(increase(rollout_controller_notifications_redelivered_total[{RATE}]))", "redelivered")],
            width=12))
    )
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(board.build()))


def layout(document: dict) -> dict:
    """Number the panels and lay them out left to right, top to bottom, by their widths."""
    x = y = row_height = 0
    for n, panel in enumerate(document["panels"], 1):
        panel["id"] = n
        width = panel["gridPos"]["w"] if panel["type"] != "row" else 24
        height = panel["gridPos"]["h"] if panel["type"] != "row" else 1
        if x + width > 24 or panel["type"] == "row":
            x, y = 0, y + row_height
            row_height = 0
        panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
        x, row_height = x + width, max(row_height, height)
        if panel["type"] == "row":
            x, y, row_height = 0, y + 1, 0
    return document


def render() -> str:
    return json.dumps(layout(build()), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Fail if the committed JSON differs.")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.name} is out of date: run python scripts/make_dashboard.py", file=sys.stderr)
            return 1
        print(f"{OUTPUT.name} is up to date")
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
