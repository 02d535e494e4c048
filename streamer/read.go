package streamer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
)

// read is the session's read loop: each message from the slot, in order,
// and the open Kafka transaction's commit and the snapshot's next chunk in
// the pauses between them.
func (p *pipe) read(ctx, gctx context.Context) error {
	// Produce waits out a full queue until the session fails or stops.
	pctx, cancel := context.WithCancel(gctx)
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	r := readLoop{lastGauge: time.Now(), quietSince: time.Now(), released: true, lastLog: time.Now(), loggedLSN: p.acks.Acked()}
	for {
		if gctx.Err() != nil {
			return gctx.Err()
		}
		p.reader.SetMaxWait(min(p.d.Due(), p.snap.Due()))
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
		now := r.clock(v == nil)
		p.every(&r, now)
		if v == nil {
			if err := p.idle(ctx, gctx, &r, now); err != nil {
				return err
			}
			continue
		}
		r.busy = true
		if err := p.handle(ctx, pctx, gctx, v); err != nil {
			return err
		}
	}
}

// readLoop is the read loop's bookkeeping between messages.
type readLoop struct {
	lastGauge, quietSince time.Time
	busy, released        bool // messages since the last pause; heap given back since
	lastLog               time.Time
	loggedLSN             pglogrepl.LSN
	unclocked             int // messages since the clock was last read here
}

// clock reads the clock at every pause and every 1024 messages, not per
// message: at a hundred thousand messages a second that adds up. It
// returns the zero time when it did not read it.
func (r *readLoop) clock(pause bool) time.Time {
	if r.unclocked++; pause || r.unclocked >= 1024 {
		r.unclocked = 0
		return time.Now()
	}
	return time.Time{}
}

// every sets the gauges once a second and logs the acknowledged position
// every 30 s while it moves.
func (p *pipe) every(r *readLoop, now time.Time) {
	if now.IsZero() || now.Sub(r.lastGauge) <= time.Second {
		return
	}
	p.gauges()
	r.lastGauge = now
	if acked := p.acks.Acked(); acked != r.loggedLSN && now.Sub(r.lastLog) > 30*time.Second {
		p.s.log.Info().Str("acked_lsn", acked.String()).Str("server_wal_end", p.reader.ServerWALEnd().String()).Msg("acknowledged")
		r.lastLog, r.loggedLSN = now, acked
	}
}

// idle runs when the reader returned without a message.
func (p *pipe) idle(ctx, gctx context.Context, r *readLoop, now time.Time) error {
	if r.busy {
		r.quietSince, r.busy, r.released = now, false, false
	}
	if err := p.historyPassed(); err != nil {
		return err
	}
	if err := p.d.Tick(ctx); err != nil {
		return err
	}
	if err := p.snap.Step(gctx); err != nil {
		return err
	}
	// A backlog's buffers stay in the Go heap after it drains; give them
	// back once the stream has been quiet for a while.
	if !r.released && now.Sub(r.quietSince) > 2*time.Second {
		debug.FreeOSMemory()
		r.released = true
	}
	return nil
}

// handle takes one message of the stream.
func (p *pipe) handle(ctx, pctx, gctx context.Context, v any) error {
	switch m := v.(type) {
	case *replication.Begin:
		p.cur = &txn{Txn: &delivery.Txn{Txn: p.tracker.Begin(), Commit: delivery.Position{LSN: uint64(m.CommitLSN), Xid: m.Xid, Time: m.CommitTime}},
			ceTime: m.CommitTime.UTC().AppendFormat(nil, time.RFC3339Nano), commitLSN: envelope.AppendLSN(nil, uint64(m.CommitLSN))}
	case *replication.Relation:
		return p.bind(m)
	case *replication.Change:
		if p.cur == nil {
			return fmt.Errorf("change at %s outside a transaction", m.LSN)
		}
		return p.change(pctx, p.cur, m)
	case *replication.Commit:
		if p.cur == nil {
			return fmt.Errorf("commit at %s outside a transaction", m.CommitLSN)
		}
		p.tracker.Commit(p.cur.Txn.Txn, m.EndLSN)
		if err := p.historyPassed(); err != nil {
			return err
		}
		if err := p.d.Committed(ctx, p.cur.Txn); err != nil {
			return err
		}
		if err := p.snap.Step(gctx); err != nil {
			return err
		}
		p.cur = nil
	}
	return nil
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
	p.sources[rel.ID] = []byte(envelope.SourceOf(p.reader.SystemID(), p.reader.Database(), rel.Namespace, rel.Name))
	p.s.log.Info().Str("table", qualified).Uint32("relation_id", rel.ID).Int("columns", len(rel.Columns)).Msg("bound projection to table")
	return nil
}

var ops = map[replication.Op]projection.Op{
	replication.Insert: projection.Insert, replication.Update: projection.Update,
	replication.Delete: projection.Delete, replication.Truncate: projection.Truncate,
}

func (p *pipe) change(ctx context.Context, cur *txn, c *replication.Change) error {
	b, ok := p.bindings[c.Relation.ID]
	if !ok {
		p.s.metrics.Skipped.WithLabelValues("other_table").Inc()
		return nil
	}
	op := ops[c.Op]
	ev, ok, err := b.Project(op, c)
	switch {
	case errors.Is(err, projection.ErrValue) || errors.Is(err, replication.ErrUndecodable):
		return p.poison(ctx, cur, c, err)
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
	headers := p.ce.Streamed(ev.Type, ev.Subject, p.sources[c.Relation.ID], uint64(c.LSN), cur.ceTime, cur.commitLSN)
	return p.produce(ctx, cur, delivery.Record{Key: ev.Key, Value: ev.Value, Headers: headers})
}

// poison handles a committed change that cannot become a valid event: by
// default it goes to the dead-letter topic, in its transaction's place, so
// the stream goes on and nothing is acknowledged before it is in Kafka.
func (p *pipe) poison(ctx context.Context, cur *txn, c *replication.Change, cause error) error {
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
	headers := envelope.DeadLetterHeaders(p.sources[c.Relation.ID], uint64(c.LSN), cur.commitLSN)
	return p.produce(ctx, cur, delivery.Record{Key: key, Value: value, Headers: headers, DeadLetter: true})
}

// produce hands one record of cur to delivery, once the exactly-once
// history check has seen cur.
func (p *pipe) produce(ctx context.Context, cur *txn, r delivery.Record) error {
	if err := p.historyBears(cur.Txn); err != nil {
		return err
	}
	skipped, err := p.d.Produce(ctx, cur.Txn, r)
	if skipped {
		p.s.metrics.Skipped.WithLabelValues("already_in_kafka").Inc()
	}
	return err
}
