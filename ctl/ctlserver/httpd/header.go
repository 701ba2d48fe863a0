package httpd

// Header holds the fields of a request or response head, keyed by their
// canonical name (see CanonicalKey). Its methods canonicalise the key they
// are given; indexing the map directly needs the canonical form.
type Header map[string][]string

// Get returns the first value of key, or "".
func (h Header) Get(key string) string {
	if v := h[CanonicalKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values returns every value of key, in the order received.
func (h Header) Values(key string) []string { return h[CanonicalKey(key)] }

// Set replaces the values of key with value.
func (h Header) Set(key, value string) { h[CanonicalKey(key)] = []string{value} }

// Add appends value to the values of key.
func (h Header) Add(key, value string) {
	key = CanonicalKey(key)
	h[key] = append(h[key], value)
}

// Del removes key.
func (h Header) Del(key string) { delete(h, CanonicalKey(key)) }

// CanonicalKey returns key with its first letter and every letter after a
// hyphen in upper case and the rest in lower case ("content-length" ->
// "Content-Length"). A key that is not a valid field name is returned as
// is: the parser never stores one.
func CanonicalKey(key string) string {
	if !isToken(key) {
		return key
	}
	canonical := true
	upper := true
	for i := 0; i < len(key); i++ {
		c := key[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
			break
		}
		upper = c == '-'
	}
	if canonical {
		return key // the common case allocates nothing
	}
	b := []byte(key)
	upper = true
	for i, c := range b {
		switch {
		case upper && 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case !upper && 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
		upper = c == '-'
	}
	return string(b)
}

// isToken reports whether s is a token (RFC 9110, 5.6.2): what a method or
// a field name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar[s[i]] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
