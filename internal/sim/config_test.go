package sim

import (
	"errors"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    func(*Config)
		wantErr bool
	}{
		{"default", func(*Config) {}, false},
		{"max-wait disabled", func(c *Config) { c.MaxWait = 0 }, false},
		{"no stalls", func(c *Config) { c.StallShare, c.HelloShare = 0, 0 }, false},
		{"zero margin", func(c *Config) { c.Margin = 0 }, false},
		{"natural payloads", func(c *Config) { c.PayloadBytes = 0 }, false},
		{"no calls", func(c *Config) { c.Calls = 0 }, true},
		{"negative ramp", func(c *Config) { c.Ramp = -time.Second }, true},
		{"negative rate", func(c *Config) { c.Rate = -1 }, true},
		{"no turns", func(c *Config) { c.TurnsMin = 0 }, true},
		{"turns reversed", func(c *Config) { c.TurnsMin, c.TurnsMax = 5, 4 }, true},
		{"reply reversed", func(c *Config) { c.ReplyMin, c.ReplyMax = 2*time.Second, time.Second }, true},
		{"share above one", func(c *Config) { c.StallShare = 1.5 }, true},
		{"share not a number", func(c *Config) { c.HelloShare = nan() }, true},
		{"shares above one together", func(c *Config) { c.StallShare, c.HelloShare = 0.6, 0.6 }, true},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, true},
		{"max-wait not above timeout", func(c *Config) { c.MaxWait = c.Timeout }, true},
		{"margin half the timeout", func(c *Config) { c.Margin = c.Timeout / 2 }, true},
		{"payload turns", func(c *Config) { c.PayloadTurns = 0 }, true},
		{"no assistant", func(c *Config) { c.AssistantIDs = nil }, true},
		{"subject with space", func(c *Config) { c.Subject = "voice events" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.give(&cfg)
			err := cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			if _, err2 := New(cfg); (err2 != nil) != tt.wantErr {
				t.Errorf("New() = %v, want error %v", err2, tt.wantErr)
			}
		})
	}
}

func nan() float64 {
	var zero float64
	return zero / zero
}

func TestParamsCapReplies(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Timeout, cfg.MaxWait, cfg.Margin = 2*time.Second, 0, 300*time.Millisecond
	p := newParams(cfg)
	if p.replyMax != 1700 || p.gapMax != 1700 || p.gapMin != 1700 || p.replyMin != 600 {
		t.Errorf("params = %+v, want reply and gap maxima capped at timeout-margin 1700", p)
	}
}
