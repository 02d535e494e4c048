package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/userstream/userstream/kafkaclient"
	"github.com/userstream/userstream/replication"
)

// A backfill is a job on the progress topic, like the initial snapshot:
// chunked by id, each chunk durable together with a cursor record, so that
// running the same backfill again after a crash resumes after its last
// durable chunk instead of starting over. In exactly-once mode chunk and
// cursor commit in one Kafka transaction of the backfill's own
// transactional id.

// job is a backfill's record on the progress topic.
type job struct {
	key     string
	State   string    `json:"state"` // running or complete
	AfterID int64     `json:"after_id"`
	UpToID  int64     `json:"up_to_id"`
	Total   int64     `json:"total"`
	Done    int64     `json:"done"`
	Started time.Time `json:"started,omitzero"`
}

// startJob resumes a backfill of the same id range when a run of it did
// not complete, or starts a new one. A --missing backfill never resumes:
// its boundary belongs to the incident it ran for, and a later incident's
// missing users lie past it. Starting over costs nothing twice, as the
// keys it reads show what the interrupted run sent.
func (r *run) startJob(ctx context.Context, rg Range) (job, error) {
	j := job{key: r.cfg.Key}
	b, err := kafkaclient.LastValue(ctx, r.cfg.Kafka.Properties, r.cfg.Kafka.ProgressTopic, []byte(j.key))
	if err != nil {
		return j, fmt.Errorf("read the backfill's record: %w", err)
	}
	log := r.cfg.Log
	if b != nil {
		if err := json.Unmarshal(b, &j); err != nil {
			return j, fmt.Errorf("backfill record %s: %w", j.key, err)
		}
		switch {
		case j.State == "running" && rg.Missing:
			log.Info().Str("job", j.key).Int64("interrupted_up_to_id", j.UpToID).Time("interrupted_started", j.Started).
				Msg("backfill: an earlier --missing run was interrupted; not resuming it, as its boundary may predate this incident: starting over up to the largest id now, skipping every user the topic already holds")
		case j.State == "running":
			if rg.UpToID == 0 {
				// Asked for every user: the largest id is now's, not the
				// interrupted run's.
				if err := r.extendJob(ctx, &j, true); err != nil {
					return j, err
				}
			}
			log.Info().Str("job", j.key).Int64("after_id", j.AfterID).Int64("up_to_id", j.UpToID).Int64("done", j.Done).Time("started", j.Started).
				Msg("backfill: resuming after the last durable chunk")
			return j, nil
		}
	}
	j = job{key: j.key, State: "running", AfterID: rg.AfterID, UpToID: rg.UpToID, Started: time.Now().UTC()}
	if err := r.extendJob(ctx, &j, rg.UpToID == 0); err != nil {
		return j, err
	}
	log.Info().Str("job", j.key).Int64("after_id", j.AfterID).Int64("up_to_id", j.UpToID).Int64("rows", j.Total).Msg("backfill: starting")
	return j, nil
}

// extendJob moves a job's end to the largest id now when toLargest (it was
// asked for every user), and counts what is left of it.
func (r *run) extendJob(ctx context.Context, j *job, toLargest bool) error {
	ns, name := r.cfg.Projector.Table()
	table := replication.QuoteTable(ns + "." + name)
	var largest int64
	if err := r.conn.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM "+table).Scan(&largest); err != nil {
		return fmt.Errorf("find the last user: %w", err)
	}
	if toLargest {
		j.UpToID = max(j.UpToID, largest)
	}
	var left int64
	if err := r.conn.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id > $1 AND id <= $2", j.AfterID, j.UpToID).Scan(&left); err != nil {
		return fmt.Errorf("count the users to backfill: %w", err)
	}
	j.Total = j.Done + left
	return nil
}
