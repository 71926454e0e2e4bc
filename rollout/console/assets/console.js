// The operator console: polls the gateway's JSON API and fills the page; posts changes to the same
// admin endpoints as the CLI, with the session cookie and the CSRF token. Data is written with
// textContent only, never as HTML.
"use strict";

const body = document.body;
const ADMIN = body.dataset.admin === "true";
const REFRESH_MS = Number(body.dataset.refreshS || 5) * 1000;
const ROLES = {baseline: body.dataset.baseline, candidate: body.dataset.candidate};
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const CHARTS = ["requests", "p95", "p50", "p99", "errors", "fallbacks", "cache", "similarity", "overlap", "cost"];
const DASHBOARD_EVERY_MS = Math.max(REFRESH_MS, 30000);  // the dashboard reads every row of the range
let lastStatus = null;
let dashboardAt = {range: null, time: 0};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function fill(parent, rows, empty = "nothing yet") {
  if (rows.length || parent.tagName !== "TBODY") {
    parent.replaceChildren(...rows);
    return;
  }
  const columns = parent.parentNode.tHead ? parent.parentNode.tHead.rows[0].cells.length : 1;
  parent.replaceChildren(el("tr", {class: "empty"}, el("td", {colspan: String(columns)}, empty)));
}

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
  const data = await response.json();
  if (response.status === 401 && ADMIN) throw new Error("your console login has ended: reload the page and log in again");
  if (!response.ok) throw new Error(`${url}: ${data.detail || response.status}`);
  return data;
}

async function send(url, payload) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": CSRF}, body: JSON.stringify(payload)});
  const data = await response.json();
  if (!response.ok) throw new Error(data.detail || `HTTP ${response.status}`);
  return data;
}

// -- formatting ---------------------------------------------------------------------------------
const pct = (v, digits = 2) => v == null ? "–" : `${(v * 100).toFixed(digits)} %`;
const ms = (v) => v == null ? "–" : `${v.toFixed(1)} ms`;
const num = (v, digits = 3) => v == null ? "–" : Number(v).toFixed(digits);
const int = (v) => v == null ? "–" : Number(v).toLocaleString("en");
const usd = (v) => v == null ? "no price" : `$${Number(v.toPrecision(4))}`;
function when(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  const time = at.toLocaleTimeString("en-GB", {hour12: false});
  return at.toDateString() === new Date().toDateString() ? time :
    `${at.toLocaleDateString("en-GB", {day: "numeric", month: "short"})} ${time}`;
}

function fromNow(iso) {
  if (!iso) return "";
  const seconds = (new Date(iso) - Date.now()) / 1000;
  return seconds >= 0 ? ` (in ${duration(seconds)})` : ` (${duration(-seconds)} ago)`;
}

