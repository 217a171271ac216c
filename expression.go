package edgeagent

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file implements the expression language of property values, a subset
// of the NiFi Expression Language.
//
// A value is literal text with ${...} parts; "$${" renders a literal "${".
// Inside ${...} comes a subject, then a chain of functions, each after a
// colon:
//
//	edge/${agent.id}/frames
//	${filename:toUpper():append('.gz')}
//	${'my attr':isEmpty():ifElse('none', ${'my attr'})}
//	${now():format('yyyy-MM-dd HH:mm:ss')}
//
// A subject is an attribute name (letters, digits, '_', '.', '-'; any other
// name is quoted: ${'my attr'}) or one of the functions now(), UUID(),
// hostname() and literal(value). An attribute the flowfile does not have
// evaluates to "" (and isNull() is true), except for these names, which fall
// back to agent values: agent.id (the agent ID), hostname (the host name),
// uuid (a new random ID when there is no flowfile) and now (the current
// time).
//
// Arguments are quoted strings ('..' or ".." with \\, \', \", \n, \r and \t
// escapes; any other backslash is kept, so '\d+' is a regex digit class),
// numbers, true, false, or nested ${...} expressions. Booleans render as
// "true" and "false", times as RFC 3339 with milliseconds in UTC.
//
// The functions:
//
//	toUpper() toLower() trim() length()
//	append(s) prepend(s) substring(start[, end]) substringBefore(s) substringAfter(s)
//	replace(search, replacement) replaceAll(regex, replacement)
//	isEmpty() isNull() notNull() equals(s) equalsIgnoreCase(s) contains(s)
//	startsWith(s) endsWith(s) matches(regex) find(regex)
//	not() and(bool) or(bool) ifElse(then, else)
//	gt(n) ge(n) lt(n) le(n) plus(n) minus(n) multiply(n) divide(n) mod(n) toNumber()
//	format(layout[, timezone])
//
// Indices count characters (runes); substring clamps them to the string.
// matches needs the whole subject to match, find any part of it. Arithmetic is
// on integers when both sides are integers (divide truncates) and on floats
// otherwise. format takes a Go layout ("2006-01-02"), the name of a Go layout
// constant ("RFC3339", "DateTime") or a Java-style pattern
// ("yyyy-MM-dd HH:mm:ss.SSS"); the subject is a time, epoch milliseconds or an
// RFC 3339 string, and the time zone defaults to UTC.
//
// Everything that can be done at compile time is: regular expressions, numbers
// and layouts given as constants are parsed once by CompileExpression.

// ExprEnv supplies the agent-level values expressions can use besides
// flowfile attributes.
type ExprEnv struct {
	AgentID  string
	Hostname string
}

// Expression is a compiled property value with ${...} expressions. It is
// immutable and safe for concurrent use.
type Expression struct {
	src   string
	parts []exprPart
}

// exprPart is literal text (x == nil) or one ${...} expression.
type exprPart struct {
	lit string
	x   *exprNode
}

// maxExprDepth bounds how deeply ${...} may nest inside arguments.
const maxExprDepth = 32

// CompileExpression parses s. The error wraps ErrInvalidExpression and names
// the 1-based column (in characters) of the problem in s.
func CompileExpression(s string) (*Expression, error) {
	p := &exprParser{src: s}
	var parts []exprPart
	var lit strings.Builder
	for p.pos < len(s) {
		switch {
		case strings.HasPrefix(s[p.pos:], "$${"):
			lit.WriteString("${")
			p.pos += 3
		case strings.HasPrefix(s[p.pos:], "${"):
			x, err := p.parseExpr(0)
			if err != nil {
				return nil, err
			}
			if lit.Len() > 0 {
				parts = append(parts, exprPart{lit: lit.String()})
				lit.Reset()
			}
			parts = append(parts, exprPart{x: x})
		default:
			i := strings.IndexByte(s[p.pos+1:], '$')
			if i < 0 {
				i = len(s)
			} else {
				i += p.pos + 1
			}
			lit.WriteString(s[p.pos:i])
			p.pos = i
		}
	}
	if lit.Len() > 0 || len(parts) == 0 {
		parts = append(parts, exprPart{lit: lit.String()})
	}
	return &Expression{src: s, parts: parts}, nil
}

// String returns the source text the expression was compiled from.
func (e *Expression) String() string { return e.src }

// IsLiteral reports whether the expression holds no ${...} part, so that
// Evaluate always returns the same text.
func (e *Expression) IsLiteral() bool { return len(e.parts) == 1 && e.parts[0].x == nil }

