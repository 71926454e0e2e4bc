"""The pairwise judge: both SDKs against a loopback fake, the order swap, ties, the cost cap, errors, the cache."""

import random
import subprocess
import sys

import psycopg
import pytest
from fake_chat_server import FakeChatServer

from rollout.backends import Hit
from rollout.config import Settings
from rollout.configured import judge_setup
from rollout.embedders.registry import ProviderAccount
from rollout.errors import ConfigError
from rollout.relevance.judges import Listed, build_judge
from rollout.relevance.judges.base import JudgeError, read_answer
from rollout.relevance.judges.google import GeminiJudge
from rollout.relevance.judges.lexical import LexicalOverlapJudge
from rollout.relevance.judges.openai import OpenAIJudge
from rollout.relevance.judging import Budget, Pair, PairwiseJudging, judge_summary

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("offline_sdk")]


@pytest.fixture
def server():
    with FakeChatServer() as fake:
        yield fake


def openai_judge(server):
    return OpenAIJudge(api_key="sk-test", base_url=f"{server.url}/v1", model="gpt-test", timeout_s=5)


def gemini_judge(server):
    return GeminiJudge(api_key="AIza-test", base_url=server.url, model="gemini-test", timeout_s=5)


MAKERS = {"openai": openai_judge, "google": gemini_judge}


def hit(doc, title, snippet="text"):
    return Hit(doc, title, snippet, {}, "facilities", 0.5)


GOOD = [hit("d1", "GOOD answer"), hit("d2", "other")]
PLAIN = [hit("d3", "plain"), hit("d4", "other")]


def pair(baseline_hits, candidate_hits, query="pool hours", rbo=0.1, category="facilities"):
    return Pair(query, "base", "cand", baseline_hits, candidate_hits, rbo, category, "req-1")


def judging(pool, judge, tokens=10_000, usd=10.0, **options):
    return PairwiseJudging(pool, judge, Budget(tokens, usd, usd_per_1k_tokens=1.0), **options)


@pytest.mark.parametrize("provider", MAKERS)
def test_each_sdk_judge_reads_the_verdict_and_tokens(server, provider):
    judge = MAKERS[provider](server)
    first, second = [Listed("GOOD answer", "x")], [Listed("plain", "y")]
    assert judge.prefer("q", first, second).choice == "first"
    assert judge.prefer("q", second, first).choice == "second"
    preference = judge.prefer("q", second, second)
    assert preference.choice == "tie" and preference.tokens == 100
    assert "Query: q" in server.prompts[0] and "1. GOOD answer: x" in server.prompts[0]


@pytest.mark.parametrize("provider", MAKERS)
def test_a_provider_error_is_a_judge_error(server, provider):
    server.fail_next(503)
    with pytest.raises(JudgeError, match="http_503"):
        MAKERS[provider](server).prefer("q", [], [])


@pytest.mark.parametrize("provider", MAKERS)
def test_the_order_swap_finds_the_better_list_wherever_it_stands(server, runtime, provider):
    j = judging(runtime.pool, MAKERS[provider](server), metrics=runtime.metrics)
    assert j.judge_pair(pair(PLAIN, GOOD)) == "candidate"
    assert j.judge_pair(pair(GOOD, PLAIN, query="other query")) == "baseline"
    assert len(server.prompts) == 4
    # asked twice, the lists swapped: the GOOD list is A once and B once
    assert server.prompts[0].index("GOOD") > server.prompts[0].index("List B:")
    assert server.prompts[1].index("GOOD") < server.prompts[1].index("List B:")
    assert "d1" not in server.prompts[0] and "cand" not in server.prompts[0]  # anonymised
    assert judge_summary(runtime.pool, 3600)[""] == {"wins": 1, "losses": 1, "ties": 0}
    name = j.judge.name
    assert runtime.metrics.registry.get_sample_value("rag_relevance_judge_tokens_total", {"judge": name}) == 400
    assert runtime.metrics.registry.get_sample_value(
        "rag_relevance_signals_total", {"version": "cand", "source": "judge", "outcome": "win"}) == 1


def test_a_judge_that_follows_the_position_splits_into_a_tie(server, runtime):
    server.mode = "position"
    j = judging(runtime.pool, openai_judge(server))
    assert j.judge_pair(pair(PLAIN, GOOD)) == "tie"
    assert judge_summary(runtime.pool, 3600)[""] == {"wins": 0, "losses": 0, "ties": 1}


def test_the_cost_cap_stops_judging_for_the_day(server, runtime):
    j = judging(runtime.pool, openai_judge(server), tokens=300, metrics=runtime.metrics)
    assert j.judge_pair(pair(PLAIN, GOOD, query="q1")) == "candidate"   # 200 tokens
    assert j.judge_pair(pair(PLAIN, GOOD, query="q2")) == "candidate"   # 400: over the cap from now on
    assert j.judge_pair(pair(PLAIN, GOOD, query="q3")) == "over_budget"
    assert len(server.prompts) == 4 and j.spent_today() == (400, pytest.approx(0.4))
    money = judging(runtime.pool, openai_judge(server), usd=0.3)  # 0.4 USD already spent today
    assert money.judge_pair(pair(PLAIN, GOOD, query="q4")) == "over_budget"
    assert runtime.metrics.registry.get_sample_value(
        "rag_relevance_judge_calls_total", {"judge": "openai:gpt-test", "outcome": "over_budget"}) == 1


