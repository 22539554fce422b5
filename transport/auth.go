package transport

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
)

// errAuth is wrapped by the errors of credential and TLS options that do not fit
// together.
var errAuth = errors.New("NATS credentials")

// authOptions turns the credential and TLS settings into nats options. It checks that
// they fit together, and never puts a secret into an error.
func authOptions(o ConnOptions) ([]nats.Option, error) {
	var opts []nats.Option
	kinds := 0
	if o.Creds != "" {
		kinds++
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.NkeySeed != "" {
		kinds++
		opt, err := nats.NkeyOptionFromSeed(o.NkeySeed)
		if err != nil {
			// The error names the file, not its content.
			return nil, fmt.Errorf("%w: %w", errAuth, err)
		}
		opts = append(opts, opt)
	}
	if o.User != "" || o.Password != "" {
		kinds++
		if o.User == "" {
			return nil, fmt.Errorf("%w: a password needs a user", errAuth)
		}
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		kinds++
		opts = append(opts, nats.Token(o.Token))
	}
	if kinds > 1 {
		return nil, fmt.Errorf("%w: give one of creds, nkey, user/password and token", errAuth)
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	switch {
	case o.TLSCert != "" && o.TLSKey != "":
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	case o.TLSCert != "" || o.TLSKey != "":
		return nil, fmt.Errorf("%w: a TLS client certificate needs its key, and a key its certificate", errAuth)
	}
	return opts, nil
}

// redactURL hides the password of every URL of a comma-separated list, for errors and
// logs.
func redactURL(list string) string {
	urls := strings.Split(list, ",")
	for i, s := range urls {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			// A bare user part may be a token.
			u.User = url.User("xxxxx")
		}
		urls[i] = u.String()
	}
	return strings.Join(urls, ",")
}
