package pgstore_test

import (
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/custimport/custimport/libs/customer"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/testenv"
)

func open(t *testing.T) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(t.Context(), testenv.MigratedPostgres(t))
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func TestOpenUnmigratedSaysSo(t *testing.T) {
	t.Parallel()
	_, err := pgstore.Open(t.Context(), testenv.Postgres(t))
	require.ErrorIs(t, err, pgstore.ErrNotMigrated)
	require.ErrorContains(t, err, "consumer migrate")
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	t.Parallel()
	cfg := testenv.Postgres(t)
	applied, err := pgstore.Migrate(t.Context(), cfg)
	require.NoError(t, err)
	require.NotEmpty(t, applied)
	applied, err = pgstore.Migrate(t.Context(), cfg)
	require.NoError(t, err)
	require.Empty(t, applied)
}

// withURL returns the test server's URL changed by edit.
func withURL(t *testing.T, edit func(u *url.URL)) string {
	t.Helper()
	return testenv.EditURL(t, testenv.DatabaseURL(t), edit)
}

func TestOpenPermanentErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  pgstore.Config
	}{
		{"missing database", pgstore.Config{URL: withURL(t, func(u *url.URL) { u.Path = "/no_such_db_" + testenv.Name(t) })}},
		{"unknown role", pgstore.Config{URL: withURL(t, func(u *url.URL) { u.User = url.UserPassword("nobody_"+testenv.Name(t), "secret") })}},
		{"malformed", pgstore.Config{URL: "postgres://u:secret@127.0.0.1:notaport/db"}},
		{"empty", pgstore.Config{}},
		{"not migrated", testenv.Postgres(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := pgstore.Open(t.Context(), tt.cfg)
			require.Error(t, err)
			require.True(t, pgstore.IsPermanent(err), "not permanent: %v", err)
			require.NotContains(t, err.Error(), "secret")
			require.NotContains(t, err.Error(), "%!")
		})
	}
}

func TestOpenUnreachableNamesServerWithoutPassword(t *testing.T) {
	t.Parallel()
	_, err := pgstore.Open(t.Context(), pgstore.Config{URL: "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2"})
	require.Error(t, err)
	require.False(t, pgstore.IsPermanent(err), "permanent: %v", err)
	require.ErrorContains(t, err, "127.0.0.1:1")
	require.NotContains(t, err.Error(), "secret")
}

func TestInsertNewInsertsOnce(t *testing.T) {
	t.Parallel()
	s := open(t)
	batch := []customer.Customer{
		{Email: "b@x.com", Name: "B"},
		{Email: "a@x.com", Name: "A", Attributes: map[string]string{"id": "1"}},
		{Email: "a@x.com", Name: "A again"},
	}
	ins, err := s.InsertNew(t.Context(), batch)
	require.NoError(t, err)
	require.Equal(t, pgstore.Inserted{"a@x.com": true, "b@x.com": true}, ins)

	ins, err = s.InsertNew(t.Context(), []customer.Customer{{Email: "a@x.com"}, {Email: "c@x.com"}})
	require.NoError(t, err)
	require.Equal(t, pgstore.Inserted{"c@x.com": true}, ins)

	var name, attrs string
	require.NoError(t, s.Pool().QueryRow(t.Context(), `SELECT name, attributes::text FROM customers WHERE email='a@x.com'`).Scan(&name, &attrs))
	require.Equal(t, "A", name)
	require.JSONEq(t, `{"id":"1"}`, attrs)
}

func TestInsertNewKeepsTheFirstImport(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, err := s.InsertNew(t.Context(), []customer.Customer{
		{Email: "a@x.com", ImportID: "imp-1"},
		{Email: "b@x.com"}, // published by a command line without an import id
	})
	require.NoError(t, err)
	ins, err := s.InsertNew(t.Context(), []customer.Customer{{Email: "a@x.com", ImportID: "imp-2"}, {Email: "c@x.com", ImportID: "imp-2"}})
	require.NoError(t, err)
	require.Equal(t, pgstore.Inserted{"c@x.com": true}, ins)

	rows, err := s.Pool().Query(t.Context(), `SELECT email, coalesce(import_id, '(null)') FROM customers ORDER BY email`)
	require.NoError(t, err)
	got := map[string]string{}
	var email, imp string
	_, err = pgx.ForEachRow(rows, []any{&email, &imp}, func() error { got[email] = imp; return nil })
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a@x.com": "imp-1", "b@x.com": "(null)", "c@x.com": "imp-2"}, got)
}

