package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/custimport/custimport/libs/envflag"
	"github.com/custimport/custimport/libs/logging"
	"github.com/custimport/custimport/libs/pgstore"
	"github.com/custimport/custimport/libs/rabbit"
)

const summary = `web serves the page and the JSON API of the import pipeline: upload a CSV,
follow its import live, browse the customers, replay dead letters.

Usage: web [flags]                 serve the page and the API
       web watch [flags] [IMPORT]  follow an import's events (the newest when IMPORT is not given)

Every request but GET /healthz needs Authorization: Bearer <WEB_API_TOKEN>
(the page asks for it once). Without a token the service listens on
loopback only.`

// Config is everything the web service is told. Field comments give defaults.
type Config struct {
	// Addr is the listen address. Default 127.0.0.1:8080.
	Addr string
	// APIToken is the bearer token every request needs; empty means none,
	// and then the service listens on loopback only.
	APIToken string
	// AMQPURL is the broker. Default amqp://guest:guest@localhost:5672/.
	AMQPURL string
	// DatabaseURL is PostgreSQL, migrated (consumer migrate).
	DatabaseURL string
	// DBMaxConns caps the pool. Default 8.
	DBMaxConns int
	// UploadDir holds the uploaded files, their rejects reports and
	// checkpoints. Default volumes/web/uploads.
	UploadDir string
	// MaxUpload is the largest upload accepted, in bytes. Default 10 GiB.
	MaxUpload int64
	// QueuePrefix, RetryDelays and DeliveryLimit name and shape the
	// topology, as for the producer and the consumers.
	QueuePrefix   string
	RetryDelays   []time.Duration
	DeliveryLimit int
	// Parallel and Window are the publishing channels of an import and the
	// unconfirmed messages per channel. Default 4 and 256.
	Parallel, Window int
	// EventsEvery is the interval of an import's server-sent events. Default 1s.
	EventsEvery time.Duration
	// ProgressEvery is how often a running import writes its counts (and
	// its heartbeat) to Postgres. Default 500ms.
	ProgressEvery time.Duration
	// StaleAfter is how old an import's heartbeat must be before another
	// instance holding its file takes it over. Default 30s.
	StaleAfter time.Duration
	// DeadLetterScan bounds the dead letters read to count them by reason.
	// Default 10,000.
	DeadLetterScan int
	// ShutdownTimeout bounds the wait for requests at shutdown. Default 30s.
	ShutdownTimeout time.Duration
	// Name tells instances apart in the imports they run. Default
	// <hostname>:<port>.
	Name string
	// LogFormat is text or json; LogLevel debug, info, warn or error.
	LogFormat, LogLevel string
	// Version prints the version and exits.
	Version bool
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	var maxUpload string
	s := envflag.New("web", summary, getenv, stderr)
	s.String(&c.Addr, "addr", "WEB_ADDR", "127.0.0.1:8080", "HTTP listen `address` of the page and the API")
	s.String(&c.APIToken, "api-token", "WEB_API_TOKEN", "", "bearer `token` every request needs (use the variable: a flag shows in ps); empty: loopback only")
	s.String(&c.AMQPURL, "amqp-url", "AMQP_URL", "amqp://guest:guest@localhost:5672/", "RabbitMQ `URL`")
	s.String(&c.DatabaseURL, "database-url", "DATABASE_URL", "postgres://postgres:postgres@localhost:5432/customers?sslmode=disable", "PostgreSQL `URL` (migrated: consumer migrate)")
	s.Int(&c.DBMaxConns, "db-max-conns", "DB_MAX_CONNS", 8, "PostgreSQL pool size")
	s.String(&c.UploadDir, "upload-dir", "WEB_UPLOAD_DIR", "volumes/web/uploads", "`folder` for uploads, their rejects reports and checkpoints")
	s.String(&maxUpload, "max-upload", "WEB_MAX_UPLOAD", "10GiB", "largest upload accepted (bytes, or with KiB, MiB, GiB, KB, MB, GB)")
	rabbit.BindTopologyFlags(s, &c.QueuePrefix, &c.RetryDelays, &c.DeliveryLimit)
	s.Int(&c.Parallel, "import-parallel", "WEB_IMPORT_PARALLEL", 4, "publishing channels of one import")
	s.Int(&c.Window, "import-window", "WEB_IMPORT_WINDOW", 256, "unconfirmed messages allowed per channel")
	s.Duration(&c.EventsEvery, "events-every", "WEB_EVENTS_EVERY", time.Second, "interval of an import's server-sent events")
	s.Duration(&c.ProgressEvery, "progress-every", "WEB_PROGRESS_EVERY", 500*time.Millisecond, "how often a running import writes its counts to PostgreSQL")
	s.Duration(&c.StaleAfter, "stale-after", "WEB_STALE_AFTER", 30*time.Second, "an import silent this long is taken over by an instance holding its file")
	s.Int(&c.DeadLetterScan, "dead-letter-scan", "WEB_DEAD_LETTER_SCAN", 10_000, "dead letters read at most to count them by reason")
	s.Duration(&c.ShutdownTimeout, "shutdown-timeout", "WEB_SHUTDOWN_TIMEOUT", 30*time.Second, "time given to requests in flight at shutdown")
	s.String(&c.Name, "name", "WEB_NAME", "", "name of this instance in the imports it runs (default <hostname>:<port>)")
	s.String(&c.LogFormat, "log-format", "LOG_FORMAT", "text", "log format: "+logging.Formats)
	s.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	s.Bool(&c.Version, "version", "", false, "print the version and exit")
	if err := s.Parse(args); err != nil {
		return Config{}, err
	}
	if c.Version {
		return c, nil
	}
	if rest := s.FlagSet().Args(); len(rest) > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (the subcommand is watch; see --help)", rest[0])
	}
	n, err := parseSize(maxUpload)
	if err != nil {
		return Config{}, fmt.Errorf("--max-upload %q: %w", maxUpload, err)
	}
	c.MaxUpload = n
	if c.Name == "" {
		host, _ := os.Hostname()
		_, port, _ := net.SplitHostPort(c.Addr)
		c.Name = host + ":" + port
	}
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.Addr == "":
		return errors.New("--addr must not be empty")
	case c.UploadDir == "":
		return errors.New("--upload-dir must not be empty")
	case c.MaxUpload < 1:
		return fmt.Errorf("--max-upload %d: want a positive size", c.MaxUpload)
	case c.DBMaxConns < 1:
		return fmt.Errorf("--db-max-conns %d: want 1 or more", c.DBMaxConns)
	case c.Parallel < 1 || c.Parallel > 64:
		return fmt.Errorf("--import-parallel %d: want 1 to 64 channels", c.Parallel)
	case c.Window < 1 || c.Window > 65535:
		return fmt.Errorf("--import-window %d: want 1 to 65535", c.Window)
	case c.DeliveryLimit < 1:
		return fmt.Errorf("--delivery-limit %d: want 1 or more", c.DeliveryLimit)
	case c.EventsEvery <= 0:
		return fmt.Errorf("--events-every %s: want a positive duration", c.EventsEvery)
	case c.ProgressEvery <= 0:
		return fmt.Errorf("--progress-every %s: want a positive duration", c.ProgressEvery)
	case c.StaleAfter <= c.ProgressEvery:
		return fmt.Errorf("--stale-after %s: want more than --progress-every (%s)", c.StaleAfter, c.ProgressEvery)
	case c.DeadLetterScan < 1:
		return fmt.Errorf("--dead-letter-scan %d: want 1 or more", c.DeadLetterScan)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout %s: want a positive duration", c.ShutdownTimeout)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("--addr %q: want host:port, like 127.0.0.1:8080 or :8080", c.Addr)
	}
	return nil
}

// parseSize reads a byte count: a number, optionally followed by a unit
// (KiB, MiB, GiB, TiB powers of 1024; KB, MB, GB, TB powers of 1000).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10},
		{"MiB", 1 << 20},
		{"GiB", 1 << 30},
		{"TiB", 1 << 40},
		{"KB", 1e3},
		{"MB", 1e6},
		{"GB", 1e9},
		{"TB", 1e12},
		{"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		// KiB before KB before B: the first suffix that fits is the unit.
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) {
			s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want a size such as 500MiB, 10GiB or 1048576")
	}
	if n > (1<<62)/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

func (c Config) store() pgstore.Config {
	return pgstore.Config{URL: c.DatabaseURL, MaxConns: int32(c.DBMaxConns)} //nolint:gosec // validated: small and positive
}

func (c Config) topology() rabbit.Topology {
	return rabbit.Topology{Prefix: c.QueuePrefix, RetryDelays: c.RetryDelays, DeliveryLimit: c.DeliveryLimit}.WithDefaults()
}
