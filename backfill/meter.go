package backfill

import (
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// progressMeter reports rows done of total, the rate and the ETA: as a line
// redrawn in place on a terminal, as a log line every 5 s otherwise.
type progressMeter struct {
	log      zerolog.Logger
	what     string
	total    int64
	from     int64
	started  time.Time
	last     time.Time
	terminal bool
}

// newProgressMeter starts a meter at done of total rows; live allows the
// redrawn line when stderr is a terminal (a command, not the streamer,
// whose stderr carries its JSON log).
func newProgressMeter(log zerolog.Logger, what string, total, done int64, live bool) *progressMeter {
	fi, err := os.Stderr.Stat()
	return &progressMeter{log: log, what: what, total: total, from: done, started: time.Now(),
		terminal: live && err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

func (m *progressMeter) update(done int64) {
	every := 5 * time.Second
	if m.terminal {
		every = 200 * time.Millisecond
	}
	if time.Since(m.last) < every {
		return
	}
	m.last = time.Now()
	rate := float64(done-m.from) / time.Since(m.started).Seconds()
	var eta time.Duration
	if rate > 0 && m.total > done {
		eta = time.Duration(float64(m.total-done) / rate * float64(time.Second)).Round(time.Second)
	}
	if m.terminal {
		fmt.Fprintf(os.Stderr, "\r%s: %d of %d rows (%.0f%%), %.0f rows/s, ETA %s   ", m.what, done, m.total, 100*float64(done)/float64(max(m.total, 1)), rate, eta)
		return
	}
	m.log.Info().Int64("done", done).Int64("total", m.total).Float64("rows_per_second", rate).Dur("eta", eta).Msg(m.what + " progress")
}

func (m *progressMeter) done(done int64) {
	if m.terminal {
		fmt.Fprintln(os.Stderr)
	}
	m.log.Info().Int64("done", done).Dur("took", time.Since(m.started).Round(time.Millisecond)).Msg(m.what + " complete")
}
