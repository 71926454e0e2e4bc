-- Relevance evidence: each row names the version (its registry name) that produced it.

-- `rollout eval`: one row per run of a labelled query set against the baseline and candidate.
CREATE TABLE IF NOT EXISTS relevance_evals (
    id             bigserial PRIMARY KEY,
    evaluated_at   timestamptz NOT NULL DEFAULT now(),
    baseline       text NOT NULL,
    candidate      text NOT NULL,
    qrels_sha256   text NOT NULL,                  -- which query set (the file's bytes)
    queries        integer NOT NULL CHECK (queries > 0),
    passed         boolean NOT NULL,               -- candidate nDCG@10 non-inferior within the margin
    report         jsonb NOT NULL CHECK (jsonb_typeof(report) = 'object')
);
CREATE INDEX IF NOT EXISTS relevance_evals_pair_idx ON relevance_evals (baseline, candidate, evaluated_at DESC);

-- POST /api/rag/feedback: what a client said about an answer, tied to the version that answered.
-- One row per (request, document, kind): a repeated call updates the value instead of counting twice.
CREATE TABLE IF NOT EXISTS relevance_feedback (
    id             bigserial PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    request_id     text NOT NULL,
    document_id    text NOT NULL DEFAULT '',       -- '' : about the whole answer
    kind           text NOT NULL CHECK (kind IN ('relevant', 'not_relevant', 'grade', 'clicked', 'cited')),
    value          smallint CHECK (value BETWEEN 0 AND 3),  -- grade only
    version        text NOT NULL,                  -- the version that answered the request
    category       text,
    UNIQUE (request_id, document_id, kind)
);
CREATE INDEX IF NOT EXISTS relevance_feedback_received_at_idx ON relevance_feedback (received_at);
-- feedback finds the answering version by the request id the query returned
CREATE INDEX IF NOT EXISTS query_log_request_id_idx ON query_log (request_id);

-- Known-item probes: a document's title, first sentence or a template as the query; where each
-- version ranked the document. Never part of user traffic or its metrics.
CREATE TABLE IF NOT EXISTS relevance_probes (
    id             bigserial PRIMARY KEY,
    probed_at      timestamptz NOT NULL DEFAULT now(),
    round_id       text NOT NULL,                  -- one scheduled run: the same probes for every version
    version        text NOT NULL,
    document_id    text NOT NULL,
    category       text,
    style          text NOT NULL,                  -- title | first_sentence | template
    rank           integer CHECK (rank > 0),       -- NULL: not in the top k
    k              integer NOT NULL CHECK (k > 0),
    error          text                            -- the version could not answer the probe
);
CREATE INDEX IF NOT EXISTS relevance_probes_probed_at_idx ON relevance_probes (probed_at);

-- The pairwise judge on shadow disagreements: which version's list served the query better.
CREATE TABLE IF NOT EXISTS relevance_judgements (
    id             bigserial PRIMARY KEY,
    judged_at      timestamptz NOT NULL DEFAULT now(),
    request_id     text,
    pair_hash      text NOT NULL,                  -- hash of (query, both lists): the cache key
    baseline       text NOT NULL,
    candidate      text NOT NULL,
    category       text,
    judge          text NOT NULL,                  -- e.g. openai:gpt-4o-mini, lexical-overlap
    winner         text NOT NULL CHECK (winner IN ('baseline', 'candidate', 'tie')),
    rbo            real,
    tokens         integer NOT NULL DEFAULT 0,
    cost_usd       double precision NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS relevance_judgements_judged_at_idx ON relevance_judgements (judged_at);
CREATE INDEX IF NOT EXISTS relevance_judgements_pair_idx ON relevance_judgements (pair_hash);
