package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/custimport/custimport/libs/csvsource"
	"github.com/custimport/custimport/libs/envflag"
	"github.com/custimport/custimport/libs/importer"
	"github.com/custimport/custimport/libs/logging"
	"github.com/custimport/custimport/libs/rabbit"
)

const summary = `producer streams a customer CSV into RabbitMQ, one confirmed message per valid row.

Usage: producer --file customers.csv [--parallel 4] [--columns name,email] [--resume]

Rejected rows go to a CSV report (the reason, the row number and the original
fields). The final summary is one JSON object on stdout; logs go to stderr.`

// Config is everything the producer is told. Field comments give defaults.
type Config struct {
	// File is the CSV to import. Required.
	File string
	// Parallel is the number of publishing channels. Default 4.
	Parallel int
	// Window bounds the unconfirmed messages per channel. Default 256.
	Window int
	// Header is auto, yes or no. Default auto.
	Header string
	// Columns names the columns, for files without a header.
	Columns []string
	// Delimiter is ",", ";", "tab" or "" to detect. Default "".
	Delimiter string
	// Encoding is auto, utf-8 or windows-1252. Default auto.
	Encoding string
	// Rejects is the rejects report. Default <File>.rejects.csv.
	Rejects string
	// Checkpoint is where progress is saved. Default <File>.checkpoint.
	Checkpoint string
	// StateDir, when set, holds the default rejects report and checkpoint
	// instead of the input's folder (which may be read-only).
	StateDir string
	// Resume continues from Checkpoint.
	Resume bool
	// DryRun validates and writes the rejects report without publishing.
	DryRun bool
	// AMQPURL is the broker. Default amqp://guest:guest@localhost:5672/.
	AMQPURL string
	// QueuePrefix names the exchanges and queues. Default customers.
	QueuePrefix string
	// RetryDelays and DeliveryLimit must match the consumers': both sides
	// declare the same topology.
	RetryDelays   []time.Duration
	DeliveryLimit int
	// PublishRetries is how many times a nacked message is sent again
	// before the run fails. Default 5.
	PublishRetries int
	// ReconnectTimeout is how long a lost broker connection is retried
	// before the run stops (resumable). Default 2m.
	ReconnectTimeout time.Duration
	// CheckpointEvery is how often the checkpoint is saved. Default 1s.
	CheckpointEvery time.Duration
	// ProgressEvery is how often progress is logged. Default 5s.
	ProgressEvery time.Duration
	// Progress is auto (a bar when stderr is a terminal, log lines every
	// ProgressEvery otherwise), bar or log. Default auto.
	Progress string
	// LogFormat is text or json; LogLevel debug, info, warn or error.
	LogFormat, LogLevel string
	// Version prints the version and exits.
	Version bool
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	s := envflag.New("producer", summary, getenv, stderr)
	s.String(&c.File, "file", "PRODUCER_FILE", "", "CSV `path` to import (required)")
	s.Int(&c.Parallel, "parallel", "PRODUCER_PARALLEL", 4, "publishing channels")
	s.Int(&c.Window, "window", "PRODUCER_WINDOW", 256, "unconfirmed messages allowed per channel")
	s.String(&c.Header, "header", "PRODUCER_HEADER", csvsource.HeaderAuto, "is the first row a header: auto, yes or no")
	s.List(&c.Columns, "columns", "PRODUCER_COLUMNS", nil, "comma-separated column `names` (email, name, first_name, last_name, phone, or any other), for files without a header")
	s.String(&c.Delimiter, "delimiter", "PRODUCER_DELIMITER", "", "field delimiter: , ; | or tab, or empty to detect (| is never detected)")
	s.String(&c.Encoding, "encoding", "PRODUCER_ENCODING", csvsource.EncodingAuto, "auto (UTF-8, falling back to Windows-1252 per field), utf-8 or windows-1252")
	s.String(&c.Rejects, "rejects", "PRODUCER_REJECTS", "", "rejects report `path` (default <file>.rejects.csv)")
	s.String(&c.Checkpoint, "checkpoint", "PRODUCER_CHECKPOINT", "", "checkpoint `path` (default <file>.checkpoint)")
	s.String(&c.StateDir, "state-dir", "PRODUCER_STATE_DIR", "", "`folder` for the default rejects report and checkpoint, created if missing (default: next to --file)")
	s.Bool(&c.Resume, "resume", "PRODUCER_RESUME", false, "continue from the checkpoint of an interrupted run")
	s.Bool(&c.DryRun, "dry-run", "PRODUCER_DRY_RUN", false, "validate the file and write the rejects report, publish nothing")
	s.String(&c.AMQPURL, "amqp-url", "AMQP_URL", "amqp://guest:guest@localhost:5672/", "RabbitMQ `URL`s, comma-separated: the nodes of a cluster, tried in turn")
	rabbit.BindTopologyFlags(s, &c.QueuePrefix, &c.RetryDelays, &c.DeliveryLimit)
	s.Int(&c.PublishRetries, "publish-retries", "PRODUCER_PUBLISH_RETRIES", 5, "times a message the broker refused is sent again")
	s.Duration(&c.ReconnectTimeout, "reconnect-timeout", "PRODUCER_RECONNECT_TIMEOUT", 2*time.Minute, "how long to keep reconnecting to a lost broker before stopping (resumable)")
	s.Duration(&c.CheckpointEvery, "checkpoint-every", "PRODUCER_CHECKPOINT_EVERY", time.Second, "how often the checkpoint is saved")
	s.Duration(&c.ProgressEvery, "progress-every", "PRODUCER_PROGRESS_EVERY", 5*time.Second, "how often progress is logged")
	s.String(&c.LogFormat, "log-format", "LOG_FORMAT", "text", "log format: "+logging.Formats)
	s.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	s.String(&c.Progress, "progress", "PRODUCER_PROGRESS", progressAuto, "progress on stderr: auto (a bar on a terminal, log lines otherwise), bar or log")
	s.Bool(&c.Version, "version", "", false, "print the version and exit")
	if err := s.Parse(args); err != nil {
		return Config{}, err
	}
	if c.Version {
		return c, nil
	}
	if rest := s.FlagSet().Args(); len(rest) > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q: the file is given with --file", rest[0])
	}
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.File == "":
		return errors.New("--file is required: the CSV to import (or PRODUCER_FILE)")
	case c.Parallel < 1 || c.Parallel > 64:
		return fmt.Errorf("--parallel %d: want 1 to 64 channels", c.Parallel)
	case c.Window < 1 || c.Window > 65535:
		return fmt.Errorf("--window %d: want 1 to 65535 unconfirmed messages", c.Window)
	case c.PublishRetries < 0:
		return fmt.Errorf("--publish-retries %d: want 0 or more", c.PublishRetries)
	case c.ReconnectTimeout <= 0:
		return fmt.Errorf("--reconnect-timeout %s: want a positive duration", c.ReconnectTimeout)
	case c.CheckpointEvery <= 0:
		return fmt.Errorf("--checkpoint-every %s: want a positive duration", c.CheckpointEvery)
	case c.ProgressEvery <= 0:
		return fmt.Errorf("--progress-every %s: want a positive duration", c.ProgressEvery)
	case c.Progress != progressAuto && c.Progress != progressBar && c.Progress != progressLog:
		return fmt.Errorf("--progress %q: want auto, bar or log", c.Progress)
	case c.DeliveryLimit < 1:
		return fmt.Errorf("--delivery-limit %d: want 1 or more", c.DeliveryLimit)
	case c.Header != csvsource.HeaderAuto && c.Header != csvsource.HeaderYes && c.Header != csvsource.HeaderNo:
		return fmt.Errorf("--header %q: want auto, yes or no", c.Header)
	case c.Rejects == c.File:
		return errors.New("--rejects must not be the input file")
	case c.Checkpoint == c.File:
		return errors.New("--checkpoint must not be the input file")
	}
	if _, err := c.delimiter(); err != nil {
		return err
	}
	if _, err := rabbit.ParseURLs(c.AMQPURL); err != nil && !c.DryRun {
		return fmt.Errorf("--amqp-url: %w", err)
	}
	return nil
}

