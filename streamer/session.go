package streamer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"golang.org/x/sync/errgroup"

	"github.com/userstream/userstream/backfill"
	"github.com/userstream/userstream/checkpoint"
	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/kafkaclient"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
)

// session is one connection's worth of streaming: prepare the slot, read
// from its confirmed position (or startLSN), produce, acknowledge. It
// returns nil after a clean drain when ctx is cancelled.
func (s *Streamer) session(ctx context.Context, startLSN pglogrepl.LSN) error {
	err := s.stream(ctx, startLSN)
	if errors.Is(err, delivery.ErrRefused) || errors.Is(err, delivery.ErrCorrupt) || errors.Is(err, backfill.ErrPoison) {
		return permanent(err)
	}
	return err
}

func (s *Streamer) stream(ctx context.Context, startLSN pglogrepl.LSN) error {
	pl, err := s.prepare(ctx, startLSN)
	if err != nil {
		return err
	}
	sink, err := s.newSink(s.sinkConfig())
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
	if err := s.ensureTopics(ctx, sink); err != nil {
		return err
	}
	p := s.newPipe(pl, sink)
	if err := p.startDelivery(ctx); err != nil {
		return err
	}
	if err := p.resumeSnapshot(ctx); err != nil {
		return err
	}
	defer p.snap.Close()
	reader, err := replication.Open(ctx, replication.Config{
		DSN: s.cfg.DatabaseURL, Server: pl.target.Server, Slot: s.cfg.Slot, Publication: s.cfg.Publication,
		StartLSN: pl.start, StatusInterval: s.cfg.StatusInterval, Linger: max(s.cfg.ReadLinger, 0),
	}, p.acks)
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
	g.Go(func() error { return p.d.Serve(gctx, p.stop) })
	g.Go(func() error { return p.guard.run(gctx, p.stop) })
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
	s.metrics.AckedLSN.Set(float64(p.acks.Acked()))
	return err
}

// ensureTopics makes sure the topics exist before the session produces.
func (s *Streamer) ensureTopics(ctx context.Context, sink *kafkaclient.Producer) error {
	topicCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := sink.EnsureTopic(topicCtx)
	cancel()
	if err != nil {
		refused := kafkaclient.IsPermanent(err) // refused access was still an answer
		s.kafkaOK.Store(refused)
		if refused {
			return permanent(err)
		}
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	s.kafkaOK.Store(true)
	return nil
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
	d         *delivery.Stream
	tracker   *checkpoint.Tracker
	acks      gate // what may be reported: the tracker, held back by the guard
	guard     *guard
	check     historyCheck // exactly-once: whether the stream bore the last progress out yet
	resume    delivery.Progress
	cur       *txn // the transaction being read, for a clean stop
	snap      *backfill.Snapshot
	start     pglogrepl.LSN                 // where the session's stream starts
	serverWAL pglogrepl.LSN                 // the server's WAL position before it
	target    replication.Target            // the server every connection reaches
	held      atomic.Bool                   // nothing past start may be acknowledged (exactly-once is checking its progress)
	bindings  map[uint32]projection.Binding // by relation id
	names     map[uint32]string             // the name each bound relation id had when bound
	sources   map[uint32][]byte             // ce_source per relation
	ce        *envelope.Encoder
	stop      chan struct{}
	// statusCounted is how many of the reader's status updates the metric
	// counts.
	statusCounted uint64
}

// txn is a transaction being read: its records in flight, and the header
// values all its events share, formatted once.
type txn struct {
	*delivery.Txn
	ceTime    []byte
	commitLSN []byte
}

func (s *Streamer) newPipe(pl plan, sink *kafkaclient.Producer) *pipe {
	tracker := checkpoint.New(pl.start)
	p := &pipe{s: s, tracker: tracker, guard: newGuard(s, pl),
		bindings: map[uint32]projection.Binding{}, names: map[uint32]string{}, sources: map[uint32][]byte{},
		ce: envelope.NewEncoder(), stop: make(chan struct{}),
		start: pl.start, serverWAL: pl.checkedAt, target: pl.target}
	p.acks = gate{Tracker: tracker, guard: p.guard, held: &p.held, start: pl.start}
	p.d = delivery.New(s.deliveryConfig(delivery.Hooks{
		KeepAlive: func(ctx context.Context) error { return p.reader.SendStatusIfDue(ctx) },
		Acked:     s.metrics.observeAcked,
		Failed:    s.metrics.DeliveryErrors.Inc,
		Reachable: s.kafkaOK.Store,
		Origin:    func() (string, int32) { return p.reader.SystemID(), p.reader.Timeline() },
	}), sink, tracker)
	return p
}

// startDelivery prepares the producer. In exactly-once mode, the last
// committed progress record says which replayed records are in Kafka
// already: they are skipped, but only once this server's history is shown
// to hold the transaction it names (history.go).
func (p *pipe) startDelivery(ctx context.Context) error {
	last, err := p.d.Start(ctx, p.s.cfg.Kafka.Properties, p.s.cfg.Kafka.ProgressTopic)
	if err != nil {
		if errors.Is(err, delivery.ErrCorrupt) {
			return permanent(err)
		}
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	if last != nil {
		p.resume, p.check = p.s.trusted(*last, p.start, p.serverWAL)
		p.d.Skip(p.resume)
		p.held.Store(p.check.pending)
	}
	return nil
}

// drain waits, bounded, for outstanding deliveries, then reports the final
// acknowledged position.
func (p *pipe) drain() error {
	fctx, cancel := context.WithTimeout(context.Background(), p.s.cfg.ShutdownTimeout)
	err := p.d.Finish(fctx)
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
	if n, ok := p.d.Undelivered(); ok {
		ev = ev.Int64("undelivered", n)
	}
	ev.Msg("stopped reading; final position reported")
	if err != nil {
		return fmt.Errorf("final status update: %w", err)
	}
	return nil
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
