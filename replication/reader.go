// Package replication reads a PostgreSQL logical replication slot with the
// pgoutput plugin and hands out its changes as typed values, one at a time:
// no transaction is ever held in memory, so the caller's pace (Kafka's
// backpressure) is the read's pace.
package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// Acker is the reader's source of the position it reports as flushed, and
// where it reports the server's WAL end from keepalives so an idle stream can
// advance.
type Acker interface {
	Acked() pglogrepl.LSN
	Idle(walEnd pglogrepl.LSN)
}

// Config says which slot to read and how often to report.
type Config struct {
	DSN         string        // any DSN; replication=database is added
	Server      string        // host:port to pin it to (see Target); empty: any of the DSN's hosts
	Slot        string        // an existing pgoutput slot
	Publication string        // publication_names for pgoutput
	StartLSN    pglogrepl.LSN // 0: the slot's confirmed position
	// StatusInterval is the most time between two standby status updates
	// (default 10 s); an advanced position is reported within ReportDelay.
	StatusInterval time.Duration
	// Linger is how long the reader lets messages gather after it had to
	// wait for one: a stream of small transactions is then read a few at a
	// time, at one wake-up each, instead of one wake-up per message, at the
	// price of up to Linger of latency. 0 reads each message as it arrives.
	// A backlog never waits: the reader lingers only once it caught up.
	Linger time.Duration
}

// waited is how long a receive must take to count as a wait for the
// server: a message already in the socket is read in microseconds.
const waited = 250 * time.Microsecond

// ReportDelay is how soon an advanced position reaches the server. The
// slot's confirmed position is what a restart replays from and what holds
// WAL back, so it should trail Kafka by little; a status update is a few
// dozen bytes, so ten a second cost the server nothing.
const ReportDelay = 100 * time.Millisecond

// Reader streams one slot. It is not safe for concurrent use: one goroutine
// owns it, calls Next, and calls SendStatusIfDue while it blocks elsewhere.
type Reader struct {
	cfg      Config
	conn     *pgconn.PgConn
	acker    Acker
	system   pglogrepl.IdentifySystemResult
	options  []string // the pgoutput options asked for
	types    *pgtype.Map
	rels     map[uint32]*Relation
	received pglogrepl.LSN // end of the last WAL data received
	walEnd   pglogrepl.LSN // the server's WAL end, as last reported by it
	// keepaliveEnd is the WAL end of the last keepalive: the walsender has
	// sent everything before it.
	keepaliveEnd pglogrepl.LSN
	sent         pglogrepl.LSN // flush position last reported
	lastSent     time.Time
	updates      uint64    // standby status updates sent
	deadline     time.Time // current read deadline on the connection
	wait         time.Duration
	// lingerUntil is when the reader reads again after a receive that had
	// to wait for the server: the end of that wait plus Linger.
	lingerUntil time.Time
	// serverTimeout is the server's wal_sender_timeout (0: none): silent
	// that long, this connection is dropped by the server.
	serverTimeout time.Duration
	txn           txnState
}

type txnState struct {
	commitLSN  pglogrepl.LSN
	commitTime time.Time
	xid        uint32
}

// Errors that need an operator or another process; the streamer tells them
// apart from connection trouble, which it retries.
var (
	ErrSlotActive  = errors.New("replication slot is active for another process")
	ErrSlotMissing = errors.New("replication slot does not exist")
	ErrSlotLost    = errors.New("replication slot was invalidated (WAL it needed was removed, or it sat idle past idle_replication_slot_timeout)")
	// ErrSlotUnusable is SQLSTATE 55000 from START_REPLICATION: the slot
	// cannot be read, for instance because it was invalidated. The caller
	// tells which from the slot's wal_status, never from the message text,
	// which a server may localize.
	ErrSlotUnusable = errors.New("replication slot cannot be read")
	// ErrPublicationGone is pgoutput failing to find the publication while
	// decoding: it was dropped, and the WAL since cannot be decoded.
	ErrPublicationGone = errors.New("the publication was dropped while the slot still had WAL to decode")
)