// Evaluate renders the expression for ff (which may be nil). The error wraps
// ErrExpressionEval and names the column and function that failed.
func (e *Expression) Evaluate(env ExprEnv, ff *FlowFile) (string, error) {
	if e.IsLiteral() {
		return e.parts[0].lit, nil
	}
	c := &evalCtx{env: env, ff: ff}
	if len(e.parts) == 1 {
		v, err := e.parts[0].x.eval(c)
		if err != nil {
			return "", err
		}
		return v.String(), nil
	}
	var b strings.Builder
	b.Grow(len(e.src))
	for _, p := range e.parts {
		if p.x == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.x.eval(c)
		if err != nil {
			return "", err
		}
		v.writeTo(&b)
	}
	return b.String(), nil
}

// ---- values ----

type valueKind uint8

const (
	kindNull valueKind = iota // a missing attribute
	kindString
	kindInt
	kindFloat
	kindBool
	kindTime
)

// exprValue is the result of a subject or a function.
type exprValue struct {
	kind valueKind
	s    string
	i    int64 // kindInt; kindBool: 0 or 1
	f    float64
	t    time.Time
}

// timeLayoutMillis is RFC 3339 with milliseconds, for UTC times.
const timeLayoutMillis = "2006-01-02T15:04:05.000Z07:00"

func exprStr(s string) exprValue    { return exprValue{kind: kindString, s: s} }
func exprInt(i int64) exprValue     { return exprValue{kind: kindInt, i: i} }
func exprFloat(f float64) exprValue { return exprValue{kind: kindFloat, f: f} }
func exprTime(t time.Time) exprValue {
	return exprValue{kind: kindTime, t: t}
}

func exprBool(b bool) exprValue {
	if b {
		return exprValue{kind: kindBool, i: 1}
	}
	return exprValue{kind: kindBool}
}

// String renders the value as property text.
func (v exprValue) String() string {
	switch v.kind {
	case kindString:
		return v.s
	case kindInt:
		return strconv.FormatInt(v.i, 10)
	case kindFloat:
		return exprFormatFloat(v.f)
	case kindBool:
		if v.i != 0 {
			return "true"
		}
		return "false"
	case kindTime:
		return v.t.UTC().Format(timeLayoutMillis)
	}
	return ""
}

func (v exprValue) writeTo(b *strings.Builder) {
	if v.kind == kindString {
		b.WriteString(v.s)
		return
	}
	b.WriteString(v.String())
}

func exprFormatFloat(f float64) string {
	if math.Abs(f) >= 1e21 {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// number returns v as kindInt or kindFloat.
func (v exprValue) number() (exprValue, bool) {
	switch v.kind {
	case kindInt, kindFloat:
		return v, true
	case kindTime:
		return exprInt(v.t.UnixMilli()), true
	case kindString:
		return exprNumber(v.s)
	}
	return exprValue{}, false
}

func exprNumber(s string) (exprValue, bool) {
	s = strings.TrimSpace(s)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return exprInt(i), true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return exprValue{}, false
	}
	return exprFloat(f), true
}

func (v exprValue) float() float64 {
	if v.kind == kindInt {
		return float64(v.i)
	}
	return v.f
}

func (v exprValue) boolean() (bool, bool) {
	switch v.kind {
	case kindBool:
		return v.i != 0, true
	case kindString:
		switch strings.TrimSpace(v.s) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

func (v exprValue) time() (time.Time, bool) {
	switch v.kind {
	case kindTime:
		return v.t, true
	case kindInt:
		return time.UnixMilli(v.i), true
	case kindFloat:
		return time.UnixMilli(int64(v.f)), true
	case kindString:
		s := strings.TrimSpace(v.s)
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, true
		}
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.UnixMilli(i), true
		}
	}
	return time.Time{}, false
}

// describe renders v for an error message.
func (v exprValue) describe() string {
	if v.kind == kindNull {
		return "an empty value"
	}
	s := v.String()
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}

// ---- evaluation ----

// evalCtx is the state of one Evaluate call.
type evalCtx struct {
	env ExprEnv
	ff  *FlowFile
	now time.Time // set on first use, so one value sees one time
}

func (c *evalCtx) nowTime() time.Time {
	if c.now.IsZero() {
		c.now = time.Now().UTC()
	}
	return c.now
}

// exprNode is one ${...}: a subject and a chain of calls.
type exprNode struct {
	subject func(c *evalCtx) (exprValue, error)
	calls   []exprCall
}

type exprCall struct {
	name string
	col  int
	fn   exprFunc
	args []exprArg
}

// exprFunc applies a function to subject v with its arguments.
type exprFunc func(c *evalCtx, v exprValue, args []exprArg) (exprValue, error)

// exprArg is a constant (x == nil) or a nested expression, with whatever
// could be prepared from a constant at compile time.
type exprArg struct {
	v        exprValue
	x        *exprNode
	re       *regexp.Regexp // kind 'r' and 'R' constants
	anchored bool           // kind 'R': the regex must match the whole subject
	layout   string         // kind 'l' constants (a Go layout)
	loc      *time.Location // kind 'z' constants
}

// evalError is an evaluation failure; it wraps ErrExpressionEval.
type evalError struct {
	col  int
	name string
	msg  string
}

func (e *evalError) Error() string {
	return fmt.Sprintf("%v: column %d: %s(): %s", ErrExpressionEval, e.col, e.name, e.msg)
}

func (e *evalError) Unwrap() error { return ErrExpressionEval }

func (x *exprNode) eval(c *evalCtx) (exprValue, error) {
	v, err := x.subject(c)
	if err != nil {
		return v, err
	}
	for i := range x.calls {
		call := &x.calls[i]
		v, err = call.fn(c, v, call.args)
		if err != nil {
			var ee *evalError
			if errors.As(err, &ee) {
				return v, err
			}
			return v, &evalError{col: call.col, name: call.name, msg: err.Error()}
		}
	}
	return v, nil
}

func (a *exprArg) get(c *evalCtx) (exprValue, error) {
	if a.x == nil {
		return a.v, nil
	}
	return a.x.eval(c)
}

func (a *exprArg) str(c *evalCtx) (string, error) {
	v, err := a.get(c)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}

func (a *exprArg) number(c *evalCtx) (exprValue, error) {
	v, err := a.get(c)
	if err != nil {
		return v, err
	}
	n, ok := v.number()
	if !ok {
		return n, fmt.Errorf("argument %s is not a number", v.describe())
	}
	return n, nil
}

func (a *exprArg) boolean(c *evalCtx) (bool, error) {
	v, err := a.get(c)
	if err != nil {
		return false, err
	}
	b, ok := v.boolean()
	if !ok {
		return false, fmt.Errorf("argument %s is not true or false", v.describe())
	}
	return b, nil
}

// regex returns the compiled argument.
func (a *exprArg) regex(c *evalCtx) (*regexp.Regexp, error) {
	if a.re != nil {
		return a.re, nil
	}
	s, err := a.str(c)
	if err != nil {
		return nil, err
	}
	return exprRegex(s, a.anchored)
}

func exprRegex(s string, anchored bool) (*regexp.Regexp, error) {
	if anchored {
		s = `^(?:` + s + `)$`
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression: %v", err)
	}
	return re, nil
}

func (a *exprArg) timeLayout(c *evalCtx) (string, error) {
	if a.x == nil {
		return a.layout, nil
	}
	s, err := a.str(c)
	if err != nil {
		return "", err
	}
	return exprLayout(s)
}

func (a *exprArg) location(c *evalCtx) (*time.Location, error) {
	if a.x == nil {
		return a.loc, nil
	}
	s, err := a.str(c)
	if err != nil {
		return nil, err
	}
	return exprLocation(s)
}

func exprLocation(s string) (*time.Location, error) {
	loc, err := time.LoadLocation(s)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", s)
	}
	return loc, nil
}

