package processors

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"

	"edgeagent.dev"
)

// ReadGPIOSpec returns the spec of ReadGPIO, a source that reads a GPIO
// input pin: its level on every run, or its edges as they happen.
func ReadGPIOSpec() edgeagent.ProcessorSpec { return readGPIOSpec(nil) }

// gpioLookup finds a GPIO pin by name or number.
type gpioLookup func(name string) (gpio.PinIO, error)

// GPIO attributes.
const (
	attrGPIOPin           = "gpio.pin"
	attrGPIOLevel         = "gpio.level"
	attrGPIOEdge          = "gpio.edge"
	attrGPIODroppedBefore = "gpio.dropped_before"
)

// gpioEdgeWait bounds each wait for an edge, so that the watcher notices
// Stop within about this long.
const gpioEdgeWait = 200 * time.Millisecond

// readGPIOSpec is ReadGPIOSpec with the pin lookup replaced (nil: the
// host's pins through periph), for tests.
func readGPIOSpec(lookup gpioLookup) edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "ReadGPIO",
		Summary: "Reads a GPIO input pin: its level on every run, or each rising / falling edge as it happens.",
		Description: "In level mode each run reads the pin and emits one flowfile. In edge mode a goroutine " +
			"started with the processor waits for the configured edges, timestamps each one when it sees it and " +
			"buffers it in memory (up to buffer_size; further edges are dropped and counted, and the next edge " +
			"that is buffered carries the count in gpio.dropped_before); each run turns the buffered edges into " +
			"flowfiles, in order, and yields when there are none. Buffered edges that no run has committed yet " +
			"are lost if the agent stops or crashes. With debounce, edges within that time of the last reported " +
			"one are ignored, and with edge both an edge that leaves the level where the last one left it is " +
			`ignored too. Content: {"pin":"GPIO17","level":1,"edge":"rising"} (application/json); attributes ` +
			"gpio.pin, gpio.level (1 or 0), gpio.edge (rising or falling; edge mode), capture.time (when the " +
			"level was read or the edge seen, RFC 3339, UTC), gpio.dropped_before (when edges were dropped), and " +
			"a RECEIVE provenance event. A pin that cannot be found or configured does not stop the flow: the " +
			"processor logs it, every run tries again, and a run that fails sends a flowfile with error.message " +
			"to failure and yields.",
		Input: edgeagent.InputForbidden,
		Properties: []edgeagent.PropertySpec{
			{Name: "pin", Description: `The pin: its name on this board ("GPIO17" on a Raspberry Pi) or its number ("17").`, Required: true},
			{Name: "mode", Description: "level: read the level on every run; edge: report edges as they happen.", Kind: edgeagent.KindEnum, Allowed: []string{"level", "edge"}, Default: "level"},
			{Name: "edge", Description: "In edge mode, the edges to report.", Kind: edgeagent.KindEnum, Allowed: []string{"rising", "falling", "both"}, Default: "both"},
			{Name: "pull", Description: "The pin's internal pull resistor.", Kind: edgeagent.KindEnum, Allowed: []string{"none", "up", "down"}, Default: "none"},
			{Name: "debounce", Description: "In edge mode, edges within this time of the last reported edge are ignored (contact bounce); 0s reports every edge.", Kind: edgeagent.KindDuration, Default: "0s"},
			{Name: "buffer_size", Description: "In edge mode, the most edges held in memory between runs; further edges are dropped and counted.", Kind: edgeagent.KindInt, Default: "1000", Validate: atLeast(1)},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess, edgeagent.RelFailure},
		DefaultPeriod: time.Second,
		New: func(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
			return newReadGPIO(cfg, lookup)
		},
	}
}

// gpioEvent is one edge seen by the watcher.
type gpioEvent struct {
	level         gpio.Level
	at            time.Time
	droppedBefore uint64 // edges dropped (buffer full) just before this one
}

type readGPIO struct {
	pinName   string
	edgeMode  bool
	edge      gpio.Edge
	pull      gpio.Pull
	debounce  time.Duration
	lookup    gpioLookup
	events    chan gpioEvent // edges buffered by the watcher
	stateMu   sync.Mutex     // guards canonical and watchErr
	canonical string         // the pin's own name once it was opened
	watchErr  error          // why the watcher ended early (a driver panic)

	mu   sync.Mutex // guards pin, stop; held while opening and closing
	pin  gpio.PinIO // nil until opened
	stop chan struct{}
	wg   sync.WaitGroup // the watcher goroutine
}