// Open connects and starts streaming from cfg.StartLSN.
func Open(ctx context.Context, cfg Config, acker Acker) (*Reader, error) {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 10 * time.Second
	}
	// pgoutput writes values with the walsender's output settings: a
	// database or role default such as DateStyle=SQL would make every
	// timestamp undecodable. The startup packet overrides those defaults.
	conn, err := Target{DSN: cfg.DSN, Server: cfg.Server}.connectReplication(ctx, "userstream-streamer", "DateStyle", "ISO", "IntervalStyle", "postgres")
	if err != nil {
		return nil, err
	}
	r := &Reader{cfg: cfg, conn: conn, acker: acker, types: pgtype.NewMap(), rels: map[uint32]*Relation{}, wait: time.Second}
	if r.system, err = pglogrepl.IdentifySystem(ctx, conn); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("identify system: %w", err)
	}
	if err := r.fitStatusInterval(ctx); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	r.options = startOptions(cfg.Publication, ServerMajor(conn))
	err = pglogrepl.StartReplication(ctx, conn, cfg.Slot, cfg.StartLSN, pglogrepl.StartReplicationOptions{PluginArgs: r.options})
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("start replication of slot %s at %s: %w", cfg.Slot, cfg.StartLSN, classify(err))
	}
	r.received = cfg.StartLSN
	r.lastSent = time.Now()
	return r, nil
}

// SystemID is the cluster's system identifier, stable across restarts.
func (r *Reader) SystemID() string { return r.system.SystemID }

// Options are the pgoutput options the stream was started with.
func (r *Reader) Options() []string { return r.options }

// Timeline is the server's timeline as of the connection: it changes when a
// standby is promoted or a point-in-time recovery ends.
func (r *Reader) Timeline() int32 { return r.system.Timeline }

// Database is the database the slot belongs to.
func (r *Reader) Database() string { return r.system.DBName }

// Received is the end of the last WAL data received.
func (r *Reader) Received() pglogrepl.LSN { return r.received }

// ServerWALEnd is the server's WAL end as of its last message.
func (r *Reader) ServerWALEnd() pglogrepl.LSN { return max(r.walEnd, r.received) }

// Next returns the next Begin, Relation, Change or Commit, or nil when
// nothing arrived before a status update fell due (call it again). The
// values it returns are valid until the next call: a Change's data aliases
// the connection's buffer.
func (r *Reader) Next(ctx context.Context) (any, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// One clock read serves the checks before the receive.
		now := time.Now()
		if err := r.stale(now); err != nil {
			return nil, err
		}
		if err := r.sendStatusIfDue(ctx, now); err != nil {
			return nil, err
		}
		// A raw read deadline instead of a context: pgconn starts a watcher per
		// call for a cancellable context, and a timeout leaves the connection
		// usable. It is moved only when close, not once per message.
		wait := r.wait
		if max(r.received, r.keepaliveEnd) > r.sent {
			// Something received is not acknowledged yet: a caught-up stream
			// would otherwise sit in this read while the last deliveries move
			// the acknowledged position.
			wait = min(wait, ReportDelay)
		}
		if r.deadline.Sub(now) < wait/2 || r.deadline.Sub(now) > wait {
			r.deadline = now.Add(wait)
			_ = r.conn.Conn().SetReadDeadline(r.deadline)
		}
		if !r.lingerUntil.IsZero() {
			err := r.linger(ctx, now)
			r.lingerUntil = time.Time{}
			if err != nil {
				return nil, err
			}
		}
		began := time.Now() // after any linger: only the receive's own wait counts
		msg, err := r.conn.ReceiveMessage(context.Background())
		if err == nil {
			if err := r.afterReceive(began); err != nil {
				return nil, err
			}
		}
		if err != nil {
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				r.deadline = time.Time{}
				return nil, nil
			}
			return nil, fmt.Errorf("receive: %w", classify(err))
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			v, keepalive, err := r.handleCopyData(ctx, msg.Data)
			// After a keepalive the caller gets nil: a stream of keepalives
			// must not keep it from checking its own state.
			if err != nil || v != nil || keepalive {
				return v, err
			}
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(msg)
			if pgErr.Code == "42704" {
				// undefined_object while streaming: the slot is ours, so it is
				// the publication, which pgoutput looks up as it decodes.
				return nil, fmt.Errorf("replication stream: %w: %w", ErrPublicationGone, pgErr)
			}
			return nil, fmt.Errorf("replication stream: %w", classify(pgErr))
		default:
			return nil, fmt.Errorf("replication stream: unexpected message %T", msg)
		}
	}
}

