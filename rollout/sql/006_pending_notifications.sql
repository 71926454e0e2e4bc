-- The leading controller looks for notifications a stopped process left undelivered at every run:
-- a partial index keeps that lookup on the few pending rows, not on the whole decision history.
CREATE INDEX IF NOT EXISTS rollout_decisions_pending_notification_idx
    ON rollout_decisions (id) WHERE notification->>'status' = 'pending';
