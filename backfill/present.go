package backfill

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/kafkaclient"
	"github.com/userstream/userstream/replication"
)

// LargestID is the largest user id the topic or the dead-letter topic
// holds (0 when none): after a restore, the id sequence must be moved past
// it, or new users take ids that Kafka holds for others.
func LargestID(ctx context.Context, k kafkaclient.Config, log zerolog.Logger) (int64, error) {
	var present idSet
	if err := readAccountedFor(ctx, k, log, &present); err != nil {
		return 0, err
	}
	return present.largest, nil
}

// readAccountedFor adds to present the id of every user the topic holds, and
// of every row the dead-letter topic holds: a poison row already sent there
// is accounted for, or a recovery could never finish.
func readAccountedFor(ctx context.Context, k kafkaclient.Config, log zerolog.Logger, present *idSet) error {
	for _, topic := range []string{k.Topic, k.DeadLetterTopic} {
		before := present.n
		err := kafkaclient.ReadKeys(ctx, k.Properties, topic, func(key []byte) {
			if id, err := strconv.ParseInt(string(key), 10, 64); err == nil {
				present.add(id)
			}
		})
		if err != nil {
			return fmt.Errorf("read the keys in topic %s: %w", topic, err)
		}
		log.Info().Int("keys", present.n-before).Str("topic", topic).Msg("read the users the topic accounts for")
	}
	return nil
}

// checkSequence refuses a recovery while the id sequence is behind the
// largest id in Kafka: after a restore (or a sequence reset) new users take
// ids the topic holds for other users, which consumers deduplicating on
// ce_id drop and which this backfill would take for present.
func (r *run) checkSequence(ctx context.Context, largest int64) error {
	ns, table := r.cfg.Projector.Table()
	conn := r.conn
	var seq *string
	if err := conn.QueryRow(ctx, "SELECT pg_get_serial_sequence($1, 'id')", replication.QuoteTable(ns+"."+table)).Scan(&seq); err != nil {
		return fmt.Errorf("find the id sequence: %w", err)
	}
	if seq == nil {
		return nil // ids come from elsewhere: nothing to compare
	}
	var last int64
	var called bool
	err := conn.QueryRow(ctx, "SELECT last_value, is_called FROM "+*seq).Scan(&last, &called)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		r.cfg.Log.Warn().Str("sequence", *seq).Msg("backfill: cannot read the id sequence (GRANT SELECT ON SEQUENCE to the streamer's role, as migration 0006 does), so a sequence moved back by a restore goes unnoticed")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the id sequence %s: %w", *seq, err)
	}
	if !called {
		last-- // the next id is last_value itself
	}
	if last < largest {
		return fmt.Errorf("the id sequence %s hands out ids from %d on, but Kafka already holds users up to id %d: the database was restored to before users that reached Kafka, or the sequence was reset. New users take ids the topic holds for other users (consumers deduplicating on ce_id drop them, and this backfill would take them for present). Before accepting writes, as the table's owner: SELECT setval('%s', %d); then run the backfill again. Users that already took such ids keep them: find them by created_at after the restore",
			*seq, last+1, largest, *seq, largest)
	}
	return nil
}

// idSet is a bitmap of ids: user ids are int4, so even a sparse table costs
// at most 256 MiB, and a dense one a bit per id.
type idSet struct {
	words   []uint64
	n       int
	largest int64
}

func (s *idSet) add(id int64) {
	if id < 0 || id > 1<<31 {
		return // outside int4: such a key is never a user of the table
	}
	w := int(id >> 6)
	if w >= len(s.words) {
		s.words = slices.Grow(s.words, w+1-len(s.words))[:w+1]
	}
	if s.words[w]&(1<<(id&63)) == 0 {
		s.words[w] |= 1 << (id & 63)
		s.n++
	}
	s.largest = max(s.largest, id)
}

func (s *idSet) has(id int64) bool {
	w := int(id >> 6)
	return id >= 0 && w < len(s.words) && s.words[w]&(1<<(id&63)) != 0
}
