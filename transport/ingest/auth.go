package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// HeaderVapiSecret is the header Vapi sends the server URL's secret in.
const HeaderVapiSecret = "X-Vapi-Secret"

// authorized reports whether a request carries the secret, as X-Vapi-Secret or as
// Authorization: Bearer. Both are checked whatever the first gives, and each
// comparison takes the same time whatever the value: it compares SHA-256 digests in
// constant time, so that neither the length nor a matching prefix of the secret shows
// in the time of an answer.
func (s *Server) authorized(h http.Header) bool {
	match := 0
	if v := h.Get(HeaderVapiSecret); v != "" {
		match |= s.secretMatches(v)
	}
	if v, ok := bearer(h.Get("Authorization")); ok {
		match |= s.secretMatches(v)
	}
	return match == 1
}

// secretMatches returns 1 when v is the secret, 0 otherwise, in constant time.
func (s *Server) secretMatches(v string) int {
	sum := sha256.Sum256([]byte(v))
	return subtle.ConstantTimeCompare(sum[:], s.secretSum[:])
}

// bearer returns the token of an Authorization header of the Bearer scheme, whose name
// is case-insensitive (RFC 9110).
func bearer(auth string) (string, bool) {
	const scheme = "bearer "
	if len(auth) <= len(scheme) || !strings.EqualFold(auth[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimLeft(auth[len(scheme):], " "), true
}
