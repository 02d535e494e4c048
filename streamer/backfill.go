package streamer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/kafkasink"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
)

// BackfillRange selects the users to backfill by id: after AfterID, up to
// and including UpToID (0: the largest id when the backfill starts).
type BackfillRange struct {
	AfterID, UpToID int64
	BatchSize       int // rows per query; default 1000
}

// Backfill produces a user.created event for every existing row in the range,
// through the same projection as the stream, and waits until Kafka
// acknowledged all of them. It is for rows the slot never saw (inserted
// before it existed, or lost with an invalidated slot). Backfilled events
// carry ce_id "<id>@backfill", the same on every run, and the header
// userstream_backfill=true; a user both backfilled and streamed arrives
// twice under the same key. It returns how many events Kafka acknowledged.
func (s *Streamer) Backfill(ctx context.Context, r BackfillRange) (int, error) {
	if r.BatchSize <= 0 {
		r.BatchSize = 1000
	}
	conn, err := pgx.Connect(ctx, s.cfg.DatabaseURL)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	var sysid, db string
	if err := conn.QueryRow(ctx, "SELECT system_identifier::text, current_database() FROM pg_control_system()").Scan(&sysid, &db); err != nil {
		return 0, fmt.Errorf("identify database: %w", err)
	}
	if r.UpToID == 0 {
		if err := conn.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM users").Scan(&r.UpToID); err != nil {
			return 0, fmt.Errorf("find the last user: %w", err)
		}
	}
	sink, err := s.newSink(s.cfg.Kafka)
	if err != nil {
		return 0, err
	}
	defer sink.Close()
	if err := sink.EnsureTopic(ctx); err != nil {
		return 0, err
	}
	pr := projection.UserCreated{}
	ns, table := pr.Table()
	source := []byte("postgresql://" + sysid + "/" + db + "/" + ns + "." + table)

	produced, after := 0, r.AfterID
	for after < r.UpToID {
		n, last, err := backfillBatch(ctx, conn, sink, pr, source, after, r.UpToID, r.BatchSize)
		produced += n
		if err != nil {
			return s.awaitDeliveries(sink, produced, err)
		}
		if n == 0 {
			break
		}
		after = last
		s.log.Info().Int64("through_id", after).Int64("up_to_id", r.UpToID).Int("produced", produced).Msg("backfill progress")
	}
	return s.awaitDeliveries(sink, produced, nil)
}

// backfillBatch produces the next batch of rows and returns how many, and
// the last id.
func backfillBatch(ctx context.Context, conn *pgx.Conn, sink *kafkasink.Sink, pr projection.Projector, source []byte, after, upTo int64, limit int) (int, int64, error) {
	ns, table := pr.Table()
	rows, err := conn.Query(ctx, "SELECT "+replication.QuoteColumns(pr.SourceColumns())+" FROM "+replication.QuoteTable(ns+"."+table)+
		" WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3", after, upTo, limit)
	if err != nil {
		return 0, after, fmt.Errorf("read users after id %d: %w", after, err)
	}
	defer rows.Close()
	rel := projection.Relation{Namespace: ns, Name: table}
	for _, f := range rows.FieldDescriptions() {
		rel.Columns = append(rel.Columns, projection.Column{Name: f.Name, TypeOID: f.DataTypeOID})
	}
	b, err := pr.Bind(rel)
	if err != nil {
		return 0, after, err
	}
	n, last := 0, after
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return n, last, fmt.Errorf("read user after id %d: %w", last, err)
		}
		ev, ok, err := b.Project(projection.Insert, valuesRow(vals))
		if err != nil {
			return n, last, fmt.Errorf("project user after id %d: %w", last, err)
		}
		if !ok {
			continue
		}
		headers := append(ceHeaders(nil, []byte(ev.Type), source, []byte(ev.Subject+"@backfill"),
			time.Now().UTC().AppendFormat(nil, time.RFC3339Nano), []byte(ev.Subject)),
			kafka.Header{Key: "userstream_backfill", Value: []byte("true")})
		for {
			err := sink.Produce(ev.Key, ev.Value, headers, nil)
			if err == nil {
				break
			}
			if !kafkasink.IsQueueFull(err) {
				return n, last, fmt.Errorf("produce user %s: %w", ev.Subject, err)
			}
			if err := drainOne(ctx, sink); err != nil {
				return n, last, err
			}
		}
		n++
		if last, err = strconv.ParseInt(ev.Subject, 10, 64); err != nil {
			return n, last, fmt.Errorf("user id %q: %w", ev.Subject, err)
		}
	}
	return n, last, rows.Err()
}

// awaitDeliveries reads delivery reports until every produced event is
// acknowledged, failing on the first error.
func (s *Streamer) awaitDeliveries(sink *kafkasink.Sink, produced int, cause error) (int, error) {
	acked := 0
	deadline := time.Now().Add(s.cfg.ShutdownTimeout + time.Minute)
	for sink.Len() > 0 && time.Now().Before(deadline) {
		if err := drainOne(context.Background(), sink); err != nil {
			return acked, errors.Join(cause, err)
		}
	}
	if n := sink.Len(); n > 0 {
		return produced - n, errors.Join(cause, fmt.Errorf("%d backfilled events still undelivered", n))
	}
	return produced, cause
}

// drainOne waits for one event from the producer and fails on a delivery error.
func drainOne(ctx context.Context, sink *kafkasink.Sink) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case e := <-sink.Events():
		if m, ok := e.(*kafka.Message); ok && m.TopicPartition.Error != nil {
			return fmt.Errorf("delivery failed: %w", m.TopicPartition.Error)
		}
	case <-sink.Logs():
	case <-time.After(100 * time.Millisecond):
	}
	return nil
}

// valuesRow adapts a query's values to projection.Row.
type valuesRow []any

func (v valuesRow) Value(i int) (any, error) { return v[i], nil }
