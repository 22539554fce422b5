package validate

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// unitSettings reads a systemd unit: every Key=value of every section, in order.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	settings := map[string][]string{}
	section := ""
	for s := bufio.NewScanner(bytes.NewReader(read(t, path))); s.Scan(); {
		line := strings.TrimSpace(s.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("%s: %q is no Key=value", path, line)
				continue
			}
			settings[section+"."+k] = append(settings[section+"."+k], v)
		}
	}
	return settings
}

// TestSystemdUnit: the unit keeps its sandbox, its state directory and its memory
// limit. (make test also runs systemd-analyze verify and security on it, where systemd
// is installed.)
func TestSystemdUnit(t *testing.T) {
	s := unitSettings(t, "deploy/systemd/hangwatch.service")
	want := map[string]string{
		"Service.ExecStart":               "/usr/local/bin/hangwatch run",
		"Service.DynamicUser":             "yes",
		"Service.StateDirectory":          "hangwatch",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Service.CapabilityBoundingSet":   "",
		"Service.EnvironmentFile":         "-/etc/hangwatch.env",
	}
	for k, v := range want {
		if got := s[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := s["Service.SystemCallFilter"]; len(got) == 0 || got[0] != "@system-service" {
		t.Errorf("SystemCallFilter = %q, want @system-service first", got)
	}
	if len(s["Service.MemoryMax"]) != 1 {
		t.Error("no MemoryMax")
	}
	if got := s["Install.WantedBy"]; len(got) != 1 || got[0] != "multi-user.target" {
		t.Errorf("WantedBy = %q, want multi-user.target", got)
	}
	known := documentedVariables(t)
	for s := bufio.NewScanner(bytes.NewReader(read(t, "deploy/systemd/hangwatch.env"))); s.Scan(); {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s.Text()), "#"))
		if name, _, ok := strings.Cut(line, "="); ok && strings.HasPrefix(name, "HANGWATCH_") && !strings.Contains(name, " ") {
			checkVariable(t, known, "hangwatch.env", name)
		}
	}
}
