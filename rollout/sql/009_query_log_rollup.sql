-- A per-minute, per-version rollup of query_log, so the console's series read a few hundred rows
-- a version instead of every query. The same sums are kept per minute and per quarter hour
-- (`grain_minutes` 1 and 15): ranges drawn in 15-minute or 2-hour points (24 h, 7 days) read the
-- quarters, finer ones the minutes. The query-log writer adds each batch to both in the same
-- transaction as the batch's rows; this upgrade fills them from the rows already logged.
--
-- Latency is kept as counts per log-spaced bucket: bucket b holds [0.1 ms * 2^(b/8), 0.1 ms *
-- 2^((b+1)/8)), eight buckets per doubling (each 9.05 % wide, the last from about 3.4 hours up),
-- so buckets of any set of minutes add up and their percentiles are exact to a bucket.
-- Also: the embedding tokens of each query, counted per version for the cost.

ALTER TABLE query_log ADD COLUMN IF NOT EXISTS embed_tokens integer;        -- the served version's embedding
ALTER TABLE query_log ADD COLUMN IF NOT EXISTS other_embed_tokens integer;  -- other_version's embedding

CREATE OR REPLACE FUNCTION latency_bucket(ms double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT least(255, floor(8 * ln(greatest(ms, 0.1) / 0.1) / ln(2::float8)))::integer $$;

-- two histograms ({"bucket": count}) added bucket by bucket
CREATE OR REPLACE FUNCTION latency_histogram_add(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb)
    FROM (SELECT key, sum(value::bigint) AS total
          FROM (SELECT key, value FROM jsonb_each_text(a) UNION ALL SELECT key, value FROM jsonb_each_text(b)) e
          GROUP BY key) s
$$;

CREATE TABLE IF NOT EXISTS query_log_rollup (
    grain_minutes       smallint NOT NULL CHECK (grain_minutes IN (1, 15)),
    period              timestamptz NOT NULL,                 -- its start, on the grain's grid since 2000-01-01 UTC
    version             text NOT NULL,
    -- routed-mode queries routed to the version (the series' figures)
    requests            bigint NOT NULL DEFAULT 0,
    errors              bigint NOT NULL DEFAULT 0,            -- fell back, or no version answered
    fallbacks           bigint NOT NULL DEFAULT 0,
    latency_ms_sum      double precision NOT NULL DEFAULT 0,
    latency_buckets     jsonb NOT NULL DEFAULT '{}',          -- {"bucket": queries}
    cache_hits          bigint NOT NULL DEFAULT 0,            -- answered by the version itself, with a query cache
    cache_samples       bigint NOT NULL DEFAULT 0,
    similarity_sum      double precision NOT NULL DEFAULT 0,  -- answered by the version itself
    similarity_samples  bigint NOT NULL DEFAULT 0,
    overlap_sum         double precision NOT NULL DEFAULT 0,  -- shadow overlap of the queries routed here
    overlap_samples     bigint NOT NULL DEFAULT 0,
    -- routed-mode embedding tokens spent by this version's embedder (served or shadow)
    embed_tokens        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (grain_minutes, period, version)
);

-- Add the routed-mode rows of `source` (query_log, or a batch with its columns) to the rollup.
CREATE OR REPLACE FUNCTION query_log_rollup_add(source regclass) RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    grain integer;
BEGIN
    FOREACH grain IN ARRAY ARRAY[1, 15] LOOP
    EXECUTE format($sql$
        WITH logged AS (
            SELECT date_bin(make_interval(mins => %2$s), logged_at, timestamptz '2000-01-01 00:00:00+00') AS period,
                   * FROM %1$s
            WHERE mode = 'routed'
        ), facts AS (
            SELECT period, routed_version AS version, latency_bucket(latency_ms) AS bucket, 1 AS requests,
                   (fallback OR served_version IS NULL)::int AS errors, fallback::int AS fallbacks,
                   latency_ms::float8 AS latency,
                   CASE WHEN served_version = routed_version THEN cache_hit::int END AS cache_hit,
                   CASE WHEN served_version = routed_version THEN top_similarity::float8 END AS similarity,
                   overlap::float8 AS overlap, 0 AS tokens
            FROM logged
            UNION ALL
            SELECT period, served_version, NULL, 0, 0, 0, 0, NULL, NULL, NULL, embed_tokens
            FROM logged WHERE served_version IS NOT NULL AND embed_tokens IS NOT NULL
            UNION ALL
            SELECT period, other_version, NULL, 0, 0, 0, 0, NULL, NULL, NULL, other_embed_tokens
            FROM logged WHERE other_version IS NOT NULL AND other_embed_tokens IS NOT NULL
        ), per_bucket AS (
            SELECT period, version, bucket, sum(requests) AS requests, sum(errors) AS errors,
                   sum(fallbacks) AS fallbacks, sum(latency) AS latency, sum(cache_hit) AS cache_hits,
                   count(cache_hit) AS cache_samples, sum(similarity) AS similarity,
                   count(similarity) AS similarity_samples, sum(overlap) AS overlap,
                   count(overlap) AS overlap_samples, sum(tokens) AS tokens
            FROM facts GROUP BY period, version, bucket
        )
        INSERT INTO query_log_rollup AS m (grain_minutes, period, version, requests, errors, fallbacks,
            latency_ms_sum, latency_buckets, cache_hits, cache_samples, similarity_sum, similarity_samples,
            overlap_sum, overlap_samples, embed_tokens)
        SELECT %2$s, period, version, sum(requests), sum(errors), sum(fallbacks), coalesce(sum(latency), 0),
               coalesce(jsonb_object_agg(bucket, requests) FILTER (WHERE bucket IS NOT NULL), '{}'),
               coalesce(sum(cache_hits), 0), sum(cache_samples), coalesce(sum(similarity), 0),
               sum(similarity_samples), coalesce(sum(overlap), 0), sum(overlap_samples), sum(tokens)
        FROM per_bucket GROUP BY period, version
        ORDER BY period, version  -- rows locked in one order: writers of several processes never deadlock
        ON CONFLICT (grain_minutes, period, version) DO UPDATE SET
            requests = m.requests + excluded.requests, errors = m.errors + excluded.errors,
            fallbacks = m.fallbacks + excluded.fallbacks, latency_ms_sum = m.latency_ms_sum + excluded.latency_ms_sum,
            latency_buckets = latency_histogram_add(m.latency_buckets, excluded.latency_buckets),
            cache_hits = m.cache_hits + excluded.cache_hits, cache_samples = m.cache_samples + excluded.cache_samples,
            similarity_sum = m.similarity_sum + excluded.similarity_sum,
            similarity_samples = m.similarity_samples + excluded.similarity_samples,
            overlap_sum = m.overlap_sum + excluded.overlap_sum,
            overlap_samples = m.overlap_samples + excluded.overlap_samples,
            embed_tokens = m.embed_tokens + excluded.embed_tokens
    $sql$, source, grain);
    END LOOP;
END
$fn$;

-- the rows logged before this upgrade
SELECT query_log_rollup_add('query_log');
