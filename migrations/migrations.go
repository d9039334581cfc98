// Package migrations embeds the numbered SQL files that define the database
// schema. They are applied by pgstore.Migrate (goose), never by hand.
package migrations

import "embed"

// FS holds the migration files, named NNNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
