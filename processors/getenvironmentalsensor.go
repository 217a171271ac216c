package processors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
	"periph.io/x/host/v3"

	"edgeagent.dev"
)

// GetEnvironmentalSensorSpec returns the spec of GetEnvironmentalSensor, a
// source that reads a Bosch BME280 / BMP280 temperature, pressure and
// humidity sensor over I²C.
func GetEnvironmentalSensorSpec() edgeagent.ProcessorSpec { return getEnvironmentalSensorSpec(nil) }

// i2cOpener opens an I²C bus by name ("" for the first one).
type i2cOpener func(bus string) (i2c.BusCloser, error)

// getEnvironmentalSensorSpec is GetEnvironmentalSensorSpec with the bus
// opener replaced (nil: the host's buses through periph), for tests.
func getEnvironmentalSensorSpec(open i2cOpener) edgeagent.ProcessorSpec {
	oversampling := []string{"none", "1x", "2x", "4x", "8x", "16x"}
	return edgeagent.ProcessorSpec{
		Type:    "GetEnvironmentalSensor",
		Summary: "Reads temperature, pressure and humidity from a BME280 / BMP280 sensor over I²C.",
		Description: "Each run takes one forced measurement and emits an application/json flowfile: " +
			`{"sensor":"bme280","sensor_id":...,"temperature_c":23.72,"pressure_hpa":1009.427,"humidity_rh":65.306}` +
			" (humidity_rh only from a BME280; the chip is detected by its ID, a BMP180 works too; pressure_hpa " +
			"and humidity_rh are left out when their oversampling is none), with the attributes mime.type, " +
			"capture.time (RFC 3339, UTC), sensor.type, sensor.id (when set), i2c.bus and i2c.address, and a " +
			"RECEIVE provenance event. The bus is opened in Start; a missing bus or sensor does not stop the " +
			"flow: Start logs it and succeeds, and every run that cannot open or read the sensor logs a warning, " +
			"sends a flowfile with error.message to failure and yields, so failures are reported at most once " +
			"per schedule.yield (or schedule.period, whichever is longer). The next run opens the bus again, so " +
			"a sensor that is plugged back in recovers by itself. With a filter the sensor runs in normal mode, " +
			"measuring every second with its IIR filter, and each run reads the latest filtered values.",
		Input: edgeagent.InputForbidden,
		Properties: []edgeagent.PropertySpec{
			{Name: "bus", Description: `The I²C bus: its device ("/dev/i2c-1"), alias ("I2C1") or number ("1"); empty for the first bus found.`},
			{Name: "address", Description: "The sensor's I²C address: 0x76 (SDO to ground) or 0x77 (SDO high).", Kind: edgeagent.KindEnum, Allowed: []string{"0x76", "0x77"}, Default: "0x76"},
			{Name: "temperature_oversampling", Description: "Temperature oversampling; none is not allowed, since pressure and humidity are compensated with the temperature.", Kind: edgeagent.KindEnum, Allowed: oversampling, Default: "16x", Validate: notNoneOversampling},
			{Name: "pressure_oversampling", Description: "Pressure oversampling; none leaves pressure_hpa out.", Kind: edgeagent.KindEnum, Allowed: oversampling, Default: "16x"},
			{Name: "humidity_oversampling", Description: "Humidity oversampling (BME280 only); none leaves humidity_rh out.", Kind: edgeagent.KindEnum, Allowed: oversampling, Default: "16x"},
			{Name: "filter", Description: "The sensor's IIR filter coefficient; off takes one forced measurement per run.", Kind: edgeagent.KindEnum, Allowed: []string{"off", "2", "4", "8", "16"}, Default: "off"},
			{Name: "sensor_id", Description: "An identifier for this sensor (its location, say), put in the sensor.id attribute and the sensor_id field."},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess, edgeagent.RelFailure},
		DefaultPeriod: 10 * time.Second,
		New: func(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
			return newEnvironmentalSensor(cfg, open)
		},
	}
}

// notNoneOversampling is a PropertySpec.Validate function refusing "none".
func notNoneOversampling(v string) error {
	if v == "none" {
		return errors.New("must be at least 1x")
	}
	return nil
}

var bmxOversamplings = map[string]bmxx80.Oversampling{
	"none": bmxx80.Off, "1x": bmxx80.O1x, "2x": bmxx80.O2x, "4x": bmxx80.O4x, "8x": bmxx80.O8x, "16x": bmxx80.O16x,
}

var bmxFilters = map[string]bmxx80.Filter{
	"off": bmxx80.NoFilter, "2": bmxx80.F2, "4": bmxx80.F4, "8": bmxx80.F8, "16": bmxx80.F16,
}

