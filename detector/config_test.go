package detector

import (
	"errors"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	s := time.Second
	tests := []struct {
		name    string
		give    Config
		wantErr bool
	}{
		{name: "defaults", give: DefaultConfig()},
		{name: "max wait disabled", give: Config{Timeout: 5 * s, MaxWait: 0, MaxLag: s, CallTTL: time.Hour}},
		{name: "zero timeout", give: Config{Timeout: 0, CallTTL: time.Hour}, wantErr: true},
		{name: "negative timeout", give: Config{Timeout: -s, CallTTL: time.Hour}, wantErr: true},
		{name: "max wait equal to timeout", give: Config{Timeout: 5 * s, MaxWait: 5 * s, CallTTL: time.Hour}, wantErr: true},
		{name: "max wait below timeout", give: Config{Timeout: 5 * s, MaxWait: 4 * s, CallTTL: time.Hour}, wantErr: true},
		{name: "negative max wait", give: Config{Timeout: 5 * s, MaxWait: -s, CallTTL: time.Hour}, wantErr: true},
		{name: "negative max lag", give: Config{Timeout: 5 * s, MaxLag: -s, CallTTL: time.Hour}, wantErr: true},
		{name: "ttl not above timeout", give: Config{Timeout: 5 * s, CallTTL: 5 * s}, wantErr: true},
		{name: "ttl not above max wait", give: Config{Timeout: 5 * s, MaxWait: 10 * s, CallTTL: 10 * s}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("Validate() = %v, want it to wrap ErrConfig", err)
			}
		})
	}
}
