package streamer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/envelope"
	"github.com/userstream/userstream/kafkasink"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
)

// BackfillRange selects the users to backfill by id: after AfterID, up to
// and including UpToID (0: the largest id when the backfill starts).
type BackfillRange struct {
	AfterID, UpToID int64
	// Missing limits the backfill to users whose key is not in the topic:
	// the recovery after a lost slot, which cannot miss a row whatever order
	// ids were committed in.
	Missing   bool
	BatchSize int // rows per query; default 1000
}

// BackfillResult counts what a backfill did.
type BackfillResult struct {
	Produced int // events Kafka acknowledged
	Present  int // users skipped because the topic or the dead-letter topic holds them (Missing)
	Poison   int // rows that make no valid event, sent to the dead-letter topic
}

// Backfill produces a user.created event for every existing row in the range,
// through the same projection as the stream, and waits until Kafka
// acknowledged all of them. It is for rows the slot never saw (inserted
// before it existed, or lost with a slot). Backfilled events carry the same
// ce_id as streamed ones, and the header userstream_backfill=true; a user
// both backfilled and streamed arrives twice under the same key and ce_id.
// A row that makes no valid event goes to the dead-letter topic, as in the
// stream (with POISON=stop the backfill fails on it instead).
func (s *Streamer) Backfill(ctx context.Context, r BackfillRange) (BackfillResult, error) {
	var res BackfillResult
	if r.BatchSize <= 0 {
		r.BatchSize = 1000
	}
	conn, err := pgx.Connect(ctx, s.cfg.DatabaseURL)
	if err != nil {
		return res, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	var tables map[uint32]published
	if r.Missing {
		if tables, err = s.checkForMissing(ctx, conn); err != nil {
			return res, err
		}
	}
	// The writer first: in exactly-once mode it fences an interrupted run of
	// any backfill and aborts its open transaction, so the keys read below
	// are everything that run made durable, and reading them does not wait
	// for that transaction to time out.
	key := s.backfillKey(r)
	w, err := s.newBackfillWriter(ctx)
	if err != nil {
		return res, err
	}
	defer w.close()
	job, err := s.startBackfillJob(ctx, conn, key, r)
	if err != nil {
		return res, err
	}
	bf := &backfill{s: s, conn: conn, w: w, key: []byte(key), missing: r.Missing, res: &res}
	if err := bf.prepare(ctx); err != nil {
		return res, err
	}
	if err := bf.run(w.ctx, &job, r.BatchSize); err != nil {
		return res, w.err(err)
	}
	if r.Missing {
		// The recovery is done: every user is in the topic or on the
		// dead-letter topic, and the publication as it is now is the one the
		// streamer checks from here on.
		if err := s.recordFingerprint(ctx, fingerprintOf(tables)); err != nil {
			return res, fmt.Errorf("record the publication: %w", err)
		}
	}
	return res, nil
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

// prepare reads, for --missing, the users the topics account for, and
// names the source of the events.
func (bf *backfill) prepare(ctx context.Context) error {
	s := bf.s
	if bf.missing {
		if err := s.readAccountedFor(ctx, &bf.present); err != nil {
			return err
		}
		if err := s.checkSequence(ctx, bf.conn, bf.present.largest); err != nil {
			return err
		}
	}
	sysid, db, err := replication.Source(ctx, bf.conn)
	if err != nil {
		return err
	}
	bf.cp = s.newCopier(bf.w.d, sysid, db, envelope.Backfill, "backfill")
	return nil
}

// run sends the job's chunks, each made durable together with the cursor
// that says it is in Kafka, so a crashed backfill resumes after its last
// durable chunk; then it records the job complete and waits until Kafka
// has everything.
func (bf *backfill) run(ctx context.Context, job *backfillJob, batchSize int) error {
	meter := newProgressMeter(bf.s.log, "backfill", job.Total, job.Done, true)
	for job.AfterID < job.UpToID {
		c := &delivery.Chunk{}
		n, last, err := bf.batch(ctx, c, job.AfterID, job.UpToID, batchSize)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		job.AfterID, job.Done = last, job.Done+int64(n)
		if err := bf.durable(ctx, c, *job); err != nil {
			return err
		}
		meter.update(job.Done)
	}
	job.State = "complete"
	if err := bf.durable(ctx, &delivery.Chunk{}, *job); err != nil {
		return err
	}
	if err := bf.w.d.Flush(ctx); err != nil {
		return err
	}
	meter.done(job.Done)
	return nil
}

// durable makes chunk c durable with job as its cursor.
func (bf *backfill) durable(ctx context.Context, c *delivery.Chunk, job backfillJob) error {
	cursor, err := json.Marshal(job)
	if err != nil {
		return err
	}
	return bf.w.d.Durable(ctx, c, bf.key, cursor)
}

// LargestID is the largest user id the topic or the dead-letter topic
// holds (0 when none): after a restore, the id sequence must be moved past
// it, or new users take ids that Kafka holds for others.
func (s *Streamer) LargestID(ctx context.Context) (int64, error) {
	var present idSet
	if err := s.readAccountedFor(ctx, &present); err != nil {
		return 0, err
	}
	return present.largest, nil
}

// readAccountedFor adds to present the id of every user the topic holds, and
// of every row the dead-letter topic holds: a poison row already sent there
// is accounted for, or a recovery could never finish.
func (s *Streamer) readAccountedFor(ctx context.Context, present *idSet) error {
	for _, topic := range []string{s.cfg.Kafka.Topic, s.cfg.Kafka.DeadLetterTopic} {
		before := present.n
		err := kafkasink.ReadKeys(ctx, s.cfg.Kafka.Properties, topic, func(key []byte) {
			if id, err := strconv.ParseInt(string(key), 10, 64); err == nil {
				present.add(id)
			}
		})
		if err != nil {
			return fmt.Errorf("read the keys in topic %s: %w", topic, err)
		}
		s.log.Info().Int("keys", present.n-before).Str("topic", topic).Msg("read the users the topic accounts for")
	}
	return nil
}

// backfill is one run's state.
type backfill struct {
	s       *Streamer
	conn    *pgx.Conn
	w       *backfillWriter
	cp      *copier
	key     []byte // the job's cursor record
	present idSet
	missing bool
	res     *BackfillResult
}

// batch produces the next batch of rows into c and returns how many rows it
// read, and the last id.
func (bf *backfill) batch(ctx context.Context, c *delivery.Chunk, after, upTo int64, limit int) (int, int64, error) {
	rows, b, idCol, err := selectUsers(ctx, bf.conn, bf.cp.pr, after, upTo, limit, "")
	if err != nil {
		return 0, after, err
	}
	defer rows.Close()
	n, last := 0, after
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			// pgx's message may quote the value: row contents stay out of
			// errors, which reach logs.
			return n, last, fmt.Errorf("read the user after id %d: %w", last, replication.ErrUndecodable)
		}
		n++
		id, err := integerValue(vals[idCol])
		if err != nil {
			return n, last, fmt.Errorf("user after id %d: %w", last, err)
		}
		last = id
		if bf.missing && bf.present.has(id) {
			bf.res.Present++
			continue
		}
		produced, poison, err := bf.cp.copy(ctx, c, b, id, vals)
		if err != nil {
			return n, last, err
		}
		if produced {
			bf.res.Produced++
		}
		if poison {
			bf.res.Poison++
		}
	}
	return n, last, rows.Err()
}