func subjectNumber(v exprValue) (exprValue, error) {
	n, ok := v.number()
	if !ok {
		return n, fmt.Errorf("subject %s is not a number", v.describe())
	}
	return n, nil
}

func subjectBool(v exprValue) (bool, error) {
	b, ok := v.boolean()
	if !ok {
		return false, fmt.Errorf("subject %s is not true or false", v.describe())
	}
	return b, nil
}

// ---- the functions ----

// exprFuncDef describes a chained function. args and opt hold one letter per
// required and optional argument: s any value, n number, b boolean, r regex,
// R regex that must match the whole subject, l time layout, z time zone.
type exprFuncDef struct {
	args, opt string
	fn        exprFunc
}

// exprFuncs are the functions that may follow a colon.
var exprFuncs = map[string]exprFuncDef{
	"toUpper": {fn: fnString(strings.ToUpper)},
	"toLower": {fn: fnString(strings.ToLower)},
	"trim":    {fn: fnString(strings.TrimSpace)},
	"length": {fn: func(_ *evalCtx, v exprValue, _ []exprArg) (exprValue, error) {
		return exprInt(int64(utf8.RuneCountInString(v.String()))), nil
	}},
	"append":          {args: "s", fn: fnStringArg(func(s, a string) exprValue { return exprStr(s + a) })},
	"prepend":         {args: "s", fn: fnStringArg(func(s, a string) exprValue { return exprStr(a + s) })},
	"substringBefore": {args: "s", fn: fnStringArg(strBefore)},
	"substringAfter":  {args: "s", fn: fnStringArg(strAfter)},
	"equals":          {args: "s", fn: fnStringArg(func(s, a string) exprValue { return exprBool(s == a) })},
	"equalsIgnoreCase": {args: "s", fn: fnStringArg(func(s, a string) exprValue {
		return exprBool(strings.EqualFold(s, a))
	})},
	"contains":   {args: "s", fn: fnStringArg(func(s, a string) exprValue { return exprBool(strings.Contains(s, a)) })},
	"startsWith": {args: "s", fn: fnStringArg(func(s, a string) exprValue { return exprBool(strings.HasPrefix(s, a)) })},
	"endsWith":   {args: "s", fn: fnStringArg(func(s, a string) exprValue { return exprBool(strings.HasSuffix(s, a)) })},
	"substring":  {args: "n", opt: "n", fn: fnSubstring},
	"replace":    {args: "ss", fn: fnReplace},
	"replaceAll": {args: "rs", fn: fnReplaceAll},
	"matches":    {args: "R", fn: fnMatch},
	"find":       {args: "r", fn: fnMatch},
	"isEmpty": {fn: func(_ *evalCtx, v exprValue, _ []exprArg) (exprValue, error) {
		return exprBool(v.kind == kindNull || strings.TrimSpace(v.String()) == ""), nil
	}},
	"isNull": {fn: func(_ *evalCtx, v exprValue, _ []exprArg) (exprValue, error) {
		return exprBool(v.kind == kindNull), nil
	}},
	"notNull": {fn: func(_ *evalCtx, v exprValue, _ []exprArg) (exprValue, error) {
		return exprBool(v.kind != kindNull), nil
	}},
	"not": {fn: func(_ *evalCtx, v exprValue, _ []exprArg) (exprValue, error) {
		b, err := subjectBool(v)
		return exprBool(!b), err
	}},
	"and":      {args: "b", fn: fnLogic(true)},
	"or":       {args: "b", fn: fnLogic(false)},
	"ifElse":   {args: "ss", fn: fnIfElse},
	"gt":       {args: "n", fn: fnCompare(func(c int) bool { return c > 0 })},
	"ge":       {args: "n", fn: fnCompare(func(c int) bool { return c >= 0 })},
	"lt":       {args: "n", fn: fnCompare(func(c int) bool { return c < 0 })},
	"le":       {args: "n", fn: fnCompare(func(c int) bool { return c <= 0 })},
	"plus":     {args: "n", fn: fnArith('+')},
	"minus":    {args: "n", fn: fnArith('-')},
	"multiply": {args: "n", fn: fnArith('*')},
	"divide":   {args: "n", fn: fnArith('/')},
	"mod":      {args: "n", fn: fnArith('%')},
	"toNumber": {fn: func(_ *evalCtx, v exprValue, _ []exprArg) (exprValue, error) {
		return subjectNumber(v)
	}},
	"format": {args: "l", opt: "z", fn: fnFormat},
}

