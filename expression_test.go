package edgeagent

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var testEnv = ExprEnv{AgentID: "jetson-01", Hostname: "edge-host"}

func testFlowFile() *FlowFile {
	return &FlowFile{
		ID: mustID("01890a5d-ac96-774b-bcce-b302099a8057"),
		Attributes: map[string]string{
			"filename":     "frame-0001.jpg",
			"mqtt.topic":   "sensors/temp",
			"camera-id":    "cam7",
			"my attr":      "spaced",
			"count":        "42",
			"ratio":        "2.5",
			"empty":        "",
			"blank":        "   ",
			"padded":       "  hi  ",
			"flag":         "true",
			"capture.time": "2024-03-05T07:08:09.123Z",
			"millis":       "1709622489123",
			"hostname":     "from-attr",
			"unicode":      "héllo wörld",
			"pattern":      `^frame-\d+`,
		},
	}
}

func mustID(s string) ID {
	id, err := ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func TestExpressionEvaluate(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		// literals and escapes
		{"plain", "hello", "hello"},
		{"empty", "", ""},
		{"dollar alone", "cost $5 {x}", "cost $5 {x}"},
		{"escape", "$${filename}", "${filename}"},
		{"escape then expr", "$${a}-${filename}", "${a}-frame-0001.jpg"},
		{"trailing dollar", "a$", "a$"},

		// subjects
		{"attribute", "${filename}", "frame-0001.jpg"},
		{"dotted", "t=${mqtt.topic}", "t=sensors/temp"},
		{"dashed", "${camera-id}", "cam7"},
		{"quoted", "${'my attr'}", "spaced"},
		{"double quoted", `${"my attr"}`, "spaced"},
		{"missing", "[${nope}]", "[]"},
		{"uuid from flowfile", "${uuid}", "01890a5d-ac96-774b-bcce-b302099a8057"},
		{"agent.id fallback", "edge/${agent.id}/frames", "edge/jetson-01/frames"},
		{"hostname attribute wins", "${hostname}", "from-attr"},
		{"hostname function", "${hostname()}", "edge-host"},
		{"literal", "${literal('abc'):toUpper()}", "ABC"},
		{"literal number", "${literal(2):plus(3)}", "5"},
		{"spaces", "${ filename : toUpper( ) }", "FRAME-0001.JPG"},

		// strings
		{"toUpper append", "${filename:toUpper():append('.gz')}", "FRAME-0001.JPG.gz"},
		{"toLower", "${'my attr':toLower()}", "spaced"},
		{"trim", "[${padded:trim()}]", "[hi]"},
		{"prepend", "${filename:prepend('in/')}", "in/frame-0001.jpg"},
		{"append nested", "${filename:append(${camera-id})}", "frame-0001.jpgcam7"},
		{"nested in nested", "${filename:append(${camera-id:append(${count:plus(1)})})}", "frame-0001.jpgcam743"},
		{"substring", "${filename:substring(0, 5)}", "frame"},
		{"substring from", "${filename:substring(6)}", "0001.jpg"},
		{"substring clamps", "${filename:substring(10, 100)}", ".jpg"},
		{"substring past end", "${filename:substring(100)}", ""},
		{"substring unicode", "${unicode:substring(1, 5)}", "éllo"},
		{"substringBefore", "${filename:substringBefore('.')}", "frame-0001"},
		{"substringBefore missing", "${filename:substringBefore('#')}", "frame-0001.jpg"},
		{"substringAfter", "${mqtt.topic:substringAfter('/')}", "temp"},
		{"substringAfter missing", "${mqtt.topic:substringAfter('#')}", "sensors/temp"},
		{"replace", "${mqtt.topic:replace('/', '.')}", "sensors.temp"},
		{"replaceAll", `${filename:replaceAll('\d', 'N')}`, "frame-NNNN.jpg"},
		{"replaceAll groups", `${filename:replaceAll('^(\w+)-(\d+)', '${2}_${1}')}`, "0001_frame.jpg"},
		{"length", "${filename:length()}", "14"},
		{"length unicode", "${unicode:length()}", "11"},
		{"length missing", "${nope:length()}", "0"},
		{"escaped quote", `${literal('it\'s')}`, "it's"},
		{"escapes", `${literal("a\tb\\c\"")}`, "a\tb\\c\""},

		// booleans
		{"isEmpty missing", "${nope:isEmpty()}", "true"},
		{"isEmpty empty", "${empty:isEmpty()}", "true"},
		{"isEmpty blank", "${blank:isEmpty()}", "true"},
		{"isEmpty set", "${filename:isEmpty()}", "false"},
		{"isNull", "${nope:isNull()}", "true"},
		{"isNull empty", "${empty:isNull()}", "false"},
		{"notNull", "${empty:notNull()}", "true"},
		{"equals", "${camera-id:equals('cam7')}", "true"},
		{"equals number", "${count:equals(42)}", "true"},
		{"equalsIgnoreCase", "${camera-id:equalsIgnoreCase('CAM7')}", "true"},
		{"contains", "${mqtt.topic:contains('temp')}", "true"},
		{"startsWith", "${mqtt.topic:startsWith('temp')}", "false"},
		{"endsWith", "${filename:endsWith('.jpg')}", "true"},
		{"matches whole", `${filename:matches('frame-\d+\.jpg')}`, "true"},
		{"matches partial is false", `${filename:matches('\d+')}`, "false"},
		{"matches alternation anchored", `${filename:matches('x|frame-0001.jpg')}`, "true"},
		{"find", `${filename:find('\d+')}`, "true"},
		{"find dynamic", "${filename:find(${pattern})}", "true"},
		{"matches dynamic", "${filename:matches(${pattern})}", "false"},
		{"not", "${nope:isNull():not()}", "false"},
		{"and", "${flag:and(${count:gt(40)})}", "true"},
		{"and literal", "${count:gt(40):and(false)}", "false"},
		{"and short circuit", "${count:gt(50):and(${filename:toNumber()})}", "false"},
		{"or", "${count:gt(50):or(${camera-id:equals('cam7')})}", "true"},
		{"or short circuit", "${count:gt(1):or(${filename:toNumber()})}", "true"},
		{"ifElse", "${empty:isEmpty():ifElse('none', ${empty})}", "none"},
		{"ifElse else", "${filename:isEmpty():ifElse('none', ${filename})}", "frame-0001.jpg"},

		// numbers
		{"gt", "${count:gt(41)}", "true"},
		{"ge", "${count:ge(42)}", "true"},
		{"lt", "${count:lt(42)}", "false"},
		{"le float", "${ratio:le(2.5)}", "true"},
		{"gt mixed", "${count:gt(41.9)}", "true"},
		{"plus", "${count:plus(8)}", "50"},
		{"plus float", "${ratio:plus(1)}", "3.5"},
		{"minus negative", "${count:minus(-8)}", "50"},
		{"multiply", "${count:multiply(2)}", "84"},
		{"divide ints truncates", "${count:divide(5)}", "8"},
		{"divide float", "${ratio:divide(2)}", "1.25"},
		{"mod", "${count:mod(5)}", "2"},
		{"toNumber", "${count:toNumber():plus(1)}", "43"},
		{"chain", "${filename:length():multiply(2):gt(20)}", "true"},
		{"number as string arg", "${count:plus('8')}", "50"},
		{"nested number arg", "${count:plus(${count})}", "84"},
		{"overflow falls back to float", "${literal(9223372036854775807):plus(1)}", "9223372036854776000"},

		// time
		{"format java", "${capture.time:format('yyyy-MM-dd HH:mm:ss.SSS')}", "2024-03-05 07:08:09.123"},
		{"format go", "${capture.time:format('2006/01/02')}", "2024/03/05"},
		{"format named", "${capture.time:format('DateTime')}", "2024-03-05 07:08:09"},
		{"format millis", "${millis:format('yyyyMMdd-HHmmss')}", "20240305-070809"},
		{"format quoted text", "${capture.time:format(\"yyyy-MM-dd'T'HH\")}", "2024-03-05T07"},
		{"format month names", "${capture.time:format('EEE d MMM yy')}", "Tue 5 Mar 24"},
		{"format zone", "${capture.time:format('HH:mm', 'UTC')}", "07:08"},
		{"format layout name", "${capture.time:format('RFC3339Milli')}", "2024-03-05T07:08:09.123Z"},
		{"number to time", "${literal(1709622489123):format('RFC3339Milli')}", "2024-03-05T07:08:09.123Z"},
	}
	ff := testFlowFile()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := CompileExpression(tt.expr)
			require.NoError(t, err)
			got, err := e.Evaluate(testEnv, ff)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.expr, e.String())
		})
	}
}

