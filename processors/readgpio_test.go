package processors

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/provenance"
)

// fakePinLookup hands out pins by name and number, after failing the first
// failures calls.
type fakePinLookup struct {
	mu       sync.Mutex
	pins     map[string]gpio.PinIO
	failures int
	calls    int
}

func (l *fakePinLookup) lookup(name string) (gpio.PinIO, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.failures > 0 {
		l.failures--
		return nil, errors.New("gpioreg: no pins registered")
	}
	p, ok := l.pins[name]
	if !ok {
		return nil, errors.New("no such pin")
	}
	return p, nil
}

func newGPIOTestPin(level gpio.Level) *gpiotest.Pin {
	return &gpiotest.Pin{N: "GPIO17", Num: 17, L: level, EdgesChan: make(chan gpio.Level)}
}

func gpioLookupFor(pin gpio.PinIO) *fakePinLookup {
	return &fakePinLookup{pins: map[string]gpio.PinIO{"GPIO17": pin, "17": pin}}
}

func gpioProc(t *testing.T, r *enginetest.Runner) *readGPIO {
	t.Helper()
	p, ok := r.Harness().Processor().(*readGPIO)
	require.True(t, ok)
	return p
}

// sendEdges feeds edges to the pin's watcher. EdgesChan is unbuffered, so
// each send returns when the watcher took the edge, after it finished the
// one before.
func sendEdges(t *testing.T, pin *gpiotest.Pin, levels ...gpio.Level) {
	t.Helper()
	for _, l := range levels {
		select {
		case pin.EdgesChan <- l:
		case <-time.After(5 * time.Second):
			t.Fatal("the watcher does not take edges")
		}
	}
}

type gpioTestOut struct {
	Pin           string `json:"pin"`
	Level         int    `json:"level"`
	Edge          string `json:"edge"`
	DroppedBefore uint64 `json:"dropped_before"`
}

func decodeGPIO(t *testing.T, o enginetest.Output) gpioTestOut {
	t.Helper()
	var g gpioTestOut
	require.NoError(t, json.Unmarshal(o.Content, &g))
	require.Equal(t, "application/json", o.FlowFile.Attr(edgeagent.AttrMimeType))
	return g
}

func TestReadGPIOLevel(t *testing.T) {
	pin := newGPIOTestPin(gpio.Low)
	l := gpioLookupFor(pin)
	r := enginetest.NewRunner(t, readGPIOSpec(l.lookup), map[string]string{"pin": "17", "pull": "up"})
	r.Run(1)
	require.Equal(t, gpio.PullUp, pin.Pull(), "the pull-up is configured")
	out := r.Output("success")
	require.Len(t, out, 1)
	ff := out[0].FlowFile
	require.Equal(t, "GPIO17", ff.Attr(attrGPIOPin), "the pin's own name, not the number it was configured by")
	require.Equal(t, "1", ff.Attr(attrGPIOLevel), "a pull-up reads high")
	_, hasEdge := ff.Lookup(attrGPIOEdge)
	require.False(t, hasEdge)
	_, err := time.Parse(time.RFC3339Nano, ff.Attr(edgeagent.AttrCaptureTime))
	require.NoError(t, err)
	require.Equal(t, gpioTestOut{Pin: "GPIO17", Level: 1}, decodeGPIO(t, out[0]))

	require.NoError(t, pin.Out(gpio.Low))
	r.Run(1)
	out = r.Output("success")
	require.Len(t, out, 1)
	require.Equal(t, "0", out[0].FlowFile.Attr(attrGPIOLevel))
	require.Len(t, provEventsOfType(r.Events(), provenance.EventReceive), 2)
	require.Equal(t, "gpio://GPIO17", provEventsOfType(r.Events(), provenance.EventReceive)[0].TransitURI)
	require.Equal(t, 1, l.calls, "the pin is looked up once")
}

