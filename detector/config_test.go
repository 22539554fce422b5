package detector

import (
	"errors"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	s, h := time.Second, time.Hour
	th := func(timeout, maxWait, tool time.Duration) Thresholds {
		return Thresholds{Timeout: timeout, MaxWait: maxWait, ToolTimeout: tool}
	}
	tests := []struct {
		name    string
		give    Config
		wantErr bool
	}{
		{name: "defaults", give: DefaultConfig()},
		{name: "max wait disabled", give: Config{Thresholds: th(5*s, 0, 0), MaxLag: s, CallTTL: h}},
		{name: "tool timeout above max wait", give: Config{Thresholds: th(5*s, 10*s, 20*s), MaxLag: s, CallTTL: h}},
		{name: "max lag 0", give: Config{Thresholds: th(5*s, 10*s, 0), CallTTL: h}},
		{name: "zero timeout", give: Config{Thresholds: th(0, 0, 0), CallTTL: h}, wantErr: true},
		{name: "negative timeout", give: Config{Thresholds: th(-s, 0, 0), CallTTL: h}, wantErr: true},
		{name: "max wait equal to timeout", give: Config{Thresholds: th(5*s, 5*s, 0), CallTTL: h}, wantErr: true},
		{name: "max wait below timeout", give: Config{Thresholds: th(5*s, 4*s, 0), CallTTL: h}, wantErr: true},
		{name: "negative max wait", give: Config{Thresholds: th(5*s, -s, 0), CallTTL: h}, wantErr: true},
		{name: "negative tool timeout", give: Config{Thresholds: th(5*s, 10*s, -s), CallTTL: h}, wantErr: true},
		{name: "negative max lag", give: Config{Thresholds: th(5*s, 0, 0), MaxLag: -s, CallTTL: h}, wantErr: true},
		{name: "max lag equal to timeout", give: Config{Thresholds: th(5*s, 0, 0), MaxLag: 5 * s, CallTTL: h}, wantErr: true},
		{name: "ttl not above timeout", give: Config{Thresholds: th(5*s, 0, 0), CallTTL: 5 * s}, wantErr: true},
		{name: "ttl not above max wait", give: Config{Thresholds: th(5*s, 10*s, 0), CallTTL: 10 * s}, wantErr: true},
		{name: "ttl not above tool timeout", give: Config{Thresholds: th(5*s, 10*s, 20*s), CallTTL: 20 * s}, wantErr: true},
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

func TestConfigWith(t *testing.T) {
	base := DefaultConfig()
	base.CallTTL = time.Minute
	got := base.With(Thresholds{Timeout: 3 * time.Second, MaxWait: 2 * time.Minute, ToolTimeout: time.Hour, Disabled: true})
	want := Config{
		Thresholds: Thresholds{Timeout: 3 * time.Second, MaxWait: time.Minute - time.Millisecond, ToolTimeout: time.Minute - time.Millisecond, Disabled: true},
		MaxLag:     base.MaxLag,
		CallTTL:    time.Minute,
	}
	if got != want {
		t.Errorf("With() = %+v, want %+v", got, want)
	}
	// A turn or tool timeout within the max lag (1 s) is kept just above it.
	low := base.With(Thresholds{Timeout: 500 * time.Millisecond, ToolTimeout: time.Second})
	if low.Timeout != time.Second+time.Millisecond || low.ToolTimeout != time.Second+time.Millisecond {
		t.Errorf("With(timeout 500ms, tool 1s) = %+v, want both 1.001s", low.Thresholds)
	}
}
