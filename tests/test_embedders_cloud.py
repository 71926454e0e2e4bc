"""The OpenAI and Gemini embedders, for real through their SDKs, against a fake server on 127.0.0.1."""

from __future__ import annotations

import logging
import math
import re
import socket
import time

import numpy as np
import pytest
from fake_embedding_server import FakeEmbeddingServer, token_count, vector_for

from rollout.config import Settings
from rollout.embedders import (
    EmbeddingAuthError,
    EmbeddingDimensionError,
    EmbeddingError,
    EmbeddingRejected,
    build_embedder,
)
from rollout.embedders.google import GoogleEmbedder
from rollout.embedders.openai import OpenAIEmbedder
from rollout.embedders.retrying import retry_after_seconds
from rollout.errors import ConfigError

OPENAI_KEY = "sk-test-0123456789abcdef"
GOOGLE_KEY = "AIza-test-0123456789abcdef"
GEMINI_ROUTE = re.compile(r"^/v1(beta)?/models/gemini-embedding-001:batchEmbedContents$")

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("offline_sdk")]


@pytest.fixture
def server():
    with FakeEmbeddingServer() as fake:
        yield fake


def make_openai(server, **options) -> OpenAIEmbedder:
    settings = dict(api_key=OPENAI_KEY, base_url=f"{server.url}/v1", dimensions=768, timeout_s=2.0,
                    max_attempts=3, batch_size=100, retry_wait_s=0.01)
    return OpenAIEmbedder(**{**settings, **options})


def make_google(server, **options) -> GoogleEmbedder:
    settings = dict(api_key=GOOGLE_KEY, base_url=server.url, dimensions=1536, timeout_s=2.0,
                    max_attempts=3, batch_size=100, retry_wait_s=0.01)
    return GoogleEmbedder(**{**settings, **options})


PROVIDERS = {"openai": (make_openai, OPENAI_KEY, "OPENAI_API_KEY"),
             "google": (make_google, GOOGLE_KEY, "GOOGLE_API_KEY")}


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request):
    return request.param


