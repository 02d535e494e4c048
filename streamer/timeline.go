package streamer

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/userstream/userstream/internal/pgdsn"
	"github.com/userstream/userstream/replication"
)

// A failover moves the primary to a standby, which takes the next timeline;
// with a failover slot the new primary holds the slot, and the streamer
// goes on from it. The old primary, if it comes back writable (a split
// brain), is still on the old timeline: what it holds past the failover
// point is not the cluster's history, and streaming it would send users the
// cluster no longer has and confirm a slot no one should use. So the
// streamer keeps, on the progress topic, the newest timeline of the cluster
// it streamed from, and refuses an older one of the same cluster.

type timelineRecord struct {
	Slot     string    `json:"slot"`
	SystemID string    `json:"system_id"`
	Timeline int32     `json:"timeline"`
	Recorded time.Time `json:"recorded"`
}

// checkTimeline compares the server a session streams from (its system
// identifier and timeline) with the newest timeline recorded (b, the record
// on the progress topic, nil when none). It refuses an older timeline of the
// same cluster, and says whether this one is to be recorded: it is newer,
// of another cluster, or the first.
func (s *Streamer) checkTimeline(target replication.Target, systemID string, timeline int32, b []byte) (bool, error) {
	var rec timelineRecord
	if b != nil {
		if err := json.Unmarshal(b, &rec); err != nil {
			return false, permanent(fmt.Errorf("timeline record on %s: %w", s.cfg.Kafka.ProgressTopic, err))
		}
	}
	switch {
	case b != nil && rec.SystemID == systemID && rec.Timeline == timeline:
		return false, nil
	case b != nil && rec.SystemID == systemID && timeline < rec.Timeline:
		return false, permanent(fmt.Errorf("the server at %s (of %s) is on timeline %d of cluster %s, but slot %s was already streamed from timeline %d: it is a former primary that came back writable after a failover (a split brain), or a restore of a copy older than the failover. What it holds past the failover point is not the cluster's history, so nothing is streamed from it. Point DATABASE_URL at the current primary (several hosts with target_session_attrs=read-write find it). If this server is the one you mean to stream from (you restored an older copy on purpose), run `streamer accept-timeline --yes` once with DATABASE_URL naming this server only, then follow docs/operations.md, Restoring the database",
			cmp.Or(target.Server, "its socket"), pgdsn.Describe(target.DSN), timeline, systemID, s.cfg.Slot, rec.Timeline))
	case b != nil && rec.SystemID == systemID:
		s.log.Warn().Int32("was", rec.Timeline).Int32("now", timeline).Str("slot", s.cfg.Slot).
			Msg("the server's timeline moved on (a failover, or a point-in-time recovery): streaming from the slot as this server holds it")
	}
	return true, nil
}

func (s *Streamer) recordTimeline(ctx context.Context, systemID string, timeline int32) error {
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := s.writeRecord(kctx, s.timelineKey(), timelineRecord{Slot: s.cfg.Slot, SystemID: systemID, Timeline: timeline, Recorded: time.Now().UTC()})
	if err != nil {
		return retryable(fmt.Errorf("record the timeline: %w", err))
	}
	return nil
}

// AcceptTimeline records the server's current timeline as the newest one
// the slot streams from: the way past a refusal after a server was restored
// from an older copy on purpose. DATABASE_URL must name that one server,
// and a timeline must have been recorded (the refusal happened). It
// returns what it recorded.
func (s *Streamer) AcceptTimeline(ctx context.Context) (string, int32, error) {
	if described := pgdsn.Describe(s.cfg.DatabaseURL); strings.Contains(described, ",") {
		return "", 0, fmt.Errorf("accept-timeline needs DATABASE_URL to name the one server to accept, not several (%s)", described)
	}
	b, err := s.readRecord(ctx, s.timelineKey())
	if err != nil {
		return "", 0, fmt.Errorf("read the timeline record: %w", err)
	}
	if b == nil {
		return "", 0, fmt.Errorf("no timeline is recorded for slot %s on %s: there is nothing to accept", s.cfg.Slot, s.cfg.Kafka.ProgressTopic)
	}
	id, err := replication.Identify(ctx, s.database())
	if err != nil {
		return "", 0, err
	}
	if err := s.recordTimeline(ctx, id.SystemID, id.Timeline); err != nil {
		return "", 0, err
	}
	return id.SystemID, id.Timeline, nil
}
