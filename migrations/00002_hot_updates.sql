-- +goose Up
-- A customer's row is updated two or three times on its way to synced (the
-- lease, the outcome). When no index covers a column such an update changes
-- and its page has room, PostgreSQL makes it a heap-only (HOT) update: no new
-- entries in the id and email indexes, less WAL, less vacuum. The partial
-- index on crm_state defeated that on every update for the sake of rare
-- operator queries, which now scan (`consumer status` always did).
DROP INDEX customers_crm_state_idx;
-- Leave a fifth of each new page free for those updates.
ALTER TABLE customers SET (fillfactor = 80);

-- +goose Down
ALTER TABLE customers RESET (fillfactor);
CREATE INDEX customers_crm_state_idx ON customers (crm_state) WHERE crm_state <> 'synced';
