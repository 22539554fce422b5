package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

//go:generate go run . docs flags -o ../../docs/configuration.md

// docsCmd is the hidden command `hangwatch docs flags [-o FILE]`: it writes the
// configuration reference, docs/configuration.md, from the flags the commands define,
// so that the reference cannot drift from them (a test compares).
func docsCmd(args []string, stdout io.Writer) error {
	c := newCommand("docs", "Write the configuration reference (docs/configuration.md) from the flag definitions.")
	out := c.fs.String("o", "", "file to write; empty: standard output")
	if len(args) == 0 || args[0] != "flags" {
		return usageError{c, fmt.Errorf("want: hangwatch docs flags [-o FILE]")}
	}
	if err := c.parse(args[1:], noEnv); err != nil {
		return usageError{c, err}
	}
	var b bytes.Buffer
	configurationDoc(&b)
	if *out == "" {
		_, err := stdout.Write(b.Bytes())
		return err
	}
	return os.WriteFile(*out, b.Bytes(), 0o644)
}

// documentedCommands are the commands whose flags the configuration reference lists,
// each with its flags defined exactly as the command defines them.
func documentedCommands() []*command {
	run := newCommand("run", runSummary)
	sidecarFlags(run)
	tail := newCommand("tail", tailSummary)
	tailFlags(tail)
	return []*command{run, tail}
}

// machineDefaults are the defaults that depend on the machine (its environment, its
// home), written as the rule that picks them, so that the reference is the same
// wherever it is generated.
var machineDefaults = map[string]string{
	"embedded-store-dir": "`$STATE_DIRECTORY`, else `$XDG_STATE_HOME/hangwatch`, else `~/.local/state/hangwatch`",
}

const configurationIntro = `# Configuration reference

<!-- Generated from the flag definitions by ` + "`go generate ./cmd/hangwatch`" + ` (or ` + "`make docs`" + `): do not edit. -->

Every flag of ` + "`hangwatch run`" + ` and ` + "`hangwatch tail`" + ` is also read from an environment variable:
` + "`HANGWATCH_`" + ` and the flag's name in capitals, dashes as underscores (` + "`--max-wait`" + ` →
` + "`HANGWATCH_MAX_WAIT`" + `). A flag given on the command line wins over its variable. An empty
variable sets a text flag to empty (` + "`HANGWATCH_METRICS_LISTEN=`" + ` turns the metrics off) and
leaves any other flag at its default. A repeatable flag takes a comma-separated list from
its variable. A ` + "`HANGWATCH_`" + ` variable that is no flag's is named in a warning at start,
with the flag it most likely meant.

Values: a **duration** needs a unit (` + "`5s`" + `, ` + "`1m30s`" + `, ` + "`250ms`" + `; ` + "`0`" + ` alone is allowed); a
**size** is plain bytes or has a unit, decimal or binary (` + "`67108864`" + `, ` + "`64MiB`" + `, ` + "`1GiB`" + `,
` + "`500MB`" + `); a **switch** is ` + "`true`" + ` or ` + "`false`" + ` (on the command line, ` + "`--jetstream`" + ` alone is
` + "`true`" + `). ` + "`hangwatch <command> --help`" + ` prints the same list; ` + "`hangwatch demo --help`" + ` has the
demo's.
`

// configurationDoc writes the configuration reference in Markdown: for each documented
// command, its summary and a table of its flags, sorted by name, with their variable,
// kind, default and usage.
func configurationDoc(w io.Writer) {
	fmt.Fprint(w, configurationIntro)
	for _, c := range documentedCommands() {
		fmt.Fprintf(w, "\n## hangwatch %s\n\n%s\n\n", c.name, strings.Join(strings.Fields(c.summary), " "))
		fmt.Fprintln(w, "| flag | environment variable | kind | default | what it does |")
		fmt.Fprintln(w, "|---|---|---|---|---|")
		var flags []*flag.Flag
		c.fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
		sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
		for _, f := range flags {
			def, ok := machineDefaults[f.Name]
			if !ok {
				def = ""
				if f.DefValue != "" && f.DefValue != "[]" {
					def = "`" + f.DefValue + "`"
				}
			}
			fmt.Fprintf(w, "| `--%s` | `%s` | %s | %s | %s |\n", f.Name, envName(f.Name), flagKind(f), def, markdownCell(f.Usage))
		}
	}
}

// flagKind names what a flag takes.
func flagKind(f *flag.Flag) string {
	switch f.Value.(type) {
	case *stringList:
		return "list"
	case *byteSize:
		return "size"
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return "text"
	}
	switch g.Get().(type) {
	case time.Duration:
		return "duration"
	case bool:
		return "switch"
	case int, int64, uint, uint64:
		return "integer"
	case float64:
		return "number"
	}
	return "text"
}

// markdownCell makes s safe in a table cell: a pipe would end the cell.
func markdownCell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
