-- flowbridge state store, migration 1: the instance table.
-- {schema} is replaced by the quoted schema name before this runs.

CREATE TABLE {schema}.instance_state (
    -- "C" collation: keys sort bytewise, as in the other stores.
    workflow      text COLLATE "C" NOT NULL,
    serial_number text COLLATE "C" NOT NULL,
    -- Optimistic concurrency: a write names the version it read.
    version       bigint   NOT NULL CHECK (version > 0),
    status        text     NOT NULL CHECK (status IN ('active', 'completed', 'cancelled')),
    -- Milliseconds since the Unix epoch of the last write; retention counts from it.
    updated_at_ms bigint   NOT NULL,
    -- FORMAT_VERSION of body.
    format        smallint NOT NULL,
    -- The InstanceState as JSON (readable with psql: body->'nodes').
    body          jsonb    NOT NULL,
    PRIMARY KEY (workflow, serial_number)
);

-- Retention sweep: closed instances by age.
CREATE INDEX instance_state_closed ON {schema}.instance_state (updated_at_ms)
    WHERE status <> 'active';

-- `flowbridge state list --status S`.
CREATE INDEX instance_state_status ON {schema}.instance_state (status, workflow, serial_number);