func fnString(f func(string) string) exprFunc {
	return func(_ *evalCtx, v exprValue, _ []exprArg) (exprValue, error) {
		return exprStr(f(v.String())), nil
	}
}

func fnStringArg(f func(s, a string) exprValue) exprFunc {
	return func(c *evalCtx, v exprValue, args []exprArg) (exprValue, error) {
		a, err := args[0].str(c)
		if err != nil {
			return v, err
		}
		return f(v.String(), a), nil
	}
}

func strBefore(s, sep string) exprValue {
	if i := strings.Index(s, sep); i >= 0 {
		return exprStr(s[:i])
	}
	return exprStr(s)
}

func strAfter(s, sep string) exprValue {
	if i := strings.Index(s, sep); i >= 0 {
		return exprStr(s[i+len(sep):])
	}
	return exprStr(s)
}

func argIndex(c *evalCtx, a *exprArg) (int64, error) {
	n, err := a.number(c)
	if err != nil {
		return 0, err
	}
	if n.kind != kindInt || n.i < 0 {
		return 0, fmt.Errorf("index %s is not a whole number >= 0", n.String())
	}
	return n.i, nil
}

func fnSubstring(c *evalCtx, v exprValue, args []exprArg) (exprValue, error) {
	s := v.String()
	start, err := argIndex(c, &args[0])
	if err != nil {
		return v, err
	}
	n := int64(utf8.RuneCountInString(s))
	end := n
	if len(args) > 1 {
		if end, err = argIndex(c, &args[1]); err != nil {
			return v, err
		}
	}
	end = min(end, n)
	start = min(start, end)
	if n == int64(len(s)) { // ASCII
		return exprStr(s[start:end]), nil
	}
	runes := []rune(s)
	return exprStr(string(runes[start:end])), nil
}

func fnReplace(c *evalCtx, v exprValue, args []exprArg) (exprValue, error) {
	old, err := args[0].str(c)
	if err != nil {
		return v, err
	}
	repl, err := args[1].str(c)
	if err != nil {
		return v, err
	}
	return exprStr(strings.ReplaceAll(v.String(), old, repl)), nil
}

func fnReplaceAll(c *evalCtx, v exprValue, args []exprArg) (exprValue, error) {
	re, err := args[0].regex(c)
	if err != nil {
		return v, err
	}
	repl, err := args[1].str(c)
	if err != nil {
		return v, err
	}
	return exprStr(re.ReplaceAllString(v.String(), repl)), nil
}

