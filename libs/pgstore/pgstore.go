// Package pgstore keeps customers in PostgreSQL: the pgx pool, the embedded
// migrations, insert-if-absent for a batch, and the CRM state machine
//
//	pending ──CRM 2xx/409──> synced
//	   │  └─CRM 4xx──> rejected
//	   └─attempts exhausted──> failed ──replay──> pending
//
// with a lease (crm_lease_owner, crm_lease_until) so that one worker at a time
// calls the CRM for a customer.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custimport/custimport/libs/customer"
)

// ErrNotMigrated is returned by Open when the schema is missing or behind the
// migrations this binary embeds.
var ErrNotMigrated = errors.New("database schema is not migrated")

// errBadURL marks a database URL that cannot be used as written.
var errBadURL = errors.New("malformed database URL")

// IsPermanent reports whether err is one that retrying cannot cure: a
// malformed or empty URL, a database that does not exist (SQLSTATE 3D000),
// credentials or a role the server refuses (class 28), a user without the
// right to connect (42501), or a schema that is not migrated. A server that
// is down, unreachable or starting up is not permanent.
func IsPermanent(err error) bool {
	if errors.Is(err, errBadURL) || errors.Is(err, ErrNotMigrated) {
		return true
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == "3D000" || pgErr.Code == "42501" || strings.HasPrefix(pgErr.Code, "28")
}

// State is a customer's CRM state.
type State string

// The CRM states. See the package doc for the transitions.
const (
	StatePending  State = "pending"
	StateSynced   State = "synced"
	StateRejected State = "rejected"
	StateFailed   State = "failed"
)

// Config says how to reach the database.
type Config struct {
	// URL is a postgres:// connection string. Required.
	URL string
	// Schema, when set, is the search_path of every connection; tests use it
	// to get a schema of their own. Default: the server's (public).
	Schema string
	// MaxConns caps the pool. Default 8.
	MaxConns int32
}

func (c Config) withDefaults() Config {
	if c.MaxConns == 0 {
		c.MaxConns = 8
	}
	return c
}

func (c Config) connConfig() (*pgxpool.Config, error) {
	if c.URL == "" {
		return nil, fmt.Errorf("%w: it is empty: set --database-url or DATABASE_URL", errBadURL)
	}
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		// pgx's parse errors can echo the URL; say what is wrong without it
		// where pgx keeps the cause apart (it hides the password otherwise).
		why := errors.Unwrap(err)
		if why == nil {
			why = err
		}
		return nil, fmt.Errorf("%w %s: %w", errBadURL, Redact(c.URL), why)
	}
	pc.MaxConns = c.MaxConns
	if c.Schema != "" {
		pc.ConnConfig.RuntimeParams["search_path"] = c.Schema
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "custimport"
	return pc, nil
}

// Redact returns a database URL with its password hidden, fit for logs and errors.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Store is the customers table behind a pgx pool.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects, checks the server answers and that the schema is migrated.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	pc, err := cfg.connConfig()
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres at %s: %w", Redact(cfg.URL), err)
	}
	s := &Store{pool: pool}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres at %s: %w", Redact(cfg.URL), err)
	}
	if err := s.checkSchema(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// OpenWaiting is Open, tried again every second while the server does not
// answer (a service may start before its database): what waiting cannot
// cure (IsPermanent) fails at once, and so does the end of ctx. retrying,
// when set, is told each error that is waited out.
func OpenWaiting(ctx context.Context, cfg Config, retrying func(error)) (*Store, error) {
	for {
		st, err := Open(ctx, cfg)
		if err == nil {
			return st, nil
		}
		if IsPermanent(err) || ctx.Err() != nil {
			return nil, err
		}
		if retrying != nil {
			retrying(err)
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the pool for status queries and tests.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Inserted reports, for a batch passed to InsertNew, which emails this call
// inserted (the customer's first insert).
type Inserted map[string]bool

// InsertNew inserts the customers whose email is not in the table yet, in one
// statement, and returns the emails it inserted. A customer keeps the
// ImportID of the message that first stored it: a later import of the same
// email does not take it over. Rows go in sorted by email so
// that concurrent batches take their index locks in the same order and cannot
// deadlock each other.
func (s *Store) InsertNew(ctx context.Context, batch []customer.Customer) (Inserted, error) {
	return s.InsertLeased(ctx, batch, "", 0)
}

// InsertLeased is InsertNew, and every customer it inserts comes with
// owner's CRM lease for d and its first attempt counted, as Lease would
// take them: a customer's first insert and its lease are one write. The
// caller may call the CRM for the inserted emails at once, and must settle
// or release them as after Lease. An empty owner takes no lease.
func (s *Store) InsertLeased(ctx context.Context, batch []customer.Customer, owner string, d time.Duration) (Inserted, error) {
	rows := slices.Clone(batch)
	slices.SortFunc(rows, func(a, b customer.Customer) int { return compareStrings(a.Email, b.Email) })
	rows = slices.CompactFunc(rows, func(a, b customer.Customer) bool { return a.Email == b.Email })

	n := len(rows)
	emails, names, firsts, lasts, phones, sources := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attrs := make([][]byte, n)
	srcRows := make([]int64, n)
	importIDs := make([]*string, n) // NULL for rows published without one
	for i, c := range rows {
		emails[i], names[i], firsts[i], lasts[i], phones[i], sources[i], srcRows[i] = c.Email, c.Name, c.FirstName, c.LastName, c.Phone, c.Source, c.Row
		if c.ImportID != "" {
			importIDs[i] = &rows[i].ImportID
		}
		a := c.Attributes
		if a == nil {
			a = map[string]string{}
		}
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("encode attributes of %s: %w", c.Email, err)
		}
		attrs[i] = b
	}
	// Without an owner, $10 is NULL and the lease columns keep their
	// defaults: no lease, no attempt.
	const q = `
INSERT INTO customers (email, name, first_name, last_name, phone, attributes, source, source_row, import_id,
                       crm_lease_owner, crm_lease_until, crm_attempts)
SELECT u.*, $10::text,
       CASE WHEN $10::text IS NOT NULL THEN now() + make_interval(secs => $11::float8) END,
       CASE WHEN $10::text IS NOT NULL THEN 1 ELSE 0 END
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[], $8::bigint[], $9::text[]) AS u
ON CONFLICT (email) DO NOTHING
RETURNING email`
	var leaseOwner *string
	if owner != "" {
		leaseOwner = &owner
	}
	res, err := s.pool.Query(ctx, q, emails, names, firsts, lasts, phones, attrs, sources, srcRows, importIDs, leaseOwner, d.Seconds())
	if err != nil {
		return nil, fmt.Errorf("insert %d customers: %w", n, err)
	}
	inserted := make(Inserted, n)
	got, err := pgx.CollectRows(res, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("insert %d customers: %w", n, err)
	}
	for _, e := range got {
		inserted[e] = true
	}
	return inserted, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	default:
		return 0
	}
}

// Claim is a customer's state as seen by Lease.
type Claim struct {
	Email    string
	State    State
	Attempts int
	// Leased is true when this call took the lease: the caller, and only
	// the caller, may now call the CRM for the customer.
	Leased bool
	// Busy is true when the customer is pending under another worker's
	// live lease.
	Busy bool
	// Customer is the customer as stored (its first insert), for a leased
	// claim: what the CRM is sent.
	Customer customer.Customer
}

// Lease takes the CRM lease, for owner and for the given duration, on every
// customer among emails that is pending and not leased by someone else, and
// counts an attempt for each. It returns the state of every email found. Rows
// locked by a concurrent Lease are skipped, not waited for: their holder is
// about to drive them.
//
// A live lease that owner already holds is taken again without counting an
// attempt: it is what is left when the answer to an earlier Lease was lost
// with its connection, and an owner drives one batch at a time.
func (s *Store) Lease(ctx context.Context, emails []string, owner string, d time.Duration) (map[string]Claim, error) {
	const q = `
WITH candidates AS (
    SELECT id FROM customers
    WHERE email = ANY($1) AND crm_state = 'pending'
      AND (crm_lease_until IS NULL OR crm_lease_until < now() OR crm_lease_owner = $2)
    ORDER BY id
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE customers c
    SET crm_lease_owner = $2, crm_lease_until = now() + make_interval(secs => $3::float8),
        crm_attempts = c.crm_attempts +
            CASE WHEN c.crm_lease_owner = $2 AND c.crm_lease_until > now() THEN 0 ELSE 1 END,
        updated_at = now()
    FROM candidates WHERE c.id = candidates.id
    RETURNING c.id, c.crm_attempts
)
SELECT c.email, c.crm_state, coalesce(l.crm_attempts, c.crm_attempts), l.id IS NOT NULL,
       l.id IS NULL AND c.crm_state = 'pending' AND coalesce(c.crm_lease_until > now(), false),
       c.name, c.first_name, c.last_name, c.phone, c.attributes, c.source, c.source_row
FROM customers c LEFT JOIN leased l ON l.id = c.id
WHERE c.email = ANY($1)`
	rows, err := s.pool.Query(ctx, q, emails, owner, d.Seconds())
	if err != nil {
		return nil, fmt.Errorf("lease %d customers: %w", len(emails), err)
	}
	claims := make(map[string]Claim, len(emails))
	var (
		c     Claim
		attrs map[string]any // any JSON: a row may have been written by other tools
	)
	cu := &c.Customer
	_, err = pgx.ForEachRow(rows, []any{
		&c.Email, &c.State, &c.Attempts, &c.Leased, &c.Busy,
		&cu.Name, &cu.FirstName, &cu.LastName, &cu.Phone, &attrs, &cu.Source, &cu.Row,
	}, func() error {
		cu.Email = c.Email
		cu.Attributes = nil
		if len(attrs) > 0 {
			cu.Attributes = make(map[string]string, len(attrs))
			for k, v := range attrs {
				if str, ok := v.(string); ok {
					cu.Attributes[k] = str
				} else {
					b, _ := json.Marshal(v) // a value decoded from JSON encodes again
					cu.Attributes[k] = string(b)
				}
			}
		}
		attrs = nil
		claims[c.Email] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lease %d customers: %w", len(emails), err)
	}
	return claims, nil
}

// CRMResult is what a leased customer's CRM call came to, as the store
// writes it.
type CRMResult struct {
	Email string
	// State is the new state; StatePending releases the lease for a later
	// retry.
	State State
	// CRMID is the CRM's id, for StateSynced.
	CRMID string
	// Error is the last error, for every state but StateSynced.
	Error string
}

// Settle writes the results of the CRM calls made under owner's leases and
// releases those leases, in one statement. A row whose lease owner[ship] moved
// on (the lease expired and another worker took it) is left to that worker.
func (s *Store) Settle(ctx context.Context, owner string, results []CRMResult) error {
	if len(results) == 0 {
		return nil
	}
	emails, states, ids, errs := make([]string, len(results)), make([]string, len(results)), make([]*string, len(results)), make([]*string, len(results))
	for i, o := range results {
		emails[i], states[i] = o.Email, string(o.State)
		if o.CRMID != "" {
			ids[i] = &o.CRMID
		}
		if o.Error != "" {
			errs[i] = &o.Error
		}
	}
	const q = `
UPDATE customers c
SET crm_state = o.state, crm_id = coalesce(o.crm_id, c.crm_id), crm_last_error = o.err,
    crm_lease_owner = NULL, crm_lease_until = NULL, updated_at = now(),
    synced_at = CASE WHEN o.state = 'synced' THEN now() ELSE c.synced_at END
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS o(email, state, crm_id, err)
WHERE c.email = o.email AND c.crm_state = 'pending' AND c.crm_lease_owner = $5`
	if _, err := s.pool.Exec(ctx, q, emails, states, ids, errs, owner); err != nil {
		return fmt.Errorf("settle %d customers: %w", len(results), err)
	}
	return nil
}

// Release gives back owner's leases on emails without a CRM call having been
// made, and takes back the attempt each lease counted: the circuit opened or
// the CRM asked to slow down before the call.
func (s *Store) Release(ctx context.Context, owner string, emails []string) error {
	if len(emails) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `
UPDATE customers SET crm_lease_owner = NULL, crm_lease_until = NULL,
       crm_attempts = greatest(crm_attempts - 1, 0), updated_at = now()
WHERE email = ANY($1) AND crm_state = 'pending' AND crm_lease_owner = $2`, emails, owner)
	if err != nil {
		return fmt.Errorf("release %d customers: %w", len(emails), err)
	}
	return nil
}

// Reset puts the failed and rejected customers among emails back to pending
// with their attempts cleared, so that replayed dead letters drive them again.
func (s *Store) Reset(ctx context.Context, emails []string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
UPDATE customers SET crm_state = 'pending', crm_attempts = 0, crm_lease_owner = NULL,
       crm_lease_until = NULL, updated_at = now()
WHERE crm_state IN ('failed', 'rejected') AND email = ANY($1)`, emails)
	if err != nil {
		return 0, fmt.Errorf("reset %d customers to pending: %w", len(emails), err)
	}
	return tag.RowsAffected(), nil
}

// Counts returns the number of customers in each CRM state.
func (s *Store) Counts(ctx context.Context) (map[State]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT crm_state, count(*) FROM customers GROUP BY crm_state`)
	if err != nil {
		return nil, fmt.Errorf("count customers by state: %w", err)
	}
	counts := map[State]int64{StatePending: 0, StateSynced: 0, StateRejected: 0, StateFailed: 0}
	var st State
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&st, &n}, func() error { counts[st] = n; return nil }); err != nil {
		return nil, fmt.Errorf("count customers by state: %w", err)
	}
	return counts, nil
}

// IsDataError reports whether Postgres refused the data itself (SQLSTATE
// classes 22 and 23): sending it again cannot succeed. Every other error
// (connection lost, server restarting, deadlock) is worth waiting out.
func IsDataError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	return pgErr.Code[:2] == "22" || pgErr.Code[:2] == "23"
}
