package validate

import (
	"os"
	"regexp"
	"testing"
)

// repo is the root of the repository, from this folder.
const repo = "../../"

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(repo + path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// documentedMetrics returns the metrics of docs/metrics.md, each with its type.
func documentedMetrics(t *testing.T) map[string]string {
	t.Helper()
	row := regexp.MustCompile("(?m)^\\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \\| (counter|gauge|histogram) \\|")
	types := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(read(t, "docs/metrics.md")), -1) {
		types[m[1]] = m[2]
	}
	if len(types) < 40 {
		t.Fatalf("docs/metrics.md lists %d metrics; its tables are not read right", len(types))
	}
	return types
}

// pendingVariables are variables of flags that v2 adds and that the deployment files
// already set; each leaves this list when docs/configuration.md has it.
var pendingVariables = map[string]bool{}

// documentedVariables returns the environment variables of docs/configuration.md.
func documentedVariables(t *testing.T) map[string]bool {
	t.Helper()
	cell := regexp.MustCompile("(?m)^\\| `--[a-z0-9-]+` \\| `(HANGWATCH_[A-Z0-9_]+)` \\|")
	vars := map[string]bool{}
	for _, m := range cell.FindAllStringSubmatch(string(read(t, "docs/configuration.md")), -1) {
		vars[m[1]] = true
	}
	if len(vars) < 30 {
		t.Fatalf("docs/configuration.md lists %d variables; its tables are not read right", len(vars))
	}
	for v := range pendingVariables {
		if vars[v] {
			t.Errorf("%s is in docs/configuration.md now: take it off pendingVariables", v)
		}
	}
	return vars
}

// checkVariable reports a HANGWATCH_ variable that is no flag's.
func checkVariable(t *testing.T, known map[string]bool, where, name string) {
	t.Helper()
	if !known[name] && !pendingVariables[name] {
		t.Errorf("%s sets %s, which is no flag's variable (docs/configuration.md)", where, name)
	}
}
