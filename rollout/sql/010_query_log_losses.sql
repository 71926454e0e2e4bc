-- Rows the query_log writers could not keep: one row per writer process, minute and cause,
-- so the controller can tell a stage whose evidence has holes (see rollout/analytics/losses.py).
CREATE TABLE IF NOT EXISTS query_log_losses (
    writer   text NOT NULL,                        -- host:pid of the writing process
    minute   timestamptz NOT NULL,                 -- when the rows were lost (to the minute)
    cause    text NOT NULL CHECK (cause IN ('queue_full', 'database_error')),
    rows     bigint NOT NULL CHECK (rows >= 0),
    PRIMARY KEY (writer, minute, cause)
);
CREATE INDEX IF NOT EXISTS query_log_losses_minute_idx ON query_log_losses (minute);
