package processors

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/devices/v3/bmxx80"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/provenance"
)

// Register traffic of a real BME280, as recorded in periph's own bmxx80
// tests (periph.io/x/devices/v3/bmxx80/bmx280_test.go): chip ID, the
// calibration blocks 0x88..0xA1 and 0xE1..0xE7, and one measurement
// 0xF7..0xFE that decodes to 23.72 °C, 100942.695 Pa and 65.3056 %RH.
var (
	bmeCalibration = []byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}
	bmeHumidityCal = []byte{0x6e, 0x1, 0x0, 0x13, 0x5, 0x0, 0x1e}
	bmeMeasurement = []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0, 0x7a, 0x76}
)

// bme280Init is the traffic of bmxx80.NewI2C with the processor's default
// options (16x oversampling everywhere, no filter): ctrl_meas 0xB4 (sleep),
// ctrl_hum 0x05, config 0xA0 (standby 1 s, filter off), ctrl_meas again.
func bme280Init(addr uint16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xd0}, R: []byte{0x60}},
		{Addr: addr, W: []byte{0x88}, R: bmeCalibration},
		{Addr: addr, W: []byte{0xe1}, R: bmeHumidityCal},
		{Addr: addr, W: []byte{0xf4, 0xb4, 0xf2, 0x05, 0xf5, 0xa0, 0xf4, 0xb4}},
	}
}

// bme280Forced is one forced measurement: ctrl_meas 0xB5 (forced), status
// busy then idle, and the burst read of the data registers (n bytes: 8 for
// a BME280, 6 for a BMP280).
func bme280Forced(addr uint16, n int) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xf4, 0xb5}},
		{Addr: addr, W: []byte{0xf3}, R: []byte{8}},
		{Addr: addr, W: []byte{0xf3}, R: []byte{0}},
		{Addr: addr, W: []byte{0xf7}, R: bmeMeasurement[:n]},
	}
}

func joinI2COps(parts ...[]i2ctest.IO) []i2ctest.IO {
	var out []i2ctest.IO
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// recordedBus is a recorded bus that counts Close calls.
type recordedBus struct {
	*i2ctest.Playback
	mu     sync.Mutex
	closed int
}

func (b *recordedBus) Close() error {
	b.mu.Lock()
	b.closed++
	b.mu.Unlock()
	return b.Playback.Close()
}

func (b *recordedBus) closes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// fakeBusOpener hands out the next result on every call and records the bus
// names asked for.
type fakeBusOpener struct {
	mu      sync.Mutex
	results []any // *recordedBus or error
	names   []string
}

func (o *fakeBusOpener) open(name string) (i2c.BusCloser, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.names = append(o.names, name)
	if len(o.results) == 0 {
		return nil, errors.New("i2creg: no bus found; did you forget to call Init()?")
	}
	r := o.results[0]
	o.results = o.results[1:]
	if err, ok := r.(error); ok {
		return nil, err
	}
	return r.(*recordedBus), nil
}

func (o *fakeBusOpener) calls() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.names)
}

func newRecordedBus(ops ...[]i2ctest.IO) *recordedBus {
	return &recordedBus{Playback: &i2ctest.Playback{Ops: joinI2COps(ops...), DontPanic: true}}
}

func (b *recordedBus) consumed() bool {
	b.Lock()
	defer b.Unlock()
	return b.Count == len(b.Ops)
}

func decodeEnvReading(t *testing.T, o enginetest.Output) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(o.Content, &m))
	return m
}

