package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/userstream/userstream/internal/probe"
)

func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.Is(err, io.ErrUnexpectedEOF) {
			// The connection closed before the body Content-Length promised.
			s.writeError(w, r, errClientGone)
			return
		}
		if errors.As(err, &tooLarge) {
			s.writeError(w, r, &Error{Code: CodeTooLarge, Detail: fmt.Sprintf("the body must be at most %d bytes", MaxBodyBytes)})
			return
		}
		s.writeError(w, r, &Error{Code: CodeInvalid, Detail: "the body could not be read"})
		return
	}
	nu, err := decodeNewUser(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.DBTimeout)
	defer cancel()
	u, err := s.users.Create(ctx, nu)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	reqInfo(r).userID = u.ID
	w.Header().Set("Location", "/users/"+strconv.FormatInt(u.ID, 10))
	probe.WriteJSON(w, http.StatusCreated, u)
}

func (s *Server) handleGetUser(w http.ResponseWriter, r *http.Request) {
	// users.id is a serial (int4): an id past its range names no user, and
	// sending it to PostgreSQL would fail as out of range, not as not found.
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 32)
	if err != nil || id < 1 {
		s.writeError(w, r, &Error{Code: CodeNotFound, Detail: "no user has this id"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.DBTimeout)
	defer cancel()
	u, err := s.users.Get(ctx, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	reqInfo(r).userID = u.ID
	probe.WriteJSON(w, http.StatusOK, u)
}