// ErrStale is a connection the reader did not speak on for longer than the
// server's wal_sender_timeout: the process was frozen (SIGSTOP, a paused
// VM) or starved. The server has dropped it, and another process may be
// streaming the slot already: what is still buffered here must not be
// handed out, or it would reach Kafka twice.
var ErrStale = errors.New("the replication connection went silent past wal_sender_timeout")

// stale is ErrStale once nothing was sent to the server for longer than its
// wal_sender_timeout; the reader sends at least every StatusInterval (a
// quarter of it) while it runs.
func (r *Reader) stale(now time.Time) error {
	if silent := now.Sub(r.lastSent); r.serverTimeout > 0 && silent > r.serverTimeout {
		return fmt.Errorf("%w: nothing sent for %s (the server's timeout is %s); nothing more is read from it", ErrStale, silent.Round(time.Millisecond), r.serverTimeout)
	}
	return nil
}

// afterReceive checks a message received since began before it is handed
// out: nothing comes from a stale connection, and a receive that had to wait
// for the server starts a linger.
func (r *Reader) afterReceive(began time.Time) error {
	end := time.Now()
	if err := r.stale(end); err != nil {
		return err
	}
	if r.cfg.Linger > 0 && end.Sub(began) > waited {
		r.lingerUntil = end.Add(r.cfg.Linger)
	}
	return nil
}

// linger sleeps until lingerUntil, so that what the server sent meanwhile
// is read in one go; the time the caller spent since counts. It never
// sleeps past the read deadline (the caller's next task, a status update
// falling due) nor past the status interval.
func (r *Reader) linger(ctx context.Context, now time.Time) error {
	d := min(r.lingerUntil.Sub(now), r.deadline.Sub(now), r.cfg.StatusInterval-now.Sub(r.lastSent))
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *Reader) handleCopyData(ctx context.Context, data []byte) (any, bool, error) {
	if len(data) == 0 {
		return nil, false, nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return nil, true, fmt.Errorf("parse keepalive: %w", err)
		}
		r.walEnd = max(r.walEnd, ka.ServerWALEnd)
		// A keepalive's WAL end is where the walsender has sent up to: like
		// pg_recvlogical, count it as written, or the walsender keeps pinging
		// for a write position that never reaches it.
		r.keepaliveEnd = max(r.keepaliveEnd, ka.ServerWALEnd)
		r.acker.Idle(ka.ServerWALEnd)
		// Answered only when the walsender asks. It sends an unasked one
		// each time it waits for WAL while the positions we reported trail
		// what it sent: at a steady load, after every transaction. Answering
		// each cost both sides a write and a wake-up per transaction; the
		// position reaches the server within ReportDelay anyway, and before
		// wal_sender_timeout the walsender asks.
		if ka.ReplyRequested {
			return nil, true, r.SendStatus(ctx)
		}
		return nil, true, nil
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return nil, false, fmt.Errorf("parse XLogData: %w", err)
		}
		// WALStart is the WAL position of the record; the length of the
		// pgoutput message says nothing about WAL, so it is not added.
		if xld.WALStart > r.received {
			r.received = xld.WALStart
		}
		r.walEnd = max(r.walEnd, xld.ServerWALEnd)
		v, err := r.decode(xld)
		return v, false, err
	}
	return nil, false, nil
}