// envSensorStandby is the time between measurements in normal mode (used
// with a filter).
const envSensorStandby = time.Second

type environmentalSensor struct {
	busName  string
	addr     uint16
	opts     bmxx80.Opts
	sensorID string
	open     i2cOpener

	mu  sync.Mutex // guards the bus and the device: one measurement at a time
	bus i2c.BusCloser
	dev *bmxx80.Dev
}

func newEnvironmentalSensor(cfg *edgeagent.ProcessorConfig, open i2cOpener) (edgeagent.Processor, error) {
	p := &environmentalSensor{
		busName:  strings.TrimSpace(cfg.Property("bus").String()),
		sensorID: cfg.Property("sensor_id").String(),
		open:     open,
	}
	if p.open == nil {
		p.open = openI2CBus
	}
	switch a := cfg.Property("address").String(); a {
	case "0x76":
		p.addr = 0x76
	case "0x77":
		p.addr = 0x77
	default:
		return nil, fmt.Errorf("property address: %q is not one of 0x76, 0x77", a)
	}
	for _, o := range []struct {
		prop string
		dst  *bmxx80.Oversampling
	}{
		{"temperature_oversampling", &p.opts.Temperature},
		{"pressure_oversampling", &p.opts.Pressure},
		{"humidity_oversampling", &p.opts.Humidity},
	} {
		v, ok := bmxOversamplings[cfg.Property(o.prop).String()]
		if !ok {
			return nil, fmt.Errorf("property %s: %q is not one of none, 1x, 2x, 4x, 8x, 16x", o.prop, cfg.Property(o.prop).String())
		}
		*o.dst = v
	}
	if p.opts.Temperature == bmxx80.Off {
		return nil, errors.New("property temperature_oversampling: must be at least 1x")
	}
	f, ok := bmxFilters[cfg.Property("filter").String()]
	if !ok {
		return nil, fmt.Errorf("property filter: %q is not one of off, 2, 4, 8, 16", cfg.Property("filter").String())
	}
	p.opts.Filter = f
	if f != bmxx80.NoFilter {
		p.opts.Standby = envSensorStandby
	}
	return p, nil
}

// openI2CBus opens one of the host's I²C buses through periph.
func openI2CBus(name string) (i2c.BusCloser, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("initializing periph host drivers: %w", err)
	}
	return i2creg.Open(name)
}

// Start opens the bus and the sensor. A failure is logged, not returned:
// the runs retry and report it.
func (p *environmentalSensor) Start(ctx context.Context, pc edgeagent.ProcessContext) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.openLocked(); err != nil {
		pc.Logger().Warn("environmental sensor not available yet; every run retries", "error", err)
	}
	return nil
}

// openLocked opens the bus and initializes the sensor (chip ID,
// calibration, configuration). The caller holds mu.
func (p *environmentalSensor) openLocked() error {
	var bus i2c.BusCloser
	err := deviceCall(func() (err error) {
		bus, err = p.open(p.busName)
		return err
	})
	if err != nil {
		return fmt.Errorf("opening I2C bus %q: %w", p.busName, err)
	}
	var dev *bmxx80.Dev
	err = deviceCall(func() (err error) {
		dev, err = bmxx80.NewI2C(bus, p.addr, &p.opts)
		return err
	})
	if err != nil {
		_ = deviceCall(bus.Close)
		return fmt.Errorf("initializing sensor at %#x on I2C bus %s: %w", p.addr, bus, err)
	}
	p.bus, p.dev = bus, dev
	if p.opts.Filter != bmxx80.NoFilter {
		// In normal mode a read returns the latest completed measurement:
		// wait for the first one.
		time.Sleep(bmx280MaxMeasurement(p.opts))
	}
	return nil
}

// bmx280MaxMeasurement is the longest one BMx280 measurement takes with opts
// (BME280 datasheet, section 9.1: 1.25 ms + 2.3 ms per temperature,
// pressure and humidity sample + 0.575 ms for each of pressure and
// humidity).
func bmx280MaxMeasurement(o bmxx80.Opts) time.Duration {
	samples := map[bmxx80.Oversampling]time.Duration{bmxx80.O1x: 1, bmxx80.O2x: 2, bmxx80.O4x: 4, bmxx80.O8x: 8, bmxx80.O16x: 16}
	d := 1250*time.Microsecond + 2300*time.Microsecond*samples[o.Temperature]
	if n := samples[o.Pressure]; n > 0 {
		d += 2300*time.Microsecond*n + 575*time.Microsecond
	}
	if n := samples[o.Humidity]; n > 0 {
		d += 2300*time.Microsecond*n + 575*time.Microsecond
	}
	return d
}

