package streamer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/userstream/userstream/checkpoint"
	"github.com/userstream/userstream/kafkasink"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
)

// session is one connection's worth of streaming: prepare the slot, read
// from its confirmed position, produce, acknowledge. It returns nil after a
// clean drain when ctx is cancelled.
func (s *Streamer) session(ctx context.Context, first bool) error {
	start, source, err := s.prepare(ctx, first)
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
		s.kafkaOK.Store(false)
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	s.kafkaOK.Store(true)

	tracker := checkpoint.New(start)
	reader, err := replication.Open(ctx, replication.Config{
		DSN: s.cfg.DatabaseURL, Slot: s.cfg.Slot, Publication: s.cfg.Publication,
		StartLSN: start, StatusInterval: s.cfg.StatusInterval,
	}, tracker)
	if err != nil {
		if errors.Is(err, replication.ErrSlotLost) {
			return permanent(slotLostError(s.cfg.Slot, err))
		}
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	defer reader.Close(context.Background())
	s.setRole("active")
	if source == "" {
		source = "postgresql://" + reader.SystemID() + "/" + reader.Database()
	}
	s.log.Info().Str("slot", s.cfg.Slot).Str("start_lsn", start.String()).Str("topic", sink.Topic()).Msg("streaming")

	p := &pipe{s: s, reader: reader, sink: sink, tracker: tracker, source: source,
		bindings: map[uint32]projection.Binding{}, sources: map[uint32][]byte{},
		types: map[string][]byte{}, stop: make(chan struct{})}
	g, gctx := errgroup.WithContext(context.WithoutCancel(ctx))
	g.Go(func() error { return p.deliver(gctx) })
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
	s.metrics.AckedLSN.Set(float64(tracker.Acked()))
	return err
}

// prepare checks the publication and the slot, creating them when missing,
// and returns where to start.
func (s *Streamer) prepare(ctx context.Context, first bool) (pglogrepl.LSN, string, error) {
	conn, err := pgx.Connect(ctx, s.cfg.DatabaseURL)
	s.postgresOK.Store(err == nil)
	if err != nil {
		return 0, "", fmt.Errorf("%w: connect: %w", errBeforeStart, err)
	}
	defer conn.Close(context.Background())
	for _, spec := range s.publicationSpecs() {
		if err := replication.EnsurePublication(ctx, conn, spec); err != nil {
			if errors.Is(err, replication.ErrPublication) {
				return 0, "", permanent(err)
			}
			return 0, "", fmt.Errorf("%w: %w", errBeforeStart, err)
		}
	}
	created, err := replication.EnsureSlot(ctx, conn, s.cfg.Slot)
	if errors.Is(err, replication.ErrSlotLost) {
		return 0, "", permanent(slotLostError(s.cfg.Slot, err))
	}
	if err != nil {
		return 0, "", fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	if created {
		s.log.Info().Str("slot", s.cfg.Slot).Msg("created replication slot; rows inserted before it are not streamed (backfill them if needed)")
	}
	st, err := replication.Slot(ctx, conn, s.cfg.Slot)
	if errors.Is(err, replication.ErrSlotLost) {
		return 0, "", permanent(slotLostError(s.cfg.Slot, err))
	}
	if err != nil {
		return 0, "", fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	if st.Active {
		// Checked here, before a producer is built, so a standby's
		// once-a-second retry stays cheap; START_REPLICATION checks again.
		return 0, "", fmt.Errorf("slot %s held by pid %d: %w", s.cfg.Slot, st.ActivePID, replication.ErrSlotActive)
	}
	start := st.Confirmed
	if s.cfg.StartLSN != 0 && first {
		if s.cfg.StartLSN < st.Confirmed {
			return 0, "", permanent(fmt.Errorf("start LSN %s is behind slot %s's confirmed position %s: PostgreSQL cannot replay behind a slot's confirmed position (the WAL before it may be gone); start at or after %s, or omit START_LSN to resume from the slot",
				s.cfg.StartLSN, s.cfg.Slot, st.Confirmed, st.Confirmed))
		}
		start = s.cfg.StartLSN
	}
	return start, "", nil
}

// publicationSpecs derives each projected table's publication from the
// projectors: the column list is exactly what the events are built from.
func (s *Streamer) publicationSpecs() []replication.PublicationSpec {
	var specs []replication.PublicationSpec
	for _, p := range s.cfg.Projectors {
		ns, name := p.Table()
		specs = append(specs, replication.PublicationSpec{Name: s.cfg.Publication, Table: ns + "." + name, Columns: p.SourceColumns()})
	}
	return specs
}

func slotLostError(slot string, err error) error {
	return fmt.Errorf("%w. Events may be missing: PostgreSQL removed WAL the slot still needed. To recover: stop every streamer, run `streamer drop-slot --yes`, start the streamer (it creates a new slot from now), then run `streamer backfill --after-id <id of the newest user in Kafka>`", err)
}

// pipe is one session's moving parts, shared by its reader and deliverer.
type pipe struct {
	s        *Streamer
	reader   *replication.Reader
	sink     *kafkasink.Sink
	tracker  *checkpoint.Tracker
	source   string
	bindings map[uint32]projection.Binding
	sources  map[uint32][]byte // ce_source per relation
	types    map[string][]byte // ce_type per event type
	headers  []kafka.Header    // reused: Produce copies everything it is given
	buf      []byte            // backs the per-event header values
	produced atomic.Int64      // messages librdkafka accepted
	reported atomic.Int64      // delivery reports processed
	stop     chan struct{}
}

// txn is a transaction's handle in delivery reports; it also carries the
// header values all its events share, formatted once.
type txn struct {
	*checkpoint.Txn
	commitTime time.Time
	ceTime     []byte
	commitLSN  []byte
}

func (p *pipe) read(ctx, gctx context.Context) error {
	var cur *txn
	lastGauge, lastEvent, released := time.Now(), time.Now(), true
	lastLog, loggedLSN := time.Now(), p.tracker.Acked()
	for {
		if gctx.Err() != nil {
			return gctx.Err()
		}
		v, err := p.reader.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.s.postgresOK.Store(false)
			return err
		}
		if time.Since(lastGauge) > time.Second {
			p.gauges()
			lastGauge = time.Now()
			if acked := p.tracker.Acked(); acked != loggedLSN && time.Since(lastLog) > 30*time.Second {
				p.s.log.Info().Str("acked_lsn", acked.String()).Str("server_wal_end", p.reader.ServerWALEnd().String()).Msg("acknowledged")
				lastLog, loggedLSN = time.Now(), acked
			}
		}
		if v == nil {
			// A backlog's buffers stay in the Go heap after it drains; give them
			// back once the stream has been quiet for a while.
			if !released && time.Since(lastEvent) > 2*time.Second {
				debug.FreeOSMemory()
				released = true
			}
			continue
		}
		lastEvent, released = time.Now(), false
		switch m := v.(type) {
		case *replication.Begin:
			cur = &txn{Txn: p.tracker.Begin(), commitTime: m.CommitTime,
				ceTime: m.CommitTime.UTC().AppendFormat(nil, time.RFC3339Nano), commitLSN: appendLSN(nil, m.CommitLSN)}
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
			cur = nil
		}
	}
}

func (p *pipe) gauges() {
	acked, end := p.tracker.Acked(), p.reader.ServerWALEnd()
	p.s.metrics.AckedLSN.Set(float64(acked))
	p.s.metrics.ReceivedLSN.Set(float64(p.reader.Received()))
	lag := 0.0
	if end > acked {
		lag = float64(end - acked)
	}
	p.s.metrics.LagBytes.Set(lag)
}

// bind (re)binds the projector of a table when PostgreSQL describes it. A
// table the events no longer fit stops the streamer before any of its
// changes is acknowledged.
func (p *pipe) bind(rel *replication.Relation) error {
	delete(p.bindings, rel.ID)
	for _, pr := range p.s.cfg.Projectors {
		ns, name := pr.Table()
		if ns != rel.Namespace || name != rel.Name {
			continue
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
		p.sources[rel.ID] = []byte(p.source + "/" + rel.Namespace + "." + rel.Name)
		p.s.log.Info().Str("table", ns+"."+name).Int("columns", len(rel.Columns)).Msg("bound projection to table")
	}
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
	if err != nil {
		return permanent(fmt.Errorf("project change at %s of %s.%s: %w", c.LSN, c.Relation.Namespace, c.Relation.Name, err))
	}
	if !ok {
		p.s.metrics.Skipped.WithLabelValues(op.String()).Inc()
		p.s.log.Debug().Str("op", op.String()).Str("lsn", c.LSN.String()).Msg("change makes no event")
		return nil
	}
	headers := p.eventHeaders(ev, c, cur)
	p.tracker.Add(cur.Txn, 1)
	for {
		err := p.sink.Produce(ev.Key, ev.Value, headers, cur)
		if err == nil {
			p.produced.Add(1)
			return nil
		}
		if kafkasink.IsPermanent(err) {
			return permanent(fmt.Errorf("kafka refused an event for good: %w", err))
		}
		if !kafkasink.IsQueueFull(err) {
			return fmt.Errorf("produce: %w", err)
		}
		// Kafka's backpressure: stop reading, keep the connection alive.
		if err := p.reader.SendStatusIfDue(ctx); err != nil {
			return err
		}
		select {
		case <-gctx.Done():
			return gctx.Err()
		case <-ctx.Done():
			// Shutting down during an outage: this event stays unacknowledged
			// and is read again from the slot by the next run.
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

var (
	specVersion = []byte("1.0")
	contentJSON = []byte("application/json")
)

// eventHeaders fills the reused header slice: CloudEvents binary mode plus
// the change's positions. The values live in p.buf until the next event;
// Produce copies them.
func (p *pipe) eventHeaders(ev projection.Event, c *replication.Change, cur *txn) []kafka.Header {
	typ, ok := p.types[ev.Type]
	if !ok {
		typ = []byte(ev.Type)
		p.types[ev.Type] = typ
	}
	b := p.buf[:0]
	b = append(b, ev.Subject...)
	idEnd := len(b)
	b = append(b, '@')
	b = appendLSN(b, c.LSN)
	ceIDEnd := len(b)
	p.buf = b
	subject := b[:idEnd]
	ceID := b[:ceIDEnd]
	lsn := b[idEnd+1 : ceIDEnd]
	p.headers = append(ceHeaders(p.headers[:0], typ, p.sources[c.Relation.ID], ceID, cur.ceTime, subject),
		kafka.Header{Key: "userstream_lsn", Value: lsn},
		kafka.Header{Key: "userstream_commit_lsn", Value: cur.commitLSN},
	)
	return p.headers
}

// ceHeaders appends the CloudEvents binary-mode headers every event carries,
// streamed or backfilled.
func ceHeaders(dst []kafka.Header, typ, source, id, ceTime, subject []byte) []kafka.Header {
	return append(dst,
		kafka.Header{Key: "ce_specversion", Value: specVersion},
		kafka.Header{Key: "ce_type", Value: typ},
		kafka.Header{Key: "ce_source", Value: source},
		kafka.Header{Key: "ce_id", Value: id},
		kafka.Header{Key: "ce_time", Value: ceTime},
		kafka.Header{Key: "ce_subject", Value: subject},
		kafka.Header{Key: "content-type", Value: contentJSON},
	)
}

// appendLSN appends lsn as PostgreSQL prints it (%X/%X) without fmt.
func appendLSN(dst []byte, lsn pglogrepl.LSN) []byte {
	dst = appendUpperHex(dst, uint64(lsn)>>32)
	dst = append(dst, '/')
	return appendUpperHex(dst, uint64(lsn)&0xFFFFFFFF)
}

func appendUpperHex(dst []byte, v uint64) []byte {
	start := len(dst)
	dst = strconv.AppendUint(dst, v, 16)
	for i := start; i < len(dst); i++ {
		if c := dst[i]; c >= 'a' && c <= 'f' {
			dst[i] = c - 'a' + 'A'
		}
	}
	return dst
}

// deliver turns delivery reports into acknowledgements. A failed delivery
// ends the session: its events are read again from the slot by the next one.
func (p *pipe) deliver(ctx context.Context) error {
	var lastWarn time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.stop:
			return nil
		case l := <-p.sink.Logs():
			p.s.log.WithLevel(rdkafkaLevel(l.Level)).Str("kafka_client", l.Tag).Msg(redact(l.Message))
		case e := <-p.sink.Events():
			switch e := e.(type) {
			case *kafka.Message:
				p.reported.Add(1)
				if err := e.TopicPartition.Error; err != nil {
					p.s.metrics.DeliveryErrors.Inc()
					if kafkasink.IsPermanent(err) {
						return permanent(fmt.Errorf("kafka refused an event for good: %w", err))
					}
					return fmt.Errorf("delivery failed: %w", err)
				}
				p.s.kafkaOK.Store(true)
				t := e.Opaque.(*txn)
				p.tracker.Delivered(t.Txn, 1)
				p.s.metrics.Produced.Inc()
				p.s.metrics.Latency.Observe(time.Since(t.commitTime).Seconds())
			case kafka.Error:
				if e.IsFatal() {
					return fmt.Errorf("kafka producer failed: %w", e)
				}
				if e.Code() == kafka.ErrAllBrokersDown {
					p.s.kafkaOK.Store(false)
				}
				if time.Since(lastWarn) > 10*time.Second {
					p.s.log.Warn().Str("kafka_error", e.Code().String()).Str("detail", redact(e.Error())).Msg("kafka client error; retrying")
					lastWarn = time.Now()
				}
			}
		}
	}
}

// rdkafkaLevel maps syslog levels, which librdkafka uses, to zerolog's.
func rdkafkaLevel(l int) zerolog.Level {
	switch {
	case l <= 3:
		return zerolog.ErrorLevel
	case l == 4:
		return zerolog.WarnLevel
	case l <= 6:
		return zerolog.InfoLevel
	}
	return zerolog.DebugLevel
}

// drain waits, bounded, for outstanding deliveries, then reports the final
// acknowledged position.
func (p *pipe) drain() error {
	deadline := time.Now().Add(p.s.cfg.ShutdownTimeout)
	for p.reported.Load() < p.produced.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if err := p.reader.SendStatusIfDue(context.Background()); err != nil {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.reader.SendStatus(ctx)
	ev := p.s.log.Info().Str("acked_lsn", p.tracker.Acked().String()).Int64("undelivered", p.produced.Load()-p.reported.Load())
	ev.Msg("stopped reading; final position reported")
	if err != nil {
		return fmt.Errorf("final status update: %w", err)
	}
	return nil
}

// redact keeps librdkafka messages but cuts anything after "password" or
// "sasl" settings, should a client error ever quote one.
func redact(s string) string {
	low := strings.ToLower(s)
	for _, k := range []string{"password", "sasl.", "secret"} {
		if i := strings.Index(low, k); i >= 0 {
			return s[:i] + "[redacted]"
		}
	}
	return s
}