// fnMatch serves matches() (whose constant was compiled anchored) and find().
func fnMatch(c *evalCtx, v exprValue, args []exprArg) (exprValue, error) {
	re, err := args[0].regex(c)
	if err != nil {
		return v, err
	}
	return exprBool(re.MatchString(v.String())), nil
}

func fnLogic(isAnd bool) exprFunc {
	return func(c *evalCtx, v exprValue, args []exprArg) (exprValue, error) {
		b, err := subjectBool(v)
		if err != nil {
			return v, err
		}
		if b != isAnd { // false and ..., true or ...: the argument is not evaluated
			return exprBool(b), nil
		}
		a, err := args[0].boolean(c)
		return exprBool(a), err
	}
}

func fnIfElse(c *evalCtx, v exprValue, args []exprArg) (exprValue, error) {
	b, err := subjectBool(v)
	if err != nil {
		return v, err
	}
	if b {
		return args[0].get(c)
	}
	return args[1].get(c)
}

func fnCompare(ok func(int) bool) exprFunc {
	return func(c *evalCtx, v exprValue, args []exprArg) (exprValue, error) {
		x, err := subjectNumber(v)
		if err != nil {
			return v, err
		}
		y, err := args[0].number(c)
		if err != nil {
			return v, err
		}
		if x.kind == kindInt && y.kind == kindInt {
			return exprBool(ok(cmp.Compare(x.i, y.i))), nil
		}
		return exprBool(ok(cmp.Compare(x.float(), y.float()))), nil
	}
}

func fnArith(op byte) exprFunc {
	return func(c *evalCtx, v exprValue, args []exprArg) (exprValue, error) {
		x, err := subjectNumber(v)
		if err != nil {
			return v, err
		}
		y, err := args[0].number(c)
		if err != nil {
			return v, err
		}
		if x.kind == kindInt && y.kind == kindInt {
			if r, ok := exprIntArith(op, x.i, y.i); ok {
				return exprInt(r), nil
			}
			if (op == '/' || op == '%') && y.i == 0 {
				return v, errors.New("division by zero")
			}
			// overflow: fall through to floats
		}
		a, b := x.float(), y.float()
		var r float64
		switch op {
		case '+':
			r = a + b
		case '-':
			r = a - b
		case '*':
			r = a * b
		case '/':
			r = a / b
		case '%':
			r = math.Mod(a, b)
		}
		if math.IsNaN(r) || math.IsInf(r, 0) {
			if b == 0 && (op == '/' || op == '%') {
				return v, errors.New("division by zero")
			}
			return v, errors.New("result is out of range")
		}
		return exprFloat(r), nil
	}
}

// exprIntArith computes a op b, reporting false on overflow or division by zero.
func exprIntArith(op byte, a, b int64) (int64, bool) {
	switch op {
	case '+':
		r := a + b
		return r, (r > a) == (b > 0)
	case '-':
		r := a - b
		return r, (r < a) == (b > 0)
	case '*':
		if a == 0 || b == 0 {
			return 0, true
		}
		r := a * b
		return r, r/b == a && !(a == -1 && b == math.MinInt64) && !(b == -1 && a == math.MinInt64)
	case '/':
		if b == 0 || (a == math.MinInt64 && b == -1) {
			return 0, false
		}
		return a / b, true
	case '%':
		if b == 0 {
			return 0, false
		}
		if b == -1 {
			return 0, true
		}
		return a % b, true
	}
	return 0, false
}

func fnFormat(c *evalCtx, v exprValue, args []exprArg) (exprValue, error) {
	t, ok := v.time()
	if !ok {
		return v, fmt.Errorf("subject %s is not a time, epoch milliseconds or RFC 3339 text", v.describe())
	}
	layout, err := args[0].timeLayout(c)
	if err != nil {
		return v, err
	}
	loc := time.UTC
	if len(args) > 1 {
		if loc, err = args[1].location(c); err != nil {
			return v, err
		}
	}
	return exprStr(t.In(loc).Format(layout)), nil
}

// exprGoLayouts are the layout constants format() accepts by name.
var exprGoLayouts = map[string]string{
	"RFC3339": time.RFC3339, "RFC3339Nano": time.RFC3339Nano, "RFC3339Milli": timeLayoutMillis,
	"RFC1123": time.RFC1123, "RFC1123Z": time.RFC1123Z, "RFC822": time.RFC822, "RFC822Z": time.RFC822Z,
	"ANSIC": time.ANSIC, "UnixDate": time.UnixDate, "Kitchen": time.Kitchen, "Stamp": time.Stamp,
	"StampMilli": time.StampMilli, "DateTime": time.DateTime, "DateOnly": time.DateOnly,
	"TimeOnly": time.TimeOnly,
}