func TestExpressionWithoutFlowFile(t *testing.T) {
	eval := func(s string) string {
		t.Helper()
		e, err := CompileExpression(s)
		require.NoError(t, err)
		got, err := e.Evaluate(testEnv, nil)
		require.NoError(t, err)
		return got
	}
	require.Equal(t, "jetson-01/edge-host", eval("${agent.id}/${hostname}"))
	require.Equal(t, "", eval("${filename}"))
	require.Equal(t, "true", eval("${filename:isNull()}"))

	u1, u2 := eval("${uuid}"), eval("${uuid}")
	_, err := ParseID(u1)
	require.NoError(t, err)
	require.NotEqual(t, u1, u2)
	_, err = ParseID(eval("${UUID()}"))
	require.NoError(t, err)

	rfc3339ms := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	for _, s := range []string{"${now}", "${now()}"} {
		got := eval(s)
		require.Regexp(t, rfc3339ms, got)
		tm, err := time.Parse(time.RFC3339, got)
		require.NoError(t, err)
		require.WithinDuration(t, time.Now(), tm, time.Minute)
	}
	require.Regexp(t, `^\d{4}$`, eval("${now():format('yyyy')}"))
	require.Regexp(t, `^\d{13}$`, eval("${now():toNumber()}"))

	// one evaluation sees one time
	both := eval("${now()}|${now():format('RFC3339Milli')}")
	a, b, _ := strings.Cut(both, "|")
	require.Equal(t, a, b)
}

