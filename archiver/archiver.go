// Package archiver consumes a topic in a Kafka consumer group and writes its
// records into the lake as immutable Parquet files bounded by size, count
// and age, one event date per file, each named from its partition and first
// and last offsets (the layout is lake's). A partition fills one file per
// event date at a time, within a cap on open files. The offset committed is
// the partition's low water mark: every record before it is in a durable
// file. On every assignment the archiver starts from the committed offset
// and skips each record a file in the lake already holds, so a crash at any
// moment neither loses a record nor puts one record in two files.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
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

	// Only the poll loop (and the rebalance callback it runs) touches these.
	c         *kafka.Consumer
	parts     map[int32]*partition // owned partitions
	openFiles int                  // open files of every partition
	uploading int                  // finished files not yet in the lake
	paused    bool                 // fetching paused while the lake is behind
	seq       uint64               // counts records added, to find the least recently used file
	cbErr     error                // an error from the rebalance callback, seen after Poll

	uploaders      sync.WaitGroup
	uploaded       chan *upload  // uploads done, for the poll loop
	slots          chan struct{} // puts under way
	revokeBudget   time.Duration // how long a revocation starts puts: a quarter of max.poll.interval.ms
	requestTimeout time.Duration // one attempt to put a file: a quarter of max.poll.interval.ms

	joined  atomic.Bool
	kafkaOK atomic.Bool
	lakeOK  atomic.Bool
	owned   atomic.Int32
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
	a := &Archiver{cfg: cfg, lake: l, schemas: schemas, log: log, m: m, parts: map[int32]*partition{},
		uploaded: make(chan *upload, 64), slots: make(chan struct{}, maxUploads)}
	// A revocation starts puts for a quarter of the rebalance timeout, and
	// a put's request may take another quarter: the callback returns well
	// within the timeout, so the group never hands a partition over while
	// a request of ours may still land.
	a.requestTimeout = a.maxPollInterval() / 4
	a.revokeBudget = min(cfg.Shutdown, a.requestTimeout)
	return a
}

// maxPollInterval is max.poll.interval.ms as configured: the rebalance
// timeout, past which the group gives a silent member's partitions away.
func (a *Archiver) maxPollInterval() time.Duration {
	v, _ := (*a.consumerConfig())["max.poll.interval.ms"]
	ms, err := strconv.Atoi(fmt.Sprint(v))
	if err != nil || ms <= 0 {
		return time.Minute
	}
	return time.Duration(ms) * time.Millisecond
}

// consumerConfig is the librdkafka configuration. The settings the
// guarantees rest on cannot be overridden.
func (a *Archiver) consumerConfig() *kafka.ConfigMap {
	// A topic that does not exist yet (the streamer creates it) is looked
	// for again every 10 s rather than librdkafka's default 5 minutes.
	// A member that dies during a rebalance holds its partitions until the
	// rebalance timeout (max.poll.interval.ms): 60 s rather than 5 minutes.
	// Puts run off the poll loop; one attempt may take a quarter of it.
	// A fetch waits at the broker for 256 KiB or half a second: files roll
	// in minutes, so nothing is gained by fetching each record as it
	// arrives, and at a steady trickle that would cost the archiver and the
	// broker a round trip and a wake-up per record or two. A backlog fills
	// every fetch at once.
	cm := kafka.ConfigMap{"auto.offset.reset": "earliest", "log_level": 4, "topic.metadata.refresh.interval.ms": 10_000,
		"max.poll.interval.ms": 60_000, "fetch.min.bytes": 256 << 10, "fetch.wait.max.ms": 500}
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
	if c.AssignmentLost() {
		a.revoke(a.assignment(), true)
	}
	if perr := a.release(stopCtx, a.ownedParts()); perr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = perr
	}
	a.uploaders.Wait()
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
			if err := a.add(e); err != nil {
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
		if err := a.drain(); err != nil {
			return err
		}
		now := time.Now()
		if err := a.rollAged(now); err != nil {
			return err
		}
		if now.Sub(lagAt) > time.Second {
			a.updateLag()
			lagAt = now
		}
	}
	return ctx.Err()
}

// ownedParts lists the owned partitions.
func (a *Archiver) ownedParts() []*partition {
	out := make([]*partition, 0, len(a.parts))
	for _, p := range a.parts {
		out = append(out, p)
	}
	return out
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

// updateLag sets the lag of every owned partition, and notices a lost
// assignment while no file rolls.
func (a *Archiver) updateLag() {
	if len(a.parts) > 0 && a.c.AssignmentLost() {
		a.lostAssignment()
	}
	for id, p := range a.parts {
		low, high, err := a.c.GetWatermarkOffsets(a.cfg.Topic, id)
		if err != nil || high < 0 {
			continue // not fetched from yet
		}
		archived := max(p.lowWater(), low, 0) // nothing archived yet: all the partition holds is lag
		if len(p.open) == 0 && len(p.uploads) == 0 && p.unpublished < 0 {
			// Everything read is in durable files; the position is past
			// transaction markers, which no file holds.
			topic := a.cfg.Topic
			if pos, err := a.c.Position([]kafka.TopicPartition{{Topic: &topic, Partition: id}}); err == nil && int64(pos[0].Offset) > archived {
				archived = int64(pos[0].Offset)
			}
		}
		a.m.Lag.WithLabelValues(fmt.Sprint(id)).Set(float64(max(high-archived, 0)))
	}
	a.m.OpenFiles.Set(float64(a.openFiles))
	a.m.Uploading.Set(float64(a.uploading))
}