func TestLeaseIsExclusiveAndSettles(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, err := s.InsertNew(t.Context(), []customer.Customer{{Email: "a@x.com"}, {Email: "b@x.com"}})
	require.NoError(t, err)

	claims, err := s.Lease(t.Context(), []string{"a@x.com", "b@x.com", "missing@x.com"}, "w1", time.Minute)
	require.NoError(t, err)
	require.Len(t, claims, 2)
	require.True(t, claims["a@x.com"].Leased)
	require.Equal(t, 1, claims["a@x.com"].Attempts)

	other, err := s.Lease(t.Context(), []string{"a@x.com"}, "w2", time.Minute)
	require.NoError(t, err)
	require.False(t, other["a@x.com"].Leased)
	require.True(t, other["a@x.com"].Busy)

	// Another worker's settle does nothing to a lease it does not hold.
	require.NoError(t, s.Settle(t.Context(), "w2", []pgstore.CRMResult{{Email: "a@x.com", State: pgstore.StateSynced}}))
	require.NoError(t, s.Settle(t.Context(), "w1", []pgstore.CRMResult{
		{Email: "a@x.com", State: pgstore.StateSynced, CRMID: "crm-1"},
		{Email: "b@x.com", State: pgstore.StatePending, Error: "503"},
	}))
	counts, err := s.Counts(t.Context())
	require.NoError(t, err)
	require.Equal(t, int64(1), counts[pgstore.StateSynced])
	require.Equal(t, int64(1), counts[pgstore.StatePending])

	// Synced is never leased again; released pending is, with its attempt counted.
	claims, err = s.Lease(t.Context(), []string{"a@x.com", "b@x.com"}, "w2", time.Minute)
	require.NoError(t, err)
	require.False(t, claims["a@x.com"].Leased)
	require.Equal(t, pgstore.StateSynced, claims["a@x.com"].State)
	require.True(t, claims["b@x.com"].Leased)
	require.Equal(t, 2, claims["b@x.com"].Attempts)
}