// selectUsers reads up to limit rows with after < id <= upTo in id order,
// their projection's source columns only, with where appended to the
// condition ($4 on is its args), and binds the projection to them. idCol
// is the id's position among the columns.
func selectUsers(ctx context.Context, conn *pgx.Conn, pr projection.Projector, after, upTo int64, limit int, where string, args ...any) (pgx.Rows, projection.Binding, int, error) {
	ns, table := pr.Table()
	cols := pr.SourceColumns()
	idCol := slices.Index(cols, "id")
	if idCol < 0 {
		return nil, nil, 0, errors.New("the projection has no id column")
	}
	rows, err := conn.Query(ctx, "SELECT "+replication.QuoteColumns(cols)+" FROM "+replication.QuoteTable(ns+"."+table)+
		" WHERE id > $1 AND id <= $2"+where+" ORDER BY id LIMIT $3", append([]any{after, upTo, limit}, args...)...)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read users after id %d: %w", after, err)
	}
	rel := projection.Relation{Namespace: ns, Name: table}
	for _, f := range rows.FieldDescriptions() {
		rel.Columns = append(rel.Columns, projection.Column{Name: f.Name, TypeOID: f.DataTypeOID})
	}
	b, err := pr.Bind(rel)
	if err != nil {
		// pgx reports a failed query (cancelled, timed out, refused) through
		// the rows, which then describe no columns: that failure is the
		// cause, not the binding.
		rows.Close()
		if qerr := rows.Err(); qerr != nil {
			return nil, nil, 0, fmt.Errorf("read users after id %d: %w", after, qerr)
		}
		return nil, nil, 0, err
	}
	return rows, b, idCol, nil
}

func integerValue(v any) (int64, error) {
	switch n := v.(type) {
	case int16:
		return int64(n), nil
	case int32:
		return int64(n), nil
	case int64:
		return n, nil
	}
	return 0, fmt.Errorf("id decoded as %T, want an integer", v)
}

// valuesRow adapts a query's values to projection.Row.
type valuesRow []any

func (v valuesRow) Value(i int) (any, error) { return v[i], nil }

// checkSequence refuses a recovery while the id sequence is behind the
// largest id in Kafka: after a restore (or a sequence reset) new users take
// ids the topic holds for other users, which consumers deduplicating on
// ce_id drop and which this backfill would take for present.
func (s *Streamer) checkSequence(ctx context.Context, conn *pgx.Conn, largest int64) error {
	ns, table := s.cfg.Projectors[0].Table()
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
		s.log.Warn().Str("sequence", *seq).Msg("backfill: cannot read the id sequence (GRANT SELECT ON SEQUENCE to the streamer's role, as migration 0006 does), so a sequence moved back by a restore goes unnoticed")
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
