// Package streamer runs the CDC pipeline: it reads the replication slot,
// projects each committed change into events, produces them to Kafka, and
// reports to PostgreSQL only the positions whose events Kafka acknowledged.
// Connection trouble is retried forever with backoff; what needs an operator
// (a lost slot, a schema the events no longer fit, a rejected message) stops
// it with an error that says what to do.
package streamer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/userstream/userstream/delivery"
	"github.com/userstream/userstream/kafkaclient"
	"github.com/userstream/userstream/projection"
	"github.com/userstream/userstream/replication"
)

// Config holds the streamer's settings; zero values take the defaults.
type Config struct {
	DatabaseURL string
	Slot        string        // default users_cdc
	Publication string        // default users_pub
	StartLSN    pglogrepl.LSN // 0: resume from the slot
	Kafka       kafkaclient.Config
	// HeartbeatInterval, when set, writes a logical message that often so the
	// slot advances on servers where keepalives are rare.
	HeartbeatInterval time.Duration
	ShutdownTimeout   time.Duration // bound on waiting for deliveries at exit; default 30 s
	StatusInterval    time.Duration // most time between status updates; default 10 s, and at most a quarter of wal_sender_timeout
	// ReadLinger is how long the reader lets WAL messages gather once it
	// has caught up (default 5 ms; negative: none), so a steady trickle of
	// small transactions costs a wake-up per few transactions rather than
	// per message, on the reader and on the Kafka client alike. It adds up
	// to that much latency; a backlog is read without it.
	ReadLinger time.Duration
	// CreateSlot allows creating a missing slot or publication although the
	// topic already holds events, once per process: the recovery after a
	// lost slot. Without it they are created on the first run only.
	CreateSlot bool
	// DisableSlotFailover keeps the slot off physical standbys. By default,
	// on PostgreSQL 17+, the slot is a failover slot: a standby with slot
	// sync keeps a copy, and after a failover the streamer goes on from it
	// on the new primary.
	DisableSlotFailover bool
	// Poison is what happens to a change that cannot become a valid event;
	// default PoisonDeadLetter, to Kafka.DeadLetterTopic.
	Poison Poison
	// Delivery is at-least-once (default) or exactly-once.
	Delivery Delivery
	// TransactionInterval is the longest an exactly-once Kafka transaction
	// stays open while records arrive (default 10 ms): the latency a
	// read_committed consumer adds. TransactionRecords caps its records
	// (default 10,000).
	TransactionInterval time.Duration
	TransactionRecords  int
	// Snapshot says whether the first run, which creates the slot, also
	// sends the users that existed before it (initial, the default) or not
	// (never). SnapshotChunk is its rows per query (default 1000).
	Snapshot      Snapshot
	SnapshotChunk int
	// GuardInterval is how often the published tables are re-checked; the
	// slot's reported position never passes the last passing check, so it is
	// also about what a crash replays. Default 250 ms: a check is a few
	// catalog queries.
	GuardInterval time.Duration
	Projectors    []projection.Projector
}

// DefaultReadLinger is ReadLinger's default: at most what librdkafka's
// linger.ms adds anyway (5 ms; in exactly-once mode, TRANSACTION_INTERVAL),
// so the records of one read share a Kafka request.
const DefaultReadLinger = 5 * time.Millisecond

// Streamer is the pipeline. Run it once.
type Streamer struct {
	cfg     Config
	log     zerolog.Logger
	metrics *Metrics
	role    atomic.Value // "starting", "active", "standby", "reconnecting", "stopped"
	// Reachability as last seen, for /readyz.
	postgresOK, kafkaOK reachability
	// createdSlot is set once this process created the slot: CREATE_SLOT
	// then does not refuse its later sessions.
	createdSlot atomic.Bool
	// distrusted is the exactly-once progress record (a
	// replication.CommitID) a session of this process found this server's
	// history does not hold: later sessions skip nothing on it.
	distrusted atomic.Value
	// newSink makes each session's producer; tests wrap it.
	newSink func(kafkaclient.Config) (*kafkaclient.Producer, error)
}

// New returns a streamer; m receives its metrics.
func New(cfg Config, log zerolog.Logger, m *Metrics) *Streamer {
	if cfg.Slot == "" {
		cfg.Slot = "users_cdc"
	}
	if cfg.Publication == "" {
		cfg.Publication = "users_pub"
	}
	if cfg.Kafka.Topic == "" {
		cfg.Kafka.Topic = "users.created"
	}
	if cfg.Kafka.DeadLetterTopic == "" {
		cfg.Kafka.DeadLetterTopic = cfg.Kafka.Topic + ".dlq"
	}
	if cfg.Delivery == "" {
		cfg.Delivery = AtLeastOnce
	}
	if cfg.Kafka.ProgressTopic == "" {
		// Exactly-once progress and the initial snapshot's state.
		cfg.Kafka.ProgressTopic = cfg.Kafka.Topic + ".progress"
	}
	if cfg.Snapshot == "" {
		cfg.Snapshot = SnapshotInitial
	}
	if cfg.SnapshotChunk <= 0 {
		cfg.SnapshotChunk = 1000
	}
	if cfg.TransactionInterval <= 0 {
		cfg.TransactionInterval = 10 * time.Millisecond
	}
	if cfg.ReadLinger == 0 {
		cfg.ReadLinger = DefaultReadLinger
	}
	if cfg.TransactionRecords <= 0 {
		cfg.TransactionRecords = 10_000
	}
	if cfg.Poison == "" {
		cfg.Poison = PoisonDeadLetter
	}
	if cfg.GuardInterval <= 0 {
		cfg.GuardInterval = 250 * time.Millisecond
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.Projectors == nil {
		cfg.Projectors = projection.All()
	}
	s := &Streamer{cfg: cfg, log: log, metrics: m, newSink: kafkaclient.New}
	s.setRole("starting")
	return s
}

// Role is what the streamer is doing: starting, active (holds the slot),
// standby (another process holds it), reconnecting or stopped.
func (s *Streamer) Role() string { return s.role.Load().(string) }

// ErrPermanent marks errors retrying cannot fix.
var ErrPermanent = errors.New("needs an operator")

// Run streams until ctx is cancelled (then it drains and returns nil) or a
// permanent error occurs.
func (s *Streamer) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if s.cfg.HeartbeatInterval > 0 {
		g.Go(func() error { s.heartbeat(ctx); return nil })
	}
	g.Go(func() error {
		defer s.setRole("stopped")
		return s.sessions(ctx)
	})
	return g.Wait()
}