func TestGetEnvironmentalSensorBME280(t *testing.T) {
	bus := newRecordedBus(bme280Init(0x76), bme280Forced(0x76, 8), bme280Forced(0x76, 8))
	opener := &fakeBusOpener{results: []any{bus}}
	r := enginetest.NewRunner(t, getEnvironmentalSensorSpec(opener.open), map[string]string{"bus": "1", "sensor_id": "greenhouse-1"})
	before := time.Now()
	r.Run(2)
	out := r.Output("success")
	require.Len(t, out, 2)
	require.Empty(t, r.Output("failure"))
	require.True(t, bus.consumed(), "every recorded transfer happened, in order")
	require.Equal(t, []string{"1"}, opener.names, "the bus is opened once, in Start")

	for _, o := range out {
		require.JSONEq(t, `{"sensor":"bme280","sensor_id":"greenhouse-1","temperature_c":23.72,"pressure_hpa":1009.427,"humidity_rh":65.306}`, string(o.Content))
		ff := o.FlowFile
		require.Equal(t, "application/json", ff.Attr(edgeagent.AttrMimeType))
		require.Equal(t, "bme280", ff.Attr("sensor.type"))
		require.Equal(t, "greenhouse-1", ff.Attr("sensor.id"))
		require.Equal(t, "0x76", ff.Attr("i2c.address"))
		require.Equal(t, "playback", ff.Attr("i2c.bus"))
		ct, err := time.Parse(time.RFC3339Nano, ff.Attr(edgeagent.AttrCaptureTime))
		require.NoError(t, err)
		require.WithinDuration(t, before, ct, time.Minute)
	}
	recv := provEventsOfType(r.Events(), provenance.EventReceive)
	require.Len(t, recv, 2)
	require.Equal(t, "i2c://playback/0x76", recv[0].TransitURI)

	r.Close()
	require.Equal(t, 1, bus.closes(), "Stop closes the bus")
}

func TestGetEnvironmentalSensorBMP280(t *testing.T) {
	bus := newRecordedBus([]i2ctest.IO{
		{Addr: 0x77, W: []byte{0xd0}, R: []byte{0x58}},
		{Addr: 0x77, W: []byte{0x88}, R: bmeCalibration},
		// no humidity control on a BMP280
		{Addr: 0x77, W: []byte{0xf4, 0xb4, 0xf5, 0xa0, 0xf4, 0xb4}},
	}, bme280Forced(0x77, 6))
	opener := &fakeBusOpener{results: []any{bus}}
	r := enginetest.NewRunner(t, getEnvironmentalSensorSpec(opener.open), map[string]string{"address": "0x77"})
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 1)
	require.True(t, bus.consumed())
	require.Equal(t, []string{""}, opener.names, "an empty bus property asks for the first bus")
	require.JSONEq(t, `{"sensor":"bmp280","temperature_c":23.72,"pressure_hpa":1009.427}`, string(out[0].Content))
	require.Equal(t, "0x77", out[0].FlowFile.Attr("i2c.address"))
	_, hasID := out[0].FlowFile.Lookup("sensor.id")
	require.False(t, hasID)
}

// TestGetEnvironmentalSensorFilter runs the sensor in normal mode with the
// IIR filter: config 0xB0 (standby 1 s, filter 16), ctrl_meas 0xB7
// (normal), and each run reads the data registers without a forced
// measurement.
func TestGetEnvironmentalSensorFilter(t *testing.T) {
	bus := newRecordedBus([]i2ctest.IO{
		{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x60}},
		{Addr: 0x76, W: []byte{0x88}, R: bmeCalibration},
		{Addr: 0x76, W: []byte{0xe1}, R: bmeHumidityCal},
		{Addr: 0x76, W: []byte{0xf4, 0x54, 0xf2, 0x00, 0xf5, 0xb0, 0xf4, 0x57}},
		{Addr: 0x76, W: []byte{0xf7}, R: bmeMeasurement},
	})
	opener := &fakeBusOpener{results: []any{bus}}
	r := enginetest.NewRunner(t, getEnvironmentalSensorSpec(opener.open), map[string]string{
		"filter": "16", "temperature_oversampling": "2x", "pressure_oversampling": "16x", "humidity_oversampling": "none",
	})
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 1)
	require.True(t, bus.consumed())
	require.JSONEq(t, `{"sensor":"bme280","temperature_c":23.72,"pressure_hpa":1009.427}`, string(out[0].Content), "humidity off: no humidity_rh")
}

