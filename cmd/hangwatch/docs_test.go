package main

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"
)

// configurationDocPath is the configuration reference, from this package's folder.
const configurationDocPath = "../../docs/configuration.md"

// TestConfigurationDocIsCurrent: docs/configuration.md is what the flag definitions
// give, so that it cannot drift from them.
func TestConfigurationDocIsCurrent(t *testing.T) {
	var want bytes.Buffer
	configurationDoc(&want)
	got, err := os.ReadFile(configurationDocPath)
	if err != nil {
		t.Fatalf("%v: generate it with: go generate ./cmd/hangwatch (or make docs)", err)
	}
	if bytes.Equal(got, want.Bytes()) {
		return
	}
	gotLines, wantLines := strings.Split(string(got), "\n"), strings.Split(want.String(), "\n")
	for i := range max(len(gotLines), len(wantLines)) {
		g, w := line(gotLines, i), line(wantLines, i)
		if g != w {
			t.Fatalf("docs/configuration.md is out of date with the flags: regenerate it with\n\tgo generate ./cmd/hangwatch   (or: make docs)\nfirst difference, line %d:\n\thave %q\n\twant %q", i+1, g, w)
		}
	}
}

func line(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end of file)"
}

// TestConfigurationDocListsEveryFlag: every flag of run and tail has its row, with its
// variable, and no machine's own default (a home folder) leaks into it.
func TestConfigurationDocListsEveryFlag(t *testing.T) {
	var b bytes.Buffer
	configurationDoc(&b)
	doc := b.String()
	for _, c := range documentedCommands() {
		section := doc[strings.Index(doc, "## hangwatch "+c.name):]
		c.fs.VisitAll(func(f *flag.Flag) {
			if row := "| `--" + f.Name + "` | `" + envName(f.Name) + "` |"; !strings.Contains(section, row) {
				t.Errorf("hangwatch %s: no row for --%s", c.name, f.Name)
			}
		})
	}
	if home, err := os.UserHomeDir(); err == nil && strings.Contains(doc, home) {
		t.Errorf("the reference holds this machine's home folder %s", home)
	}
	for _, want := range []string{"| `--timeout` | `HANGWATCH_TIMEOUT` | duration | `5s` |", "| `--subject` | `HANGWATCH_SUBJECT` | list | `voice.events.>` |", "| `--jetstream` | `HANGWATCH_JETSTREAM` | switch | `false` |"} {
		if !strings.Contains(doc, want) {
			t.Errorf("the reference lacks the row starting %q", want)
		}
	}
}

// TestDocsCmd: the hidden command writes the reference to a file or to stdout.
func TestDocsCmd(t *testing.T) {
	var want bytes.Buffer
	configurationDoc(&want)
	path := t.TempDir() + "/configuration.md"
	code, _, stderr := runArgs(t, nil, "docs", "flags", "-o", path)
	if code != exitOK {
		t.Fatalf("docs flags -o: exit %d, %s", code, stderr)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Errorf("docs flags -o wrote %d bytes (%v), want the reference", len(got), err)
	}
	if code, stdout, _ := runArgs(t, nil, "docs", "flags"); code != exitOK || stdout != want.String() {
		t.Errorf("docs flags: exit %d, %d bytes on stdout; want the reference", code, len(stdout))
	}
	if code, _, _ := runArgs(t, nil, "docs"); code != exitUsage {
		t.Errorf("docs: exit %d, want %d", code, exitUsage)
	}
}
