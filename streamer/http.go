package streamer

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userstream/userstream/internal/probe"
)

// Handler serves /healthz (the process is alive), /readyz and /metrics.
//
// /readyz answers 200 for an active streamer that reaches PostgreSQL and
// Kafka, and for a standby that reaches PostgreSQL (it is ready to take over:
// a standby held unready would stall every rolling update); 503 while
// starting, reconnecting or stopped. Each dependency reads "ok",
// "unreachable", "not_checked" (not tried yet), or for a standby's Kafka
// "not_used": a standby never connects to Kafka until it takes over.
func (s *Streamer) Handler(g prometheus.Gatherer) http.Handler {
	return probe.Handler(g, func() (bool, any) {
		r := s.readiness()
		return r.Ready, r
	})
}

// readiness is the /readyz body.
type readiness struct {
	Ready    bool   `json:"ready"`
	Role     string `json:"role"`
	Slot     string `json:"slot"`
	Postgres string `json:"postgres"`
	Kafka    string `json:"kafka"`
	Reason   string `json:"reason"`
}

func (s *Streamer) readiness() readiness {
	r := readiness{Role: s.Role(), Slot: s.cfg.Slot, Postgres: state(&s.postgresOK), Kafka: state(&s.kafkaOK)}
	switch r.Role {
	case "active":
		r.Ready = r.Postgres == "ok" && r.Kafka == "ok"
		r.Reason = "holds the slot and streams"
		if !r.Ready {
			r.Reason = "holds the slot but cannot reach PostgreSQL or Kafka"
		}
	case "standby":
		r.Kafka = "not_used"
		r.Ready = r.Postgres == "ok"
		r.Reason = "another process holds the slot; this one takes over when it is free"
		if !r.Ready {
			r.Reason = "standby that cannot reach PostgreSQL, so it could not take over"
		}
	case "starting":
		// A failed first try turns the role to reconnecting: while starting,
		// a dependency not known to be ok is one being tried for the first time.
		r.Reason = "checking the slot and the publication"
		if r.Postgres != "ok" {
			r.Postgres = "not_checked"
		}
		if r.Kafka != "ok" {
			r.Kafka = "not_checked"
		}
	case "reconnecting":
		r.Reason = "the last session failed; retrying with backoff (see the log)"
	case "stopped":
		r.Reason = "stopped: shutting down, or stopped on an error that needs an operator (see the log)"
		r.Postgres, r.Kafka = "not_checked", "not_checked"
	}
	return r
}

// reachability is whether a dependency answered when last tried, and whether
// it was tried at all: a plain bool would make "never tried" read as
// "unreachable".
type reachability struct{ tried, ok atomic.Bool }

// Store records the outcome of a try.
func (r *reachability) Store(ok bool) { r.ok.Store(ok); r.tried.Store(true) }

// Load reports whether the last try succeeded.
func (r *reachability) Load() bool { return r.ok.Load() }

// state names a dependency's reachability for /readyz. The streamer's
// postgresOK and kafkaOK fields tell "never tried" apart only once declared
// as reachability; as an atomic.Bool, false reads as unreachable.
func state(b interface{ Load() bool }) string {
	if r, ok := b.(*reachability); ok && !r.tried.Load() {
		return "not_checked"
	}
	if b.Load() {
		return "ok"
	}
	return "unreachable"
}
