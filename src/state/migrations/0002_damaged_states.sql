-- gpufleet state schema, version 2: where `gpufleet state repair` keeps a
-- plan's state that no longer reads as gpufleet state, instead of deleting it.

CREATE TABLE gpufleet_damaged_states (
    id       bigserial PRIMARY KEY,
    plan     text NOT NULL,
    body     jsonb NOT NULL,
    kept_at  timestamptz NOT NULL
);
