-- Core tables: the corpus, one embeddings table per version, and the flag audit.
-- Embedding dimensions come from V1_DIMENSIONS / V2_DIMENSIONS (filled in by `rollout db upgrade`).

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS documents (
    id            text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 256),
    category      text NOT NULL DEFAULT 'general',
    title         text NOT NULL,
    content       text NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    content_hash  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS documents_category_idx ON documents (category);
CREATE INDEX IF NOT EXISTS documents_metadata_idx ON documents USING gin (metadata jsonb_path_ops);

-- One table per version: bulk-loaded, indexed on its own, droppable after cutover.
-- content_hash is the hash of the text that was embedded: a row whose hash differs
-- from its document's is stale and gets re-embedded by the backfill.
CREATE TABLE IF NOT EXISTS doc_embeddings_v1 (
    document_id   text PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    embedding     vector({{v1_dimensions}}) NOT NULL,
    model         text NOT NULL,
    content_hash  text NOT NULL,
    embedded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS doc_embeddings_v1_hnsw
    ON doc_embeddings_v1 USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

CREATE TABLE IF NOT EXISTS doc_embeddings_v2 (
    document_id   text PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    embedding     vector({{v2_dimensions}}) NOT NULL,
    model         text NOT NULL,
    content_hash  text NOT NULL,
    embedded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS doc_embeddings_v2_hnsw
    ON doc_embeddings_v2 USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

CREATE TABLE IF NOT EXISTS flag_audit (
    id          bigserial PRIMARY KEY,
    flag        text NOT NULL,
    old_value   jsonb,
    new_value   jsonb NOT NULL,
    actor       text NOT NULL,
    reason      text,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS flag_audit_changed_at_idx ON flag_audit (changed_at DESC);
