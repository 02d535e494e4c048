package streamer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pglogrepl"
	"golang.org/x/sync/errgroup"

	"github.com/userstream/userstream/checkpoint"
	"github.com/userstream/userstream/kafkasink"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
)

// session is one connection's worth of streaming: prepare the slot, read
// from its confirmed position (or startLSN), produce, acknowledge. It
// returns nil after a clean drain when ctx is cancelled.
func (s *Streamer) session(ctx context.Context, startLSN pglogrepl.LSN) error {
	pl, err := s.prepare(ctx, startLSN)
	if err != nil {
		return err
	}
	sink, err := s.newSink(s.cfg.Kafka)
	if err != nil {
		return permanent(err)
	}
	clean := false
	defer func() {
		if clean {
			sink.Close()
		} else {
			// Undelivered events will be read again from the slot.
			sink.Abandon()
		}
	}()
	topicCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = sink.EnsureTopic(topicCtx)
	cancel()
	if err != nil {
		refused := kafkasink.IsPermanent(err) // refused access was still an answer
		s.kafkaOK.Store(refused)
		if refused {
			return permanent(err)
		}
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	s.kafkaOK.Store(true)

	tracker := checkpoint.New(pl.start)
	guard := newGuard(s, pl)
	p := &pipe{s: s, sink: sink, tracker: tracker, guard: guard,
		bindings: map[uint32]projection.Binding{}, names: map[uint32]string{}, sources: map[uint32][]byte{},
		ce: newCEEncoder(), stop: make(chan struct{})}
	p.start, p.serverWAL, p.target = pl.start, pl.checkedAt, pl.target
	acks := gate{Tracker: tracker, guard: guard, held: &p.held, start: pl.start}
	p.acks = acks
	p.d = s.newDelivery(p)
	if err := p.d.start(ctx); err != nil {
		if errors.Is(err, ErrPermanent) {
			return err
		}
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	if err := p.resumeSnapshot(ctx); err != nil {
		return err
	}
	defer p.snap.close()
	reader, err := replication.Open(ctx, replication.Config{
		DSN: s.cfg.DatabaseURL, Server: pl.target.Server, Slot: s.cfg.Slot, Publication: s.cfg.Publication,
		StartLSN: pl.start, StatusInterval: s.cfg.StatusInterval, Linger: max(s.cfg.ReadLinger, 0),
	}, acks)
	if err != nil {
		if errors.Is(err, replication.ErrSlotUnusable) && s.slotLost(ctx, pl.target) {
			return permanent(slotLostError(s.cfg.Slot, err))
		}
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	defer reader.Close(context.Background())
	p.reader = reader
	s.setRole("active")
	s.log.Info().Str("slot", s.cfg.Slot).Str("start_lsn", pl.start.String()).Str("topic", sink.Topic()).
		Str("delivery", string(s.cfg.Delivery)).Dur("status_interval", reader.StatusInterval()).Msg("streaming")

	g, gctx := errgroup.WithContext(context.WithoutCancel(ctx))
	g.Go(func() error { return p.deliver(gctx) })
	g.Go(func() error { return guard.run(gctx, p.stop) })
	g.Go(func() error {
		defer close(p.stop)
		err := p.read(ctx, gctx)
		if ctx.Err() != nil && gctx.Err() == nil {
			return p.drain()
		}
		return err
	})
	err = g.Wait()
	clean = err == nil
	s.metrics.AckedLSN.Set(float64(acks.Acked()))
	return err
}

// slotLost tells an invalidated slot from the other reasons a slot cannot
// be read, by its wal_status.
func (s *Streamer) slotLost(ctx context.Context, target replication.Target) bool {
	conn, err := target.Connect(ctx)
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	_, err = replication.Slot(ctx, conn, s.cfg.Slot)
	return errors.Is(err, replication.ErrSlotLost)
}

// pipe is one session's moving parts, shared by its reader and deliverer.
type pipe struct {
	s         *Streamer
	reader    *replication.Reader
	sink      *kafkasink.Sink
	tracker   *checkpoint.Tracker
	acks      gate // what may be reported: the tracker, held back by the guard
	guard     *guard
	d         delivery
	cur       *txn // the transaction being read, for a clean stop
	snap      *snapshotter
	start     pglogrepl.LSN                 // where the session's stream starts
	serverWAL pglogrepl.LSN                 // the server's WAL position before it
	target    replication.Target            // the server every connection reaches
	held      atomic.Bool                   // nothing past start may be acknowledged (exactly-once is checking its progress)
	bindings  map[uint32]projection.Binding // by relation id
	names     map[uint32]string             // the name each bound relation id had when bound
	sources   map[uint32][]byte             // ce_source per relation
	ce        *ceEncoder
	produced  atomic.Int64 // messages librdkafka accepted
	reported  atomic.Int64 // delivery reports processed
	stop      chan struct{}
	// statusCounted is how many of the reader's status updates the metric
	// counts.
	statusCounted uint64
}

// txn is a transaction's handle in delivery reports; it also carries the
// header values all its events share, formatted once.
type txn struct {
	*checkpoint.Txn
	commitTime time.Time
	ceTime     []byte
	commitLSN  []byte
	lsn        pglogrepl.LSN // where it commits: its place in commit order
	xid        uint32
	seq        int  // records of it so far, produced or found in Kafka
	done       bool // its commit was read
}

func (p *pipe) read(ctx, gctx context.Context) error {
	var cur *txn
	lastGauge, quietSince := time.Now(), time.Now()
	busy, released := false, true // messages since the last pause; heap given back since
	lastLog, loggedLSN := time.Now(), p.acks.Acked()
	unclocked := 0 // messages since the clock was last read here
	for {
		if gctx.Err() != nil {
			return gctx.Err()
		}
		p.reader.SetMaxWait(min(p.d.due(), p.snap.due()))
		v, err := p.reader.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, replication.ErrPublicationGone) {
				return permanent(publicationDroppedError(p.s.publicationSpec(p.s.cfg.Projectors[0]), err))
			}
			p.s.postgresOK.Store(false)
			return err
		}
		// The clock is read at every pause and every 1024 messages, not per
		// message: at a hundred thousand messages a second that adds up.
		var now time.Time
		if unclocked++; v == nil || unclocked >= 1024 {
			now, unclocked = time.Now(), 0
		}
		if !now.IsZero() && now.Sub(lastGauge) > time.Second {
			p.gauges()
			lastGauge = now
			if acked := p.acks.Acked(); acked != loggedLSN && now.Sub(lastLog) > 30*time.Second {
				p.s.log.Info().Str("acked_lsn", acked.String()).Str("server_wal_end", p.reader.ServerWALEnd().String()).Msg("acknowledged")
				lastLog, loggedLSN = now, acked
			}
		}
		if v == nil {
			if busy {
				quietSince, busy, released = now, false, false
			}
			if err := p.d.idle(ctx); err != nil {
				return err
			}
			if err := p.snap.step(gctx); err != nil {
				return err
			}
			// A backlog's buffers stay in the Go heap after it drains; give them
			// back once the stream has been quiet for a while.
			if !released && now.Sub(quietSince) > 2*time.Second {
				debug.FreeOSMemory()
				released = true
			}
			continue
		}
		busy = true
		switch m := v.(type) {
		case *replication.Begin:
			cur = &txn{Txn: p.tracker.Begin(), commitTime: m.CommitTime, lsn: m.CommitLSN, xid: m.Xid,
				ceTime: m.CommitTime.UTC().AppendFormat(nil, time.RFC3339Nano), commitLSN: appendLSN(nil, m.CommitLSN)}
			p.cur = cur
		case *replication.Relation:
			if err := p.bind(m); err != nil {
				return err
			}
		case *replication.Change:
			if cur == nil {
				return fmt.Errorf("change at %s outside a transaction", m.LSN)
			}
			if err := p.change(ctx, gctx, cur, m); err != nil {
				return err
			}
		case *replication.Commit:
			if cur == nil {
				return fmt.Errorf("commit at %s outside a transaction", m.CommitLSN)
			}
			p.tracker.Commit(cur.Txn, m.EndLSN)
			if err := p.d.committed(ctx, cur); err != nil {
				return err
			}
			if err := p.snap.step(gctx); err != nil {
				return err
			}
			cur, p.cur = nil, nil
		}
	}
}

// gauges sets the positions; the slot's lag and WAL status come from the
// slot itself (observeSlot), so they move during a Kafka outage too.
func (p *pipe) gauges() {
	p.s.metrics.AckedLSN.Set(float64(p.acks.Acked()))
	p.s.metrics.ReceivedLSN.Set(float64(p.reader.Received()))
	sent := p.reader.StatusUpdates()
	p.s.metrics.StatusUpdates.Add(float64(sent - p.statusCounted))
	p.statusCounted = sent
}

// bind (re)binds the projector of a table when PostgreSQL describes it,
// by the table's name at that point of the WAL: replayed changes of a table
// that was later swapped for another still make their events. A table the
// events no longer fit, or a bound table that reappears under another name
// (renamed or moved: its rows would be skipped from then on), stops the
// streamer before any of its changes is acknowledged. Tables that take the
// name without being published send nothing here: the guard catches them.
func (p *pipe) bind(rel *replication.Relation) error {
	delete(p.bindings, rel.ID)
	qualified := rel.Namespace + "." + rel.Name
	if was, ok := p.names[rel.ID]; ok && was != qualified {
		return permanent(fmt.Errorf("table %s was renamed or moved to %s while streaming (relation id %d): its rows are no longer the events' source, and were NOT streamed from then on. Nothing after the last acknowledged position was acknowledged. Rename it back, or publish the table users now write to, run `streamer backfill --missing`, then start the streamer",
			was, qualified, rel.ID))
	}
	var pr projection.Projector
	for _, candidate := range p.s.cfg.Projectors {
		if ns, name := candidate.Table(); ns == rel.Namespace && name == rel.Name {
			pr = candidate
		}
	}
	if pr == nil {
		return nil // another published table: its changes make no event
	}
	prel := projection.Relation{Namespace: rel.Namespace, Name: rel.Name}
	for _, c := range rel.Columns {
		prel.Columns = append(prel.Columns, projection.Column{Name: c.Name, TypeOID: c.TypeOID})
	}
	b, err := pr.Bind(prel)
	if err != nil {
		return permanent(fmt.Errorf("%w; fix the table or the publication, then restart: nothing after the last acknowledged position was acknowledged", err))
	}
	p.bindings[rel.ID] = b
	p.names[rel.ID] = qualified
	p.sources[rel.ID] = []byte(ceSource(p.reader.SystemID(), p.reader.Database(), rel.Namespace, rel.Name))
	p.s.log.Info().Str("table", qualified).Uint32("relation_id", rel.ID).Int("columns", len(rel.Columns)).Msg("bound projection to table")
	return nil
}

var ops = map[replication.Op]projection.Op{
	replication.Insert: projection.Insert, replication.Update: projection.Update,
	replication.Delete: projection.Delete, replication.Truncate: projection.Truncate,
}

func (p *pipe) change(ctx, gctx context.Context, cur *txn, c *replication.Change) error {
	b, ok := p.bindings[c.Relation.ID]
	if !ok {
		p.s.metrics.Skipped.WithLabelValues("other_table").Inc()
		return nil
	}
	op := ops[c.Op]
	ev, ok, err := b.Project(op, c)
	switch {
	case errors.Is(err, projection.ErrValue) || errors.Is(err, replication.ErrUndecodable):
		return p.poison(ctx, gctx, cur, c, err)
	case err != nil:
		// Not this row's values but the table no longer fitting the event:
		// every row would be a dead letter, so stop instead.
		return permanent(fmt.Errorf("project the change at %s of %s.%s: %w; nothing after the last acknowledged position was acknowledged", c.LSN, c.Relation.Namespace, c.Relation.Name, err))
	}
	if !ok {
		p.s.metrics.Skipped.WithLabelValues(op.String()).Inc()
		p.s.log.Debug().Str("op", op.String()).Str("lsn", c.LSN.String()).Msg("change makes no event")
		return nil
	}
	headers := p.ce.streamed(ev, p.sources[c.Relation.ID], c.LSN, cur)
	return p.produce(ctx, gctx, cur, ev.Key, ev.Value, headers, false)
}

// poison handles a committed change that cannot become a valid event: by
// default it goes to the dead-letter topic, in its transaction's place, so
// the stream goes on and nothing is acknowledged before it is in Kafka.
func (p *pipe) poison(ctx, gctx context.Context, cur *txn, c *replication.Change, cause error) error {
	dlq := p.s.cfg.Kafka.DeadLetterTopic
	table := c.Relation.Namespace + "." + c.Relation.Name
	if p.s.cfg.Poison == PoisonStop || dlq == "" {
		return permanent(fmt.Errorf("the change at %s of %s makes no valid event: %w. POISON=stop is set: nothing after the last acknowledged position was acknowledged; to go on, set POISON=dead-letter and restart (the change goes to a dead-letter topic)", c.LSN, table, cause))
	}
	key, value, err := deadLetterRecord(c, cause)
	if err != nil {
		return permanent(err)
	}
	// The error names the column and the rule, never the value.
	p.s.log.Warn().Str("lsn", c.LSN.String()).Str("table", table).Str("error", cause.Error()).Str("topic", dlq).
		Msg("poison row: the change makes no valid event; sent to the dead-letter topic")
	return p.produce(ctx, gctx, cur, key, value, deadLetterHeaders(p.sources[c.Relation.ID], c, cur), true)
}

// produce hands one record of cur to Kafka, waiting out librdkafka's full
// queue, which is Kafka's backpressure.
func (p *pipe) produce(ctx, gctx context.Context, cur *txn, key, value []byte, headers []kafka.Header, deadLetter bool) error {
	// The record's number in its transaction counts only once it is handed
	// to Kafka (or found there): a progress record must never count one that
	// a shutdown stopped before Produce took it.
	seq := cur.seq + 1
	admit, err := p.d.admit(cur, seq)
	if err != nil {
		return err
	}
	if !admit {
		cur.seq = seq
		p.s.metrics.Skipped.WithLabelValues("already_in_kafka").Inc()
		return nil
	}
	p.tracker.Add(cur.Txn, 1)
	for {
		var err error
		if deadLetter {
			err = p.sink.ProduceDeadLetter(key, value, headers, cur)
		} else {
			err = p.sink.Produce(key, value, headers, cur)
		}
		if err == nil {
			cur.seq = seq
			p.produced.Add(1)
			return p.d.produced(ctx, cur, deadLetter)
		}
		if !kafkasink.IsQueueFull(err) {
			return p.d.refused(ctx, fmt.Errorf("produce: %w", err))
		}
		// Stop reading, keep the connection alive.
		if err := p.reader.SendStatusIfDue(ctx); err != nil {
			return err
		}
		select {
		case <-gctx.Done():
			return gctx.Err()
		case <-ctx.Done():
			// Shutting down during an outage: this record stays unacknowledged
			// and is read again from the slot by the next run.
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// drain waits, bounded, for outstanding deliveries, then reports the final
// acknowledged position.
func (p *pipe) drain() error {
	fctx, cancel := context.WithTimeout(context.Background(), p.s.cfg.ShutdownTimeout)
	err := p.d.finish(fctx, p.cur)
	cancel()
	if err != nil {
		return fmt.Errorf("finish delivery: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.guard.final(ctx); err != nil {
		if errors.Is(err, ErrPermanent) {
			return err
		}
		p.s.log.Warn().Err(err).Msg("final publication check failed; the reported position may trail what Kafka holds (replayed as duplicates)")
	}
	err = p.reader.SendStatus(ctx)
	p.gauges()
	ev := p.s.log.Info().Str("acked_lsn", p.acks.Acked().String())
	if p.sink.Reports() {
		ev = ev.Int64("undelivered", p.produced.Load()-p.reported.Load())
	}
	ev.Msg("stopped reading; final position reported")
	if err != nil {
		return fmt.Errorf("final status update: %w", err)
	}
	return nil
}
