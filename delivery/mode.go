package delivery

import (
	"time"

	"github.com/userstream/userstream/kafkaclient"
)

// Mode is how records reach Kafka and when the source transactions they
// come from may be acknowledged.
type Mode string

// The delivery modes.
const (
	// AtLeastOnce acknowledges a transaction once Kafka acknowledged each of
	// its records: after a crash some are sent again, with the same ce_id.
	AtLeastOnce Mode = "at-least-once"
	// ExactlyOnce writes records in Kafka transactions, each with a progress
	// record; a read_committed consumer sees every record once.
	ExactlyOnce Mode = "exactly-once"
)

// Producer is the configuration of a stream's producer in mode m; name
// (the slot) names its transactional id. Exactly-once makes it
// transactional, as "userstream-<name>": shared by the active streamer and
// its standbys, so a takeover fences the old one. It then lingers as long as
// a transaction lasts, unless k says otherwise: a transaction's records are
// readable only once it commits, and the commit sends what is queued, so at
// a steady load each partition's records go once per transaction.
// At-least-once is never transactional.
func (m Mode) Producer(k kafkaclient.Config, name string, transactionInterval time.Duration) kafkaclient.Config {
	if m != ExactlyOnce {
		k.TransactionalID = ""
		return k
	}
	k.TransactionalID = "userstream-" + name
	if k.Linger == 0 {
		k.Linger = transactionInterval
	}
	return k
}
