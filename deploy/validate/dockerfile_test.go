package validate

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// TestDockerfile: deploy/Dockerfile parses as BuildKit parses it, with none of its lint
// warnings (no container engine runs here to build it), and keeps its shape: a Go
// builder, a static binary, a small final image that runs as a user other than root and
// exposes the metrics port.
func TestDockerfile(t *testing.T) {
	res, err := parser.Parse(bytes.NewReader(read(t, "deploy/Dockerfile")))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile: %s", w.Short)
	}
	var lint []string
	stages, _, err := instructions.Parse(res.AST, linter.New(&linter.Config{
		Warn: func(rule, desc, url, msg string, _ []parser.Range) { lint = append(lint, rule+": "+msg) },
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lint {
		t.Errorf("Dockerfile lint: %s", l)
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want 2: a builder and the image", len(stages))
	}
	build, final := stages[0], stages[1]
	if !strings.HasPrefix(build.BaseName, "golang:") {
		t.Errorf("the builder is %s, want golang", build.BaseName)
	}
	var script []string
	for _, c := range build.Commands {
		if run, ok := c.(*instructions.RunCommand); ok {
			script = append(script, run.CmdLine...)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "./cmd/hangwatch"} {
		if !strings.Contains(strings.Join(script, " "), want) {
			t.Errorf("the build runs no %q", want)
		}
	}
	if !strings.HasPrefix(final.BaseName, "gcr.io/distroless/static") && final.BaseName != "scratch" {
		t.Errorf("the image is based on %s, want distroless static or scratch", final.BaseName)
	}
	var user string
	var ports []string
	var entrypoint []string
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.ExposeCommand:
			ports = append(ports, c.Ports...)
		case *instructions.EntrypointCommand:
			entrypoint = c.CmdLine
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("the image runs as %q, want a user other than root", user)
	}
	if !slices.Equal(ports, []string{"9464"}) {
		t.Errorf("the image exposes %v, want the metrics port 9464 only", ports)
	}
	if !slices.Equal(entrypoint, []string{"/usr/local/bin/hangwatch"}) {
		t.Errorf("entrypoint %v, want the binary", entrypoint)
	}
}