function duration(seconds) {
  if (seconds == null) return "–";
  const s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function range() { return $("range").value; }

// -- Now ----------------------------------------------------------------------------------------
function showStatus(status) {
  lastStatus = status;
  $("summary").textContent = status.summary;
  $("now-status").textContent = status.status;
  $("now-percentage").textContent = `${status.percentage} %`;
  $("now-stage").textContent = status.stage ? `${status.stage} of ${status.stages.length}` +
    (status.next_stage != null ? ` (next ${status.next_stage} %)` : "") : "not on a stage";
  $("now-time").textContent = duration(status.time_in_stage_s) +
    (status.required_time_s ? ` of ${duration(status.required_time_s)}` : "");
  $("now-next").textContent = status.next_evaluation_at ? when(status.next_evaluation_at) + fromNow(status.next_evaluation_at) : "not watched";
  const c = status.controller || {};
  $("now-controller").textContent = c.leader || (c.active === false ? "none running" : "unknown");
  const d = status.last_decision;
  $("now-decision").textContent = d ? `${when(d.decided_at)} · ${d.kind} ${d.action} by ${d.actor}: ` +
    `${d.percentage_before} % → ${d.percentage_after} % — ${d.reason}` : "no decision yet";
  fill($("now-warnings"), (status.warnings || []).map((w) => el("li", {}, w)));
}

function showBreakers(state) {
  fill($("breakers"), Object.entries(state.versions || {}).map(([version, b]) => el("tr", {},
    el("td", {}, version + (version === ROLES.baseline ? " (baseline)" : version === ROLES.candidate ? " (candidate)" : "")),
    el("td", {}, el("span", {class: `pill ${b.state === "closed" ? "pass" : "fail"}`, "data-version": version}, b.state)),
    el("td", {}, [b.cause, b.detail].filter(Boolean).join(": ") || `${b.failures} of ${b.fail_max} failures`))));
  fill($("firing"), (state.firing_alerts || []).map((a) =>
    el("li", {}, `firing: ${a.alertname || a.name || "alert"} ${a.severity ? `(${a.severity})` : ""}`)));
}

function showCoverage(coverage) {
  $("coverage-bar").textContent = `· the candidate answers a category from ${coverage.min_percent} %` +
    (coverage.error ? ` · last count failed: ${coverage.error}` : "");
  const versions = coverage.versions || {};
  const categories = [...new Set(Object.values(versions).flatMap((c) => Object.keys(c)))];
  fill($("coverage").tBodies[0], categories.map((category) => el("tr", {}, el("td", {}, category),
    ...[ROLES.baseline, ROLES.candidate].map((v) => {
      const c = (versions[v] || {})[category];
      return el("td", {class: `num${c && !c.routable ? " short" : ""}`},
        !c ? "–" : c.total ? `${pct(c.ratio, 1)} (${int(c.embedded)}/${int(c.total)})` : "no documents");
    }))), coverage.counted ? "no documents" : "not counted yet: the candidate is refused until it is");
}

// -- Baseline beside candidate ---------------------------------------------------------------------
const FIGURES = [
  ["Requests routed", "requests", int], ["Share of traffic (target)", null, null],
  ["Latency p50", "p50_ms", ms], ["Latency p95", "p95_ms", ms], ["Latency p99", "p99_ms", ms],
  ["Error rate", "error_rate", (v) => pct(v, 3)], ["Fallbacks", "fallbacks", int],
  ["Mean top similarity", "mean_top_similarity", num], ["Cache hit rate", "cache_hit_rate", (v) => pct(v, 1)],
  ["Shadow comparisons", "shadow.compared", int], ["Shadow overlap", "shadow.mean_overlap", (v) => pct(v, 1)],
  ["Shadow RBO", "shadow.mean_rbo", num], ["Top-1 agreement", "shadow.top1_agreement_rate", (v) => pct(v, 1)],
  ["Embedding tokens", "embed_tokens", int], ["Price per 1M tokens", "price_per_mtok_usd", usd],
  ["Embedding cost", "cost_usd", usd],
];

function pick(object, path) { return path.split(".").reduce((o, k) => o == null ? o : o[k], object); }

function showDashboard(dash) {
  $("compare-range").textContent = `· last ${dash.range} · ${int(dash.queries)} queries`;
  const versions = dash.versions || {};
  fill($("figures").tBodies[0], FIGURES.map(([label, path, format]) => {
    const cells = [ROLES.baseline, ROLES.candidate].map((v) => {
      const f = versions[v] || {};
      const text = path ? format(pick(f, path)) : `${pct(f.actual_share, 1)} (${pct(f.target_share, 0)})`;
      return el("td", {class: "num", "data-version": v, "data-figure": path || "share"}, text);
    });
    return el("tr", {}, el("th", {scope: "row"}, label), ...cells);
  }));
  $("verdict").textContent = dash.verdict;
  $("verdict").className = `pill ${dash.verdict}`;
  fill($("criteria").tBodies[0], dash.criteria.map((c) => el("tr", {},
    el("td", {}, c.description, el("div", {class: "muted small"}, c.detail)),
    el("td", {class: "num"}, c.value == null ? "–" : Number(Number(c.value).toPrecision(4))),
    el("td", {class: "num"}, Number(c.threshold)),
    el("td", {}, el("span", {class: `pill ${c.status}`}, c.status.replace("_", " "))))));
}

function chartWidth(container) {
  // the width one chart gets in its grid, in steps of 40 px so images are not asked for at every pixel
  const columns = getComputedStyle(container).gridTemplateColumns.split(" ").length || 1;
  const width = (container.clientWidth - 10 * (columns - 1)) / columns;
  return Math.max(300, Math.min(1200, Math.floor(width / 40) * 40));
}

function showImages(container, charts) {
  // charts: [{key, src, alt}]. Images stay in place across refreshes; a new picture replaces the old one
  // only once it has loaded, so a refresh never blanks a chart.
  const keys = charts.map((c) => c.key).join("|");
  if (container.dataset.keys !== keys) {
    container.replaceChildren(...charts.map((c) => el("img", {alt: c.alt, width: String(c.width), height: "240", "data-key": c.key})));
    container.dataset.keys = keys;
  }
  charts.forEach((chart, i) => {
    const img = container.children[i];
    const next = new Image();
    next.addEventListener("load", () => { img.src = next.src; });
    next.src = chart.src;
  });
}

function showCharts() {
  const stamp = Date.now();
  const width = chartWidth($("charts"));
  showImages($("charts"), CHARTS.map((name) => ({key: `${name}-${range()}-${width}`, width,
    src: `/console/charts/${name}.svg?range=${range()}&width=${width}&t=${stamp}`, alt: `${name} chart, baseline and candidate`})));
}

// -- Gates --------------------------------------------------------------------------------------
function statistics(gate) {
  const values = gate.values || {};
  return Object.keys(values).filter((k) => typeof values[k] === "number" && !/_(lower|upper)(_ms)?$/.test(k) &&
    ((k.endsWith("_ms") ? `${k.slice(0, -3)}_lower_ms` : `${k}_lower`) in values));
}

function pairs(object) {
  return Object.entries(object || {}).map(([k, v]) => `${k} ${typeof v === "number" ? Number(v.toPrecision(4)) : v}`).join(" · ");
}

function showGates(status, history) {
  const evaluation = status.last_evaluation;
  const latest = history.evaluations.length ? history.evaluations[history.evaluations.length - 1] : null;
  const measured = latest && evaluation && latest.id === evaluation.id ? latest.gates : [];
  $("gates-when").textContent = evaluation ? `· last evaluated ${when(evaluation.decided_at)}, verdict ${evaluation.action}` : "· no evaluation yet";
  fill($("gate-table").tBodies[0], (evaluation ? evaluation.gates || [] : []).map((g) => {
    const full = measured.find((m) => m.name === g.name) || {};
    return el("tr", {}, el("td", {}, g.name), el("td", {}, el("span", {class: `pill ${g.status}`}, g.status)),
      el("td", {}, g.reason, el("div", {class: "raw"}, pairs(full.values)), el("div", {class: "raw muted"}, pairs(full.thresholds))));
  }), "no evaluation yet: the controller judges the stage once it runs");
  const stamp = Date.now();
  const width = chartWidth($("gate-charts"));
  const charts = [];
  for (const gate of latest ? latest.gates : []) {
    for (const statistic of statistics(gate)) {
      charts.push({key: `${gate.name}-${statistic}-${range()}-${width}`, width, alt: `${gate.name} ${statistic} over time`,
        src: `/console/charts/gates/${encodeURIComponent(gate.name)}/${encodeURIComponent(statistic)}.svg` +
          `?range=${range()}&width=${width}&t=${stamp}`});
    }
  }
  showImages($("gate-charts"), charts);
}

// -- History (everyone: /api/history/* leaves out what only admins may read) ------------------------
function evidence(decision) {
  const box = el("details", {}, el("summary", {}, "evidence"));
  box.addEventListener("toggle", async () => {
    if (!box.open || box.dataset.loaded) return;
    box.dataset.loaded = "1";
    const full = await getJSON(`/api/history/decisions/${decision.id}`);
    box.append(el("pre", {class: "evidence"}, JSON.stringify({verdict: full.verdict, evidence: full.evidence}, null, 2)));
  });
  return box;
}

async function showHistory() {
  const kind = $("decision-kind").value;
  const [decisions, audit, events] = await Promise.all([
    getJSON("/api/history/decisions?limit=50" + (kind ? `&kind=${kind}` : "")),
    getJSON("/api/history/flags?limit=20" + ($("audit-flag").value ? `&flag=${encodeURIComponent($("audit-flag").value)}` : "")),
    getJSON("/api/history/alerts?limit=20" + ($("event-kind").value ? `&kind=${$("event-kind").value}` : "") +
      ($("event-severity").value.trim() ? `&severity=${encodeURIComponent($("event-severity").value.trim())}` : "")),
  ]);
  const ids = decisions.decisions.map((d) => d.id).join(",");
  if ($("decisions").dataset.ids !== ids) {  // unchanged rows stay, so an opened evidence stays open
    $("decisions").dataset.ids = ids;
    fill($("decisions"), decisions.decisions.map((d) => el("li", {"data-id": d.id},
      el("b", {}, `#${d.id} ${d.kind} ${d.action}`), ` ${when(d.decided_at)} by ${d.actor}: `,
      `${d.percentage_before} % → ${d.percentage_after} % — ${d.reason}`, evidence(d))));
  }
  fill($("audit").tBodies[0], audit.changes.map((c) => el("tr", {},
    el("td", {}, when(c.changed_at)), el("td", {}, c.flag), el("td", {}, `${c.old ?? "–"} → ${c.new ?? "–"}`),
    el("td", {}, c.actor), el("td", {}, c.reason || ""))));
  fill($("events").tBodies[0], events.events.map((e) => el("tr", {},
    el("td", {}, when(e.received_at)), el("td", {}, e.kind), el("td", {}, e.alertname || (e.actions || []).join(", ")),
    el("td", {}, [e.status, e.outcome].filter(Boolean).join(" · ")), el("td", {}, [e.actor, e.detail].filter(Boolean).join(": ")))));
}

// -- Controls (admins) -----------------------------------------------------------------------------
let pending = null;

function ask(text, action) {
  pending = action;
  $("confirm-text").textContent = text;
  $("confirm-reason").value = "";
  $("confirm").classList.remove("hidden");
  $("confirm-reason").focus();
}

function describeStage(action) {
  const at = lastStatus ? `${lastStatus.percentage} %` : "the current stage";
  if (action === "set") return `Set the candidate's share from ${at} to ${$("set-percentage").value} %?`;
  if (action === "advance") return `Advance from ${at} to ${lastStatus && lastStatus.next_stage != null ? lastStatus.next_stage + " %" : "the next stage"}?`;
  return `${action[0].toUpperCase() + action.slice(1)} the rollout (now at ${at})?`;
}

function showResult(lines, failed) {
  const box = $("result");
  box.classList.remove("hidden");
  box.classList.toggle("error", Boolean(failed));
  box.replaceChildren(...lines.map((line) => el("p", {}, line)));
}

async function stageAction(action, reason) {
  const payload = {action, reason};
  if (action === "set") payload.percentage = Number($("set-percentage").value);
  if (lastStatus) payload.expected_percentage = lastStatus.percentage;
  const {decision} = await send("/api/rollout/stage", payload);
  const audit = await getJSON("/api/flags/audit?limit=5");
  const row = audit.changes.find((c) => c.actor === decision.actor);
  const lines = [`Decision #${decision.id} by ${decision.actor}: ${decision.action}, ` +
    `${decision.percentage_before} % → ${decision.percentage_after} % — ${decision.reason}`];
  if (row) lines.push(`Flag audit: ${row.flag} ${row.old ?? "–"} → ${row.new ?? "–"} by ${row.actor} (${row.reason || ""})`);
  return lines;
}

async function breakerAction(action, reason) {
  const version = $("breaker-version").value;
  const data = await send("/api/monitoring/circuit-breaker", {action, version, reason});
  const events = await getJSON("/api/alerts/webhook?kind=action&limit=1");
  const row = events.events[0];
  const lines = [`Breaker ${action} ${version}: ${data.outcome}`];
  if (row) lines.push(`Alert event #${row.id}: ${(row.actions || []).join(", ") || row.outcome} by ${row.actor} (${row.detail || ""})`);
  return lines;
}

function wireControls() {
  for (const button of document.querySelectorAll("[data-stage]")) {
    button.addEventListener("click", () => ask(describeStage(button.dataset.stage),
      (reason) => stageAction(button.dataset.stage, reason)));
  }
  for (const button of document.querySelectorAll("[data-breaker]")) {
    button.addEventListener("click", () => ask(`${button.textContent} the breaker of ${$("breaker-version").value}?`,
      (reason) => breakerAction(button.dataset.breaker, reason)));
  }
  $("confirm-no").addEventListener("click", () => $("confirm").classList.add("hidden"));
  $("confirm").addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = pending;
    const reason = $("confirm-reason").value.trim();
    $("confirm").classList.add("hidden");
    try {
      showResult(await action(reason));
    } catch (error) {
      showResult([`Refused: ${error.message}`], true);
    }
    refresh();
  });
}