func TestReadGPIOEdges(t *testing.T) {
	pin := newGPIOTestPin(gpio.Low)
	r := enginetest.NewRunner(t, readGPIOSpec(gpioLookupFor(pin).lookup), map[string]string{"pin": "GPIO17", "mode": "edge"})
	r.Run(1) // starts the watcher
	require.Empty(t, r.Output("success"))
	require.True(t, r.Yielded(), "no edge yet")

	p := gpioProc(t, r)
	// both edges: rising, falling, rising; a repeated high is no edge
	sendEdges(t, pin, gpio.High, gpio.Low, gpio.High, gpio.High, gpio.High)
	require.Len(t, p.events, 3)
	r.Run(1)
	require.False(t, r.Yielded())
	out := r.Output("success")
	require.Len(t, out, 3)
	var prev time.Time
	for i, want := range []string{"rising", "falling", "rising"} {
		ff := out[i].FlowFile
		require.Equal(t, want, ff.Attr(attrGPIOEdge))
		require.Equal(t, map[string]string{"rising": "1", "falling": "0"}[want], ff.Attr(attrGPIOLevel))
		require.Equal(t, "GPIO17", ff.Attr(attrGPIOPin))
		_, dropped := ff.Lookup(attrGPIODroppedBefore)
		require.False(t, dropped)
		at, err := time.Parse(time.RFC3339Nano, ff.Attr(edgeagent.AttrCaptureTime))
		require.NoError(t, err)
		require.False(t, at.Before(prev), "edges come out in order")
		prev = at
		require.Equal(t, want, decodeGPIO(t, out[i]).Edge)
	}

	// Stop ends the watcher: nobody takes edges any more.
	r.Close()
	select {
	case pin.EdgesChan <- gpio.Low:
		t.Fatal("the watcher still runs after Stop")
	case <-time.After(3 * gpioEdgeWait):
	}
}

