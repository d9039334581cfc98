-- +goose Up
-- One row per customer; the normalised email is the identity. The crm_*
-- columns are the CRM state machine of docs/ARCHITECTURE.md:
--   pending -> synced | rejected | failed, with a lease so that one worker at a
--   time calls the CRM for a customer.
CREATE TABLE customers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text        NOT NULL,
    name            text        NOT NULL DEFAULT '',
    first_name      text        NOT NULL DEFAULT '',
    last_name       text        NOT NULL DEFAULT '',
    phone           text        NOT NULL DEFAULT '',
    attributes      jsonb       NOT NULL DEFAULT '{}',
    source          text        NOT NULL DEFAULT '',
    source_row      bigint      NOT NULL DEFAULT 0,
    crm_state       text        NOT NULL DEFAULT 'pending',
    crm_id          text,
    crm_attempts    integer     NOT NULL DEFAULT 0,
    crm_last_error  text,
    crm_lease_owner text,
    crm_lease_until timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz,
    CONSTRAINT customers_email_key UNIQUE (email),
    CONSTRAINT customers_email_normalised CHECK (email = lower(btrim(email)) AND email <> ''),
    CONSTRAINT customers_crm_state_check CHECK (crm_state IN ('pending', 'synced', 'rejected', 'failed'))
);

-- Operators look for what is not synced; synced rows are the bulk and need no index.
CREATE INDEX customers_crm_state_idx ON customers (crm_state) WHERE crm_state <> 'synced';

-- +goose Down
DROP TABLE customers;
