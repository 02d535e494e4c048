// Command devkafka is the development and test stand-in for Apache Kafka: a
// single-node Kafka-protocol broker (franz-go's kfake) on 127.0.0.1 with its
// data in a folder. Never use it in production.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/userstream/userstream/internal/devkafka"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "devkafka:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("devkafka", flag.ContinueOnError)
	port := fs.Int("port", 9092, "TCP port on 127.0.0.1 (0 picks a free one)")
	dataDir := fs.String("data-dir", "", "folder that keeps topics across restarts (empty: memory only)")
	partitions := fs.Int("partitions", 6, "partitions of auto-created topics")
	addrFile := fs.String("addr-file", "", "write the bound address to this file once listening")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := devkafka.Start(devkafka.Config{Port: *port, DataDir: *dataDir, Partitions: *partitions, Log: os.Stderr})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("port %d is in use: set KAFKA_PORT to another port (%w)", *port, err)
		}
		return err
	}
	fmt.Fprintf(os.Stderr, "devkafka: listening on %s (data: %q)\n", b.Addr(), *dataDir)
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(b.Addr()+"\n"), 0o644); err != nil {
			b.Close()
			return fmt.Errorf("write addr file: %w", err)
		}
	}
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "devkafka: shutting down, persisting state")
	b.Close()
	return nil
}