// SendStatusIfDue sends a standby status update when the acknowledged
// position advanced and ReportDelay has passed, or when StatusInterval has.
func (r *Reader) SendStatusIfDue(ctx context.Context) error {
	now := time.Now()
	// A write to a connection the server dropped still succeeds locally:
	// it must not make a stale connection look alive to the next Next.
	if err := r.stale(now); err != nil {
		return err
	}
	return r.sendStatusIfDue(ctx, now)
}

func (r *Reader) sendStatusIfDue(ctx context.Context, now time.Time) error {
	since := now.Sub(r.lastSent)
	if since >= r.cfg.StatusInterval || (since >= ReportDelay && r.acker.Acked() != r.sent) {
		return r.SendStatus(ctx)
	}
	return nil
}

// SendStatus reports the acknowledged position as flushed and applied, and
// what was received as written. ctx's deadline bounds the write: pgconn
// does not apply it to a CopyData on its own.
func (r *Reader) SendStatus(ctx context.Context) error {
	acked := r.acker.Acked()
	written := max(r.received, r.keepaliveEnd, acked)
	if d, ok := ctx.Deadline(); ok {
		_ = r.conn.Conn().SetWriteDeadline(d)
		defer r.conn.Conn().SetWriteDeadline(time.Time{}) //nolint:errcheck // clearing a deadline
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: written,
		WALFlushPosition: acked,
		WALApplyPosition: acked,
		ClientTime:       time.Now(),
	})
	if err != nil {
		return fmt.Errorf("send standby status at %s: %w", acked, err)
	}
	r.sent, r.lastSent = acked, time.Now()
	r.updates++
	return nil
}

// StatusUpdates is how many standby status updates the reader has sent.
func (r *Reader) StatusUpdates() uint64 { return r.updates }

// Close ends the stream; the slot keeps its confirmed position.
func (r *Reader) Close(ctx context.Context) error { return r.conn.Close(ctx) }

// classify maps server errors that need an operator to the sentinels.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch {
	case pgErr.Code == "55006":
		return fmt.Errorf("%w: %w", ErrSlotActive, err)
	case pgErr.Code == "42704":
		return fmt.Errorf("%w: %w", ErrSlotMissing, err)
	case pgErr.Code == "55000":
		return fmt.Errorf("%w: %w", ErrSlotUnusable, err)
	}
	return err
}

// fitStatusInterval keeps status updates well inside the server's
// wal_sender_timeout, which ends a connection that stays silent for that
// long: during Kafka backpressure the reader sends nothing but these.
func (r *Reader) fitStatusInterval(ctx context.Context) error {
	res, err := r.conn.Exec(ctx, "SHOW wal_sender_timeout").ReadAll()
	if err != nil {
		return fmt.Errorf("read wal_sender_timeout: %w", err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 || len(res[0].Rows[0]) == 0 {
		return errors.New("read wal_sender_timeout: no value")
	}
	timeout, err := ParseSetting(string(res[0].Rows[0][0]))
	if err != nil {
		return fmt.Errorf("wal_sender_timeout: %w", err)
	}
	r.serverTimeout = timeout
	if timeout > 0 {
		r.cfg.StatusInterval = min(r.cfg.StatusInterval, max(timeout/4, 100*time.Millisecond))
	}
	return nil
}

// SetMaxWait sets how long Next waits for a message before it returns nil
// (default a second): a caller with something due sooner shortens it.
func (r *Reader) SetMaxWait(d time.Duration) { r.wait = min(max(d, time.Millisecond), time.Second) }

// StatusInterval is the most time between two status updates, after
// fitting it to the server's wal_sender_timeout.
func (r *Reader) StatusInterval() time.Duration { return r.cfg.StatusInterval }

// ParseSetting reads a PostgreSQL time setting as SHOW prints it (500ms, 60s,
// 1min, 2h, 1d, or a bare number of milliseconds).
func ParseSetting(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(c rune) bool { return c < '0' || c > '9' })
	if i == 0 {
		return 0, fmt.Errorf("%q is not a duration", v)
	}
	num, unit := v, "ms"
	if i > 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", v)
	}
	units := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit", v)
	}
	return time.Duration(n) * u, nil
}