// A first insert taken with its lease is leased as Lease would have left it:
// others see it busy, its owner settles it, and a customer already stored
// is not leased by the insert.
func TestInsertLeasedTakesTheLeaseOfFirstInsertsOnly(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, err := s.InsertNew(t.Context(), []customer.Customer{{Email: "old@x.com"}})
	require.NoError(t, err)

	ins, err := s.InsertLeased(t.Context(), []customer.Customer{{Email: "old@x.com"}, {Email: "new@x.com", Name: "N"}}, "w1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, pgstore.Inserted{"new@x.com": true}, ins)

	other, err := s.Lease(t.Context(), []string{"old@x.com", "new@x.com"}, "w2", time.Minute)
	require.NoError(t, err)
	require.True(t, other["old@x.com"].Leased, "a customer stored before is not leased by the insert")
	require.Equal(t, 1, other["old@x.com"].Attempts)
	require.False(t, other["new@x.com"].Leased)
	require.True(t, other["new@x.com"].Busy)
	require.Equal(t, 1, other["new@x.com"].Attempts, "the insert counted the first attempt")

	// Its owner takes it again without another attempt, and settles it.
	mine, err := s.Lease(t.Context(), []string{"new@x.com"}, "w1", time.Minute)
	require.NoError(t, err)
	require.True(t, mine["new@x.com"].Leased)
	require.Equal(t, 1, mine["new@x.com"].Attempts)
	require.NoError(t, s.Settle(t.Context(), "w1", []pgstore.CRMResult{{Email: "new@x.com", State: pgstore.StateSynced, CRMID: "crm-1"}}))
	var state string
	var owner, until *string
	require.NoError(t, s.Pool().QueryRow(t.Context(), `SELECT crm_state, crm_lease_owner, crm_lease_until::text FROM customers WHERE email = 'new@x.com'`).Scan(&state, &owner, &until))
	require.Equal(t, "synced", state)
	require.Nil(t, owner)
	require.Nil(t, until)

	// Released, the attempt is given back.
	ins, err = s.InsertLeased(t.Context(), []customer.Customer{{Email: "later@x.com"}}, "w1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, pgstore.Inserted{"later@x.com": true}, ins)
	require.NoError(t, s.Release(t.Context(), "w1", []string{"later@x.com"}))
	claims, err := s.Lease(t.Context(), []string{"later@x.com"}, "w2", time.Minute)
	require.NoError(t, err)
	require.True(t, claims["later@x.com"].Leased)
	require.Equal(t, 1, claims["later@x.com"].Attempts)
}

// Without an owner, an insert leaves no lease behind.
func TestInsertNewTakesNoLease(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, err := s.InsertNew(t.Context(), []customer.Customer{{Email: "a@x.com"}})
	require.NoError(t, err)
	var attempts int
	var owner, until *string
	require.NoError(t, s.Pool().QueryRow(t.Context(), `SELECT crm_attempts, crm_lease_owner, crm_lease_until::text FROM customers`).Scan(&attempts, &owner, &until))
	require.Zero(t, attempts)
	require.Nil(t, owner)
	require.Nil(t, until)
}

func TestExpiredLeaseCanBeTaken(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, err := s.InsertNew(t.Context(), []customer.Customer{{Email: "a@x.com"}})
	require.NoError(t, err)
	_, err = s.Lease(t.Context(), []string{"a@x.com"}, "dead-worker", time.Millisecond)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c, err := s.Lease(t.Context(), []string{"a@x.com"}, "w2", time.Minute)
		require.NoError(t, err)
		return c["a@x.com"].Leased
	}, 5*time.Second, 10*time.Millisecond)
}

func TestConcurrentLeasesGrantOne(t *testing.T) {
	t.Parallel()
	s := open(t)
	emails := []string{"a@x.com", "b@x.com", "c@x.com", "d@x.com"}
	batch := make([]customer.Customer, len(emails))
	for i, e := range emails {
		batch[i] = customer.Customer{Email: e}
	}
	_, err := s.InsertNew(t.Context(), batch)
	require.NoError(t, err)

	var mu sync.Mutex
	granted := map[string]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			claims, err := s.Lease(t.Context(), emails, string(rune('a'+w)), time.Minute)
			if !assertNoError(t, err) {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for e, c := range claims {
				if c.Leased {
					granted[e]++
				}
			}
		})
	}
	wg.Wait()
	for _, e := range emails {
		require.Equal(t, 1, granted[e], e)
	}
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

func TestResetPutsFailedBackToPending(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, err := s.InsertNew(t.Context(), []customer.Customer{{Email: "a@x.com"}})
	require.NoError(t, err)
	_, err = s.Lease(t.Context(), []string{"a@x.com"}, "w", time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Settle(t.Context(), "w", []pgstore.CRMResult{{Email: "a@x.com", State: pgstore.StateFailed, Error: "gave up"}}))
	n, err := s.Reset(t.Context(), []string{"a@x.com"})
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	c, err := s.Lease(t.Context(), []string{"a@x.com"}, "w", time.Minute)
	require.NoError(t, err)
	require.True(t, c["a@x.com"].Leased)
	require.Equal(t, 1, c["a@x.com"].Attempts)
}

func TestIsDataError(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, err := s.Pool().Exec(t.Context(), `INSERT INTO customers (email) VALUES ('Not Normalised')`)
	require.True(t, pgstore.IsDataError(err))
	require.False(t, pgstore.IsDataError(nil))
}

func TestLeaseRetakesOwnLeaseWithoutAnAttempt(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, err := s.InsertNew(t.Context(), []customer.Customer{{Email: "a@x.com"}})
	require.NoError(t, err)
	for range 2 { // the second is what a lost answer to the first looks like
		c, err := s.Lease(t.Context(), []string{"a@x.com"}, "w1", time.Minute)
		require.NoError(t, err)
		require.True(t, c["a@x.com"].Leased)
		require.Equal(t, 1, c["a@x.com"].Attempts)
	}
}

