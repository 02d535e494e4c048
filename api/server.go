// Package api serves the users API over HTTP: POST /users writes one row in
// one plain INSERT, and nothing else. Bad input always gets a 4xx problem
// body and never reaches the database; logs never carry request bodies or
// personal data.
package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/userstream/userstream/internal/probe"
	"github.com/userstream/userstream/userdb"
)

// userStore is what the API needs of the database.
type userStore interface {
	Create(ctx context.Context, u userdb.NewUser) (userdb.User, error)
	Get(ctx context.Context, id int64) (userdb.User, error)
	Ping(ctx context.Context) error
}

var _ userStore = (*userdb.Store)(nil)

// Config holds the server's settings; zero values take the defaults.
type Config struct {
	Addr            string        // default ":5000"
	ShutdownTimeout time.Duration // how long in-flight requests may finish; default 10 s
	DBTimeout       time.Duration // bound on one request's database work; default 5 s
}

// Server is the users API.
type Server struct {
	cfg     Config
	users   userStore
	log     zerolog.Logger
	ln      net.Listener
	srv     *http.Server
	metrics *metrics
}

// NewServer returns a server that is not yet listening. reg receives the
// API's metrics, which /metrics serves.
func NewServer(cfg Config, users userStore, log zerolog.Logger, reg *prometheus.Registry) *Server {
	if cfg.Addr == "" {
		cfg.Addr = ":5000"
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.DBTimeout == 0 {
		cfg.DBTimeout = 5 * time.Second
	}
	s := &Server{cfg: cfg, users: users, log: log, metrics: newMetrics(reg)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /users", s.handleCreateUser)
	mux.HandleFunc("GET /users/{id}", s.handleGetUser)
	mux.HandleFunc("/users", s.methodNotAllowed("POST"))
	mux.HandleFunc("/users/{id}", s.methodNotAllowed("GET, HEAD"))
	probe.Register(mux, reg) // GET /healthz and GET /metrics
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.HandleFunc("GET /openapi.yaml", handleOpenAPI)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &Error{Code: CodeNotFound, Detail: "no such route"})
	})
	s.srv = &http.Server{
		Handler:           s.instrument(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	return s
}

// Open binds the listening address, so a port in use is reported at once.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler is the server's HTTP handler, with its middleware.
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Serve answers requests until ctx is cancelled, then stops accepting and
// lets in-flight requests finish within the shutdown timeout.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

func (s *Server) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		s.writeError(w, r, &Error{Code: CodeMethodNotAllowed, Detail: "use " + allow})
	}
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.users.Ping(ctx); err != nil {
		w.Header().Set("Retry-After", "1")
		probe.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "database": "unreachable"})
		return
	}
	probe.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready", "database": "ok"})
}