// exprLayout turns a format() layout into a Go layout: a layout constant's
// name, a Go layout (it has a digit, like "2006-01-02"), or else a Java
// SimpleDateFormat pattern.
func exprLayout(s string) (string, error) {
	if l, ok := exprGoLayouts[s]; ok {
		return l, nil
	}
	if strings.ContainsAny(s, "0123456789") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		ch := s[i]
		if ch == '\'' { // quoted literal; '' is a quote
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i += 2
				continue
			}
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return "", fmt.Errorf("unterminated quote in date pattern %q", s)
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 2
			continue
		}
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z') {
			b.WriteByte(ch)
			i++
			continue
		}
		n := 1
		for i+n < len(s) && s[i+n] == ch {
			n++
		}
		i += n
		var tok string
		switch ch {
		case 'y', 'Y', 'u':
			tok = layoutToken(n, "2006", "06", "2006")
		case 'M', 'L':
			tok = layoutToken(n, "1", "01", "Jan", "January")
		case 'd':
			tok = layoutToken(n, "2", "02")
		case 'D':
			tok = "002"
		case 'H', 'k':
			tok = "15"
		case 'h', 'K':
			tok = layoutToken(n, "3", "03")
		case 'm':
			tok = layoutToken(n, "4", "04")
		case 's':
			tok = layoutToken(n, "5", "05")
		case 'S':
			out := b.String()
			if out == "" || (out[len(out)-1] != '.' && out[len(out)-1] != ',') {
				return "", fmt.Errorf("date pattern %q: S (fraction of a second) must follow '.' or ','", s)
			}
			tok = strings.Repeat("0", min(n, 9))
		case 'E':
			tok = layoutToken(n, "Mon", "Mon", "Mon", "Monday")
		case 'a':
			tok = "PM"
		case 'z':
			tok = "MST"
		case 'Z':
			tok = "-0700"
		case 'X':
			tok = layoutToken(n, "Z07", "Z0700", "Z07:00")
		default:
			return "", fmt.Errorf("date pattern %q: unsupported letter %q", s, ch)
		}
		b.WriteString(tok)
	}
	return b.String(), nil
}

// layoutToken returns the token for a pattern letter repeated n times: toks[n-1],
// or the last one for longer runs.
func layoutToken(n int, toks ...string) string { return toks[min(n, len(toks))-1] }

// ---- subjects ----

// exprSubjectFuncs are the functions that may start an expression.
var exprSubjectFuncs = map[string]struct{ min, max int }{
	"now": {0, 0}, "UUID": {0, 0}, "hostname": {0, 1}, "literal": {1, 1},
}

func exprAttrSubject(name string) func(c *evalCtx) (exprValue, error) {
	return func(c *evalCtx) (exprValue, error) {
		if c.ff != nil {
			if v, ok := c.ff.Lookup(name); ok {
				return exprStr(v), nil
			}
		}
		switch name {
		case AttrAgentID:
			return exprStr(c.env.AgentID), nil
		case "hostname":
			return exprStr(c.env.Hostname), nil
		case AttrUUID:
			return exprStr(NewID().String()), nil
		case "now":
			return exprTime(c.nowTime()), nil
		}
		return exprValue{}, nil
	}
}

// ---- parsing ----

type exprParser struct {
	src string
	pos int
}

// errAt returns a compile error at byte offset pos.
func (p *exprParser) errAt(pos int, msg string, a ...any) error {
	col := utf8.RuneCountInString(p.src[:min(pos, len(p.src))]) + 1
	return fmt.Errorf("%w: column %d: %s", ErrInvalidExpression, col, fmt.Sprintf(msg, a...))
}

func (p *exprParser) skipSpace() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *exprParser) peek() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func isAttrNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
}

func isExprIdentByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

// parseExpr parses "${...}" at p.pos.
func (p *exprParser) parseExpr(depth int) (*exprNode, error) {
	open := p.pos
	if depth > maxExprDepth {
		return nil, p.errAt(open, "expressions are nested more than %d deep", maxExprDepth)
	}
	p.pos += 2
	p.skipSpace()
	x := &exprNode{}
	start := p.pos
	switch c := p.peek(); {
	case c == 0:
		return nil, p.errAt(open, "unterminated ${: missing }")
	case c == '\'' || c == '"':
		name, err := p.parseString()
		if err != nil {
			return nil, err
		}
		x.subject = exprAttrSubject(name)
	case isAttrNameByte(c):
		for p.pos < len(p.src) && isAttrNameByte(p.src[p.pos]) {
			p.pos++
		}
		name := p.src[start:p.pos]
		p.skipSpace()
		if p.peek() != '(' {
			x.subject = exprAttrSubject(name)
			break
		}
		arity, ok := exprSubjectFuncs[name]
		if !ok {
			return nil, p.errAt(start, "unknown function %q at the start of an expression%s (use %s)",
				name, exprSuggest(name, slices.Collect(maps.Keys(exprSubjectFuncs))), "now(), UUID(), hostname() or literal('...')")
		}
		args, err := p.parseArgs(depth)
		if err != nil {
			return nil, err
		}
		if len(args) < arity.min || len(args) > arity.max {
			return nil, p.errAt(start, "%s() takes %s", name, exprArgCount(arity.min, arity.max))
		}
		x.subject = exprFuncSubject(name, args)
	case c == '}':
		return nil, p.errAt(open, "empty expression ${}")
	default:
		return nil, p.errAt(p.pos, "expected an attribute name, a quoted name or a function, found %s", p.found())
	}
	for {
		p.skipSpace()
		switch p.peek() {
		case '}':
			p.pos++
			return x, nil
		case ':':
			p.pos++
			p.skipSpace()
			call, err := p.parseCall(depth)
			if err != nil {
				return nil, err
			}
			x.calls = append(x.calls, call)
		case 0:
			return nil, p.errAt(open, "unterminated ${: missing }")
		default:
			return nil, p.errAt(p.pos, "expected ':' or '}', found %s", p.found())
		}
	}
}

