package streamer

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/userstream/userstream/replication"
)

// A publication change that is undone again (a row filter added and
// removed, the table dropped from the publication and added back) leaves
// the publication looking right, while pgoutput decoded the WAL in between
// without the table's rows. Such a change still rewrites the publication's
// catalog rows, so their fingerprint changes: the guard stops on a change
// while streaming, and the fingerprint last seen is kept on the progress
// topic so that a start after a change made while no streamer watched stops
// too. `streamer backfill --missing`, the recovery, records the new one.

type fingerprintRecord struct {
	Slot        string    `json:"slot"`
	Fingerprint string    `json:"fingerprint"`
	Recorded    time.Time `json:"recorded"`
}

func fingerprintOf(tables map[uint32]published) string {
	var parts []string
	for _, oid := range slices.Sorted(maps.Keys(tables)) {
		parts = append(parts, tables[oid].fingerprint)
	}
	return strings.Join(parts, "; ")
}

// checkFingerprint compares the publication with the fingerprint last
// recorded (b, the record on the progress topic), and records it when there
// is none yet or when fresh is true (the slot was just created, so nothing
// before it matters).
func (s *Streamer) checkFingerprint(ctx context.Context, tables map[uint32]published, fresh bool, b []byte) error {
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := fingerprintOf(tables)
	if b != nil && !fresh {
		var rec fingerprintRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return permanent(fmt.Errorf("publication record on %s: %w", s.cfg.Kafka.ProgressTopic, err))
		}
		if rec.Fingerprint == now {
			return nil
		}
		spec := s.publicationSpec(s.cfg.Projectors[0])
		return permanent(publicationChangedError(spec, rec.Fingerprint, now))
	}
	if err := s.recordFingerprint(kctx, now); err != nil {
		return retryable(err)
	}
	return nil
}

func (s *Streamer) recordFingerprint(ctx context.Context, fingerprint string) error {
	return s.writeRecord(ctx, s.fingerprintKey(), fingerprintRecord{Slot: s.cfg.Slot, Fingerprint: fingerprint, Recorded: time.Now().UTC()})
}

func publicationChangedError(spec replication.PublicationSpec, was, now string) error {
	return fmt.Errorf("publication %s or table %s changed (was %q, now %q): rows committed while the publication differed may NOT have been streamed, even if it looks right again, and replaying the slot cannot bring them back. Make sure it is as needed (%s), run `streamer backfill --missing` (it sends every user the topic lacks and records the publication as it is now), then start the streamer",
		spec.Name, spec.Table, was, now, spec.CreateSQL())
}
