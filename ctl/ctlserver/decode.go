package ctlserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"meshd/ctl/ctlserver/httpd"
)

// MaxBodyBytes caps a request body. The largest legitimate body is a say
// whose text the rooms layer limits far below this, so anything bigger is
// a mistake or an attack and is refused (413) from its Content-Length,
// before it is read.
const MaxBodyBytes = 64 << 10

// decodeBody reads the request body (capped by the server's limits) as
// exactly one JSON value into v, refusing unknown fields so that a
// misspelt field fails loudly instead of being ignored.
func decodeBody(r *httpd.Request, v any) error { return decodeJSON(r.Body, v) }

// decodeJSON is decodeBody without the HTTP plumbing, so it can be fuzzed.
// Its errors are *Error with a message that names the problem.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	// A second value (or trailing garbage) means the client built the body
	// wrongly; accepting the first value would hide that.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return bodyError(err)
		}
		return BadRequest(errors.New("request body holds more than one JSON value: send exactly one object"))
	}
	return nil
}

func bodyError(err error) error {
	var (
		syntax  *json.SyntaxError
		typ     *json.UnmarshalTypeError
		badBody = func(format string, a ...any) error {
			return BadRequest(fmt.Errorf(format, a...))
		}
	)
	switch {
	case errors.Is(err, io.EOF):
		return badBody("request body is empty: send a JSON object, see docs/API.md")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badBody("request body ends in the middle of a JSON value")
	case errors.As(err, &syntax):
		return badBody("request body is not valid JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badBody("request body must be a JSON object, not a JSON %s", typ.Value)
		}
		return badBody("field %q must be a JSON %s, not a JSON %s", typ.Field, jsonKind(typ.Type.Kind()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for this; the field name is
		// what the client needs to see.
		return badBody("request body has unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badBody("cannot decode request body: %v", err)
}

// jsonKind names a Go kind the way a JSON author thinks of it.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return "number"
}
