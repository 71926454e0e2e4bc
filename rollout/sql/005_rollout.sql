-- Staged rollout: the controller's durable state, every decision it or a person made,
-- and the routing key's hash in query_log (the sample ratio check counts distinct users).

-- One row: where the rollout is. Every change happens under SELECT ... FOR UPDATE of this
-- row, so the controller and people's commands (API, CLI, any host) apply one at a time,
-- and a controller that is killed resumes from here.
CREATE TABLE IF NOT EXISTS rollout_state (
    id                  smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    percentage          double precision NOT NULL DEFAULT 0 CHECK (percentage BETWEEN 0 AND 100),
    status              text NOT NULL DEFAULT 'idle'
                        CHECK (status IN ('idle', 'running', 'held', 'paused', 'rolled_back', 'complete')),
    stage_started_at    timestamptz NOT NULL DEFAULT now(),  -- the evidence window starts here
    reason              text NOT NULL DEFAULT '',
    last_evaluated_at   timestamptz,
    next_evaluation_at  timestamptz,                         -- NULL: at the controller's next look
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rollout_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING;

-- Every evaluation (with each gate's values and thresholds), every command and every
-- flag change made outside the controller, with who made it.
CREATE TABLE IF NOT EXISTS rollout_decisions (
    id                 bigserial PRIMARY KEY,
    decided_at         timestamptz NOT NULL DEFAULT now(),
    kind               text NOT NULL CHECK (kind IN ('evaluation', 'command', 'flag_change')),
    action             text NOT NULL,        -- the verdict's outcome, or the command's action
    actor              text NOT NULL,        -- controller, or the person (api:..., cli:user@host, flag_audit's actor)
    controller         text,                 -- evaluations: the controller process that made it (host:pid:id)
    reason             text NOT NULL,
    stage              integer,              -- 1-based place of percentage_before among the plan's stages
    percentage_before  double precision NOT NULL,
    percentage_after   double precision NOT NULL,
    status_before      text NOT NULL,
    status_after       text NOT NULL,
    window_started_at  timestamptz,          -- the stage start the decision was made in
    verdict            jsonb,                -- Verdict.to_dict() (evaluations)
    transition         jsonb NOT NULL,       -- Transition.to_dict()
    evidence           jsonb,                -- what the verdict rests on: counts, sample sizes, sampling, facts
    plan               jsonb NOT NULL,
    flag_changes       jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(flag_changes) = 'array'),
    error              text,                 -- the change could not be carried out (nothing changed)
    notification       jsonb                 -- rollbacks and pauses: the POST to ROLLOUT_NOTIFY_URL, how it went
);
CREATE INDEX IF NOT EXISTS rollout_decisions_decided_at_idx ON rollout_decisions (decided_at DESC, id DESC);

-- Keyed hash of the routing key (user or session): routing is sticky per user, so the
-- sample ratio check counts distinct users, not requests.
ALTER TABLE query_log ADD COLUMN IF NOT EXISTS user_hash text;