def test_a_provider_error_is_counted_and_stores_nothing(server, runtime):
    j = judging(runtime.pool, gemini_judge(server), metrics=runtime.metrics)
    server.fail_next(500)
    assert j.judge_pair(pair(PLAIN, GOOD)) == "error"
    assert runtime.metrics.registry.get_sample_value(
        "rag_relevance_judge_calls_total", {"judge": "google:gemini-test", "outcome": "error"}) == 1
    with psycopg.connect(runtime.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM relevance_judgements").fetchone()[0] == 0


def test_the_same_query_and_lists_are_judged_once(server, runtime):
    j = judging(runtime.pool, openai_judge(server))
    assert j.judge_pair(pair(PLAIN, GOOD)) == "candidate"
    assert j.judge_pair(pair(PLAIN, GOOD)) == "candidate"
    assert len(server.prompts) == 2
    assert j.judge_pair(pair(PLAIN, list(reversed(GOOD)))) == "candidate"  # another list: another verdict
    assert len(server.prompts) == 4


def test_only_sampled_disagreements_are_queued_and_judged_off_the_caller(server, runtime):
    j = judging(runtime.pool, openai_judge(server), sample_rate=0.5, max_rbo=0.7, rng=random.Random(3),
                queue_size=1)
    assert j.offer(pair(PLAIN, GOOD, rbo=0.9)) == "agrees"
    outcomes = [j.offer(pair(PLAIN, GOOD, query=f"q{n}")) for n in range(20)]
    assert "sampled_out" in outcomes and "queued" in outcomes and "dropped" in outcomes  # queue of one, no worker
    assert server.prompts == []  # offering never calls the judge
    j.start()
    j.close()


def test_the_offline_judge_prefers_the_list_that_matches_the_query():
    judge = LexicalOverlapJudge()
    matching = [Listed("Pool opening hours", "The pool opens at 6am")]
    other = [Listed("Car park rates", "Parking costs 12 dollars")]
    assert judge.prefer("when does the pool open", matching, other).choice == "first"
    assert judge.prefer("when does the pool open", other, matching).choice == "second"
    assert judge.prefer("when does the pool open", other, other).choice == "tie"


def test_answers_and_configuration():
    assert read_answer(" b\n") == "second" and read_answer("T") == "tie"
    with pytest.raises(JudgeError, match="unreadable"):
        read_answer("maybe")
    assert build_judge(judge_setup(Settings.from_environ({}))) is None
    assert build_judge(judge_setup(Settings.from_environ({"RELEVANCE_JUDGE": "lexical"}))).name == "lexical-overlap"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_judge(judge_setup(Settings.from_environ({"RELEVANCE_JUDGE": "openai"})))
    with pytest.raises(ConfigError, match="RELEVANCE_JUDGE: unknown judge 'cohere'; expected none or one of lexical"):
        build_judge(judge_setup(Settings.from_environ({"RELEVANCE_JUDGE": "cohere"})))


def test_a_judge_takes_its_providers_account():
    settings = Settings.from_environ({"RELEVANCE_JUDGE": "google", "GOOGLE_API_KEY": "g-key",
                                      "GOOGLE_BASE_URL": "http://127.0.0.1:9", "OPENAI_API_KEY": "sk-other"})
    setup = judge_setup(settings)
    assert setup.account == ProviderAccount(api_key="g-key", base_url="http://127.0.0.1:9")
    assert judge_setup(settings, "openai").account == ProviderAccount(api_key="sk-other")
    assert judge_setup(settings, "lexical").account == ProviderAccount()
    assert build_judge(setup).name == "google:gemini-2.0-flash"
    with pytest.raises(ConfigError, match="RELEVANCE_JUDGE=google needs GOOGLE_API_KEY"):
        build_judge(judge_setup(Settings.from_environ({"RELEVANCE_JUDGE": "google"})))


def test_the_judge_registry_imports_no_sdk():
    code = ("import sys, rollout.relevance.judges as j; "
            "print(sorted(m for m in ('openai', 'google.genai', *(k.module for k in j.JUDGES.values())) "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_shadow_pairs_reach_the_judge_off_the_request_path(make_runtime):
    from helpers import load_and_embed, wait_until

    from flags import PARALLEL_RAG
    from rollout.relevance.versions import baseline_and_candidate

    runtime = make_runtime(RELEVANCE_JUDGE="lexical", RELEVANCE_JUDGE_SAMPLE_RATE="1", RELEVANCE_JUDGE_MAX_RBO="1")
    load_and_embed(runtime)
    runtime.flags.set(PARALLEL_RAG, True, actor="test")
    offered = []
    runtime.gateway.pair_listeners.append(lambda answer, shadow, comparison: offered.append((shadow, comparison)))
    queries = ["pool opening hours", "parking rates per day", "jazz on the roof", "refund within days"]
    answers = [runtime.gateway.answer(_query(text)) for text in queries]
    assert wait_until(lambda: len(offered) == len(queries))
    baseline, candidate = baseline_and_candidate(runtime.router.roles)
    assert {shadow.version for shadow, _ in offered} == {candidate} and {a.served_by for a in answers} == {baseline}
    disagreeing = sum(comparison.rbo < 1 for _, comparison in offered)

    def judged():
        with psycopg.connect(runtime.database_url) as conn:
            return conn.execute("SELECT count(*), min(baseline), min(candidate), min(judge) "
                                "FROM relevance_judgements").fetchone()

    assert disagreeing > 0  # the two demo embedders rank these queries differently
    assert wait_until(lambda: judged()[0] == disagreeing)
    assert judged()[1:] == (baseline, candidate, "lexical-overlap")


def _query(text):
    from rollout.gateway import RagQuery

    return RagQuery(text=text, k=3, user_key="user-1", request_id=text.replace(" ", "-"))
