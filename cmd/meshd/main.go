// Command meshd is the mesh broadcast daemon: it hosts and joins chat rooms
// over UDP multicast and serves the control API that meshctl drives.
package main

import (
	"context"
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
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.SlogLevel()}))
	d, err := daemon.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP would otherwise end meshd; until reload exists, say so
	// instead.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				log.Warn("SIGHUP: configuration reload is not supported yet; restart meshd to apply a changed configuration")
			case <-ctx.Done():
				return
			}
		}
	}()
	return d.Run(ctx)
}
