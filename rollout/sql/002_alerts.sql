-- Alert webhooks: every alert received and every action taken on the breaker or the rollout.

CREATE TABLE IF NOT EXISTS alert_events (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL CHECK (kind IN ('alert', 'action')),
    source       text NOT NULL,          -- seed | alertmanager | grafana (alerts); api | cli | replay (actions)
    fingerprint  text,
    alertname    text,
    status       text CHECK (status IN ('firing', 'resolved')),
    severity     text,
    trips        boolean NOT NULL DEFAULT false,  -- the policy says this alert rolls back
    outcome      text NOT NULL,          -- tripped, repeat, recorded, resolved, awaiting_rearm, deferred, opened, ...
    actions      jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(actions) = 'array'),
    actor        text,
    detail       text,
    labels       jsonb NOT NULL DEFAULT '{}'::jsonb,
    annotations  jsonb NOT NULL DEFAULT '{}'::jsonb,
    starts_at    timestamptz,
    ends_at      timestamptz,
    value        double precision,
    -- applied on one worker only while Redis was unreachable: replayed everywhere once it answers
    pending      boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS alert_events_received_at_idx ON alert_events (received_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS alert_events_pending_idx ON alert_events (id) WHERE pending;