// closeLocked halts the sensor and closes the bus. The caller holds mu.
func (p *environmentalSensor) closeLocked() error {
	var errs []error
	if p.dev != nil {
		errs = append(errs, deviceCall(p.dev.Halt))
		p.dev = nil
	}
	if p.bus != nil {
		errs = append(errs, deviceCall(p.bus.Close))
		p.bus = nil
	}
	return errors.Join(errs...)
}

// Stop halts the sensor and closes the bus.
func (p *environmentalSensor) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.closeLocked(); err != nil {
		return fmt.Errorf("closing environmental sensor: %w", err)
	}
	return nil
}

// envReading is the JSON content of a measurement.
type envReading struct {
	Sensor       string   `json:"sensor"`
	SensorID     string   `json:"sensor_id,omitempty"`
	TemperatureC float64  `json:"temperature_c"`
	PressureHPa  *float64 `json:"pressure_hpa,omitempty"`
	HumidityRH   *float64 `json:"humidity_rh,omitempty"`
}

func (p *environmentalSensor) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	attrs := map[string]string{"i2c.address": fmt.Sprintf("%#x", p.addr)}
	if p.busName != "" {
		attrs["i2c.bus"] = p.busName
	}
	if p.sensorID != "" {
		attrs["sensor.id"] = p.sensorID
	}
	if p.dev == nil {
		if err := p.openLocked(); err != nil {
			routeDeviceFailure(pc, s, err, attrs)
			return nil
		}
	}
	attrs["i2c.bus"] = p.bus.String()
	var e physic.Env
	err := deviceCall(func() error { return p.dev.Sense(&e) })
	at := time.Now()
	if err != nil {
		err = fmt.Errorf("reading sensor at %#x on I2C bus %s: %w", p.addr, p.bus, err)
		if cerr := p.closeLocked(); cerr != nil { // the next run opens it again
			pc.Logger().Debug("closing environmental sensor after a failed read", "error", cerr)
		}
		routeDeviceFailure(pc, s, err, attrs)
		return nil
	}
	name := bmxChipName(p.dev)
	r := envReading{Sensor: name, SensorID: p.sensorID, TemperatureC: roundSensor(e.Temperature.Celsius(), 2)}
	if p.opts.Pressure != bmxx80.Off {
		hpa := roundSensor(float64(e.Pressure)/float64(100*physic.Pascal), 3)
		r.PressureHPa = &hpa
	}
	if name == "bme280" && p.opts.Humidity != bmxx80.Off {
		rh := roundSensor(float64(e.Humidity)/float64(physic.PercentRH), 3)
		r.HumidityRH = &rh
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding sensor reading: %w", err)
	}
	attrs[edgeagent.AttrMimeType] = "application/json"
	attrs[edgeagent.AttrCaptureTime] = sensorTimestamp(at)
	attrs["sensor.type"] = name
	ff := s.Create()
	ff = s.PutAttributes(ff, attrs)
	ff = s.Write(ff, b)
	s.Provenance().Receive(ff, fmt.Sprintf("i2c://%s/%#x", strings.TrimPrefix(p.bus.String(), "/"), p.addr), name)
	s.Transfer(ff, edgeagent.RelSuccess)
	return nil
}

// bmxChipName returns the detected chip in lower case ("bme280"): bmxx80
// names it at the start of the device's String ("BME280{I2C1}").
func bmxChipName(d *bmxx80.Dev) string {
	name, _, _ := strings.Cut(d.String(), "{")
	return strings.ToLower(name)
}

// roundSensor rounds v to n decimals (finer than the sensor's resolution),
// so that the JSON carries no float noise.
func roundSensor(v float64, n int) float64 {
	m := math.Pow(10, float64(n))
	return math.Round(v*m) / m
}

// deviceCall runs fn, turning a panic in a hardware driver into an error so
// that one bad device cannot take the agent down.
func deviceCall(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("device driver panicked: %v", r)
		}
	}()
	return fn()
}

// routeDeviceFailure reports a device that cannot be opened or read: it
// logs a warning, sends a flowfile with error.message, capture.time and
// attrs to failure, and yields, so the next attempt comes after
// schedule.yield at the earliest.
func routeDeviceFailure(pc edgeagent.ProcessContext, s edgeagent.ProcessSession, err error, attrs map[string]string) {
	pc.Logger().Warn("device not available; yielding", "error", err)
	a := maps.Clone(attrs)
	a[edgeagent.AttrCaptureTime] = sensorTimestamp(time.Now())
	ff := s.Create()
	ff = s.PutAttributes(ff, a)
	routeToFailure(s, ff, err)
	pc.Yield()
}
