-- Query analytics: one row per query (written in batches off the request path),
-- and the stored V1 performance baselines of `rollout baseline`.

CREATE TABLE IF NOT EXISTS query_log (
    id                    bigserial PRIMARY KEY,
    logged_at             timestamptz NOT NULL,          -- when the query arrived
    request_id            text NOT NULL,
    mode                  text NOT NULL CHECK (mode IN ('routed', 'merged')),
    bucket                integer,
    reason                text NOT NULL,                 -- the routing decision's reason
    routed_version        text NOT NULL CHECK (routed_version IN ('v1', 'v2')),
    served_version        text CHECK (served_version IN ('v1', 'v2', 'merged')),  -- NULL: no version answered
    query_hash            text NOT NULL,                 -- keyed BLAKE2b of the text
    query_text            text,                          -- only with QUERY_LOG_STORE_TEXT=true
    category              text,
    k                     integer NOT NULL,
    latency_ms            real NOT NULL,
    embed_ms              real,
    search_ms             real,
    top_similarity        real,                          -- in the served version's own space
    result_count          integer NOT NULL,
    cache_hit             boolean,                       -- NULL: that version has no query cache
    fallback              boolean NOT NULL,
    fallback_reason       text,
    error_kind            text,                          -- why no version answered
    other_version         text CHECK (other_version IN ('v1', 'v2')),  -- the shadow, or merged mode's second source
    other_latency_ms      real,
    other_top_similarity  real,
    other_error           text,
    overlap               real CHECK (overlap BETWEEN 0 AND 1),         -- Jaccard of the two ID lists
    rbo                   real CHECK (rbo BETWEEN 0 AND 1),
    kendall_tau           real CHECK (kendall_tau BETWEEN -1 AND 1),
    top1_agreement        boolean
);
-- Every reader asks for a time window; retention deletes the oldest rows.
CREATE INDEX IF NOT EXISTS query_log_logged_at_idx ON query_log (logged_at);

CREATE TABLE IF NOT EXISTS performance_baselines (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    version     text NOT NULL CHECK (version IN ('v1', 'v2')),
    range       text NOT NULL,                           -- the window the figures cover (1h, 24h, 7d)
    figures     jsonb NOT NULL CHECK (jsonb_typeof(figures) = 'object'),
    note        text
);
CREATE INDEX IF NOT EXISTS performance_baselines_created_at_idx ON performance_baselines (created_at DESC);
