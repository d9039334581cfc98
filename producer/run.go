package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/custimport/custimport/libs/buildinfo"
	"github.com/custimport/custimport/libs/importer"
	"github.com/custimport/custimport/libs/logging"
)

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		_, err := fmt.Fprintln(stdout, buildinfo.String("producer", version))
		return err
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	ic := cfg.importConfig(logger)
	if out := progressWriter(cfg.Progress, stderr); out != nil {
		bar := newTerminalBar(out)
		ic.ProgressEvery = barEvery
		ic.OnProgress = bar.update
	}
	sum, err := importer.Run(ctx, ic)
	if sum != nil {
		if err != nil {
			sum.Error = err.Error()
		}
		enc := json.NewEncoder(stdout)
		if werr := enc.Encode(sum); werr != nil && err == nil {
			err = fmt.Errorf("write summary: %w", werr)
		}
	}
	return err
}