// found describes the input at p.pos for an error message.
func (p *exprParser) found() string {
	if p.pos >= len(p.src) {
		return "the end of the value"
	}
	r, _ := utf8.DecodeRuneInString(p.src[p.pos:])
	return strconv.QuoteRune(r)
}

func exprFuncSubject(name string, args []exprArg) func(c *evalCtx) (exprValue, error) {
	switch name {
	case "now":
		return func(c *evalCtx) (exprValue, error) { return exprTime(c.nowTime()), nil }
	case "UUID":
		return func(*evalCtx) (exprValue, error) { return exprStr(NewID().String()), nil }
	case "hostname":
		return func(c *evalCtx) (exprValue, error) { return exprStr(c.env.Hostname), nil }
	default: // literal
		a := args[0]
		return func(c *evalCtx) (exprValue, error) { return a.get(c) }
	}
}

func exprArgCount(lo, hi int) string {
	switch {
	case lo == hi && lo == 0:
		return "no arguments"
	case lo == hi && lo == 1:
		return "1 argument"
	case lo == hi:
		return fmt.Sprintf("%d arguments", lo)
	}
	return fmt.Sprintf("%d to %d arguments", lo, hi)
}

// parseCall parses name(args) after a ':'.
func (p *exprParser) parseCall(depth int) (exprCall, error) {
	start := p.pos
	for p.pos < len(p.src) && isExprIdentByte(p.src[p.pos]) {
		p.pos++
	}
	name := p.src[start:p.pos]
	if name == "" {
		return exprCall{}, p.errAt(p.pos, "expected a function name after ':', found %s", p.found())
	}
	def, ok := exprFuncs[name]
	if !ok {
		return exprCall{}, p.errAt(start, "unknown function %q%s", name, exprSuggest(name, slices.Collect(maps.Keys(exprFuncs))))
	}
	p.skipSpace()
	if p.peek() != '(' {
		return exprCall{}, p.errAt(p.pos, "expected '(' after %s, found %s", name, p.found())
	}
	args, err := p.parseArgsAt(depth)
	if err != nil {
		return exprCall{}, err
	}
	lo, hi := len(def.args), len(def.args)+len(def.opt)
	if len(args) < lo || len(args) > hi {
		return exprCall{}, p.errAt(start, "%s() takes %s, got %d", name, exprArgCount(lo, hi), len(args))
	}
	kinds := def.args + def.opt
	for i := range args {
		if err := p.prepareArg(&args[i].exprArg, kinds[i], name, args[i].pos); err != nil {
			return exprCall{}, err
		}
	}
	call := exprCall{name: name, col: utf8.RuneCountInString(p.src[:start]) + 1, fn: def.fn}
	for _, a := range args {
		call.args = append(call.args, a.exprArg)
	}
	return call, nil
}

type exprPosArg struct {
	exprArg
	pos int
}

func (p *exprParser) parseArgs(depth int) ([]exprArg, error) {
	pa, err := p.parseArgsAt(depth)
	if err != nil {
		return nil, err
	}
	out := make([]exprArg, len(pa))
	for i := range pa {
		out[i] = pa[i].exprArg
	}
	return out, nil
}

