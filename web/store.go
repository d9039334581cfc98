package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custimport/custimport/libs/pgstore"
)

// errNotFound answers 404.
var errNotFound = errors.New("not found")

// The states of an import.
const (
	stateUploading  = "uploading"
	statePublishing = "publishing"
	stateDone       = "done"
	stateFailed     = "failed"
)

// importOptions is what the uploader said about the file, as the producer's
// flags say it.
type importOptions struct {
	Header    string   `json:"header,omitempty"`
	Columns   []string `json:"columns,omitempty"`
	Delimiter string   `json:"delimiter,omitempty"`
	Encoding  string   `json:"encoding,omitempty"`
}

// customerCounts are an import's customers by CRM state: those it stored
// first (Stored), of which synced, pending (Retrying: pending after a failed
// attempt), rejected and failed.
type customerCounts struct {
	Stored   int64 `json:"stored"`
	Pending  int64 `json:"pending"`
	Synced   int64 `json:"synced"`
	Retrying int64 `json:"retrying"`
	Rejected int64 `json:"rejected"`
	Failed   int64 `json:"failed"`
}

// importRow is an import as the API shows it.
type importRow struct {
	ID        string        `json:"id"`
	URL       string        `json:"url"`
	FileName  string        `json:"file_name"`
	Size      int64         `json:"size"`
	State     string        `json:"state"`
	Options   importOptions `json:"options"`
	Rows      int64         `json:"rows"`
	Published int64         `json:"published"`
	Rejected  int64         `json:"rejected"`
	BytesRead int64         `json:"bytes_read"`
	// Percent is the share of the file read and published: 100 once done.
	Percent   float64        `json:"percent"`
	Customers customerCounts `json:"customers"`
	// Settled is true once the import is over and the consumers are done
	// with its customers (see settled).
	Settled    bool       `json:"settled"`
	Error      string     `json:"error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`

	runner    string
	heartbeat *time.Time
}

func (r *importRow) finish() {
	r.URL = "/api/v1/imports/" + r.ID
	switch {
	case r.State == stateDone:
		r.Percent = 100
	case r.Size > 0:
		r.Percent = min(99.9, float64(r.BytesRead)*100/float64(r.Size))
	}
	r.Percent = float64(int(r.Percent*10)) / 10
}

// over reports an import that will not change any more on its own.
func (r *importRow) over() bool { return r.State == stateDone || r.State == stateFailed }

// store is the web service's view of Postgres: the imports table and the
// customers, read.
type store struct {
	pool *pgxpool.Pool
}

// newImportID returns a new id: the time in milliseconds then random bits,
// in hex, so that ids sort by creation.
func newImportID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%012x%s", time.Now().UnixMilli(), hex.EncodeToString(b[:]))
}

