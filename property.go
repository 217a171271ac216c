package edgeagent

import (
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// PropertyKind is the type a property value must parse as.
type PropertyKind int

// Property kinds.
const (
	KindString   PropertyKind = iota // any string
	KindInt                          // a base-10 integer
	KindFloat                        // a decimal number
	KindBool                         // true or false
	KindDuration                     // "500ms", "10s", "2h", "7d"
	KindSize                         // "512", "64KiB", "2GiB", "10MB"
	KindEnum                         // one of PropertySpec.Allowed
	KindRegex                        // a Go regular expression
)

// String returns the kind's name as used in docs.
func (k PropertyKind) String() string {
	switch k {
	case KindInt:
		return "integer"
	case KindFloat:
		return "number"
	case KindBool:
		return "boolean"
	case KindDuration:
		return "duration"
	case KindSize:
		return "size"
	case KindEnum:
		return "enum"
	case KindRegex:
		return "regex"
	default:
		return "string"
	}
}

// PropertySpec describes one property of a processor type. The same specs
// validate flows and generate the docs that `edgeagent processors` prints.
type PropertySpec struct {
	Name        string // snake_case key in the flow's properties map
	Description string
	Required    bool
	Default     string       // used when the property is not set; "" for none
	Kind        PropertyKind // what the value must parse as (after expressions, if any)
	Allowed     []string     // the allowed values of a KindEnum
	// Expressions marks a property whose value may contain ${...}
	// expressions, evaluated per flowfile. Its kind is checked after
	// evaluation, or at validation when it holds no expression.
	Expressions bool
	// Sensitive values (passwords, tokens) are never logged or shown.
	Sensitive bool
	// Validate, if set, checks the literal value beyond its kind.
	Validate func(value string) error
}

// CheckValue parses value as the spec's kind and returns a message for the
// user when it does not fit, or "" when it does.
func (p *PropertySpec) CheckValue(value string) string {
	if p.Expressions && strings.Contains(value, "${") {
		if _, err := CompileExpression(value); err != nil {
			return err.Error()
		}
		return ""
	}
	var err error
	switch p.Kind {
	case KindInt:
		_, err = strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fmt.Sprintf("%q is not an integer", value)
		}
	case KindFloat:
		_, err = strconv.ParseFloat(value, 64)
		if err != nil {
			return fmt.Sprintf("%q is not a number", value)
		}
	case KindBool:
		if value != "true" && value != "false" {
			return fmt.Sprintf("%q is not a boolean (true or false)", value)
		}
	case KindDuration:
		if _, err = ParseDuration(value); err != nil {
			return err.Error()
		}
	case KindSize:
		if _, err = ParseSize(value); err != nil {
			return err.Error()
		}
	case KindEnum:
		ok := false
		for _, a := range p.Allowed {
			ok = ok || a == value
		}
		if !ok {
			return fmt.Sprintf("%q is not one of %s", value, strings.Join(p.Allowed, ", "))
		}
	case KindRegex:
		if _, err = regexp.Compile(value); err != nil {
			return fmt.Sprintf("invalid regular expression: %v", err)
		}
	}
	if p.Validate != nil {
		if err := p.Validate(value); err != nil {
			return err.Error()
		}
	}
	return ""
}

// ParseDuration parses a Go duration ("1h30m", "250ms") or a number of days
// ("7d"). Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil || days < 0 || days > 106751 {
			return 0, fmt.Errorf("%q is not a duration (e.g. 500ms, 10s, 5m, 2h, 7d)", s)
		}
		return time.Duration(days * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 500ms, 10s, 5m, 2h, 7d)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: a duration cannot be negative", s)
	}
	return d, nil
}

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize parses a byte size: a plain number of bytes or a number with a
// unit (B, KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of
// 1024).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is not a size (e.g. 512, 64KiB, 10MiB, 2GiB)", s)
	}
	return int64(f * mult), nil
}

// FormatSize renders n bytes with a binary unit ("1.5MiB").
func FormatSize(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n)/1024, 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64) + units[i]
}

// PropertyValue is a configured property: the literal text, compiled for
// expressions when the spec allows them.
type PropertyValue struct {
	raw  string
	set  bool
	expr *Expression
	env  ExprEnv
}

// NewPropertyValue compiles raw (if expressions is true and raw contains
// "${") and binds it to env for evaluation.
func NewPropertyValue(raw string, set, expressions bool, env ExprEnv) (PropertyValue, error) {
	v := PropertyValue{raw: raw, set: set, env: env}
	if expressions && strings.Contains(raw, "${") {
		e, err := CompileExpression(raw)
		if err != nil {
			return v, err
		}
		v.expr = e
	}
	return v, nil
}

// IsSet reports whether the flow set the property (false when the default is used).
func (v PropertyValue) IsSet() bool { return v.set }

// String returns the literal value, expressions not evaluated.
func (v PropertyValue) String() string { return v.raw }

// HasExpression reports whether the value contains expressions.
func (v PropertyValue) HasExpression() bool { return v.expr != nil }

// Evaluate returns the value with expressions evaluated against ff's
// attributes (ff may be nil).
func (v PropertyValue) Evaluate(ff *FlowFile) (string, error) {
	if v.expr == nil {
		return v.raw, nil
	}
	return v.expr.Evaluate(v.env, ff)
}

// Int parses the literal value as an integer.
func (v PropertyValue) Int() (int64, error) { return strconv.ParseInt(v.raw, 10, 64) }

// Float parses the literal value as a number.
func (v PropertyValue) Float() (float64, error) { return strconv.ParseFloat(v.raw, 64) }

// Bool parses the literal value as true or false.
func (v PropertyValue) Bool() (bool, error) { return strconv.ParseBool(v.raw) }

// Duration parses the literal value as a duration.
func (v PropertyValue) Duration() (time.Duration, error) { return ParseDuration(v.raw) }

// Size parses the literal value as a byte size.
func (v PropertyValue) Size() (int64, error) { return ParseSize(v.raw) }

// DynamicProperty is a user-named property (UpdateAttribute's attributes,
// RouteOnAttribute's routes), in flow order.
type DynamicProperty struct {
	Name  string
	Value PropertyValue
}

// ProcessorConfig is what ProcessorSpec.New receives: the validated
// properties with defaults applied.
type ProcessorConfig struct {
	Name    string // the processor's name in the flow
	Type    string // the processor type
	AgentID string
	// StateDir is a directory reserved for this processor's local state
	// (created by the engine before Start).
	StateDir string
	// Properties holds every property of the spec (defaults applied).
	Properties map[string]PropertyValue
	// Dynamic holds user-named properties, in flow order.
	Dynamic []DynamicProperty
	// Logger carries the processor's name and type.
	Logger *slog.Logger
}

// Property returns the named property (the zero value if the spec has none).
func (c *ProcessorConfig) Property(name string) PropertyValue { return c.Properties[name] }
