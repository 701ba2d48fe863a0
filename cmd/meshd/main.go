// Command meshd is the mesh broadcast daemon: it hosts and joins chat rooms
// over UDP multicast and serves the control API that meshctl drives.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"meshd/daemon"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "meshd:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		configPath  = flag.String("config", "", "configuration `file` (default: built-in configuration)")
		checkConfig = flag.String("check-config", "", "validate the configuration `file` and exit")
		version     = flag.Bool("version", false, "print the version and exit")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see meshd -h)", flag.Arg(0))
	}
	switch {
	case *version:
		fmt.Println("meshd", daemon.Version)
		return nil
	case *checkConfig != "":
		if _, err := daemon.Load(*checkConfig); err != nil {
			return err
		}
		fmt.Printf("%s: configuration is valid\n", *checkConfig)
		return nil
	}

	cfg := daemon.Default()
	if *configPath != "" {
		var err error
		if cfg, err = daemon.Load(*configPath); err != nil {
			return err
		}
	}
	// The level is a LevelVar so that SIGHUP can change it.
	level := new(slog.LevelVar)
	level.Set(cfg.SlogLevel())
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	applyMemoryLimit(log, cfg.MemoryLimit)
	d, err := daemon.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP reloads the configuration file.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				reload(log, level, d, *configPath)
			case <-ctx.Done():
				return
			}
		}
	}()
	return d.Run(ctx)
}

// reload reads the configuration file again and applies what it can to the
// running daemon, logging each change applied and each that needs a
// restart. A file that does not load is rejected whole, with every problem
// logged, and meshd carries on as it was.
func reload(log *slog.Logger, level *slog.LevelVar, d *daemon.Daemon, path string) {
	if path == "" {
		log.Warn("SIGHUP: meshd runs on its built-in configuration, so there is no file to reload; start it with -config FILE")
		return
	}
	log.Info("SIGHUP: reloading configuration", "file", path)
	cfg, err := daemon.Load(path)
	if err == nil {
		var applied, restart []string
		if applied, restart, err = d.Reload(cfg); err == nil {
			level.Set(cfg.SlogLevel())
			applyMemoryLimit(log, cfg.MemoryLimit)
			for _, s := range applied {
				log.Info("reload: " + s)
			}
			for _, s := range restart {
				log.Warn("reload: " + s + "; restart meshd to apply")
			}
			if len(applied)+len(restart) == 0 {
				log.Info("reload: configuration unchanged", "file", path)
			}
			return
		}
	}
	if cerr, ok := errors.AsType[*daemon.ConfigError](err); ok {
		for _, p := range cerr.Problems {
			log.Error("reload: " + p.String())
		}
		log.Error("reload: configuration rejected; meshd keeps running the previous one", "file", path, "problems", len(cerr.Problems))
		return
	}
	log.Error("reload: configuration not reloaded; meshd keeps running the previous one", "file", path, "err", err)
}

// applyMemoryLimit sets the Go runtime's memory limit from memory_limit,
// and the collector's pace for it, and says which are in force:
// GOMEMLIMIT's and GOGC's, if they are set, win.
func applyMemoryLimit(log *slog.Logger, limit daemon.ByteSize) {
	inForce := daemon.ApplyMemoryLimit(limit)
	gogc := daemon.ApplyGCPercent(inForce)
	if daemon.MemoryLimitFromEnv() {
		log.Info("memory limit from GOMEMLIMIT; memory_limit is not applied", "limit", inForce, "memory_limit", limit, "gogc", gogc)
		return
	}
	log.Info("memory limit", "limit", inForce, "memory_limit", limit, "gogc", gogc)
}