func TestReadGPIOEdgeFilters(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		send  []gpio.Level
		sync  gpio.Level // an edge the filter drops, sent last
		want  []string
	}{
		{"rising", map[string]string{"edge": "rising"}, []gpio.Level{gpio.High, gpio.Low, gpio.High}, gpio.Low, []string{"rising", "rising"}},
		{"falling", map[string]string{"edge": "falling"}, []gpio.Level{gpio.High, gpio.Low, gpio.High, gpio.Low}, gpio.High, []string{"falling", "falling"}},
		{"debounce", map[string]string{"debounce": "1h"}, []gpio.Level{gpio.High, gpio.Low, gpio.High, gpio.Low}, gpio.High, []string{"rising"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pin := newGPIOTestPin(gpio.Low)
			props := map[string]string{"pin": "GPIO17", "mode": "edge"}
			for k, v := range tt.props {
				props[k] = v
			}
			r := enginetest.NewRunner(t, readGPIOSpec(gpioLookupFor(pin).lookup), props)
			r.Run(1)
			sendEdges(t, pin, tt.send...)
			sendEdges(t, pin, tt.sync) // dropped: returns once the last edge was handled
			r.Run(1)
			out := r.Output("success")
			got := make([]string, len(out))
			for i, o := range out {
				got[i] = o.FlowFile.Attr(attrGPIOEdge)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

// TestReadGPIOBufferFull overflows a two-edge buffer: the edges that do not
// fit are dropped and counted on the next edge that does.
func TestReadGPIOBufferFull(t *testing.T) {
	pin := newGPIOTestPin(gpio.Low)
	r := enginetest.NewRunner(t, readGPIOSpec(gpioLookupFor(pin).lookup), map[string]string{"pin": "GPIO17", "mode": "edge", "buffer_size": "2"})
	r.Run(1)
	sendEdges(t, pin, gpio.High, gpio.Low, gpio.High, gpio.Low, gpio.High)
	sendEdges(t, pin, gpio.High) // no edge: the fifth was handled
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 2)
	require.Equal(t, []string{"rising", "falling"}, []string{out[0].FlowFile.Attr(attrGPIOEdge), out[1].FlowFile.Attr(attrGPIOEdge)})

	sendEdges(t, pin, gpio.Low, gpio.Low)
	r.Run(1)
	out = r.Output("success")
	require.Len(t, out, 1)
	require.Equal(t, "falling", out[0].FlowFile.Attr(attrGPIOEdge))
	require.Equal(t, "3", out[0].FlowFile.Attr(attrGPIODroppedBefore))
	require.Equal(t, uint64(3), decodeGPIO(t, out[0]).DroppedBefore)

	sendEdges(t, pin, gpio.High, gpio.High)
	r.Run(1)
	out = r.Output("success")
	require.Len(t, out, 1)
	_, dropped := out[0].FlowFile.Lookup(attrGPIODroppedBefore)
	require.False(t, dropped, "the count is reported once")
}

// TestReadGPIOPinMissing: the pin cannot be found at Start nor at the first
// run; the flow keeps running, the run reports it to failure and yields, and
// the next run finds the pin and starts watching it.
func TestReadGPIOPinMissing(t *testing.T) {
	pin := newGPIOTestPin(gpio.Low)
	l := gpioLookupFor(pin)
	l.failures = 2
	r := enginetest.NewRunner(t, readGPIOSpec(l.lookup), map[string]string{"pin": "GPIO17", "mode": "edge"})
	require.NoError(t, r.Trigger(), "Start and the run succeed")
	require.True(t, r.Yielded())
	require.Empty(t, r.Output("success"))
	fail := r.Output("failure")
	require.Len(t, fail, 1)
	require.Contains(t, fail[0].FlowFile.Attr(edgeagent.AttrErrorMessage), `finding GPIO pin "GPIO17"`)
	require.Equal(t, "GPIO17", fail[0].FlowFile.Attr(attrGPIOPin))

	r.Run(1)
	require.Empty(t, r.Output("failure"))
	require.True(t, r.Yielded(), "found, no edge yet")
	sendEdges(t, pin, gpio.High, gpio.High)
	r.Run(1)
	require.Len(t, r.Output("success"), 1)
	require.Equal(t, 3, l.calls)
}

// panickyPin is a gpiotest.Pin whose driver panics once while waiting for an
// edge.
type panickyPin struct {
	*gpiotest.Pin
	panicked atomic.Bool
}

func (p *panickyPin) WaitForEdge(timeout time.Duration) bool {
	if p.panicked.CompareAndSwap(false, true) {
		panic("gpio: line request closed")
	}
	return p.Pin.WaitForEdge(timeout)
}

// TestReadGPIOWatcherPanics: a driver panic ends the watcher without
// taking the agent down; the next run reports it and reopens the pin.
func TestReadGPIOWatcherPanics(t *testing.T) {
	inner := newGPIOTestPin(gpio.Low)
	pin := &panickyPin{Pin: inner}
	l := gpioLookupFor(pin)
	r := enginetest.NewRunner(t, readGPIOSpec(l.lookup), map[string]string{"pin": "GPIO17", "mode": "edge"})
	r.Run(1)
	p := gpioProc(t, r)
	require.Eventually(t, func() bool { return p.watcherError() != nil }, 5*time.Second, 10*time.Millisecond)
	r.Run(1)
	fail := r.Output("failure")
	require.Len(t, fail, 1)
	require.Contains(t, fail[0].FlowFile.Attr(edgeagent.AttrErrorMessage), "panicked")
	r.Run(1) // reopens
	sendEdges(t, inner, gpio.High, gpio.High)
	r.Run(1)
	require.Len(t, r.Output("success"), 1)
	require.Equal(t, 2, l.calls)
}

func TestReadGPIOConfig(t *testing.T) {
	spec := ReadGPIOSpec()
	for _, tt := range []struct {
		props map[string]string
		want  string
	}{
		{map[string]string{}, "pin"},
		{map[string]string{"pin": "GPIO17", "mode": "pwm"}, "mode"},
		{map[string]string{"pin": "GPIO17", "edge": "up"}, "edge"},
		{map[string]string{"pin": "GPIO17", "pull": "strong"}, "pull"},
		{map[string]string{"pin": "GPIO17", "debounce": "soon"}, "debounce"},
		{map[string]string{"pin": "GPIO17", "buffer_size": "0"}, "buffer_size"},
	} {
		_, err := enginetest.TryNewRunner(t, spec, tt.props)
		require.Error(t, err)
		require.Contains(t, err.Error(), tt.want)
	}
	require.Equal(t, edgeagent.InputForbidden, spec.Input)

	// The real lookup, on a machine without this pin, reports it to failure.
	r := enginetest.NewRunner(t, spec, map[string]string{"pin": "NO_SUCH_PIN_42"})
	require.NoError(t, r.Trigger())
	require.True(t, r.Yielded())
	require.Len(t, r.Output("failure"), 1)
}
