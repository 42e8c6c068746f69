-- gpufleet state schema, version 1: one row per plan's state (the same JSON
-- document the local backend writes, with its serial in a column for
-- compare-and-swap), the journal and the history as append-only rows, and
-- leases (plan locks and leader leases) as rows with an expiry.

CREATE TABLE gpufleet_states (
    plan      text PRIMARY KEY,
    serial    bigint NOT NULL CHECK (serial > 0),
    body      jsonb NOT NULL,
    saved_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gpufleet_journal (
    id          bigserial PRIMARY KEY,
    plan        text NOT NULL,
    entry       jsonb NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gpufleet_journal_by_plan ON gpufleet_journal (plan, id);

CREATE TABLE gpufleet_history (
    id          bigserial PRIMARY KEY,
    plan        text NOT NULL,
    entry       jsonb NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gpufleet_history_by_plan ON gpufleet_history (plan, id);

-- A lease is held while `expires_at` (the holder's clock) has not passed for
-- whoever asks; `token` tells the holder's own renewals from a takeover.
CREATE TABLE gpufleet_leases (
    name        text PRIMARY KEY,
    holder      jsonb NOT NULL,
    token       text NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- The instances of every plan, for people querying the database.
CREATE VIEW gpufleet_instances AS
SELECT s.plan, i.id, i.cloud, i.region, i.zone, i.instance_type, i.fleet, i.run, i.launched_at, i.scope
FROM gpufleet_states s,
     jsonb_to_recordset(s.body -> 'instances')
       AS i(id text, cloud text, region text, zone text, instance_type text, fleet text, run text,
            launched_at timestamptz, scope jsonb);
