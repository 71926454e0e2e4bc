"""What `rollout demo` prepares: the demo corpus embedded for both versions, and the staged rollout's
first stage (10 %) started with shadow queries and query analytics on."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from flags import GRADUAL_MIGRATION, PARALLEL_RAG, QUERY_ANALYTICS, V2_PERCENTAGE, Source
from rollout import schema
from rollout.config import VERSIONS, Settings
from rollout.controller import Action, Command, Status
from rollout.controller.store import RolloutStore
from rollout.documents import DocumentStore, UpsertCounts, read_jsonl
from rollout.migration.backfill import BackfillReport, backfill_for
from rollout.runtime import Runtime
from rollout.services import ServiceUrls, service_urls

DEMO_ACTOR = "rollout demo"
COMPARISON = {PARALLEL_RAG: True, QUERY_ANALYTICS: True}  # the demo shows the pair side by side from the first query

# The quality gate's floors are set for real models. The local lexical embedders score lower by
# construction (top similarity about 0.3, V1/V2 shadow overlap about 0.47), so with those floors
# the controller would roll the candidate back after its first few hundred queries whatever it does.
LEXICAL_GATES = {"rollout_min_similarity": 0.2, "rollout_min_shadow_overlap": 0.3}
# `rollout demo --fast`: the whole plan (10 -> 100 %) in a few minutes, with the demo's own traffic.
FAST_PLAN = {"rollout_min_stage_s": 30.0, "rollout_evaluation_interval_s": 10.0, "rollout_min_samples": 100,
             "rollout_min_samples_to_roll_back": 50, "rollout_min_shadow_samples": 30,
             "rollout_complete_after_s": 30.0,
             "rollout_max_error_rate": 0.05}  # zero errors in 100 queries shows < 5 %, never < 0.1 %
FAST_QUERIES_PER_S = 25

log = logging.getLogger(__name__)


def demo_settings(settings: Settings, *, fast: bool) -> tuple[Settings, list[str]]:
    """The settings the demo's controller judges with, and one line per choice made for the user.

    A value the user set (environment or .env) is never replaced.
    """
    lexical = all(settings.version(v).embedder == "local" for v in VERSIONS)  # the demo's pair, from V1_*/V2_*
    gates = {k: v for k, v in LEXICAL_GATES.items() if k not in settings.model_fields_set} if lexical else {}
    plan = {k: v for k, v in FAST_PLAN.items() if k not in settings.model_fields_set} if fast else {}
    chosen = settings.with_overrides(**gates, **plan)
    lines = []
    if gates:
        lines.append("gates: the local lexical embedders score low by construction, so the quality gate's floors "
                     f"are lowered for this demo (mean top similarity >= {chosen.rollout_min_similarity:g}, "
                     f"shadow overlap >= {chosen.rollout_min_shadow_overlap:g}; production defaults 0.7 and 0.5). "
                     "Set ROLLOUT_MIN_SHADOW_OVERLAP=0.5 to watch the controller roll the candidate back instead.")
    elif lexical:
        lines.append("gates: your quality floors apply to lexical embedders: if the candidate's shadow overlap or "
                     "similarity stays below them, the controller rolls it back after a few hundred queries.")
    if fast:
        lines.append(f"plan: --fast: stages of {chosen.rollout_min_stage_s:g} s at least, judged every "
                     f"{chosen.rollout_evaluation_interval_s:g} s on {chosen.rollout_min_samples} candidate queries "
                     f"(error rate below {chosen.rollout_max_error_rate:.0%}), with {FAST_QUERIES_PER_S} demo "
                     "queries a second sent by the demo itself")
    else:
        lines.append(f"plan: each stage lasts at least {chosen.rollout_min_stage_s / 3600:g} h and needs "
                     f"{chosen.rollout_min_samples} candidate queries; `rollout demo --fast` runs 10 -> 100 % in "
                     "minutes")
    return chosen, lines


def write_webhook_secret(settings: Settings) -> Path:
    """The webhook secret in `<data dir>/alert_webhook_secret` (owner only), where the example
    Alertmanager configuration (grafana/alertmanager.yml) reads it."""
    path = Path(settings.data_dir) / "alert_webhook_secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(settings.alert_webhook_secret or "")
    return path


def worth_printing(decision: dict, previous: dict | None) -> bool:
    """Every decision that changes something; a hold only when its reason differs from the last one shown."""
    if decision["percentage_before"] != decision["percentage_after"] or decision["action"] != "hold":
        return True
    return previous is None or previous["action"] != "hold" or previous["reason"] != decision["reason"]


class DecisionFeed:
    """Prints the rollout's decisions (controller, people, alerts) as they are recorded, one line each."""

    def __init__(self, store: RolloutStore, echo: Callable[[dict], None], interval_s: float = 1.0):
        self.store = store
        self.echo = echo
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-feed", daemon=True)
        latest = store.decisions(1)
        self._seen = latest[0]["id"] if latest else 0
        self._shown: dict | None = None

    def start(self) -> DecisionFeed:
        self._thread.start()
        return self

    def poll(self) -> None:
        fresh = [d for d in self.store.decisions(50) if d["id"] > self._seen]
        for decision in sorted(fresh, key=lambda d: d["id"]):
            self._seen = decision["id"]
            if worth_printing(decision, self._shown):
                self.echo(decision)
                self._shown = decision

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception as exc:  # a database hiccup must not end the feed
                log.warning("decision feed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class DemoTraffic:
    """`rollout demo --fast`: the demo queries, sent by many users at a steady rate until stopped."""

    SENDERS = 4  # a query takes tens of ms on a small machine: one sender alone would fall behind

    def __init__(self, url: str, per_second: float = FAST_QUERIES_PER_S, seed: int = 7):
        self.url = url
        self.pause_s = self.SENDERS / per_second
        self.queries = [q for q in queries_path().read_text().splitlines() if q.strip()]
        self.seed = seed
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), name=f"demo-traffic-{n}", daemon=True)
                         for n in range(self.SENDERS)]

    def start(self) -> DemoTraffic:
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, sender: int) -> None:
        chance = random.Random(self.seed + sender)
        while not self._stop.wait(self.pause_s):
            body = json.dumps({"query": chance.choice(self.queries),
                               "user_id": f"demo-{chance.randrange(5000)}"}).encode()
            request = urllib.request.Request(f"{self.url}/api/rag/query", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
            except (urllib.error.URLError, OSError):
                pass  # the gateway stopping or busy: the next query tries again

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)