func newReadGPIO(cfg *edgeagent.ProcessorConfig, lookup gpioLookup) (edgeagent.Processor, error) {
	p := &readGPIO{pinName: strings.TrimSpace(cfg.Property("pin").String()), lookup: lookup}
	if p.pinName == "" {
		return nil, fmt.Errorf("property pin: required")
	}
	if p.lookup == nil {
		p.lookup = lookupGPIOPin
	}
	switch m := cfg.Property("mode").String(); m {
	case "level":
	case "edge":
		p.edgeMode = true
	default:
		return nil, fmt.Errorf("property mode: %q is not one of level, edge", m)
	}
	switch e := cfg.Property("edge").String(); e {
	case "rising":
		p.edge = gpio.RisingEdge
	case "falling":
		p.edge = gpio.FallingEdge
	case "both":
		p.edge = gpio.BothEdges
	default:
		return nil, fmt.Errorf("property edge: %q is not one of rising, falling, both", e)
	}
	switch pl := cfg.Property("pull").String(); pl {
	case "none":
		p.pull = gpio.Float
	case "up":
		p.pull = gpio.PullUp
	case "down":
		p.pull = gpio.PullDown
	default:
		return nil, fmt.Errorf("property pull: %q is not one of none, up, down", pl)
	}
	var err error
	if p.debounce, err = cfg.Property("debounce").Duration(); err != nil {
		return nil, fmt.Errorf("property debounce: %w", err)
	}
	n, err := intProp(cfg, "buffer_size", 1)
	if err != nil {
		return nil, err
	}
	p.events = make(chan gpioEvent, n)
	p.canonical = p.pinName
	return p, nil
}

// lookupGPIOPin finds one of the host's pins through periph.
func lookupGPIOPin(name string) (gpio.PinIO, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("initializing periph host drivers: %w", err)
	}
	p := gpioreg.ByName(name)
	if p == nil {
		return nil, fmt.Errorf("no GPIO pin %q on this board", name)
	}
	return p, nil
}

// Start opens the pin and, in edge mode, starts watching it. A failure is
// logged, not returned: the runs retry and report it.
func (p *readGPIO) Start(ctx context.Context, pc edgeagent.ProcessContext) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.openLocked(pc.Logger()); err != nil {
		pc.Logger().Warn("GPIO pin not available yet; every run retries", "pin", p.pinName, "error", err)
	}
	return nil
}

// openLocked looks the pin up, configures it as an input and, in edge
// mode, starts the watcher. The caller holds mu.
func (p *readGPIO) openLocked(log *slog.Logger) error {
	var pin gpio.PinIO
	err := deviceCall(func() (err error) {
		pin, err = p.lookup(p.pinName)
		return err
	})
	if err != nil {
		return fmt.Errorf("finding GPIO pin %q: %w", p.pinName, err)
	}
	edge := gpio.NoEdge
	if p.edgeMode {
		edge = p.edge
	}
	if err := deviceCall(func() error { return pin.In(p.pull, edge) }); err != nil {
		return fmt.Errorf("configuring GPIO pin %s as an input: %w", pin, err)
	}
	p.pin = pin
	p.stateMu.Lock()
	p.canonical = pin.Name()
	p.watchErr = nil
	p.stateMu.Unlock()
	if p.edgeMode {
		p.stop = make(chan struct{})
		p.wg.Add(1)
		go p.watch(pin, p.stop, log)
	}
	return nil
}

// pinLabel is the pin's own name once it was opened, the configured one
// before.
func (p *readGPIO) pinLabel() string {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.canonical
}

// watcherError returns why the watcher ended early, or nil.
func (p *readGPIO) watcherError() error {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.watchErr
}

// watch waits for edges until stop is closed and buffers them.
func (p *readGPIO) watch(pin gpio.PinIO, stop <-chan struct{}, log *slog.Logger) {
	defer p.wg.Done()
	defer func() {
		// A panicking driver must not take the agent down: remember it,
		// and the next run reopens the pin.
		if r := recover(); r != nil {
			err := fmt.Errorf("watching GPIO pin %s: device driver panicked: %v", p.pinName, r)
			log.Error("GPIO watcher stopped", "error", err)
			p.stateMu.Lock()
			p.watchErr = err
			p.stateMu.Unlock()
		}
	}()
	var (
		dropped   uint64
		last      time.Time
		lastLevel = pin.Read()
	)
	for {
		select {
		case <-stop:
			return
		default:
		}
		began := time.Now()
		if !pin.WaitForEdge(gpioEdgeWait) {
			// A driver that returns at once (an error it cannot report)
			// must not make this loop spin.
			if rest := gpioEdgeWait - time.Since(began); rest > gpioEdgeWait/2 {
				select {
				case <-stop:
					return
				case <-time.After(rest):
				}
			}
			continue
		}
		at := time.Now()
		level := pin.Read()
		switch {
		case p.edge == gpio.RisingEdge && level != gpio.High,
			p.edge == gpio.FallingEdge && level != gpio.Low,
			p.edge == gpio.BothEdges && level == lastLevel,
			p.debounce > 0 && !last.IsZero() && at.Sub(last) < p.debounce:
			continue
		}
		last, lastLevel = at, level
		select {
		case p.events <- gpioEvent{level: level, at: at, droppedBefore: dropped}:
			dropped = 0
		default:
			if dropped == 0 {
				log.Warn("GPIO edge buffer full; dropping edges until a run drains it", "pin", pin.Name(), "buffer_size", cap(p.events))
			}
			dropped++
		}
	}
}

