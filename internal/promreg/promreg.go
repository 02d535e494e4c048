// Package promreg makes the Prometheus registry both programs serve: the Go
// runtime and process series, to which each program adds its own. Tests use
// it to know exactly which series the programs export.
package promreg

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// New returns a registry holding the Go runtime and process collectors.
func New() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
