package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/custimport/custimport/migrations"
)

// checkSchema refuses a schema that is missing or behind the migrations
// this binary embeds.
func (s *Store) checkSchema(ctx context.Context) error {
	var current int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&current)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w: run `consumer migrate` (make migrate-db) first", ErrNotMigrated)
	}
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if latest := latestVersion(); current < latest {
		return fmt.Errorf("%w: at version %d, this binary needs %d: run `consumer migrate` (make migrate-db)", ErrNotMigrated, current, latest)
	}
	return nil
}

func latestVersion() int64 {
	entries, _ := migrations.FS.ReadDir(".")
	var latest int64
	for _, e := range entries {
		if v, err := goose.NumericComponent(e.Name()); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

// Migrate applies the embedded migrations that are not applied yet and returns
// the versions it applied. A Postgres advisory lock makes concurrent callers
// (several consumers starting at once) wait for each other.
func Migrate(ctx context.Context, cfg Config) ([]int64, error) {
	cfg = cfg.withDefaults()
	pc, err := cfg.connConfig()
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*pc.ConnConfig)
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("connect to postgres at %s: %w", Redact(cfg.URL), err)
	}
	if cfg.Schema != "" {
		if _, err := db.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{cfg.Schema}.Sanitize()); err != nil {
			return nil, fmt.Errorf("create schema %s: %w", cfg.Schema, err)
		}
	}
	return migrate(ctx, db)
}

func migrate(ctx context.Context, db *sql.DB) ([]int64, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("create migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply migrations: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}