// parseArgsAt parses "(arg, ...)" at p.pos.
func (p *exprParser) parseArgsAt(depth int) ([]exprPosArg, error) {
	open := p.pos
	p.pos++ // (
	var args []exprPosArg
	p.skipSpace()
	if p.peek() == ')' {
		p.pos++
		return nil, nil
	}
	for {
		p.skipSpace()
		a := exprPosArg{pos: p.pos}
		switch c := p.peek(); {
		case c == '\'' || c == '"':
			s, err := p.parseString()
			if err != nil {
				return nil, err
			}
			a.v = exprStr(s)
		case c == '$' && strings.HasPrefix(p.src[p.pos:], "${"):
			x, err := p.parseExpr(depth + 1)
			if err != nil {
				return nil, err
			}
			a.x = x
		case c == '-' || c == '+' || c == '.' || '0' <= c && c <= '9':
			start := p.pos
			p.pos++
			for p.pos < len(p.src) {
				c, prev := p.src[p.pos], p.src[p.pos-1]
				if !isExprIdentByte(c) && c != '.' && !((c == '+' || c == '-') && (prev == 'e' || prev == 'E')) {
					break
				}
				p.pos++
			}
			n, ok := exprNumber(p.src[start:p.pos])
			if !ok {
				return nil, p.errAt(start, "%q is not a number", p.src[start:p.pos])
			}
			a.v = n
		case isExprIdentByte(c):
			start := p.pos
			for p.pos < len(p.src) && isExprIdentByte(p.src[p.pos]) {
				p.pos++
			}
			switch w := p.src[start:p.pos]; w {
			case "true", "false":
				a.v = exprBool(w == "true")
			default:
				return nil, p.errAt(start, "unexpected %q in arguments: quote strings ('%s') and write attributes as ${%s}", w, w, w)
			}
		case c == 0:
			return nil, p.errAt(open, "missing ')'")
		default:
			return nil, p.errAt(p.pos, "expected an argument (a quoted string, a number, true, false or ${...}), found %s", p.found())
		}
		args = append(args, a)
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
		case ')':
			p.pos++
			return args, nil
		case 0:
			return nil, p.errAt(open, "missing ')'")
		default:
			return nil, p.errAt(p.pos, "expected ',' or ')', found %s", p.found())
		}
	}
}

// parseString parses a quoted string at p.pos.
func (p *exprParser) parseString() (string, error) {
	open := p.pos
	q := p.src[p.pos]
	p.pos++
	var b strings.Builder
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == q:
			p.pos++
			return b.String(), nil
		case c == '\\' && p.pos+1 < len(p.src):
			switch e := p.src[p.pos+1]; e {
			case '\\', '\'', '"':
				b.WriteByte(e)
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			default: // keep it: '\d' is a regex class
				b.WriteByte('\\')
				b.WriteByte(e)
			}
			p.pos += 2
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return "", p.errAt(open, "unterminated string: missing %c", q)
}

// prepareArg checks a constant argument against its kind and prepares it.
func (p *exprParser) prepareArg(a *exprArg, kind byte, fn string, pos int) error {
	a.anchored = kind == 'R'
	if a.x != nil {
		return nil
	}
	var err error
	switch kind {
	case 'n':
		n, ok := a.v.number()
		if !ok {
			return p.errAt(pos, "%s() needs a number, got %s", fn, a.v.describe())
		}
		a.v = n
	case 'b':
		b, ok := a.v.boolean()
		if !ok {
			return p.errAt(pos, "%s() needs true, false or an expression, got %s", fn, a.v.describe())
		}
		a.v = exprBool(b)
	case 'r', 'R':
		a.re, err = exprRegex(a.v.String(), kind == 'R')
	case 'l':
		a.layout, err = exprLayout(a.v.String())
	case 'z':
		a.loc, err = exprLocation(a.v.String())
	}
	if err != nil {
		return p.errAt(pos, "%s(): %v", fn, err)
	}
	return nil
}

// exprSuggest returns ` (did you mean "x"?)` for the candidate closest to
// name, or "" when none is close.
func exprSuggest(name string, candidates []string) string {
	if best := SimilarNames(name, candidates); len(best) > 0 {
		return fmt.Sprintf(" (did you mean %q?)", best[0])
	}
	return ""
}

// SimilarNames returns the candidates that look like a typo of s, best
// first: those equal to s ignoring case, then those within an edit distance
// of a third of the longer name (at least 1). It returns nil when none is
// close. Config validation and the expression compiler use it to suggest
// names.
func SimilarNames(s string, candidates []string) []string {
	type scored struct {
		name string
		d    int
	}
	var out []scored
	ls := strings.ToLower(s)
	for _, c := range candidates {
		d := editDistance(ls, strings.ToLower(c))
		if d > max(1, max(len(c), len(s))/3) {
			continue
		}
		if strings.EqualFold(c, s) {
			d = -1
		}
		out = append(out, scored{c, d})
	}
	slices.SortFunc(out, func(a, b scored) int {
		if a.d != b.d {
			return a.d - b.d
		}
		return strings.Compare(a.name, b.name)
	})
	names := make([]string, len(out))
	for i, o := range out {
		names[i] = o.name
	}
	if len(names) == 0 {
		return nil
	}
	return names
}

// editDistance is the optimal string alignment distance between a and b (in
// bytes): insertions, deletions, substitutions and swaps of two neighbours
// each cost 1, so "gne" is 1 from "gen".
func editDistance(a, b string) int {
	rows := make([][]int, len(a)+1)
	for i := range rows {
		rows[i] = make([]int, len(b)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d := min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d = min(d, rows[i-2][j-2]+1)
			}
			rows[i][j] = d
		}
	}
	return rows[len(a)][len(b)]
}