def corpus_path() -> Path:
    return Path(str(resources.files("rollout") / "data" / "demo_corpus.jsonl"))


def queries_path() -> Path:
    return Path(str(resources.files("rollout") / "data" / "demo_queries.txt"))


def load_corpus(runtime: Runtime) -> UpsertCounts:
    return DocumentStore(runtime.pool).upsert_many(read_jsonl(corpus_path()))


def embed_corpus(runtime: Runtime) -> list[BackfillReport]:
    """Backfill every version (document-purpose embedders), then count coverage for the router."""
    reports = [backfill_for(runtime, version).run() for version in runtime.backends]
    runtime.coverage.refresh()
    return reports


def start_first_stage(runtime: Runtime) -> list[str]:
    """Shadow queries and analytics on, and the rollout's first stage started the way a person would
    (`rollout stage advance`), unless someone already chose values (environment, override, a rollout)."""
    changed = []
    for name, value in COMPARISON.items():
        if runtime.flags.snapshot().sources[name] is Source.DEFAULT:
            runtime.flags.set(name, value, actor=DEMO_ACTOR, reason="demo: compare the baseline and the candidate")
            changed.append(f"{name}={value}")
    sources = runtime.flags.snapshot().sources
    untouched = all(sources[name] is Source.DEFAULT for name in (GRADUAL_MIGRATION, V2_PERCENTAGE))
    if untouched and runtime.stages.store.read().state.status is Status.IDLE:
        decision = runtime.stages.command(Command(Action.ADVANCE, actor=DEMO_ACTOR, reason="demo: first stage"))
        changed += decision["flag_changes"]
    return changed


@contextmanager
def prepared_services(folder: Path) -> Iterator[ServiceUrls]:
    """For benchmarks and checks: DATABASE_URL / REDIS_URL from the environment (else embedded services
    under `folder`), the schema applied and the demo corpus embedded for both versions."""
    settings = Settings.from_environ({"ROLLOUT_DATA_DIR": str(folder),
                                      **{k: os.environ[k] for k in ("DATABASE_URL", "REDIS_URL") if os.environ.get(k)}})
    with service_urls(settings) as urls:
        schema.upgrade(urls.database_url, settings)
        runtime = Runtime(settings, urls.database_url, urls.redis_url, pool_size=2)
        try:
            load_corpus(runtime)
            embed_corpus(runtime)
        finally:
            runtime.close()
        yield urls