func TestReleaseRefundsTheAttempt(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, err := s.InsertNew(t.Context(), []customer.Customer{{Email: "a@x.com"}})
	require.NoError(t, err)
	_, err = s.Lease(t.Context(), []string{"a@x.com"}, "w1", time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Release(t.Context(), "w1", []string{"a@x.com"}))
	c, err := s.Lease(t.Context(), []string{"a@x.com"}, "w2", time.Minute)
	require.NoError(t, err)
	require.True(t, c["a@x.com"].Leased, "released leases are free for anyone")
	require.Equal(t, 1, c["a@x.com"].Attempts, "a released lease costs no attempt")
}

func TestLeaseReturnsTheStoredCustomer(t *testing.T) {
	t.Parallel()
	s := open(t)
	first := customer.Customer{Email: "a@x.com", Name: "First Row", Phone: "1", Attributes: map[string]string{"id": "7"}, Source: "f.csv#ab", Row: 7}
	_, err := s.InsertNew(t.Context(), []customer.Customer{first})
	require.NoError(t, err)
	_, err = s.InsertNew(t.Context(), []customer.Customer{{Email: "a@x.com", Name: "Later Row"}})
	require.NoError(t, err)
	c, err := s.Lease(t.Context(), []string{"a@x.com"}, "w", time.Minute)
	require.NoError(t, err)
	require.Equal(t, first, c["a@x.com"].Customer, "the CRM gets what Postgres holds")
}

// A row written by another tool, with attributes that are not all strings,
// is still leased (a failed read would hold its batch as if Postgres were down).
func TestLeaseReadsAnyAttributes(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, err := s.Pool().Exec(t.Context(), `INSERT INTO customers (email, attributes) VALUES ('b@x.com', '{"vip": true, "score": 7, "tag": "x"}')`)
	require.NoError(t, err)
	c, err := s.Lease(t.Context(), []string{"b@x.com"}, "w", time.Minute)
	require.NoError(t, err)
	require.True(t, c["b@x.com"].Leased)
	require.Equal(t, map[string]string{"vip": "true", "score": "7", "tag": "x"}, c["b@x.com"].Customer.Attributes)
}

// Settling a batch rewrites every row of its pages once: the new versions
// must fit beside the old ones (migration 00005), so that the settle is a
// heap-only update and adds nothing to the table's indexes.
func TestSettledRowsStayOnTheirPage(t *testing.T) {
	t.Parallel()
	s := open(t)
	const n = 2048
	pageOf := func() map[string]string {
		rows, err := s.Pool().Query(t.Context(), `SELECT email, (ctid::text::point)[0]::text FROM customers`)
		require.NoError(t, err)
		pages := map[string]string{}
		var email, page string
		_, err = pgx.ForEachRow(rows, []any{&email, &page}, func() error { pages[email] = page; return nil })
		require.NoError(t, err)
		return pages
	}
	for b := range n / 256 {
		batch := make([]customer.Customer, 256)
		results := make([]pgstore.CRMResult, 256)
		for i := range batch {
			e := fmt.Sprintf("customer%05d@example.com", b*256+i)
			batch[i] = customer.Customer{
				Email: e, Name: "Jon Doe", FirstName: "Jon", LastName: "Doe", Phone: "+1 212 555 1234",
				Attributes: map[string]string{"company": "Globex"}, Source: "customers.csv#0123abcd", Row: int64(b*256 + i + 1),
			}
			results[i] = pgstore.CRMResult{Email: e, State: pgstore.StateSynced, CRMID: fmt.Sprintf("cus_%08d", b*256+i)}
		}
		_, err := s.InsertLeased(t.Context(), batch, "w1", time.Minute)
		require.NoError(t, err)
		before := pageOf()
		require.NoError(t, s.Settle(t.Context(), "w1", results))
		after := pageOf()
		moved := 0
		for _, r := range results {
			if before[r.Email] != after[r.Email] {
				moved++
			}
		}
		require.LessOrEqual(t, moved, 256/20, "batch %d: %d of 256 settled rows left their page", b, moved)
	}
}
