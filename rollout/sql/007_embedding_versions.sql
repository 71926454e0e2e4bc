-- The registry of embedding versions. A rollout is between the baseline and a candidate;
-- any number of versions can be registered (`rollout versions add`), each with its own table.
-- This upgrade registers the two versions of the earlier schema from V1_* / V2_* (v1 the
-- baseline, v2 the candidate), and lifts the literal v1/v2 checks off the query log, so an
-- existing deployment keeps its embeddings, query log and decisions.

CREATE TABLE IF NOT EXISTS embedding_versions (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,32}$'),
    provider     text NOT NULL,
    model        text NOT NULL,
    dimensions   integer NOT NULL CHECK (dimensions BETWEEN 1 AND 4000),
    vector_type  text NOT NULL DEFAULT 'vector' CHECK (vector_type IN ('vector', 'halfvec')),
    table_name   text NOT NULL UNIQUE,
    -- baseline: answers by default; candidate: being rolled out; ready: registered, not in a rollout;
    -- read_only: a former baseline, searchable, no longer written; retired: no longer written nor served
    status       text NOT NULL CHECK (status IN ('baseline', 'candidate', 'ready', 'read_only', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    notes        text NOT NULL DEFAULT ''
);
-- one baseline, at most one candidate
CREATE UNIQUE INDEX IF NOT EXISTS embedding_versions_one_baseline ON embedding_versions (status)
    WHERE status IN ('baseline', 'candidate');

-- the dimension is the one the table was made with (pgvector keeps it in atttypmod)
INSERT INTO embedding_versions (name, provider, model, dimensions, table_name, status, notes)
SELECT v.name, v.provider, v.model, a.atttypmod, v.table_name, v.status, v.notes
FROM (VALUES
    ('v1', {{v1_provider}}, {{v1_model}}, 'doc_embeddings_v1', 'baseline', 'registered by the upgrade from V1_* settings'),
    ('v2', {{v2_provider}}, {{v2_model}}, 'doc_embeddings_v2', 'candidate', 'registered by the upgrade from V2_* settings')
) AS v (name, provider, model, table_name, status, notes)
JOIN pg_attribute a ON a.attrelid = to_regclass(v.table_name) AND a.attname = 'embedding'
ON CONFLICT (name) DO NOTHING;

-- version names are data now: any registered name, not only v1/v2
ALTER TABLE query_log DROP CONSTRAINT IF EXISTS query_log_routed_version_check;
ALTER TABLE query_log DROP CONSTRAINT IF EXISTS query_log_served_version_check;
ALTER TABLE query_log DROP CONSTRAINT IF EXISTS query_log_other_version_check;
ALTER TABLE performance_baselines DROP CONSTRAINT IF EXISTS performance_baselines_version_check;
