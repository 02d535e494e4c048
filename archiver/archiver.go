// Package archiver consumes a topic in a Kafka consumer group and writes its
// records into the lake as immutable, size-bounded Parquet files, each named
// from its partition and first and last offsets. Offsets are committed only
// after a file is durable, and on every assignment the archiver resumes from
// the files present (the later of them and the committed offset), so a crash
// at any moment neither loses a record nor makes two different files cover
// the same offsets.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/userstream/userstream/eventfile"
	"github.com/userstream/userstream/lake"
)

// Config is the archiver's configuration.
type Config struct {
	Topic      string
	Group      string            // consumer group id
	Properties map[string]string // librdkafka settings (bootstrap.servers, SASL, …)
	Roll       Policy
	SpoolDir   string        // local folder for files being filled (default os.TempDir())
	Shutdown   time.Duration // how long a stop may take to publish open files (default 30 s)
}

// Archiver is one member of the archiving consumer group.
type Archiver struct {
	cfg     Config
	lake    *lake.Lake
	schemas map[string]*eventfile.Schema
	log     zerolog.Logger
	m       *Metrics

	c     *kafka.Consumer
	parts map[int32]*partition // owned partitions; only the poll loop touches it
	cbErr error                // an error from the rebalance callback, seen after Poll

	joined  atomic.Bool
	kafkaOK atomic.Bool
	lakeOK  atomic.Bool
	owned   atomic.Int32
}

// partition is an owned partition: where its lake ends and the file it fills.
type partition struct {
	durable int64 // offset after the last record in a durable file (-1: unknown)
	open    *openFile
}

// New returns an archiver writing to l with one schema per event type.
func New(cfg Config, l *lake.Lake, schemas map[string]*eventfile.Schema, log zerolog.Logger, m *Metrics) *Archiver {
	cfg.Roll = cfg.Roll.WithDefaults()
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	}
	if cfg.Shutdown <= 0 {
		cfg.Shutdown = 30 * time.Second
	}
	return &Archiver{cfg: cfg, lake: l, schemas: schemas, log: log, m: m, parts: map[int32]*partition{}}
}

// consumerConfig is the librdkafka configuration. The settings the
// guarantees rest on cannot be overridden.
func (a *Archiver) consumerConfig() *kafka.ConfigMap {
	// A topic that does not exist yet (the streamer creates it) is looked
	// for again every 10 s rather than librdkafka's default 5 minutes.
	// A member that dies during a rebalance holds its partitions until the
	// rebalance timeout (max.poll.interval.ms): 60 s rather than 5 minutes,
	// still above the longest a put with its retries may block the loop.
	cm := kafka.ConfigMap{"auto.offset.reset": "earliest", "log_level": 4, "topic.metadata.refresh.interval.ms": 10_000,
		"max.poll.interval.ms": 60_000}
	for k, v := range a.cfg.Properties {
		cm[k] = v
	}
	cm["group.id"] = a.cfg.Group
	cm["isolation.level"] = "read_committed"
	cm["enable.auto.commit"] = false
	cm["enable.auto.offset.store"] = false
	// Eager rebalancing: every member gives up all its partitions (and
	// publishes or drops their open files) before any is handed out again.
	cm["partition.assignment.strategy"] = "range,roundrobin"
	return &cm
}

// Run consumes until ctx ends, then publishes the open files (they are
// whole and correctly named), commits their offsets and leaves the group.
func (a *Archiver) Run(ctx context.Context) error {
	c, err := kafka.NewConsumer(a.consumerConfig())
	if err != nil {
		return fmt.Errorf("create consumer: %w", err)
	}
	a.c = c
	if err := c.SubscribeTopics([]string{a.cfg.Topic}, a.rebalance); err != nil {
		c.Close()
		return fmt.Errorf("subscribe to %s: %w", a.cfg.Topic, err)
	}
	a.lakeOK.Store(true)
	var g errgroup.Group
	watchCtx, stopWatch := context.WithCancel(ctx)
	g.Go(func() error { a.watchKafka(watchCtx); return nil })
	err = a.loop(ctx)
	stopWatch()
	_ = g.Wait()

	stopCtx, cancel := context.WithTimeout(context.Background(), a.cfg.Shutdown)
	defer cancel()
	if perr := a.publishAll(stopCtx); perr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = perr
	}
	a.parts = map[int32]*partition{}
	a.joined.Store(false)
	if cerr := c.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close consumer: %w", cerr)
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (a *Archiver) loop(ctx context.Context) error {
	lagAt := time.Time{}
	for ctx.Err() == nil {
		switch e := a.c.Poll(100).(type) {
		case *kafka.Message:
			if err := a.add(ctx, e); err != nil {
				return err
			}
		case kafka.Error:
			if e.IsFatal() {
				return fmt.Errorf("kafka: %w", e)
			}
			if e.Code() == kafka.ErrAllBrokersDown {
				a.kafkaOK.Store(false)
			}
			a.log.Warn().Str("error", e.Error()).Msg("kafka client error (retrying)")
		}
		if a.cbErr != nil {
			return a.cbErr
		}
		now := time.Now()
		if err := a.rollAged(ctx, now); err != nil {
			return err
		}
		if now.Sub(lagAt) > time.Second {
			a.updateLag()
			lagAt = now
		}
	}
	return ctx.Err()
}

