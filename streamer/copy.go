package streamer

import (
	"context"
	"errors"
	"fmt"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/projection"
)

// copier turns rows read by a query (the initial snapshot, a backfill)
// into records of a chunk, through the same projection as the stream: an
// event with the same ce_id as its streamed copy, flagged as a copy. A row
// that makes no valid event follows the stream's policy (POISON): it goes
// to the dead-letter topic, or it stops the copy.
type copier struct {
	s      *Streamer
	d      *delivery.Stream
	pr     projection.Projector
	table  string // schema-qualified
	source []byte // ce_source
	flag   string // envelope.Snapshot or envelope.Backfill
	what   string // "snapshot" or "backfill", for the log
	ce     *envelope.Encoder
}

func (s *Streamer) newCopier(d *delivery.Stream, systemID, database, flag, what string) *copier {
	pr := s.cfg.Projectors[0]
	ns, name := pr.Table()
	return &copier{s: s, d: d, pr: pr, table: ns + "." + name, source: []byte(envelope.SourceOf(systemID, database, ns, name)),
		flag: flag, what: what, ce: envelope.NewEncoder()}
}

// copy produces the record of the row id (vals, bound by b) into chunk c.
// poison says it was a dead letter; produced is false for a row that makes
// no event.
func (cp *copier) copy(ctx context.Context, c *delivery.Chunk, b projection.Binding, id int64, vals []any) (produced, poison bool, err error) {
	ev, ok, err := b.Project(projection.Insert, valuesRow(vals))
	if errors.Is(err, projection.ErrValue) {
		return cp.poison(ctx, c, id, vals, err)
	}
	if err != nil {
		return false, false, fmt.Errorf("project the user with id %d: %w", id, err)
	}
	if !ok {
		return false, false, nil
	}
	headers := cp.ce.Copied(ev.Type, ev.Subject, ev.OccurredAt, cp.source, cp.flag)
	if err := cp.d.ProduceChunk(ctx, c, delivery.Record{Key: ev.Key, Value: ev.Value, Headers: headers}); err != nil {
		return false, false, fmt.Errorf("%s: produce user %s: %w", cp.what, ev.Subject, err)
	}
	return true, false, nil
}

// poison sends a row that makes no valid event to the dead-letter topic,
// in its chunk, as the stream does; the log names the column, never the
// value.
func (cp *copier) poison(ctx context.Context, c *delivery.Chunk, id int64, vals []any, cause error) (bool, bool, error) {
	if cp.s.cfg.Poison == PoisonStop || cp.s.cfg.Kafka.DeadLetterTopic == "" {
		return false, false, permanent(fmt.Errorf("%s: user %d makes no valid event: %w. POISON=stop is set: fix or delete the row, or set POISON=dead-letter to send it to the dead-letter topic, then run again", cp.what, id, cause))
	}
	cp.s.log.Warn().Int64("id", id).Str("error", cause.Error()).Msg(cp.what + ": the row makes no valid event; sent to the dead-letter topic")
	key, value, err := copiedDeadLetter(cp.table, cp.pr.SourceColumns(), vals, id, cause)
	if err != nil {
		return false, false, err
	}
	r := delivery.Record{Key: key, Value: value, Headers: envelope.CopiedDeadLetter(cp.source, cp.flag), DeadLetter: true}
	if err := cp.d.ProduceChunk(ctx, c, r); err != nil {
		return false, false, fmt.Errorf("%s: produce the dead letter of user %d: %w", cp.what, id, err)
	}
	return false, true, nil
}