func TestExpressionIsLiteral(t *testing.T) {
	for s, lit := range map[string]bool{"": true, "abc": true, "$${x}": true, "${x}": false, "a${x}b": false} {
		e, err := CompileExpression(s)
		require.NoError(t, err)
		require.Equal(t, lit, e.IsLiteral(), s)
	}
}

func TestCompileExpressionErrors(t *testing.T) {
	tests := []struct {
		expr, want string
	}{
		{"${filename", "column 1: unterminated ${: missing }"},
		{"ab${", "column 3: unterminated ${: missing }"},
		{"${}", "column 1: empty expression ${}"},
		{"${:toUpper()}", "column 3: expected an attribute name, a quoted name or a function, found ':'"},
		{"${filename:toUper()}", `column 12: unknown function "toUper" (did you mean "toUpper"?)`},
		{"${filename:toupper()}", `column 12: unknown function "toupper" (did you mean "toUpper"?)`},
		{"${filename:frobnicate()}", `column 12: unknown function "frobnicate"`},
		{"${filename:toUpper}", "column 19: expected '(' after toUpper, found '}'"},
		{"${filename:}", "column 12: expected a function name after ':', found '}'"},
		{"${filename toUpper()}", "column 12: expected ':' or '}', found 't'"},
		{"${filename:append()}", "column 12: append() takes 1 argument, got 0"},
		{"${filename:append('a', 'b')}", "column 12: append() takes 1 argument, got 2"},
		{"${filename:substring(1, 2, 3)}", "column 12: substring() takes 1 to 2 arguments, got 3"},
		{"${filename:toUpper('x')}", "column 12: toUpper() takes no arguments, got 1"},
		{"${filename:append('abc)}", "column 19: unterminated string: missing '"},
		{"${filename:append(abc)}", `column 19: unexpected "abc" in arguments: quote strings ('abc') and write attributes as ${abc}`},
		{"${filename:append('a' 'b')}", `column 23: expected ',' or ')', found '\''`},
		{"${filename:append('a'", "column 18: missing ')'"},
		{"${filename:plus('x')}", `column 17: plus() needs a number, got "x"`},
		{"${filename:plus(12abc)}", `column 17: "12abc" is not a number`},
		{"${filename:and('maybe')}", `column 16: and() needs true, false or an expression, got "maybe"`},
		{"${filename:matches('(')}", "column 20: matches(): invalid regular expression: error parsing regexp: missing closing ): `^(?:()$`"},
		{"${filename:find('[a')}", "column 17: find(): invalid regular expression: error parsing regexp: missing closing ]: `[a`"},
		{"${filename:format('yyyy-qq')}", `column 19: format(): date pattern "yyyy-qq": unsupported letter 'q'`},
		{"${filename:format('ss SSS')}", `column 19: format(): date pattern "ss SSS": S (fraction of a second) must follow '.' or ','`},
		{"${filename:format('yyyy', 'Mars/Olympus')}", `column 27: format(): unknown time zone "Mars/Olympus"`},
		{"${nw()}", `column 3: unknown function "nw" at the start of an expression (did you mean "now"?) (use now(), UUID(), hostname() or literal('...'))`},
		{"${now(1)}", "column 3: now() takes no arguments"},
		{"${literal()}", "column 3: literal() takes 1 argument"},
		{"${a:append(${b)}", "column 15: expected ':' or '}', found ')'"},
		{"${a:append(${b:toUpr()})}", `column 16: unknown function "toUpr" (did you mean "toUpper"?)`},
		{"héé${x:y()}", `column 8: unknown function "y"`},
		{"${" + strings.Repeat("a:append(${", 40) + "b", "nested more than 32 deep"},
		{"${'unterminated}", "column 3: unterminated string: missing '"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := CompileExpression(tt.expr)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrInvalidExpression)
			require.Contains(t, err.Error(), tt.want)
			require.True(t, strings.HasPrefix(err.Error(), "invalid expression: column "), err.Error())
		})
	}
}

