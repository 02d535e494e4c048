package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/userstream/userstream/userdb"
)

// Code classifies every error the API answers with; statusOf is the one place
// that maps a code to an HTTP status.
type Code string

// The error codes, also the last segment of a problem's type URI.
const (
	CodeInvalid          Code = "invalid-request"
	CodeConflict         Code = "username-taken"
	CodeNotFound         Code = "not-found"
	CodeMethodNotAllowed Code = "method-not-allowed"
	CodeUnsupportedMedia Code = "unsupported-media-type"
	CodeTooLarge         Code = "body-too-large"
	CodeUnavailable      Code = "unavailable"
	CodeInternal         Code = "internal"
)

// Error is the API's domain error. Its Detail and Params are shown to the
// client, so they never hold internals.
type Error struct {
	Code   Code
	Detail string
	Params []InvalidParam
}

// InvalidParam names one bad field of a request and why it is bad.
type InvalidParam struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Detail }

func statusOf(c Code) int {
	switch c {
	case CodeInvalid:
		return http.StatusBadRequest
	case CodeConflict:
		return http.StatusConflict
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// problem is an RFC 9457 problem details body.
type problem struct {
	Type          string         `json:"type"`
	Title         string         `json:"title"`
	Status        int            `json:"status"`
	Detail        string         `json:"detail,omitempty"`
	Instance      string         `json:"instance,omitempty"`
	RequestID     string         `json:"request_id,omitempty"`
	InvalidParams []InvalidParam `json:"invalid_params,omitempty"`
}

// asError turns any error into the domain error the client sees; internal is
// true when the cause is ours, not the client's, and must be logged.
func asError(err error) (e *Error, internal bool) {
	switch {
	case errors.As(err, &e):
		return e, e.Code == CodeInternal
	case errors.Is(err, userdb.ErrUsernameTaken):
		return &Error{Code: CodeConflict, Detail: "the username is taken"}, false
	case errors.Is(err, userdb.ErrNotFound):
		return &Error{Code: CodeNotFound, Detail: "no user has this id"}, false
	case errors.Is(err, userdb.ErrUnavailable):
		return &Error{Code: CodeUnavailable, Detail: "the database is unavailable; retry later"}, true
	default:
		return &Error{Code: CodeInternal, Detail: "internal error"}, true
	}
}

// errClientGone marks a request whose client went away before it was
// answered: the client's doing, not a failure of ours.
var errClientGone = errors.New("client disconnected")

// statusClientGone labels such requests in the metrics and the access log
// (nginx's 499); it is never sent, since nobody is left to read it.
const statusClientGone = 499

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	// A cancelled request context means the client disconnected (the server
	// sets no other cancellation): whatever failed after that is no error of
	// ours, and there is nobody to answer.
	if errors.Is(err, errClientGone) || r.Context().Err() != nil {
		reqInfo(r).clientGone = true
		return
	}
	e, internal := asError(err)
	status := statusOf(e.Code)
	if internal {
		// The error text comes from our code and the driver, never from the
		// request body: safe to log.
		reqInfo(r).err = err
	}
	if e.Code == CodeUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{
		Type:          "urn:userstream:problem:" + string(e.Code),
		Title:         http.StatusText(status),
		Status:        status,
		Detail:        e.Detail,
		Instance:      r.URL.Path,
		RequestID:     w.Header().Get(requestIDHeader),
		InvalidParams: e.Params,
	})
}