// -- the loop -----------------------------------------------------------------------------------------
async function refresh() {
  try {
    const dashboardDue = dashboardAt.range !== range() || Date.now() - dashboardAt.time >= DASHBOARD_EVERY_MS;
    const [status, dash, breakers, gates, coverage] = await Promise.all([
      getJSON("/api/rollout/status"), dashboardDue ? getJSON(`/api/monitoring/dashboard?range=${range()}`) : null,
      getJSON("/api/monitoring/circuit-breaker"), getJSON(`/api/rollout/gates?range=${range()}`),
      getJSON("/api/monitoring/coverage")]);
    showStatus(status);
    showBreakers(breakers);
    showCoverage(coverage);
    if (dash) {
      showDashboard(dash);
      dashboardAt = {range: range(), time: Date.now()};
    }
    showGates(status, gates);
    showCharts();
    await showHistory();
    $("load-error").classList.add("hidden");
    $("updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB", {hour12: false})}`;
  } catch (error) {
    $("load-error").textContent = `Could not refresh: ${error.message}`;
    $("load-error").classList.remove("hidden");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("range").addEventListener("change", refresh);
  for (const id of ["decision-kind", "audit-flag", "event-kind", "event-severity"]) $(id).addEventListener("change", showHistory);
  if (ADMIN) wireControls();
  refresh();
  setInterval(refresh, REFRESH_MS);
});
