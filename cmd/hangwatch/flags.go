package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// envPrefix starts the environment variable of every flag: --max-wait is read from
// HANGWATCH_MAX_WAIT when it is not on the command line.
const envPrefix = "HANGWATCH_"

// envName returns the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// command is a subcommand with its flags.
type command struct {
	name, summary string
	fs            *flag.FlagSet
}

func newCommand(name, summary string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by main
	return &command{name: name, summary: summary, fs: fs}
}

// parse parses args, then fills every flag that is not on the command line from its
// environment variable. A bad value, from either, is an error that names its origin and
// shows the value; a secret is a string flag, which takes any value, so it never shows.
// An empty variable sets a string flag to empty (HANGWATCH_METRICS_LISTEN= disables the
// metrics) and leaves any other flag at its default.
func (c *command) parse(args []string, lookup func(string) (string, bool)) error {
	hintDurations(c.fs)
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
	}
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	c.fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		v, ok := lookup(envName(f.Name))
		if !ok || (v == "" && !isString(f)) {
			return
		}
		if e := setFromEnv(f, v); e != nil {
			err = fmt.Errorf("invalid value %q for %s: %w", v, envName(f.Name), e)
		}
	})
	return err
}

// setFromEnv sets a flag from its environment variable; a list takes comma-separated
// values there.
func setFromEnv(f *flag.Flag, v string) error {
	if l, ok := f.Value.(*stringList); ok {
		l.reset()
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				if err := l.Set(s); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return f.Value.Set(v)
}

// usage writes the help of the command: its summary, then every flag with its default
// and its environment variable. It shows defaults only, never a value given: secrets
// have none.
func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: hangwatch %s [flags]\n\n%s\n\nFlags (each also read from the environment variable shown):\n", c.name, c.summary)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var flags []*flag.Flag
	c.fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		def := ""
		if f.DefValue != "" && f.DefValue != "[]" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  --%s\t%s\t%s%s\n", f.Name, envName(f.Name), f.Usage, def)
	}
	tw.Flush()
}

// stringList is a repeatable flag. Its default is replaced, not appended to, by the
// first value given.
type stringList struct {
	values  []string
	changed bool
}

func newStringList(defaults ...string) *stringList { return &stringList{values: defaults} }

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.values, ",")
}

func (l *stringList) Set(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	if !l.changed {
		l.values, l.changed = nil, true
	}
	l.values = append(l.values, v)
	return nil
}

func (l *stringList) reset() { l.values, l.changed = nil, false }

// isString reports whether a flag takes any string, for which empty is a value.
func isString(f *flag.Flag) bool {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, ok = g.Get().(string)
	return ok
}

// noEnv is an empty environment, for a command parsed from arguments alone.
func noEnv(string) (string, bool) { return "", false }

// env is the process environment, replaceable in tests.
var env = os.LookupEnv

// hintDurations makes every duration flag of fs that is given a bare number say which
// duration was likely meant: "--timeout 5" is "did you mean 5s?", not "parse error".
func hintDurations(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			if _, ok := g.Get().(time.Duration); ok {
				if _, done := f.Value.(durationFlag); !done {
					f.Value = durationFlag{g}
				}
			}
		}
	})
}

// durationFlag is a duration flag whose errors say what a duration looks like.
type durationFlag struct{ flag.Getter }

func (d durationFlag) Set(s string) error {
	if _, err := time.ParseDuration(s); err != nil {
		if n := strings.TrimSpace(s); isNumber(n) {
			return fmt.Errorf("a duration needs a unit: did you mean %ss?", n)
		}
		return errors.New("want a duration such as 5s, 1m30s or 250ms")
	}
	return d.Getter.Set(s)
}

// isNumber reports whether s is a decimal number, such as 5, -2 or 0.5.
func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && strings.Trim(s, "+-.0123456789") == ""
}