// closeLocked stops the watcher and disables edge detection. The caller
// holds mu.
func (p *readGPIO) closeLocked() error {
	if p.stop != nil {
		close(p.stop)
		p.stop = nil
		p.wg.Wait()
	}
	if p.pin == nil {
		return nil
	}
	pin := p.pin
	p.pin = nil
	if p.edgeMode {
		return deviceCall(func() error { return pin.In(gpio.PullNoChange, gpio.NoEdge) })
	}
	return nil
}

// Stop ends the watcher; it has exited when Stop returns.
func (p *readGPIO) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.closeLocked(); err != nil {
		return fmt.Errorf("releasing GPIO pin %s: %w", p.pinName, err)
	}
	return nil
}

// gpioReading is the JSON content of a flowfile.
type gpioReading struct {
	Pin           string `json:"pin"`
	Level         int    `json:"level"`
	Edge          string `json:"edge,omitempty"`
	DroppedBefore uint64 `json:"dropped_before,omitempty"`
}

func (p *readGPIO) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	p.mu.Lock()
	if p.pin == nil {
		if err := p.openLocked(pc.Logger()); err != nil {
			p.mu.Unlock()
			routeDeviceFailure(pc, s, err, map[string]string{attrGPIOPin: p.pinName})
			return nil
		}
	}
	if err := p.watcherError(); err != nil {
		_ = p.closeLocked() // the next run opens the pin again
		p.mu.Unlock()
		routeDeviceFailure(pc, s, err, map[string]string{attrGPIOPin: p.pinLabel()})
		return nil
	}
	pin := p.pin
	p.mu.Unlock()
	name := p.pinLabel()
	if !p.edgeMode {
		var level gpio.Level
		err := deviceCall(func() error { level = pin.Read(); return nil })
		if err != nil {
			p.mu.Lock()
			_ = p.closeLocked() // the next run looks the pin up again
			p.mu.Unlock()
			routeDeviceFailure(pc, s, fmt.Errorf("reading GPIO pin %s: %w", name, err), map[string]string{attrGPIOPin: name})
			return nil
		}
		return p.emit(s, name, gpioEvent{level: level, at: time.Now()}, "")
	}
	n := 0
	for avail := len(p.events); n < avail; n++ {
		var ev gpioEvent
		select {
		case ev = <-p.events:
		default: // another run took it
		}
		if ev.at.IsZero() {
			break
		}
		edge := "falling"
		if ev.level == gpio.High {
			edge = "rising"
		}
		if err := p.emit(s, name, ev, edge); err != nil {
			return err
		}
	}
	if n == 0 {
		pc.Yield()
	}
	return nil
}

// emit creates the flowfile of one level reading or edge.
func (p *readGPIO) emit(s edgeagent.ProcessSession, name string, ev gpioEvent, edge string) error {
	level := 0
	if ev.level == gpio.High {
		level = 1
	}
	b, err := json.Marshal(gpioReading{Pin: name, Level: level, Edge: edge, DroppedBefore: ev.droppedBefore})
	if err != nil {
		return fmt.Errorf("encoding GPIO reading: %w", err)
	}
	attrs := map[string]string{
		edgeagent.AttrMimeType:    "application/json",
		edgeagent.AttrCaptureTime: sensorTimestamp(ev.at),
		attrGPIOPin:               name,
		attrGPIOLevel:             strconv.Itoa(level),
	}
	if edge != "" {
		attrs[attrGPIOEdge] = edge
	}
	if ev.droppedBefore > 0 {
		attrs[attrGPIODroppedBefore] = strconv.FormatUint(ev.droppedBefore, 10)
	}
	ff := s.Create()
	ff = s.PutAttributes(ff, attrs)
	ff = s.Write(ff, b)
	s.Provenance().Receive(ff, "gpio://"+name, "")
	s.Transfer(ff, edgeagent.RelSuccess)
	return nil
}
