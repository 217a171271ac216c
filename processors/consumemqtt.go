package processors

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/transport/mqtt"
)

// ConsumeMQTTSpec returns the spec of ConsumeMQTT, which turns messages from
// MQTT subscriptions into flowfiles and acknowledges them to the broker only
// after the session holding them committed.
func ConsumeMQTTSpec() edgeagent.ProcessorSpec {
	props := append(mqttConnectionProperties(),
		edgeagent.PropertySpec{Name: "topics", Description: "Comma-separated topic filters (wildcards + and # allowed).", Required: true},
		edgeagent.PropertySpec{Name: "qos", Description: "The subscription QoS: 0, 1 or 2. QoS 0 messages can be lost (the broker does not keep them).", Kind: edgeagent.KindEnum, Allowed: []string{"0", "1", "2"}, Default: "1"},
		edgeagent.PropertySpec{Name: "clean_session", Description: "false keeps the session at the broker while the agent is away (queued QoS 1/2 messages, un-acknowledged ones redelivered).", Kind: edgeagent.KindBool, Default: "false"},
		edgeagent.PropertySpec{Name: "max_buffered", Description: "The most received messages held in memory; when full, the client stops reading and the broker keeps the rest.", Kind: edgeagent.KindInt, Default: "1000", Validate: atLeast(1)},
		edgeagent.PropertySpec{Name: "batch_size", Description: "The most messages one run turns into flowfiles (one commit).", Kind: edgeagent.KindInt, Default: "500", Validate: atLeast(1)},
	)
	return edgeagent.ProcessorSpec{
		Type:    "ConsumeMQTT",
		Summary: "Receives MQTT messages as flowfiles; QoS 1/2 messages are acknowledged only after the flowfiles are committed.",
		Description: "Subscribes with a persistent session (clean_session false) and manual acknowledgements: a message is " +
			"acknowledged to the broker only after the session that turned it into a flowfile committed, so a crash, a " +
			"failed commit or backpressure never loses it: the broker redelivers it (a redelivery can duplicate a message " +
			"already committed). Under backpressure the processor is not run, its bounded buffer fills, the client stops " +
			"reading and the broker holds the messages. Attributes: mqtt.topic, mqtt.qos, mqtt.retained, mqtt.duplicate, " +
			"mqtt.broker; a RECEIVE provenance event names the broker and topic.",
		Input:         edgeagent.InputForbidden,
		Properties:    props,
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		New:           newConsumeMQTT,
	}
}

type consumeMQTT struct {
	opts     mqtt.Options
	topics   map[string]byte
	buffered int
	batch    int
	c        *mqtt.Consumer

	mu    sync.Mutex
	retry []*mqtt.Message // taken by a session that rolled back; used first
}

func newConsumeMQTT(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	o, err := mqttOptions(cfg)
	if err != nil {
		return nil, err
	}
	if o.CleanSession, err = boolProp(cfg, "clean_session"); err != nil {
		return nil, err
	}
	q, err := qosProp(cfg)
	if err != nil {
		return nil, err
	}
	p := &consumeMQTT{opts: o, topics: map[string]byte{}}
	for _, t := range strings.Split(cfg.Property("topics").String(), ",") {
		if t = strings.TrimSpace(t); t != "" {
			p.topics[t] = q
		}
	}
	if len(p.topics) == 0 {
		return nil, errors.New("property topics: no topic filter")
	}
	n, err := intProp(cfg, "max_buffered", 1)
	if err != nil {
		return nil, err
	}
	p.buffered = int(n)
	if n, err = intProp(cfg, "batch_size", 1); err != nil {
		return nil, err
	}
	p.batch = int(n)
	return p, nil
}

func (p *consumeMQTT) Start(ctx context.Context, pc edgeagent.ProcessContext) error {
	p.c = mqtt.NewConsumer(p.opts, p.topics, p.buffered)
	return connectMQTT(ctx, pc, p.opts, p.c.Connect)
}

func (p *consumeMQTT) Stop(ctx context.Context) error {
	if p.c == nil {
		return nil
	}
	return closeMQTT(ctx, p.c.Close)
}

func (p *consumeMQTT) take() []*mqtt.Message {
	p.mu.Lock()
	msgs := p.retry
	p.retry = nil
	p.mu.Unlock()
	if len(msgs) < p.batch {
		msgs = append(msgs, p.c.Poll(p.batch-len(msgs))...)
	}
	return msgs
}

func (p *consumeMQTT) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	msgs := p.take()
	if len(msgs) == 0 {
		return nil // the engine backs off; messages wake nothing, so keep the wait short
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, m := range msgs {
		ff := s.Create()
		ff = s.Write(ff, m.Payload)
		ff = s.PutAttributes(ff, map[string]string{
			"mqtt.topic":              m.Topic,
			"mqtt.qos":                strconv.Itoa(int(m.QoS)),
			"mqtt.retained":           strconv.FormatBool(m.Retained),
			"mqtt.duplicate":          strconv.FormatBool(m.Duplicate),
			"mqtt.broker":             p.opts.Broker,
			edgeagent.AttrCaptureTime: now,
		})
		s.Provenance().Receive(ff, transitURI(p.opts.Broker, m.Topic), "qos="+strconv.Itoa(int(m.QoS)))
		s.Transfer(ff, edgeagent.RelSuccess)
	}
	s.OnCommitted(func() {
		for _, m := range msgs {
			m.Ack()
		}
	})
	s.OnRolledBack(func() {
		p.mu.Lock()
		p.retry = append(msgs, p.retry...)
		p.mu.Unlock()
	})
	return nil
}