def expected_rows(texts, dimensions, api) -> np.ndarray:
    rows = np.array([vector_for(text, dimensions, api) for text in texts], dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def texts_of(count: int) -> list[str]:
    return [f"document {i} about topic {i % 7}" for i in range(count)]


# --- OpenAI -----------------------------------------------------------------------------------

def test_openai_batches_requests_and_keeps_input_order(server):
    texts = texts_of(250)
    vectors = make_openai(server).embed(texts)

    assert [len(r.texts) for r in server.requests] == [100, 100, 50]
    assert [t for r in server.requests for t in r.texts] == texts
    for request in server.requests:
        assert request.path == "/v1/embeddings"
        assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert request.body["model"] == "text-embedding-3-small"
        assert request.body["dimensions"] == 768
        assert request.body["encoding_format"] == "float"
    assert vectors.dtype == np.float32 and vectors.shape == (250, 768)
    np.testing.assert_allclose(vectors, expected_rows(texts, 768, "openai"), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_openai_orders_results_by_index_not_by_position(server):
    server.reverse_order = True
    texts = ["alpha", "beta", "gamma"]
    vectors = make_openai(server).embed(texts)
    np.testing.assert_allclose(vectors, expected_rows(texts, 768, "openai"), atol=1e-5)


def test_openai_base_url_without_v1_posts_to_embeddings(server):
    make_openai(server, base_url=server.url).embed(["x"])
    assert [r.path for r in server.requests] == ["/embeddings"]


def test_openai_batch_size_is_capped_at_2048_inputs(server):
    embedder = make_openai(server, batch_size=5000, dimensions=8)
    assert embedder.batch_size == 2048
    embedder.embed(texts_of(2100))
    assert [len(r.texts) for r in server.requests] == [2048, 52]


def test_openai_records_reported_tokens(server):
    texts = texts_of(250)
    embedder = make_openai(server, dimensions=8)
    embedder.embed(texts)
    usage = embedder.usage.snapshot()
    assert (usage.requests, usage.texts) == (3, 250)
    assert usage.tokens == sum(token_count(t) for t in texts)


def test_openai_model_dimension_limits_are_checked_at_construction(server):
    with pytest.raises(ConfigError, match="at most 1536"):
        make_openai(server, dimensions=3072)
    with pytest.raises(ConfigError, match="always returns 1536"):
        make_openai(server, model="text-embedding-ada-002", dimensions=768)
    make_openai(server, model="text-embedding-ada-002", dimensions=1536).embed(["x"])
    assert "dimensions" not in server.requests[-1].body


# --- Gemini -----------------------------------------------------------------------------------

def test_google_batches_at_most_100_texts_per_request(server):
    texts = texts_of(250)
    embedder = make_google(server, batch_size=500)
    assert embedder.batch_size == 100
    vectors = embedder.embed(texts)

    assert [len(r.texts) for r in server.requests] == [100, 100, 50]
    assert [t for r in server.requests for t in r.texts] == texts
    for request in server.requests:
        assert GEMINI_ROUTE.match(request.path), request.path
        assert request.headers["x-goog-api-key"] == GOOGLE_KEY
        assert "authorization" not in request.headers
        for item in request.body["requests"]:
            assert item["model"] == "models/gemini-embedding-001"
            assert item["outputDimensionality"] == 1536
            assert item["taskType"] == "RETRIEVAL_DOCUMENT"
    assert vectors.dtype == np.float32 and vectors.shape == (250, 1536)


def test_google_normalises_vectors_that_are_not_unit_length(server):
    texts = ["short", "a longer text", "the longest text of the three"]
    raw_norms = [np.linalg.norm(vector_for(t, 1536, "gemini")) for t in texts]
    assert not np.allclose(raw_norms, 1.0)  # the fake must really answer non-unit vectors

    vectors = make_google(server).embed(texts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, expected_rows(texts, 1536, "gemini"), atol=1e-5)


def test_google_task_type_is_sent_and_validated(server):
    make_google(server, task_type="RETRIEVAL_QUERY").embed(["what is pgvector?"])
    assert server.requests[-1].body["requests"][0]["taskType"] == "RETRIEVAL_QUERY"
    with pytest.raises(ConfigError, match="task type"):
        make_google(server, task_type="retrieval")


def test_google_estimates_tokens_from_characters(server):
    texts = ["abc", "abcd", "abcde", "x" * 41]
    embedder = make_google(server)
    embedder.embed(texts)
    usage = embedder.usage.snapshot()
    assert (usage.requests, usage.texts, usage.tokens) == (1, 4, 1 + 1 + 2 + 11)


def test_google_one_vector_per_text_for_multimodal_models(server):
    # The SDK merges a plain list of strings into one content for these models.
    vectors = make_google(server, model="gemini-embedding-2", dimensions=768).embed(["a", "b", "c"])
    assert vectors.shape == (3, 768)
    assert server.requests[-1].texts == ["a", "b", "c"]
    assert len(server.requests[-1].body["requests"]) == 3


def test_text_embedding_004_cannot_give_1536_dimensions(server):
    with pytest.raises(ConfigError, match="text-embedding-004 returns at most 768"):
        make_google(server, model="text-embedding-004", dimensions=1536)
    assert make_google(server, model="text-embedding-004", dimensions=768).dimensions == 768
    assert server.requests == []


def test_google_invalid_key_answered_as_400_is_an_auth_error(server):
    server.fail_next(400, reason="API_KEY_INVALID")
    with pytest.raises(EmbeddingAuthError, match="GOOGLE_API_KEY") as caught:
        make_google(server).embed(["x"])
    assert caught.value.status == 400
    assert len(server.requests) == 1


# --- both providers -----------------------------------------------------------------------------

def test_empty_input_makes_no_request(server, provider):
    make, _, _ = PROVIDERS[provider]
    embedder = make(server)
    assert embedder.embed([]).shape == (0, embedder.dimensions)
    assert server.requests == []


def test_wrong_dimension_is_refused(server, provider):
    make, _, _ = PROVIDERS[provider]
    server.dimension_override = 10
    with pytest.raises(EmbeddingDimensionError, match="expected .* dimensions, got 10"):
        make(server).embed(["a", "b"])


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_failures_are_retried_until_success(server, provider, status):
    make, _, _ = PROVIDERS[provider]
    server.fail_next(status, times=2)
    vectors = make(server).embed(["a", "b"])
    assert vectors.shape[0] == 2
    assert len(server.requests) == 3


def test_gives_up_after_max_attempts(server, provider):
    make, _, _ = PROVIDERS[provider]
    server.fail_next(500, times=10)
    with pytest.raises(EmbeddingError, match="after 3 attempts") as caught:
        make(server, max_attempts=3).embed(["a"])
    assert type(caught.value) is EmbeddingError
    assert caught.value.status == 500
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_not_retried_and_names_the_variable(server, provider, status):
    make, key, variable = PROVIDERS[provider]
    server.fail_next(status, times=5)
    with pytest.raises(EmbeddingAuthError, match=variable) as caught:
        make(server).embed(["a"])
    assert caught.value.status == status
    assert key not in str(caught.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_rejected_request_is_not_retried_and_hides_the_key(server, provider, status):
    make, key, _ = PROVIDERS[provider]
    server.fail_next(status, times=5)
    with pytest.raises(EmbeddingRejected) as caught:
        make(server).embed(["a"])
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value)
    assert key not in str(caught.value)
    assert len(server.requests) == 1


def test_timeout_is_retried_then_reported(server, provider):
    make, _, _ = PROVIDERS[provider]
    server.delay_s = 1.5
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match="timed out after 2 attempts") as caught:
        make(server, timeout_s=0.2, max_attempts=2).embed(["a"])
    assert caught.value.status is None
    assert len(server.requests) == 2
    assert time.monotonic() - started < 1.4  # the client gave up, it did not wait for the answer


def test_connection_refused_is_retried_then_reported(server, provider):
    make, _, _ = PROVIDERS[provider]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    base_url = f"{closed_url}/v1" if provider == "openai" else closed_url
    with pytest.raises(EmbeddingError, match="connection failed .* after 2 attempts") as caught:
        make(server, base_url=base_url, max_attempts=2).embed(["a"])
    assert caught.value.status is None


def test_retry_after_header_is_honoured(server, provider):
    make, _, _ = PROVIDERS[provider]
    server.fail_next(429, retry_after="0.4")
    started = time.monotonic()
    make(server, retry_wait_s=0.001).embed(["a"])
    assert time.monotonic() - started >= 0.4
    assert len(server.requests) == 2


def test_retry_logs_never_carry_the_key(server, provider, caplog):
    make, key, _ = PROVIDERS[provider]
    server.fail_next(400 if provider == "openai" else 500)  # the fake echoes the key in these
    server.fail_next(429)
    caplog.set_level(logging.DEBUG)
    embedder = make(server)
    if provider == "openai":
        with pytest.raises(EmbeddingRejected):
            embedder.embed(["a"])
    embedder.embed(["a"])
    assert "HTTP 429" in caplog.text
    assert key not in caplog.text


def test_retry_after_parsing():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 <= retry_after_seconds({"retry-after": in_a_minute}) <= 61
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds(None) is None


# --- the factory ------------------------------------------------------------------------------

def test_factory_builds_openai_from_settings(server):
    settings = Settings.from_environ({
        "V2_EMBEDDER": "openai", "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": f"{server.url}/v1",
        "EMBEDDING_BATCH_SIZE": "2", "EMBEDDING_TIMEOUT_S": "2"})
    embedder = build_embedder(settings.version("v2"), settings)
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.describe() == {"provider": "openai", "model": "text-embedding-3-small", "dimensions": 768}
    vectors = embedder.embed(["a", "b", "c"])
    assert vectors.shape == (3, 768)
    assert [len(r.texts) for r in server.requests] == [2, 1]
    assert server.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_factory_builds_google_from_settings(server):
    settings = Settings.from_environ({
        "V1_EMBEDDER": "google", "GOOGLE_API_KEY": GOOGLE_KEY, "GOOGLE_BASE_URL": server.url})
    embedder = build_embedder(settings.version("v1"), settings)
    assert isinstance(embedder, GoogleEmbedder)
    assert embedder.describe() == {"provider": "google", "model": "gemini-embedding-001", "dimensions": 1536}
    vectors = embedder.embed(["a", "b"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert server.requests[0].headers["x-goog-api-key"] == GOOGLE_KEY


@pytest.mark.parametrize(("version", "kind", "variable"),
                         [("v2", "openai", "OPENAI_API_KEY"), ("v1", "google", "GOOGLE_API_KEY")])
def test_factory_refuses_a_missing_key(version, kind, variable):
    settings = Settings.from_environ({f"{version.upper()}_EMBEDDER": kind, variable: "  "})
    with pytest.raises(ConfigError, match=variable):
        build_embedder(settings.version(version), settings)


def test_factory_refuses_text_embedding_004_at_1536(server):
    settings = Settings.from_environ({
        "V1_EMBEDDER": "google", "V1_MODEL": "text-embedding-004", "GOOGLE_API_KEY": GOOGLE_KEY,
        "GOOGLE_BASE_URL": server.url})
    with pytest.raises(ConfigError, match="768"):
        build_embedder(settings.version("v1"), settings)


def test_token_estimate_rounds_up_per_text():
    from rollout.embedders.google import estimate_tokens
    assert estimate_tokens(["", "a", "abcd", "abcde"]) == 0 + 1 + 1 + 2
    assert estimate_tokens(["x" * 4001]) == math.ceil(4001 / 4)