func TestExpressionEvalErrors(t *testing.T) {
	tests := []struct {
		expr, want string
	}{
		{"${filename:plus(1)}", `column 12: plus(): subject "frame-0001.jpg" is not a number`},
		{"${nope:toNumber()}", "column 8: toNumber(): subject an empty value is not a number"},
		{"${count:plus(${filename})}", `column 9: plus(): argument "frame-0001.jpg" is not a number`},
		{"${count:divide(0)}", "column 9: divide(): division by zero"},
		{"${count:mod(0)}", "column 9: mod(): division by zero"},
		{"${ratio:divide(0)}", "column 9: divide(): division by zero"},
		{"${filename:not()}", `column 12: not(): subject "frame-0001.jpg" is not true or false`},
		{"${flag:and(${filename})}", `column 8: and(): argument "frame-0001.jpg" is not true or false`},
		{"${filename:ifElse('a', 'b')}", `column 12: ifElse(): subject "frame-0001.jpg" is not true or false`},
		{"${filename:format('yyyy')}", `column 12: format(): subject "frame-0001.jpg" is not a time, epoch milliseconds or RFC 3339 text`},
		{"${filename:matches(${empty:append('(')})}", "column 12: matches(): invalid regular expression"},
		{"${filename:substring(-1)}", "column 12: substring(): index -1 is not a whole number >= 0"},
		{"${filename:substring(1.5)}", "column 12: substring(): index 1.5 is not a whole number >= 0"},
		{"${capture.time:format(${literal('yyyy-qq')})}", `column 16: format(): date pattern "yyyy-qq": unsupported letter 'q'`},
		// the innermost failure is reported
		{"${count:plus(${filename:toNumber()})}", `column 25: toNumber(): subject "frame-0001.jpg" is not a number`},
	}
	ff := testFlowFile()
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			e, err := CompileExpression(tt.expr)
			require.NoError(t, err)
			_, err = e.Evaluate(testEnv, ff)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrExpressionEval)
			require.False(t, errors.Is(err, ErrInvalidExpression))
			require.Contains(t, err.Error(), tt.want)
			require.True(t, strings.HasPrefix(err.Error(), "evaluating expression: column "), err.Error())
		})
	}
}