func (s *Streamer) sessions(ctx context.Context) error {
	const minBackoff, maxBackoff = 250 * time.Millisecond, 30 * time.Second
	backoff := minBackoff
	// START_LSN applies once: to this process's first session, retried only
	// while it fails before streaming starts. Standbys and later sessions
	// resume from the slot, which is past it by then.
	startLSN := s.cfg.StartLSN
	for {
		began := time.Now()
		err := s.session(ctx, startLSN)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrPermanent) {
			return err
		}
		if errors.Is(err, replication.ErrSlotActive) {
			if s.Role() != "standby" {
				s.log.Info().Str("slot", s.cfg.Slot).Msg("standby: the slot is active in another process; retrying every second")
			}
			if startLSN != 0 {
				s.log.Warn().Str("start_lsn", startLSN.String()).Msg("START_LSN applies only to a process that starts active: as a standby this one resumes from the slot when it takes over")
				startLSN = 0
			}
			s.setRole("standby")
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		if err == nil {
			err = errors.New("session ended")
		}
		if time.Since(began) > time.Minute {
			backoff = minBackoff
		}
		s.setRole("reconnecting")
		s.metrics.Restarts.Inc()
		wait := backoff/2 + rand.N(backoff/2+1) // jitter: half fixed, half random
		s.log.Warn().Err(err).Dur("retry_in", wait).Msg("stream interrupted; resuming from the slot")
		if !sleep(ctx, wait) {
			return nil
		}
		backoff = min(backoff*2, maxBackoff)
		if !errors.Is(err, errBeforeStart) {
			startLSN = 0
		}
	}
}

// errBeforeStart wraps failures before streaming began, which keep a chosen
// start LSN in force for the next try.
var errBeforeStart = errors.New("before streaming")

func (s *Streamer) setRole(r string) {
	s.role.Store(r)
	if s.metrics != nil {
		s.metrics.setRole(r)
	}
}

// heartbeat writes a non-transactional logical message now and then, which
// moves the server's WAL end so keepalives let an idle slot advance.
func (s *Streamer) heartbeat(ctx context.Context) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var err error
		if conn == nil || conn.IsClosed() {
			if conn, err = s.database().Connect(ctx); err != nil {
				conn = nil
				s.log.Warn().Err(err).Msg("heartbeat: connect")
				continue
			}
		}
		if err = replication.Heartbeat(ctx, conn); err != nil {
			s.log.Warn().Err(err).Msg("heartbeat")
			conn.Close(ctx)
			conn = nil
		}
	}
}

// Delivery is at-least-once or exactly-once (package delivery).
type Delivery = delivery.Mode

// The delivery modes.
const (
	AtLeastOnce = delivery.AtLeastOnce
	ExactlyOnce = delivery.ExactlyOnce
)

// database is DATABASE_URL as given: each connection reaches whichever of
// its hosts answers (with target_session_attrs=read-write, the primary). A
// session pins its every connection to the server its first one reached
// (replication.PinnedTo); the heartbeat and the commands follow the DSN.
func (s *Streamer) database() replication.Target { return replication.Target{DSN: s.cfg.DatabaseURL} }

// sinkConfig is the stream's producer, as its delivery mode needs it.
func (s *Streamer) sinkConfig() kafkaclient.Config {
	return s.cfg.Delivery.Producer(s.cfg.Kafka, s.cfg.Slot, s.cfg.TransactionInterval)
}

// plainKafka is a producer outside the stream's transactions: for the
// records written beside it (the snapshot's boundary, the publication's
// fingerprint, the timeline).
func (s *Streamer) plainKafka() kafkaclient.Config {
	return AtLeastOnce.Producer(s.cfg.Kafka, s.cfg.Slot, 0)
}

// deliveryConfig is the stream's delivery, reporting through hooks.
func (s *Streamer) deliveryConfig(hooks delivery.Hooks) delivery.Config {
	return delivery.Config{Mode: s.cfg.Delivery, ProgressKey: s.progressKey(),
		TransactionInterval: s.cfg.TransactionInterval, TransactionRecords: s.cfg.TransactionRecords,
		ShutdownTimeout: s.cfg.ShutdownTimeout, Log: s.log, Hooks: hooks}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }
