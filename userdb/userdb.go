// Package userdb stores users in PostgreSQL: one plain INSERT in one
// transaction per user, and nothing else. Driver errors are translated into
// this package's sentinel errors at the boundary.
package userdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	// ErrUsernameTaken means another user already has the username.
	ErrUsernameTaken = errors.New("username taken")
	// ErrNotFound means no user has the id.
	ErrNotFound = errors.New("user not found")
	// ErrUnavailable means PostgreSQL could not be reached or is shutting
	// down: the same request may succeed later.
	ErrUnavailable = errors.New("database unavailable")
)

// NewUser is what a client may set.
type NewUser struct {
	Username    string
	CountryCode string
	CreatedAt   time.Time // UTC
	IsADog      bool
}

// User is a stored user.
type User struct {
	ID          int64     `json:"id"`
	Username    string    `json:"username"`
	CountryCode string    `json:"country_code"`
	CreatedAt   time.Time `json:"created_at"`
	IsADog      bool      `json:"is_a_dog"`
	APIVersion  string    `json:"api_version"`
}

// Store reads and writes users through a pgx pool.
type Store struct {
	pool       *pgxpool.Pool
	apiVersion string
}

// New returns a store that stamps every new row with apiVersion.
func New(pool *pgxpool.Pool, apiVersion string) *Store {
	return &Store{pool: pool, apiVersion: apiVersion}
}

// Create inserts the user in a single statement (its own transaction).
func (s *Store) Create(ctx context.Context, u NewUser) (User, error) {
	row := s.pool.QueryRow(ctx, `INSERT INTO users (username, country_code, created_at, is_a_dog, api_version)
		VALUES ($1, $2, $3, $4, $5)
		RETURNING id, username, country_code, created_at, is_a_dog, api_version`,
		u.Username, u.CountryCode, u.CreatedAt, u.IsADog, s.apiVersion)
	got, err := scanUser(row)
	if err != nil {
		return User{}, fmt.Errorf("insert user: %w", translate(err))
	}
	return got, nil
}

// Get returns the user with the id.
func (s *Store) Get(ctx context.Context, id int64) (User, error) {
	row := s.pool.QueryRow(ctx, `SELECT id, username, country_code, created_at, is_a_dog, api_version
		FROM users WHERE id = $1`, id)
	got, err := scanUser(row)
	if err != nil {
		return User{}, fmt.Errorf("get user %d: %w", id, translate(err))
	}
	return got, nil
}

// CheckAPIVersion makes sure the version the store stamps on every row fits
// the users.api_version column, so a long build version stops the program at
// start-up with a clear error instead of failing every insert. It reads the
// column's real width rather than trusting a constant.
func (s *Store) CheckAPIVersion(ctx context.Context) error {
	// For varchar(n) atttypmod is n+4; -1 means no limit.
	var width int
	err := s.pool.QueryRow(ctx, `SELECT CASE WHEN atttypmod > 4 THEN atttypmod - 4 ELSE 0 END
		FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'api_version' AND NOT attisdropped`).Scan(&width)
	if err != nil {
		return fmt.Errorf("read the width of users.api_version: %w", translate(err))
	}
	if n := utf8.RuneCountInString(s.apiVersion); width > 0 && n > width {
		return fmt.Errorf("the build version %q has %d characters, but users.api_version holds at most %d: build with a shorter VERSION", s.apiVersion, n, width)
	}
	if s.apiVersion == "" {
		return errors.New("the build version is empty: users.api_version is NOT NULL and every row must name the API version that wrote it")
	}
	return nil
}

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", translate(err))
	}
	return nil
}

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Username, &u.CountryCode, &u.CreatedAt, &u.IsADog, &u.APIVersion)
	u.CreatedAt = u.CreatedAt.UTC()
	return u, err
}

// translate maps driver errors to the package's sentinels, keeping the
// original in the chain for the logs.
func translate(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505" && pgErr.ConstraintName == "users_username_key":
			return ErrUsernameTaken
		case pgErr.Code[:2] == "08", // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutting down, crash, cannot connect now
			pgErr.Code == "53300": // too many connections
			return fmt.Errorf("%w: %s", ErrUnavailable, pgErr.Code)
		}
		return err
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connectErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}