// TestGetEnvironmentalSensorFailingBus: no bus at Start, then a sensor that
// does not answer, then one that fails in the middle of a measurement.
// Start succeeds, every failed run sends one flowfile to failure and
// yields, and the run after each failure opens the bus again and recovers.
func TestGetEnvironmentalSensorFailingBus(t *testing.T) {
	silent := newRecordedBus()                                               // no device answers
	dying := newRecordedBus(bme280Init(0x76), bme280Forced(0x76, 8)[:2])     // gone after the forced write
	good := newRecordedBus(bme280Init(0x76), bme280Forced(0x76, 8))          // back again
	panicking := &recordedBus{Playback: &i2ctest.Playback{DontPanic: false}} // a driver that panics
	healthy := newRecordedBus(bme280Init(0x76), bme280Forced(0x76, 8))       // and back
	opener := &fakeBusOpener{results: []any{
		errors.New("i2creg: no bus found; did you forget to call Init()?"), // Start
		silent, dying, good, panicking, healthy,
	}}
	r := enginetest.NewRunner(t, getEnvironmentalSensorSpec(opener.open), map[string]string{"bus": "/dev/i2c-1", "sensor_id": "s1"})

	requireFailure := func(want string) {
		t.Helper()
		require.NoError(t, r.Trigger(), "a sensor failure is not a processor error")
		require.True(t, r.Yielded())
		require.Empty(t, r.Output("success"))
		fail := r.Output("failure")
		require.Len(t, fail, 1, "one flowfile per failed run")
		ff := fail[0].FlowFile
		require.Contains(t, ff.Attr(edgeagent.AttrErrorMessage), want)
		require.Equal(t, "s1", ff.Attr("sensor.id"))
		require.Equal(t, "0x76", ff.Attr("i2c.address"))
		require.NotEmpty(t, ff.Attr(edgeagent.AttrCaptureTime))
	}
	requireSuccess := func() {
		t.Helper()
		require.NoError(t, r.Trigger())
		require.False(t, r.Yielded())
		require.Empty(t, r.Output("failure"))
		out := r.Output("success")
		require.Len(t, out, 1)
		require.Equal(t, 23.72, decodeEnvReading(t, out[0])["temperature_c"])
	}

	requireFailure("initializing sensor at 0x76") // Start found no bus; this run opens the silent one
	require.Equal(t, 1, silent.closes(), "a bus whose sensor does not answer is closed again")
	requireFailure("reading sensor at 0x76")
	require.Equal(t, 1, dying.closes(), "a bus that failed a read is closed")
	requireSuccess()
	require.True(t, good.consumed())
	// The good bus stays open: simulate it being unplugged by panicking.
	good.Lock()
	good.DontPanic = false
	good.Unlock()
	requireFailure("panicked")
	require.Equal(t, 1, good.closes())
	requireFailure("panicked")
	require.Equal(t, 1, panicking.closes())
	requireSuccess()
	require.Equal(t, 6, opener.calls())
	require.Equal(t, []string{"/dev/i2c-1"}, opener.names[:1])
}

func TestGetEnvironmentalSensorConfig(t *testing.T) {
	spec := GetEnvironmentalSensorSpec()
	for _, tt := range []struct {
		props map[string]string
		want  string
	}{
		{map[string]string{"temperature_oversampling": "none"}, "temperature_oversampling"},
		{map[string]string{"pressure_oversampling": "32x"}, "pressure_oversampling"},
		{map[string]string{"address": "0x40"}, "address"},
		{map[string]string{"filter": "3"}, "filter"},
	} {
		_, err := enginetest.TryNewRunner(t, spec, tt.props)
		require.Error(t, err)
		require.Contains(t, err.Error(), tt.want)
	}
	require.Equal(t, 10*time.Second, spec.DefaultPeriod)
	require.Equal(t, edgeagent.InputForbidden, spec.Input)

	// The real opener, on a machine without I²C, fails at Start without
	// failing Start, and each run reports it.
	r := enginetest.NewRunner(t, spec, map[string]string{"bus": "/dev/i2c-no-such-bus"})
	require.NoError(t, r.Trigger())
	require.True(t, r.Yielded())
	require.Len(t, r.Output("failure"), 1)
}

func TestBMX280MaxMeasurement(t *testing.T) {
	all16x := bmxx80.Opts{Temperature: bmxx80.O16x, Pressure: bmxx80.O16x, Humidity: bmxx80.O16x}
	require.Equal(t, 112800*time.Microsecond, bmx280MaxMeasurement(all16x))
	require.Equal(t, 3550*time.Microsecond, bmx280MaxMeasurement(bmxx80.Opts{Temperature: bmxx80.O1x}))
}

// provEventsOfType returns the events of type typ.
func provEventsOfType(evs []provenance.Event, typ provenance.EventType) []provenance.Event {
	var out []provenance.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}
