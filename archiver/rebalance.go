package archiver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/eventfile"
	"github.com/userstream/userstream/lake"
)

// rebalance runs inside Poll. On assignment it starts each partition at
// its committed offset (every record before it is in a durable file) and
// indexes the lake's files so records read again are skipped; on revocation
// it publishes the open files within the put budget, before the partition
// can go to another member (the eager protocol waits for us that long), or
// drops them when the assignment was lost (another member may own the
// partition already).
func (a *Archiver) rebalance(c *kafka.Consumer, ev kafka.Event) error {
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		parts, err := a.assign(e.Partitions)
		if err != nil {
			a.cbErr = err
			return err
		}
		if err := c.Assign(parts); err != nil {
			a.cbErr = fmt.Errorf("assign partitions: %w", err)
			return a.cbErr
		}
		// A pause outlives an unassign in librdkafka: a partition paused
		// while the lake was behind and assigned again must fetch again.
		if err := c.Resume(parts); err != nil {
			a.cbErr = fmt.Errorf("resume assigned partitions: %w", err)
			return a.cbErr
		}
		a.paused = false
		a.joined.Store(true)
		a.owned.Store(int32(len(a.parts)))
		a.m.Partitions.Set(float64(len(a.parts)))
	case kafka.RevokedPartitions:
		a.revoke(e.Partitions, c.AssignmentLost())
		if err := c.Unassign(); err != nil {
			a.log.Warn().Str("error", err.Error()).Msg("unassign")
		}
		a.owned.Store(int32(len(a.parts)))
		a.m.Partitions.Set(float64(len(a.parts)))
	}
	return nil
}

func (a *Archiver) assign(tps []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs, err := a.listLake(ctx)
	if err != nil {
		return nil, fmt.Errorf("resume from the lake: %w", err)
	}
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.Key
	}
	res := ResumeFrom(a.cfg.Topic, keys)
	committed, cerr := a.c.Committed(tps, 10_000)
	if cerr != nil {
		// Reading from the start is safe: the lake's files say what to skip.
		a.log.Warn().Str("error", cerr.Error()).Msg("committed offsets unknown; reading from the start, skipping what the lake holds")
		committed = nil
	}
	out := make([]kafka.TopicPartition, 0, len(tps))
	for i, tp := range tps {
		for _, tmp := range res.Temps[tp.Partition] {
			// A put that crashed before its rename; the partition is ours now.
			if err := a.lake.Delete(ctx, tmp); err != nil {
				return nil, err
			}
		}
		start := int64(-1)
		if committed != nil && committed[i].Offset >= 0 {
			start = int64(committed[i].Offset)
		}
		tp.Offset = kafka.OffsetBeginning
		if start >= 0 {
			tp.Offset = kafka.Offset(start)
		}
		p := newPartition(tp.Partition, start, res.Files[tp.Partition])
		a.parts[tp.Partition] = p
		out = append(out, tp)
		a.log.Info().Int32("partition", tp.Partition).Int64("start_offset", start).Int("files_to_skip", p.inLake.count()).Msg("partition assigned")
	}
	a.log.Info().Int("files_in_lake", res.Count()).Int("partitions", len(out)).Msg("resumed from the lake")
	return out, nil
}

// listLake lists the topic's files, retrying while the store does not
// answer: partitions that arrive while the store is down wait for it, as a
// put does, instead of ending the archiver. The caller's deadline (a
// minute, well inside max.poll.interval.ms) bounds the wait.
func (a *Archiver) listLake(ctx context.Context) ([]lake.Object, error) {
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		objs, err := a.lake.List(ctx, lake.TopicPrefix(a.cfg.Topic))
		if err == nil || ctx.Err() != nil {
			return objs, err
		}
		a.log.Warn().Int("attempt", attempt).Str("error", err.Error()).Msg("listing the lake failed; retrying")
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (a *Archiver) revoke(tps []kafka.TopicPartition, lost bool) {
	var parts, gone []*partition
	for _, tp := range tps {
		p := a.parts[tp.Partition]
		if p == nil {
			continue
		}
		delete(a.parts, tp.Partition)
		a.m.Lag.DeleteLabelValues(fmt.Sprint(tp.Partition))
		if lost {
			// Another member may own the partition already: nothing of it
			// may reach the lake from here any more.
			for _, f := range p.open {
				a.drop(p, f)
			}
			for u := range p.uploads {
				u.cancel()
			}
			a.log.Warn().Int32("partition", tp.Partition).Msg("assignment lost; open files dropped, their records will be read again by the new owner")
			gone = append(gone, p)
			continue
		}
		parts = append(parts, p)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.await(cancelled, gone); errors.Is(err, lake.ErrDifferentContent) {
		a.cbErr = err
	}
	// Puts start for a quarter of the rebalance timeout and each may take
	// another (see New), so the group never moves a partition while one of
	// its files may still land from here.
	under := 0
	for _, p := range parts {
		under += len(p.uploads) + len(p.open)
	}
	a.log.Info().Int("partitions", len(parts)+len(gone)).Int("files_to_put", under).Bool("lost", lost).Msg("partitions revoked")
	ctx, cancel := context.WithTimeout(context.Background(), a.revokeBudget)
	defer cancel()
	if err := a.release(ctx, parts); errors.Is(err, lake.ErrDifferentContent) {
		a.cbErr = err
	}
}

// record reads a Kafka message into an eventfile.Record; it fails on
// missing or malformed CloudEvents headers, naming them but never a value.
func record(m *kafka.Message) (eventfile.Record, error) {
	r := eventfile.Record{Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset), Key: m.Key, Value: m.Value}
	var a envelope.Attributes
	for _, h := range m.Headers {
		a.Set(h.Key, h.Value)
	}
	err := a.Check()
	r.CEID, r.CEType, r.CESource, r.CETime, r.LSN = a.ID, a.Type, a.Source, a.Time, a.LSN
	return r, err
}
