package ctlserver

import "meshd/ctl/ctlserver/httpd"

// Error is an error with the HTTP status it should be answered with. A
// Backend wraps its errors with NotFound, BadRequest, Conflict or
// Unavailable; any other error reaching the server is answered with 500.
// The message of Err goes to the client verbatim, so it should say what
// to do next, e.g. `room "general" is not known: run "meshctl rooms" to
// see the rooms on this network`.
type Error struct {
	Code int // HTTP status code
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// NotFound marks err as 404: the room (or member) named does not exist.
func NotFound(err error) error { return &Error{Code: httpd.StatusNotFound, Err: err} }

// BadRequest marks err as 400: the request can never succeed as written.
func BadRequest(err error) error { return &Error{Code: httpd.StatusBadRequest, Err: err} }

// Conflict marks err as 409: the request clashes with the current state,
// such as hosting a room already hosted or saying into a room not joined.
func Conflict(err error) error { return &Error{Code: httpd.StatusConflict, Err: err} }

// Unavailable marks err as 503: the daemon cannot serve the request right
// now (starting, shutting down, no link to the room's host); a retry later
// may succeed.
func Unavailable(err error) error { return &Error{Code: httpd.StatusServiceUnavailable, Err: err} }
