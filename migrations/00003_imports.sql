-- +goose NO TRANSACTION
-- +goose Up
-- Imports started through the web service, and the import that first stored
-- each customer, so that an import's counts (stored, synced, failed...) are
-- queries, not guesses.
--
-- Without a transaction so that the indexes on customers are built
-- CONCURRENTLY: a large table keeps taking the consumers' inserts meanwhile.
-- Every statement may run again after a failure half-way.
CREATE TABLE IF NOT EXISTS imports (
    -- The id every message of the import carries (import_id), and that
    -- customers.import_id names.
    id           text        PRIMARY KEY,
    file_name    text        NOT NULL,
    -- Bytes received so far while uploading, the file's size after.
    size         bigint      NOT NULL DEFAULT 0,
    state        text        NOT NULL DEFAULT 'uploading',
    -- What the uploader said about the file: header, columns, delimiter, encoding.
    options      jsonb       NOT NULL DEFAULT '{}',
    -- The publishing counts, written by the service instance running it.
    rows_read    bigint      NOT NULL DEFAULT 0,
    published    bigint      NOT NULL DEFAULT 0,
    rejected     bigint      NOT NULL DEFAULT 0,
    bytes_read   bigint      NOT NULL DEFAULT 0,
    error        text,
    -- The instance running the import and when it last said so: an import
    -- whose heartbeat stopped is taken over by an instance holding its file.
    runner       text,
    heartbeat_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    CONSTRAINT imports_state_check CHECK (state IN ('uploading', 'publishing', 'done', 'failed'))
);
CREATE INDEX IF NOT EXISTS imports_created_at_idx ON imports (created_at DESC, id DESC);

-- No foreign key: a producer run from the command line may name an import
-- the table does not hold, and its customers must be stored all the same.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS import_id text;

-- None of these columns changes after the insert, so the lease and settle
-- updates stay heap-only (see 00002).
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_import_id_idx ON customers (import_id) WHERE import_id IS NOT NULL;
-- Prefix searches (email or name starting with what was typed) and keyset
-- paging by email, in byte order whatever the database's collation.
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_email_c_idx ON customers (email COLLATE "C");
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_name_c_idx ON customers (lower(name) COLLATE "C");

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS customers_name_c_idx;
DROP INDEX CONCURRENTLY IF EXISTS customers_email_c_idx;
DROP INDEX CONCURRENTLY IF EXISTS customers_import_id_idx;
ALTER TABLE customers DROP COLUMN IF EXISTS import_id;
DROP TABLE IF EXISTS imports;
