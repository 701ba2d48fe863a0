package httpd

// The status codes the control API answers with. The package owns them so
// that its users need not import net/http for constants.
const (
	StatusContinue                    = 100
	StatusOK                          = 200
	StatusNoContent                   = 204
	StatusNotModified                 = 304
	StatusBadRequest                  = 400
	StatusForbidden                   = 403
	StatusNotFound                    = 404
	StatusMethodNotAllowed            = 405
	StatusConflict                    = 409
	StatusLengthRequired              = 411
	StatusContentTooLarge             = 413
	StatusExpectationFailed           = 417
	StatusRequestHeaderFieldsTooLarge = 431
	StatusInternalServerError         = 500
	StatusNotImplemented              = 501
	StatusServiceUnavailable          = 503
	StatusHTTPVersionNotSupported     = 505
)

var statusText = map[int]string{
	StatusContinue:                    "Continue",
	StatusOK:                          "OK",
	StatusNoContent:                   "No Content",
	StatusNotModified:                 "Not Modified",
	StatusBadRequest:                  "Bad Request",
	StatusForbidden:                   "Forbidden",
	StatusNotFound:                    "Not Found",
	StatusMethodNotAllowed:            "Method Not Allowed",
	StatusConflict:                    "Conflict",
	StatusLengthRequired:              "Length Required",
	StatusContentTooLarge:             "Content Too Large",
	StatusExpectationFailed:           "Expectation Failed",
	StatusRequestHeaderFieldsTooLarge: "Request Header Fields Too Large",
	StatusInternalServerError:         "Internal Server Error",
	StatusNotImplemented:              "Not Implemented",
	StatusServiceUnavailable:          "Service Unavailable",
	StatusHTTPVersionNotSupported:     "HTTP Version Not Supported",
}

// StatusText returns the reason phrase for code, or "" if the package does
// not know it; the status line then carries the code alone, which HTTP/1.1
// allows.
func StatusText(code int) string { return statusText[code] }

// bodyAllowed reports whether a response with this status may carry a
// body (RFC 9110, 6.4.1).
func bodyAllowed(code int) bool {
	return code >= 200 && code != StatusNoContent && code != StatusNotModified
}
