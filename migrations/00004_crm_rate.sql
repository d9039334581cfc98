-- +goose Up
-- The CRM request rate every consumer shares (package crmrate): the times of
-- the last requests granted (at most CRM_BURST of them, some possibly a
-- little in the future), and a pause the CRM asked for with a 429. One row
-- per CRM account; each take is one UPDATE ... RETURNING on it.
CREATE TABLE crm_rate (
    name         text          PRIMARY KEY,
    sent         timestamptz[] NOT NULL DEFAULT '{}',
    paused_until timestamptz   NOT NULL DEFAULT '-infinity'
);

-- +goose Down
DROP TABLE crm_rate;