// envWarnings returns a warning for every variable of environ (KEY=value pairs, as
// os.Environ returns them) that starts with HANGWATCH_ but is the variable of no flag of
// the command, naming the closest one: a misspelt HANGWATCH_TIMOUT would otherwise be
// ignored without a word. A warning names the variable, never its value (it may be a
// secret).
func (c *command) envWarnings(environ []string) []string {
	known := map[string]string{} // variable → flag
	c.fs.VisitAll(func(f *flag.Flag) { known[envName(f.Name)] = f.Name })
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := known[name]; !ok && strings.HasPrefix(name, envPrefix) {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	var warnings []string
	for _, name := range unknown {
		w := fmt.Sprintf("environment variable %s is no setting of hangwatch %s and is ignored", name, c.name)
		if best := closest(name, known); best != "" {
			w += fmt.Sprintf("; did you mean %s (--%s)?", best, known[best])
		} else {
			w += fmt.Sprintf(`; "hangwatch %s --help" lists them`, c.name)
		}
		warnings = append(warnings, w)
	}
	return warnings
}

// closest returns the variable of known nearest to name, when it is near enough to be
// a likely misspelling of it: a third of its letters or fewer differ.
func closest(name string, known map[string]string) string {
	best, bestDist := "", math.MaxInt
	for k := range known {
		if d := editDistance(name[len(envPrefix):], k[len(envPrefix):]); d < bestDist || (d == bestDist && k < best) {
			best, bestDist = k, d
		}
	}
	if bestDist > max(2, (len(name)-len(envPrefix))/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b: the fewest insertions, deletions
// and substitutions of a byte that turn one into the other.
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// byteSize is a size flag, in bytes: given as plain bytes or with a unit, decimal (kB,
// MB, GB, TB) or binary (KiB, MiB, GiB, TiB), such as 67108864, 64MiB, 1GiB, 500MB or
// 1.5GiB. Units are read without regard to case; a bare K, M or G is refused, since it
// could mean either.
type byteSize int64

func newByteSize(bytes int64) *byteSize {
	b := byteSize(bytes)
	return &b
}

// byteUnits are the units of a byteSize, the binary ones first: String picks the first
// that divides a size exactly.
var byteUnits = []struct {
	name string
	size int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3},
	{"B", 1},
}

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(s)
	}
	number, unit := s[:i], strings.TrimSpace(s[i:])
	if number == "" {
		if strings.HasPrefix(s, "-") {
			return errors.New("a size cannot be negative")
		}
		return errors.New("want a size such as 67108864, 64MiB, 1GiB or 500MB")
	}
	size := int64(1)
	if unit != "" {
		size = 0
		for _, u := range byteUnits {
			if strings.EqualFold(unit, u.name) {
				size = u.size
				break
			}
		}
		if size == 0 {
			if l := strings.ToUpper(unit); len(l) == 1 && strings.Contains("KMGT", l) {
				return fmt.Errorf("unit %q could be decimal or binary: did you mean %s%siB or %s%sB?", unit, number, l, number, strings.Replace(l, "K", "k", 1))
			}
			return fmt.Errorf("unknown unit %q: want B, kB, MB, GB, TB, KiB, MiB, GiB or TiB", unit)
		}
	}
	n, ok := new(big.Rat).SetString(number)
	if !ok || strings.Count(number, ".") > 1 {
		return fmt.Errorf("bad number %q", number)
	}
	n.Mul(n, new(big.Rat).SetInt64(size))
	if !n.IsInt() {
		return fmt.Errorf("%s is not a whole number of bytes", s)
	}
	if !n.Num().IsInt64() {
		return fmt.Errorf("%s is too large", s)
	}
	*b = byteSize(n.Num().Int64())
	return nil
}

// String writes the size in the largest unit that holds it exactly: 1GiB, 500MB, 1023.
func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	n := int64(*b)
	for _, u := range byteUnits {
		if n != 0 && u.size > 1 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// Get returns the size in bytes, an int64.
func (b *byteSize) Get() any { return int64(*b) }
