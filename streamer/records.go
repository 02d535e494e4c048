package streamer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/userstream/userstream/kafkaclient"
)

// The slot's records on the progress topic (a small compacted topic, read
// with read_committed), each under its own key, all defined here:
//
//	<slot>                      exactly-once progress (package delivery)
//	snapshot/<slot>             the initial snapshot's boundary and cursor
//	publication/<slot>          the publication's fingerprint last seen
//	timeline/<slot>             the newest timeline streamed from
//	backfill/<slot>/<what>      a backfill's cursor: an id range or "missing"

func (s *Streamer) progressKey() []byte    { return []byte(s.cfg.Slot) }
func (s *Streamer) snapshotKey() []byte    { return []byte("snapshot/" + s.cfg.Slot) }
func (s *Streamer) fingerprintKey() []byte { return []byte("publication/" + s.cfg.Slot) }
func (s *Streamer) timelineKey() []byte    { return []byte("timeline/" + s.cfg.Slot) }

// backfillKey names a backfill's record by what was asked: an id range (0
// as the end: up to the largest id when it started), or missing.
func (s *Streamer) backfillKey(r BackfillRange) string {
	what := fmt.Sprintf("%d-%d", r.AfterID, r.UpToID)
	if r.Missing {
		what = "missing"
	}
	return "backfill/" + s.cfg.Slot + "/" + what
}

// slotRecords is the last value under every key of the progress topic, as
// one read found them.
type slotRecords map[string][]byte

func (r slotRecords) snapshot(s *Streamer) []byte    { return r[string(s.snapshotKey())] }
func (r slotRecords) fingerprint(s *Streamer) []byte { return r[string(s.fingerprintKey())] }
func (r slotRecords) timeline(s *Streamer) []byte    { return r[string(s.timelineKey())] }

// readSlotRecords reads the whole progress topic once.
func (s *Streamer) readSlotRecords(ctx context.Context) (slotRecords, error) {
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	records, err := kafkaclient.LastValues(kctx, s.cfg.Kafka.Properties, s.cfg.Kafka.ProgressTopic)
	if err != nil {
		return nil, retryable(fmt.Errorf("read the progress topic: %w", err))
	}
	return records, nil
}

// readRecord reads the last value under key; nil when there is none.
func (s *Streamer) readRecord(ctx context.Context, key []byte) ([]byte, error) {
	return kafkaclient.LastValue(ctx, s.cfg.Kafka.Properties, s.cfg.Kafka.ProgressTopic, key)
}

// writeRecord writes one of the slot's records (the publication's
// fingerprint, the history it streamed from) to the progress topic, outside
// the stream's transactions, and waits until Kafka has it.
func (s *Streamer) writeRecord(ctx context.Context, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sink, err := s.newSink(s.plainKafka())
	if err != nil {
		return err
	}
	defer sink.Close()
	if err := sink.EnsureTopic(ctx); err != nil {
		return err
	}
	return sink.WriteProgress(ctx, key, b)
}