// add puts one record into its partition's file, rolling first when the
// record starts another date or event type, and after when a limit is met.
func (a *Archiver) add(ctx context.Context, msg *kafka.Message) error {
	a.kafkaOK.Store(true)
	tp := msg.TopicPartition
	p := a.parts[tp.Partition]
	if p == nil {
		return nil // a record fetched before its partition was revoked
	}
	r, err := record(msg)
	if err != nil {
		return fmt.Errorf("%s partition %d offset %d: %w", a.cfg.Topic, tp.Partition, tp.Offset, err)
	}
	s := a.schemas[r.CEType]
	if s == nil {
		return fmt.Errorf("%s partition %d offset %d: no contract for event type %q", a.cfg.Topic, tp.Partition, tp.Offset, r.CEType)
	}
	date := r.CETime.UTC().Format(time.DateOnly)
	if p.open != nil && (p.open.name.Date != date || p.open.eventTyp != r.CEType) {
		if err := a.roll(ctx, tp.Partition, p); err != nil {
			return err
		}
	}
	if p.open == nil {
		name := FileName{Topic: a.cfg.Topic, Date: date, Partition: tp.Partition, First: r.Offset, Last: r.Offset}
		if p.open, err = newOpenFile(a.cfg.SpoolDir, s, name, a.cfg.Roll.RowGroupRows, time.Now()); err != nil {
			return err
		}
	}
	if err := p.open.add(s, r); err != nil {
		if p.open.empty() {
			// The file was opened for this record: its name claims the
			// record's offset, so it must never be published.
			p.open.discard()
			p.open = nil
		}
		return fmt.Errorf("%s partition %d: %w", a.cfg.Topic, tp.Partition, err)
	}
	a.m.Read.Inc()
	if p.open.full(a.cfg.Roll) {
		return a.roll(ctx, tp.Partition, p)
	}
	return nil
}

func (a *Archiver) rollAged(ctx context.Context, now time.Time) error {
	for id, p := range a.parts {
		if p.open != nil && now.Sub(p.open.opened) >= a.cfg.Roll.MaxAge {
			if err := a.roll(ctx, id, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// roll publishes the partition's open file, then commits the offset after
// it. A failed commit is only logged: the file in the lake already says
// where to resume.
func (a *Archiver) roll(ctx context.Context, id int32, p *partition) error {
	f := p.open
	p.open = nil
	if a.c.AssignmentLost() {
		// The group gave the partition away (we stalled past the rebalance
		// timeout): publishing now could overlap the new owner's files.
		f.discard()
		a.log.Warn().Int32("partition", id).Msg("assignment lost; open file dropped, its records will be read again by the new owner")
		return nil
	}
	n, err := a.publish(ctx, f)
	if err != nil {
		return err
	}
	now := time.Now()
	a.m.rolled(now, n, f.w.Rows())
	a.m.Duplicates.Add(float64(f.dups))
	p.durable = f.name.Last + 1
	a.log.Info().Str("file", f.name.Key()).Int64("events", f.w.Rows()).Int64("bytes", n).Int64("duplicates_dropped", f.dups).
		Dur("age", now.Sub(f.opened)).Msg("file written")
	topic := a.cfg.Topic
	if _, err := a.c.CommitOffsets([]kafka.TopicPartition{{Topic: &topic, Partition: id, Offset: kafka.Offset(p.durable)}}); err != nil {
		a.m.CommitErrors.Inc()
		a.log.Warn().Int32("partition", id).Int64("offset", p.durable).Str("error", err.Error()).Msg("offset commit failed; the lake's files still mark the position")
	}
	return nil
}

// publish puts the file into the lake, retrying a failing store for a while
// (the spooled file is kept, so nothing is re-read from Kafka).
func (a *Archiver) publish(ctx context.Context, f *openFile) (int64, error) {
	if err := f.finish(); err != nil {
		f.discard()
		return 0, err
	}
	defer f.discard()
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := f.put(ctx, a.lake)
		if err == nil {
			a.lakeOK.Store(true)
			return n, nil
		}
		if errors.Is(err, lake.ErrDifferentContent) || attempt == 8 || ctx.Err() != nil {
			a.lakeOK.Store(false)
			return 0, err
		}
		a.lakeOK.Store(false)
		a.m.PutRetries.Inc()
		a.log.Warn().Str("file", f.name.Key()).Int("attempt", attempt).Str("error", err.Error()).Msg("lake put failed; retrying")
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// publishAll publishes every open file, at shutdown.
func (a *Archiver) publishAll(ctx context.Context) error {
	var first error
	for id, p := range a.parts {
		if p.open == nil {
			continue
		}
		if p.open.broken {
			p.open.discard()
			p.open = nil
			continue
		}
		if err := a.roll(ctx, id, p); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// watchKafka asks the cluster for the topic's metadata every few seconds,
// so readiness notices a broker coming back while no record flows.
func (a *Archiver) watchKafka(ctx context.Context) {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		// No topic named: asking for one could auto-create it on some brokers
		// before the streamer creates it with its partition count.
		_, err := a.c.GetMetadata(nil, false, 2000)
		a.kafkaOK.Store(err == nil)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Archiver) updateLag() {
	for id, p := range a.parts {
		low, high, err := a.c.GetWatermarkOffsets(a.cfg.Topic, id)
		if err != nil || high < 0 {
			continue // not fetched from yet
		}
		archived := max(p.durable, low, 0) // nothing archived yet: all the partition holds is lag
		if p.open == nil {
			// Everything read is in durable files; the position is past
			// transaction markers, which no file holds.
			topic := a.cfg.Topic
			if pos, err := a.c.Position([]kafka.TopicPartition{{Topic: &topic, Partition: id}}); err == nil && int64(pos[0].Offset) > archived {
				archived = int64(pos[0].Offset)
			}
		}
		a.m.Lag.WithLabelValues(fmt.Sprint(id)).Set(float64(max(high-archived, 0)))
	}
}