func (c Config) delimiter() (rune, error) {
	switch c.Delimiter {
	case "":
		return 0, nil
	case ",", ";", "|":
		return rune(c.Delimiter[0]), nil
	case "tab", `\t`, "\t":
		return '\t', nil
	default:
		return 0, fmt.Errorf("--delimiter %q: want , ; | or tab (or nothing, to detect it)", c.Delimiter)
	}
}

// importConfig is the import the flags describe.
func (c Config) importConfig(logger *slog.Logger) importer.Config {
	d, _ := c.delimiter()
	return importer.Config{
		File:     c.File,
		CSV:      csvsource.Config{Header: c.Header, Columns: c.Columns, Delimiter: d, Encoding: c.Encoding},
		Parallel: c.Parallel, Window: c.Window,
		StateDir: c.StateDir, Rejects: c.Rejects, Checkpoint: c.Checkpoint,
		Resume: c.Resume, DryRun: c.DryRun,
		AMQPURL:          c.AMQPURL,
		Topology:         rabbit.Topology{Prefix: c.QueuePrefix, RetryDelays: c.RetryDelays, DeliveryLimit: c.DeliveryLimit, Replicas: rabbit.Replicas(c.AMQPURL)},
		PublishRetries:   c.PublishRetries,
		ReconnectTimeout: c.ReconnectTimeout,
		CheckpointEvery:  c.CheckpointEvery,
		ProgressEvery:    c.ProgressEvery,
		Logger:           logger,
	}
}
