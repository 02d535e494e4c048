package streamer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/userstream/userstream/internal/pgdsn"
	"github.com/userstream/userstream/kafkaclient"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
)

// plan is what prepare decided: where the session starts, and which tables,
// by relation id, the events are made from.
type plan struct {
	start pglogrepl.LSN
	// checkedAt is the WAL position read before the publication was found
	// as the events need it: the guard's first safe position.
	checkedAt pglogrepl.LSN
	tables    map[uint32]published
	fresh     bool               // the slot was created just now
	target    replication.Target // the server every connection of the session reaches
}

// published is a projected table as a passing publication check found it.
type published struct {
	pr          projection.Projector
	fingerprint string
}

// prepare checks the slot and the publication and decides where to start.
// It creates them only on the first run (nothing was ever streamed to the
// topic) or when told to (CreateSlot): anywhere else a missing slot or
// publication means changes were lost, and that needs an operator.
func (s *Streamer) prepare(ctx context.Context, startLSN pglogrepl.LSN) (plan, error) {
	conn, target, err := s.connectPrimary(ctx)
	if err != nil {
		return plan{}, err
	}
	defer conn.Close(context.Background())
	st, slotMissing, err := s.checkSlot(ctx, conn)
	if err != nil {
		return plan{}, err
	}
	checkedAt, err := replication.CurrentWAL(ctx, conn)
	if err != nil {
		return plan{}, fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	tables, missingPubs, err := s.checkPublications(ctx, conn)
	if err != nil {
		return plan{}, err
	}
	if slotMissing || len(missingPubs) > 0 || s.cfg.Snapshot == SnapshotInitial {
		if err := s.lockFirstRun(ctx, conn); err != nil {
			return plan{}, err
		}
	}
	// The progress topic holds this slot's snapshot and publication records:
	// one read for both.
	records, err := s.readSlotRecords(ctx)
	if err != nil {
		return plan{}, err
	}
	// A former primary back after a failover is refused before anything
	// is made or fenced; the timeline is recorded once the slot is settled.
	server, err := replication.Identify(ctx, target)
	if err != nil {
		return plan{}, fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	newTimeline, err := s.checkTimeline(target, server.SystemID, server.Timeline, records.timeline(s))
	if err != nil {
		return plan{}, err
	}
	c := creation{conn: conn, target: target, st: st, slotMissing: slotMissing, missingPubs: missingPubs, tables: tables}
	if err := s.createMissing(ctx, &c, records); err != nil {
		return plan{}, err
	}
	if err := s.checkFingerprint(ctx, c.tables, c.fresh, records.fingerprint(s)); err != nil {
		return plan{}, err
	}
	s.keepOnStandbys(ctx, conn, target, c.st)
	s.checkStandbySlots(ctx, conn)
	if newTimeline {
		if err := s.recordTimeline(ctx, server.SystemID, server.Timeline); err != nil {
			return plan{}, err
		}
	}
	start, err := s.startAt(c.st, startLSN, checkedAt)
	if err != nil {
		return plan{}, err
	}
	return plan{start: start, checkedAt: max(checkedAt, start), tables: c.tables, fresh: c.fresh, target: target}, nil
}

// connectPrimary connects to the primary DATABASE_URL names, and pins the
// session's every connection to that server.
func (s *Streamer) connectPrimary(ctx context.Context) (*pgx.Conn, replication.Target, error) {
	conn, err := s.database().Connect(ctx)
	s.postgresOK.Store(err == nil)
	if err != nil {
		return nil, replication.Target{}, fmt.Errorf("%w: connect: %w", errBeforeStart, err)
	}
	target := replication.PinnedTo(s.cfg.DatabaseURL, conn)
	standby, err := replication.InRecovery(ctx, conn)
	if err == nil && standby {
		// Retried: a failover may promote it. A standby's synced slot cannot
		// be read before that.
		err = fmt.Errorf("%s is a standby (in recovery): the streamer reads the primary, and waits for this server to be promoted; to follow failovers, give DATABASE_URL every host with target_session_attrs=read-write",
			pgdsn.Describe(s.cfg.DatabaseURL))
	}
	if err != nil {
		conn.Close(context.Background())
		return nil, target, fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	return conn, target, nil
}

// checkSlot reads the slot's state: missing is true when it does not
// exist; a lost slot, one held by another process or one of another
// database is an error.
func (s *Streamer) checkSlot(ctx context.Context, conn *pgx.Conn) (st replication.SlotStatus, missing bool, err error) {
	st, err = replication.Slot(ctx, conn, s.cfg.Slot)
	missing = errors.Is(err, replication.ErrSlotMissing)
	if err == nil || errors.Is(err, replication.ErrSlotLost) {
		s.metrics.observeSlot(st)
	}
	switch {
	case errors.Is(err, replication.ErrSlotLost):
		return st, false, permanent(slotLostError(s.cfg.Slot, err))
	case missing:
		return st, true, nil
	case err != nil:
		return st, false, fmt.Errorf("%w: %w", errBeforeStart, err)
	case st.Active:
		// Checked first, so a standby's once-a-second retry stays cheap;
		// START_REPLICATION checks again.
		return st, false, fmt.Errorf("slot %s held by pid %d: %w", s.cfg.Slot, st.ActivePID, replication.ErrSlotActive)
	}
	db, err := replication.Database(ctx, conn)
	if err != nil {
		return st, false, fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	if st.Database != db {
		return st, false, permanent(fmt.Errorf("slot %s belongs to database %q, not %q: set REPLICATION_SLOT to a slot of this database, or DATABASE_URL to that database", s.cfg.Slot, st.Database, db))
	}
	return st, false, nil
}

// lockFirstRun lets one process at a time decide about creating: two
// first runs started together would otherwise each make a slot and record a
// boundary, and the one recorded could be the other's.
func (s *Streamer) lockFirstRun(ctx context.Context, conn *pgx.Conn) error {
	locked, err := replication.TryFirstRunLock(ctx, conn, s.cfg.Slot)
	if err != nil {
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	if !locked {
		return fmt.Errorf("another streamer is preparing slot %s: %w", s.cfg.Slot, replication.ErrSlotActive)
	}
	return nil
}

// creation is what prepare knows while it creates what is missing.
type creation struct {
	conn        *pgx.Conn
	target      replication.Target
	st          replication.SlotStatus
	slotMissing bool
	missingPubs []replication.PublicationSpec
	tables      map[uint32]published
	fresh       bool // the slot was created just now
}

// createMissing creates a missing slot or publication where that is
// allowed (the first run, an interrupted first run, CREATE_SLOT), and
// refuses CREATE_SLOT with nothing to create.
func (s *Streamer) createMissing(ctx context.Context, c *creation, records slotRecords) error {
	interrupted := false
	if s.cfg.Snapshot == SnapshotInitial {
		var err error
		if interrupted, err = s.redoInterruptedFirstRun(ctx, c.conn, c.slotMissing, records.snapshot(s)); err != nil {
			return err
		}
		c.slotMissing = c.slotMissing || interrupted
	}
	if !c.slotMissing && len(c.missingPubs) == 0 {
		if s.cfg.CreateSlot && !s.createdSlot.Load() {
			return permanent(fmt.Errorf("CREATE_SLOT is set but slot %s exists: it is for one start after a lost slot; remove it, or a slot lost later would be recreated from now without a stop", s.cfg.Slot))
		}
		return nil
	}
	first := interrupted // nothing was streamed before a first run's snapshot was recorded
	if !interrupted {
		var err error
		if first, err = s.mayCreate(ctx, c.slotMissing, c.missingPubs); err != nil {
			return err
		}
	}
	if err := s.createPublications(ctx, c); err != nil {
		return err
	}
	if c.slotMissing {
		if err := s.createSlot(ctx, c.conn, c.target, first); err != nil {
			return err
		}
	}
	c.fresh = c.slotMissing
	s.createdSlot.Store(c.slotMissing)
	var err error
	if c.st, err = replication.Slot(ctx, c.conn, s.cfg.Slot); err != nil {
		return fmt.Errorf("%w: %w", errBeforeStart, err)
	}
	return nil
}

// createPublications creates the missing publications and checks them.
func (s *Streamer) createPublications(ctx context.Context, c *creation) error {
	for _, spec := range c.missingPubs {
		if err := replication.CreatePublication(ctx, c.conn, spec); err != nil {
			return permanent(err)
		}
		s.log.Info().Str("publication", spec.Name).Str("table", spec.Table).Msg("created publication")
	}
	tables, missingPubs, err := s.checkPublications(ctx, c.conn)
	if err != nil {
		return err
	}
	if len(missingPubs) > 0 {
		return fmt.Errorf("%w: publication %s vanished right after it was created", errBeforeStart, s.cfg.Publication)
	}
	c.tables = tables
	return nil
}

// startAt is where the session starts: the slot's confirmed position, or
// START_LSN when it is given and valid.
func (s *Streamer) startAt(st replication.SlotStatus, startLSN, checkedAt pglogrepl.LSN) (pglogrepl.LSN, error) {
	if startLSN == 0 {
		return st.Confirmed, nil
	}
	if startLSN < st.Confirmed {
		return 0, permanent(fmt.Errorf("start LSN %s is behind slot %s's confirmed position %s: PostgreSQL cannot replay behind a slot's confirmed position (the WAL before it may be gone); start at or after %s, or omit START_LSN to resume from the slot",
			startLSN, s.cfg.Slot, st.Confirmed, st.Confirmed))
	}
	if startLSN > checkedAt {
		return 0, permanent(fmt.Errorf("start LSN %s is beyond the server's current WAL position %s: every insert until the WAL reached it would be skipped; give a position at or before %s",
			startLSN, checkedAt, checkedAt))
	}
	return startLSN, nil
}

// checkPublications checks each projected table's publication completely.
// It returns the tables' relation ids, and the publications that do not
// exist; a publication that exists but differs is a permanent error whose
// message holds the SQL that fixes it.
func (s *Streamer) checkPublications(ctx context.Context, conn *pgx.Conn) (map[uint32]published, []replication.PublicationSpec, error) {
	tables := map[uint32]published{}
	var missing []replication.PublicationSpec
	for _, pr := range s.cfg.Projectors {
		spec := s.publicationSpec(pr)
		pt, err := replication.CheckPublication(ctx, conn, spec)
		switch {
		case errors.Is(err, replication.ErrPublicationMissing):
			missing = append(missing, spec)
		case errors.Is(err, replication.ErrPublication):
			return nil, nil, permanent(publicationError(err))
		case err != nil:
			return nil, nil, fmt.Errorf("%w: %w", errBeforeStart, err)
		default:
			tables[pt.OID] = published{pr: pr, fingerprint: pt.Fingerprint}
		}
	}
	return tables, missing, nil
}

// publicationSpec derives a projected table's publication from its
// projector: the column list is exactly what the events are built from.
func (s *Streamer) publicationSpec(pr projection.Projector) replication.PublicationSpec {
	ns, name := pr.Table()
	return replication.PublicationSpec{Name: s.cfg.Publication, Table: ns + "." + name, Columns: pr.SourceColumns()}
}

// mayCreate allows creating a missing slot or publication on the first run
// only: when neither the topic nor the dead-letter topic ever held a record.
// It reports whether this is the first run.
func (s *Streamer) mayCreate(ctx context.Context, slotMissing bool, missingPubs []replication.PublicationSpec) (bool, error) {
	sink, err := s.newSink(s.plainKafka())
	if err != nil {
		return false, permanent(err)
	}
	defer sink.Close()
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	streamed, err := sink.HasRecords(kctx, s.cfg.Kafka.Topic, s.cfg.Kafka.DeadLetterTopic, s.cfg.Kafka.ProgressTopic)
	s.kafkaOK.Store(err == nil)
	if err != nil {
		return false, retryable(fmt.Errorf("find out whether this is the first run: %w", err))
	}
	// CREATE_SLOT allows one creation: a process that made the slot and
	// finds it missing again (a second loss, a failover without slot sync)
	// stops like any other, or it would skip that gap without a word.
	if !streamed || (s.cfg.CreateSlot && !s.createdSlot.Load()) {
		return !streamed, nil
	}
	what, dropSlot := fmt.Sprintf("replication slot %s does not exist", s.cfg.Slot), ""
	if !slotMissing {
		what = fmt.Sprintf("publication %s does not exist", missingPubs[0].Name)
		// The slot cannot decode past the point where the publication was
		// dropped, even once it is made again.
		dropSlot = " `streamer drop-slot --yes`;"
	}
	return false, permanent(fmt.Errorf("%s, but topic %s already holds events: it was dropped, lost in a failover or a restore, or this is the wrong database. Rows committed since the last streamed position were NOT streamed, and a new slot would start from now. To recover without a gap: stop every streamer;%s start one with CREATE_SLOT=true (--create-slot) once, which creates the slot and publication from now; then run `streamer backfill --missing`, which sends every user that is in the table but not in the topic; consumers deduplicate on ce_id",
		what, s.cfg.Kafka.Topic, dropSlot))
}

// retryable marks a failure before streaming as worth retrying, unless
// Kafka refused access: that needs an operator.
func retryable(err error) error {
	if kafkaclient.IsPermanent(err) {
		return permanent(err)
	}
	return fmt.Errorf("%w: %w", errBeforeStart, err)
}

func slotLostError(slot string, err error) error {
	return fmt.Errorf("%w. Rows committed since the last streamed position were NOT streamed: PostgreSQL can no longer decode them for this slot. To recover without a gap: stop every streamer; run `streamer drop-slot --yes`; start one streamer with CREATE_SLOT=true (--create-slot) once; then run `streamer backfill --missing`, which sends every user that is in the table but not in the topic", err)
}

func publicationError(err error) error {
	return fmt.Errorf("%w. Rows the publication did not publish were NOT streamed, and replaying the slot will not bring them back: after the fix, run `streamer backfill --missing`, then start the streamer", err)
}
