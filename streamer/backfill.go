package streamer

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/backfill"
	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/replication"
)

// BackfillRange selects the users to backfill (package backfill).
type BackfillRange = backfill.Range

// BackfillResult counts what a backfill did.
type BackfillResult = backfill.Result

// Backfill produces a user.created event for every existing row in the
// range, through the same projection as the stream, and waits until Kafka
// acknowledged all of them (package backfill). A row that makes no valid
// event goes to the dead-letter topic, as in the stream (with POISON=stop
// the backfill fails on it instead). `--missing` is the recovery after a
// lost slot or a changed publication: it needs the slot and the
// publication as the streamer needs them, and once every user is in the
// topic it records the publication as it is now.
func (s *Streamer) Backfill(ctx context.Context, r BackfillRange) (BackfillResult, error) {
	conn, err := s.database().Connect(ctx)
	if err != nil {
		return BackfillResult{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	var tables map[uint32]published
	if r.Missing {
		if tables, err = s.checkForMissing(ctx, conn); err != nil {
			return BackfillResult{}, err
		}
	}
	res, err := backfill.Run(ctx, conn, backfill.Config{
		Source: s.copySource(), Key: s.backfillKey(r), Kafka: s.cfg.Kafka,
		Producer: s.cfg.Delivery.Producer(s.cfg.Kafka, s.cfg.Slot+"-backfill", s.cfg.TransactionInterval),
		Delivery: s.deliveryConfig(delivery.Hooks{}), NewSink: s.newSink,
	}, r)
	if err != nil || !r.Missing {
		return res, err
	}
	// The recovery is done: every user is in the topic or on the
	// dead-letter topic, and the publication as it is now is the one the
	// streamer checks from here on.
	if err := s.recordFingerprint(ctx, fingerprintOf(tables)); err != nil {
		return res, fmt.Errorf("record the publication: %w", err)
	}
	return res, nil
}

// copySource is what the snapshot and backfills copy, and the stream's
// policy for rows that make no valid event.
func (s *Streamer) copySource() backfill.Source {
	return backfill.Source{Projector: s.cfg.Projectors[0], Log: s.log,
		StopOnPoison: s.cfg.Poison == PoisonStop || s.cfg.Kafka.DeadLetterTopic == ""}
}

// checkForMissing checks what `backfill --missing` needs: the slot, to
// stream what commits while it runs (rows committed after the boundary was
// read, even with lower ids, are the slot's to stream: without a slot they
// would be missed), and the publication as the streamer needs it.
func (s *Streamer) checkForMissing(ctx context.Context, conn *pgx.Conn) (map[uint32]published, error) {
	if _, err := replication.Slot(ctx, conn, s.cfg.Slot); err != nil {
		return nil, fmt.Errorf("backfill --missing needs the slot to stream what commits while it runs (start the streamer once with CREATE_SLOT=true first): %w", err)
	}
	tables, missingPubs, err := s.checkPublications(ctx, conn)
	if err != nil || len(missingPubs) > 0 {
		return nil, fmt.Errorf("backfill --missing needs the publication as the streamer needs it (missing: %v): %w", missingPubs, err)
	}
	return tables, nil
}

// LargestID is the largest user id the topic or the dead-letter topic
// holds (0 when none): after a restore, the id sequence must be moved past
// it, or new users take ids that Kafka holds for others.
func (s *Streamer) LargestID(ctx context.Context) (int64, error) {
	return backfill.LargestID(ctx, s.cfg.Kafka, s.log)
}