func (s *store) createImport(ctx context.Context, id, fileName, runner string, opts importOptions) error {
	o, err := json.Marshal(opts)
	if err != nil {
		return fmt.Errorf("encode import options: %w", err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO imports (id, file_name, options, runner, heartbeat_at) VALUES ($1, $2, $3, $4, now())`, id, fileName, o, runner)
	if err != nil {
		return fmt.Errorf("create import: %w", err)
	}
	return nil
}

// uploaded records the bytes received so far; it is the upload's heartbeat.
func (s *store) uploaded(ctx context.Context, id string, size int64) error {
	_, err := s.pool.Exec(ctx, `UPDATE imports SET size = $2, heartbeat_at = now() WHERE id = $1`, id, size)
	if err != nil {
		return fmt.Errorf("record upload of import %s: %w", id, err)
	}
	return nil
}

// startPublishing moves an uploaded import to publishing, run by runner,
// with the options the whole form gave.
func (s *store) startPublishing(ctx context.Context, id, runner string, size int64, opts importOptions) error {
	o, err := json.Marshal(opts)
	if err != nil {
		return fmt.Errorf("encode import options: %w", err)
	}
	_, err = s.pool.Exec(ctx, `
UPDATE imports SET state = 'publishing', size = $2, runner = $3, options = $4, heartbeat_at = now(), started_at = coalesce(started_at, now())
WHERE id = $1`, id, size, runner, o)
	if err != nil {
		return fmt.Errorf("start import %s: %w", id, err)
	}
	return nil
}

// progress is a running import's counts.
type progress struct {
	Rows, Published, Rejected, BytesRead int64
}

// recordProgress writes the counts and the heartbeat, while runner still
// runs the import.
func (s *store) recordProgress(ctx context.Context, id, runner string, p progress) error {
	_, err := s.pool.Exec(ctx, `
UPDATE imports SET rows_read = $3, published = $4, rejected = $5, bytes_read = $6, heartbeat_at = now()
WHERE id = $1 AND runner = $2 AND state = 'publishing'`, id, runner, p.Rows, p.Published, p.Rejected, p.BytesRead)
	if err != nil {
		return fmt.Errorf("record progress of import %s: %w", id, err)
	}
	return nil
}

// finishImport writes the end of an import: done, or failed with why.
func (s *store) finishImport(ctx context.Context, id, state string, p progress, why string) error {
	var errText *string
	if why != "" {
		errText = &why
	}
	_, err := s.pool.Exec(ctx, `
UPDATE imports SET state = $2, rows_read = $3, published = $4, rejected = $5, bytes_read = $6, error = $7,
       finished_at = now(), heartbeat_at = NULL
WHERE id = $1`, id, state, p.Rows, p.Published, p.Rejected, p.BytesRead, errText)
	if err != nil {
		return fmt.Errorf("finish import %s: %w", id, err)
	}
	return nil
}

// release leaves a running import for whoever holds its file next: the
// service is stopping, and the import resumes from its checkpoint.
func (s *store) release(ctx context.Context, id, runner string, p progress) error {
	_, err := s.pool.Exec(ctx, `
UPDATE imports SET rows_read = $3, published = $4, rejected = $5, bytes_read = $6, heartbeat_at = NULL
WHERE id = $1 AND runner = $2 AND state = 'publishing'`, id, runner, p.Rows, p.Published, p.Rejected, p.BytesRead)
	if err != nil {
		return fmt.Errorf("release import %s: %w", id, err)
	}
	return nil
}

// orphans lists the imports left running by an instance that stopped:
// those released, those whose heartbeat is older than staleAfter, and those
// of an instance with runner's name (this one, before a restart).
func (s *store) orphans(ctx context.Context, runner string, staleAfter time.Duration) ([]importRow, error) {
	return s.queryImports(ctx, `WHERE state IN ('uploading', 'publishing')
  AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => $1::float8) OR runner = $2)
ORDER BY created_at`, staleAfter.Seconds(), runner)
}

// claim takes an orphan over for runner, unless another instance did first.
func (s *store) claim(ctx context.Context, id, runner string, staleAfter time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
UPDATE imports SET runner = $2, heartbeat_at = now()
WHERE id = $1 AND state IN ('uploading', 'publishing')
  AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => $3::float8) OR runner = $2)`,
		id, runner, staleAfter.Seconds())
	if err != nil {
		return false, fmt.Errorf("claim import %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

const importColumns = `SELECT id, file_name, size, state, options, rows_read, published, rejected, bytes_read,
       coalesce(error, ''), created_at, started_at, finished_at, coalesce(runner, ''), heartbeat_at
FROM imports `

func (s *store) queryImports(ctx context.Context, where string, args ...any) ([]importRow, error) {
	rows, err := s.pool.Query(ctx, importColumns+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read imports: %w", err)
	}
	var out []importRow
	var r importRow
	_, err = pgx.ForEachRow(rows, []any{
		&r.ID, &r.FileName, &r.Size, &r.State, &r.Options, &r.Rows, &r.Published, &r.Rejected, &r.BytesRead,
		&r.Error, &r.CreatedAt, &r.StartedAt, &r.FinishedAt, &r.runner, &r.heartbeat,
	}, func() error {
		out = append(out, r)
		r = importRow{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read imports: %w", err)
	}
	return out, nil
}

// listImports returns the newest imports first, at most limit, with their
// customers counted.
func (s *store) listImports(ctx context.Context, limit int) ([]importRow, error) {
	imps, err := s.queryImports(ctx, `ORDER BY created_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(imps))
	for i := range imps {
		ids[i] = imps[i].ID
	}
	counts, err := s.countCustomers(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i := range imps {
		imps[i].Customers = counts[imps[i].ID]
		imps[i].finish()
	}
	return imps, nil
}

// getImport returns one import with its customers counted.
func (s *store) getImport(ctx context.Context, id string) (importRow, error) {
	imps, err := s.queryImports(ctx, `WHERE id = $1`, id)
	if err != nil {
		return importRow{}, err
	}
	if len(imps) == 0 {
		return importRow{}, fmt.Errorf("import %q: %w", id, errNotFound)
	}
	counts, err := s.countCustomers(ctx, []string{id})
	if err != nil {
		return importRow{}, err
	}
	imp := imps[0]
	imp.Customers = counts[id]
	imp.finish()
	return imp, nil
}

// countCustomers counts the customers of each import by state, through
// customers_import_id_idx.
func (s *store) countCustomers(ctx context.Context, ids []string) (map[string]customerCounts, error) {
	out := make(map[string]customerCounts, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `
SELECT import_id, count(*),
       count(*) FILTER (WHERE crm_state = 'pending'),
       count(*) FILTER (WHERE crm_state = 'synced'),
       count(*) FILTER (WHERE crm_state = 'pending' AND crm_last_error IS NOT NULL),
       count(*) FILTER (WHERE crm_state = 'rejected'),
       count(*) FILTER (WHERE crm_state = 'failed')
FROM customers WHERE import_id = ANY($1) GROUP BY import_id`, ids)
	if err != nil {
		return nil, fmt.Errorf("count customers of imports: %w", err)
	}
	var id string
	var c customerCounts
	_, err = pgx.ForEachRow(rows, []any{&id, &c.Stored, &c.Pending, &c.Synced, &c.Retrying, &c.Rejected, &c.Failed}, func() error {
		out[id] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count customers of imports: %w", err)
	}
	return out, nil
}

// customerRow is a customer as the API shows it.
type customerRow struct {
	Email      string            `json:"email"`
	Name       string            `json:"name"`
	FirstName  string            `json:"first_name"`
	LastName   string            `json:"last_name"`
	Phone      string            `json:"phone"`
	Attributes map[string]any    `json:"attributes"`
	State      pgstore.State     `json:"crm_state"`
	CRMID      string            `json:"crm_id,omitempty"`
	Attempts   int               `json:"crm_attempts"`
	LastError  string            `json:"crm_last_error,omitempty"`
	ImportID   string            `json:"import_id,omitempty"`
	Source     string            `json:"source"`
	SourceRow  int64             `json:"source_row"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
	SyncedAt   *time.Time        `json:"synced_at,omitempty"`
	Extra      map[string]string `json:"-"`
}

// customerQuery is a search: email or name prefix, CRM state, import, and
// the email after which the page starts.
type customerQuery struct {
	Q, State, Import, After string
	Limit                   int
}

const customerColumns = `SELECT email, name, first_name, last_name, phone, attributes, crm_state, coalesce(crm_id, ''),
       crm_attempts, coalesce(crm_last_error, ''), coalesce(import_id, ''), source, source_row, created_at, updated_at, synced_at
FROM customers`

// searchCustomers returns a page of customers in email order (byte order,
// through customers_email_c_idx), and whether more follow.
func (s *store) searchCustomers(ctx context.Context, q customerQuery) ([]customerRow, bool, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if p := strings.ToLower(strings.TrimSpace(q.Q)); p != "" {
		lo, hi := arg(p), arg(p+"\U0010FFFF")
		where = append(where, fmt.Sprintf(`((email COLLATE "C" >= %[1]s AND email COLLATE "C" < %[2]s) OR (lower(name) COLLATE "C" >= %[1]s AND lower(name) COLLATE "C" < %[2]s))`, lo, hi))
	}
	if q.State != "" {
		where = append(where, "crm_state = "+arg(q.State))
	}
	if q.Import != "" {
		where = append(where, "import_id = "+arg(q.Import))
	}
	if q.After != "" {
		where = append(where, `email COLLATE "C" > `+arg(q.After))
	}
	sql := customerColumns
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += ` ORDER BY email COLLATE "C" LIMIT ` + arg(q.Limit+1)
	rows, err := s.queryCustomers(ctx, sql, args...)
	if err != nil {
		return nil, false, err
	}
	more := len(rows) > q.Limit
	if more {
		rows = rows[:q.Limit]
	}
	return rows, more, nil
}

func (s *store) getCustomer(ctx context.Context, email string) (customerRow, error) {
	rows, err := s.queryCustomers(ctx, customerColumns+` WHERE email = $1`, strings.ToLower(strings.TrimSpace(email)))
	if err != nil {
		return customerRow{}, err
	}
	if len(rows) == 0 {
		return customerRow{}, fmt.Errorf("customer %q: %w", email, errNotFound)
	}
	return rows[0], nil
}

func (s *store) queryCustomers(ctx context.Context, sql string, args ...any) ([]customerRow, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read customers: %w", err)
	}
	out := []customerRow{}
	var c customerRow
	_, err = pgx.ForEachRow(rows, []any{
		&c.Email, &c.Name, &c.FirstName, &c.LastName, &c.Phone, &c.Attributes, &c.State, &c.CRMID,
		&c.Attempts, &c.LastError, &c.ImportID, &c.Source, &c.SourceRow, &c.CreatedAt, &c.UpdatedAt, &c.SyncedAt,
	}, func() error {
		out = append(out, c)
		c = customerRow{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read customers: %w", err)
	}
	return out, nil
}

// encodeCursor and decodeCursor keep the page's last email opaque in URLs.
func encodeCursor(email string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(email))
}

func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", errors.New("cursor is not one this service gave: use next_cursor from the previous page")
	}
	return string(b), nil
}