func TestPropertyValueUsesExpressions(t *testing.T) {
	v, err := NewPropertyValue("edge/${agent.id}/${filename:substringBefore('.')}", true, true, testEnv)
	require.NoError(t, err)
	require.True(t, v.HasExpression())
	got, err := v.Evaluate(testFlowFile())
	require.NoError(t, err)
	require.Equal(t, "edge/jetson-01/frame-0001", got)

	_, err = NewPropertyValue("${x:bogus()}", true, true, testEnv)
	require.ErrorIs(t, err, ErrInvalidExpression)

	spec := PropertySpec{Name: "topic", Expressions: true}
	require.Contains(t, spec.CheckValue("${x:bogus()}"), `unknown function "bogus"`)
	require.Empty(t, spec.CheckValue("${x:toUpper()}"))
}

func TestSimilarNames(t *testing.T) {
	names := []string{"success", "failure", "original", "max_count", "max_bytes", "GetFile", "PutFile"}
	require.Equal(t, []string{"success"}, SimilarNames("sucess", names))
	require.Equal(t, []string{"failure"}, SimilarNames("FAILURE", names))
	require.Equal(t, []string{"max_count"}, SimilarNames("max_cout", names))
	require.Equal(t, []string{"GetFile", "PutFile"}, SimilarNames("GutFile", names))
	require.Equal(t, []string{"GetFile", "PutFile"}, SimilarNames("getFile", names))
	require.Equal(t, []string{"original"}, SimilarNames("orignial", names), "a swap costs 1")
	require.Nil(t, SimilarNames("banana", names))
	require.Nil(t, SimilarNames("x", nil))
}

func BenchmarkExpressionEvaluate(b *testing.B) {
	e, err := CompileExpression("edge/${agent.id}/${filename:toUpper():replaceAll('\\d+', 'N')}/${count:plus(1):gt(10)}")
	require.NoError(b, err)
	ff := testFlowFile()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Evaluate(testEnv, ff); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzCompileExpression(f *testing.F) {
	for _, s := range []string{
		"", "plain", "$${x}", "${filename}", "${'a b':toUpper():append('.gz')}",
		"${a:substring(1, ${b:length()})}", "${now():format('yyyy-MM-dd HH:mm:ss.SSS')}",
		"${count:plus(1):divide(0)}", `${a:replaceAll('(\d+)', '$1'):matches(${p})}`,
		"${a:isEmpty():ifElse(${b}, 'x'):and(true)}", "${literal(-9223372036854775808):divide(-1)}",
		"${a:format(${b}, ${c})}", "${UUID()}${hostname(true)}",
	} {
		f.Add(s)
	}
	ff := testFlowFile()
	f.Fuzz(func(t *testing.T, s string) {
		e, err := CompileExpression(s)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidExpression)
			return
		}
		for _, flow := range []*FlowFile{ff, nil} {
			if _, err := e.Evaluate(testEnv, flow); err != nil {
				require.ErrorIs(t, err, ErrExpressionEval)
			}
		}
	})
}

func TestExpressionConcurrentUse(t *testing.T) {
	e, err := CompileExpression("${filename:replaceAll('\\d', 'N')}-${count:plus(1)}-${now():format('yyyy')}")
	require.NoError(t, err)
	ff := testFlowFile()
	done := make(chan string)
	for range 8 {
		go func() {
			var got string
			for range 200 {
				got, _ = e.Evaluate(testEnv, ff)
			}
			done <- got
		}()
	}
	for range 8 {
		require.Regexp(t, `^frame-NNNN\.jpg-43-\d{4}$`, <-done)
	}
}
