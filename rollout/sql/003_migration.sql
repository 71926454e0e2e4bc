-- Embedding migration: progress per version and category, the backfill's work queue,
-- documents a provider refused, and HNSW indexes dropped for a bulk load.

-- A version someone started migrating to (`rollout migrate setup` or `run`): from then on the
-- documents API embeds new and changed documents for it too (dual-write).
CREATE TABLE IF NOT EXISTS embedding_migrations (
    version     text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per (version, category), kept by `rollout migrate run` and shown by `rollout migrate status`.
-- total/done/failed are recounted exactly at the start and end of each run and moved per batch
-- in between (in the batch's own transaction, so they never count a batch that rolled back).
CREATE TABLE IF NOT EXISTS embedding_migration_status (
    version          text NOT NULL,
    category         text NOT NULL,
    total            integer NOT NULL DEFAULT 0,   -- documents in the category
    done             integer NOT NULL DEFAULT 0,   -- with a current embedding (hash and model)
    failed           integer NOT NULL DEFAULT 0,   -- refused by the provider, current text
    embedded_in_run  integer NOT NULL DEFAULT 0,   -- embedded by the latest run
    rate             double precision,             -- documents/s of the latest run
    started_at       timestamptz,
    finished_at      timestamptz,
    last_error       text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, category)
);

-- The documents a run still has to embed. Workers claim rows with FOR UPDATE SKIP LOCKED
-- and delete them in the transaction that stores the vectors, so a crash hands them back.
-- No foreign key: deleting a document must never wait for a worker's lock.
CREATE TABLE IF NOT EXISTS embedding_queue (
    version      text NOT NULL,
    document_id  text NOT NULL,
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, document_id)
);

-- A document the provider refused (too long, rejected input), with the text it refused:
-- a later run skips it until its text changes (or with --retry-failed).
CREATE TABLE IF NOT EXISTS embedding_failures (
    version       text NOT NULL,
    document_id   text NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    content_hash  text NOT NULL,
    reason        text NOT NULL,
    failed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, document_id)
);

-- An HNSW index dropped before a bulk load, with its definition, until it is rebuilt.
-- The drop and this row commit together, so a killed run leaves a note for the next one.
CREATE TABLE IF NOT EXISTS embedding_index_rebuilds (
    version     text NOT NULL,
    index_name  text NOT NULL,
    definition  text NOT NULL,
    dropped_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, index_name)
);
