package processors

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"edgeagent.dev"
)

// batchSize is how many queued flowfiles the per-flowfile processors take in
// one session: enough to amortize the commit, few enough to bound the
// duplicates a crash can cause.
const batchSize = 100

// stopping reports whether ctx is done, and then returns rest to its queue
// untouched, so a stopping flow leaves it for the next start.
func stopping(ctx context.Context, s edgeagent.ProcessSession, rest []*edgeagent.FlowFile) bool {
	if ctx.Err() == nil {
		return false
	}
	for _, ff := range rest {
		s.Return(ff)
	}
	return true
}

// routeToFailure sets error.message on ff and transfers it to failure.
func routeToFailure(s edgeagent.ProcessSession, ff *edgeagent.FlowFile, err error) {
	ff = s.PutAttribute(ff, edgeagent.AttrErrorMessage, err.Error())
	s.Transfer(ff, edgeagent.RelFailure)
}

// latest returns the flowfile a session call gave back, or the one passed in
// when the call failed without returning one.
func latest(got, passed *edgeagent.FlowFile) *edgeagent.FlowFile {
	if got != nil {
		return got
	}
	return passed
}

// compileFullMatch compiles re so that it must match a whole string, as
// Java's Matcher.matches does in NiFi.
func compileFullMatch(prop, re string) (*regexp.Regexp, error) {
	r, err := regexp.Compile(`^(?:` + re + `)$`)
	if err != nil {
		return nil, fmt.Errorf("property %s: invalid regular expression: %w", prop, err)
	}
	return r, nil
}

// optionalRegex compiles the property when it is set to a non-empty value;
// nil means "not set".
func optionalRegex(cfg *edgeagent.ProcessorConfig, prop string) (*regexp.Regexp, error) {
	v := cfg.Property(prop).String()
	if v == "" {
		return nil, nil
	}
	return compileFullMatch(prop, v)
}

// intProp parses an integer property and checks it is at least min.
func intProp(cfg *edgeagent.ProcessorConfig, prop string, min int64) (int64, error) {
	n, err := cfg.Property(prop).Int()
	if err != nil {
		return 0, fmt.Errorf("property %s: %q is not an integer", prop, cfg.Property(prop).String())
	}
	if n < min {
		return 0, fmt.Errorf("property %s: %d is less than %d", prop, n, min)
	}
	return n, nil
}

// atLeast returns a PropertySpec.Validate function for integers >= min.
func atLeast(min int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		if n < min {
			return fmt.Errorf("%d is less than %d", n, min)
		}
		return nil
	}
}

// boolProp parses a boolean property.
func boolProp(cfg *edgeagent.ProcessorConfig, prop string) (bool, error) {
	b, err := cfg.Property(prop).Bool()
	if err != nil {
		return false, fmt.Errorf("property %s: %q is not a boolean (true or false)", prop, cfg.Property(prop).String())
	}
	return b, nil
}

// optionalSize parses a size property; -1 means "not set".
func optionalSize(cfg *edgeagent.ProcessorConfig, prop string) (int64, error) {
	v := cfg.Property(prop)
	if v.String() == "" {
		return -1, nil
	}
	n, err := v.Size()
	if err != nil {
		return 0, fmt.Errorf("property %s: %w", prop, err)
	}
	return n, nil
}

// optionalDuration parses a duration property; -1 means "not set".
func optionalDuration(cfg *edgeagent.ProcessorConfig, prop string) (time.Duration, error) {
	v := cfg.Property(prop)
	if v.String() == "" {
		return -1, nil
	}
	d, err := v.Duration()
	if err != nil {
		return 0, fmt.Errorf("property %s: %w", prop, err)
	}
	return d, nil
}

// readErrReader remembers the first error (other than io.EOF) its reader
// returned, so a caller can tell a source's read error from a sink's error.
type readErrReader struct {
	r   io.Reader
	err error
}

func (r *readErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// unescaper interprets the escape sequences \n, \r, \t and \\ (it is
// immutable and safe for concurrent use).
var unescaper = strings.NewReplacer(`\\`, `\`, `\n`, "\n", `\r`, "\r", `\t`, "\t")

// unescape interprets the escape sequences \n, \r, \t and \\ in s.
func unescape(s string) string { return unescaper.Replace(s) }
