package processors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"edgeagent.dev"
	"edgeagent.dev/transport/mqtt"
)

// PublishMQTTSpec returns the spec of PublishMQTT, which publishes each
// flowfile to an MQTT broker and lets it leave its queue only once the broker
// acknowledged it.
func PublishMQTTSpec() edgeagent.ProcessorSpec {
	props := append(mqttConnectionProperties(),
		edgeagent.PropertySpec{Name: "topic", Description: "The topic, with expressions (e.g. edge/${agent.id}/${camera.id}).", Required: true, Expressions: true},
		edgeagent.PropertySpec{Name: "qos", Description: "0 (at most once: loss-tolerant, a message is gone once written to the connection), 1 (at least once, PUBACK) or 2 (exactly once at the broker, PUBCOMP).", Kind: edgeagent.KindEnum, Allowed: []string{"0", "1", "2"}, Default: "1"},
		edgeagent.PropertySpec{Name: "retain", Description: "Publish with the retain flag.", Kind: edgeagent.KindBool, Default: "false"},
		edgeagent.PropertySpec{Name: "payload", Description: "content: the flowfile's content as is; envelope: JSON {\"flowfile_id\", \"attributes\", \"content\" (base64)} so receivers can drop duplicates by ID.", Kind: edgeagent.KindEnum, Allowed: []string{"content", "envelope"}, Default: "content"},
		edgeagent.PropertySpec{Name: "envelope_attributes", Description: "With payload envelope: a regex of the attribute names to include.", Kind: edgeagent.KindRegex, Default: ".*"},
		edgeagent.PropertySpec{Name: "max_in_flight", Description: "The most messages awaiting their acknowledgement (the pipelining window); also the most flowfiles one run takes.", Kind: edgeagent.KindInt, Default: "1000", Validate: atLeast(1)},
	)
	return edgeagent.ProcessorSpec{
		Type:    "PublishMQTT",
		Summary: "Publishes flowfiles to an MQTT 3.1.1 broker; a flowfile leaves its queue only after the broker's acknowledgement.",
		Description: "Each run takes up to max_in_flight queued flowfiles and publishes them pipelined (acknowledgements may come in " +
			"any order). A flowfile goes to success, with a SEND provenance event naming the broker and topic, only once the broker " +
			"acknowledged it (PUBACK for QoS 1, PUBCOMP for QoS 2). While the broker is unreachable the flowfiles stay queued " +
			"(penalized) and the processor yields; the connection is retried with capped exponential backoff. A message whose " +
			"acknowledgement was lost with the connection is published again: duplicates are possible, losses are not. " +
			"QoS 0 gives no delivery guarantee. Flowfiles whose topic cannot be evaluated or is invalid go to failure.",
		Input:         edgeagent.InputRequired,
		Properties:    props,
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess, edgeagent.RelFailure},
		New:           newPublishMQTT,
	}
}

type publishMQTT struct {
	opts     mqtt.Options
	topic    edgeagent.PropertyValue
	qos      byte
	retain   bool
	envelope bool
	envAttrs *regexp.Regexp
	pub      *mqtt.Publisher
}

func newPublishMQTT(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	o, err := mqttOptions(cfg)
	if err != nil {
		return nil, err
	}
	p := &publishMQTT{topic: cfg.Property("topic"), envelope: cfg.Property("payload").String() == "envelope"}
	if p.qos, err = qosProp(cfg); err != nil {
		return nil, err
	}
	if p.retain, err = boolProp(cfg, "retain"); err != nil {
		return nil, err
	}
	if p.envAttrs, err = compileFullMatch("envelope_attributes", cfg.Property("envelope_attributes").String()); err != nil {
		return nil, err
	}
	n, err := intProp(cfg, "max_in_flight", 1)
	if err != nil {
		return nil, err
	}
	if n > 65535 {
		return nil, errors.New("property max_in_flight: at most 65535 (MQTT packet identifiers)")
	}
	o.MaxInFlight = int(n)
	p.opts = o
	return p, nil
}

func (p *publishMQTT) Start(ctx context.Context, pc edgeagent.ProcessContext) error {
	p.pub = mqtt.NewPublisher(p.opts)
	return connectMQTT(ctx, pc, p.opts, p.pub.Connect)
}

func (p *publishMQTT) Stop(ctx context.Context) error {
	if p.pub == nil {
		return nil
	}
	return closeMQTT(ctx, p.pub.Close)
}

// envelope is the JSON payload with payload: envelope.
type envelope struct {
	FlowFileID string            `json:"flowfile_id"`
	Attributes map[string]string `json:"attributes"`
	Content    []byte            `json:"content"`
}

func (p *publishMQTT) payload(s edgeagent.ProcessSession, ff *edgeagent.FlowFile) ([]byte, error) {
	b, err := s.ReadAll(ff)
	if err != nil || !p.envelope {
		return b, err
	}
	env := envelope{FlowFileID: ff.ID.String(), Attributes: map[string]string{}, Content: b}
	for k, v := range ff.AllAttributes() {
		if p.envAttrs.MatchString(k) {
			env.Attributes[k] = v
		}
	}
	return json.Marshal(env)
}

func (p *publishMQTT) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	if !p.pub.Stats().Connected {
		pc.Yield()
		return nil
	}
	batch := s.GetBatch(p.opts.MaxInFlight)
	if len(batch) == 0 {
		return nil
	}
	type sent struct {
		ff      *edgeagent.FlowFile
		topic   string
		pending *mqtt.Pending
	}
	inFlight := make([]sent, 0, len(batch))
	for i, ff := range batch {
		if stopping(ctx, s, batch[i:]) {
			break
		}
		topic, err := p.topic.Evaluate(ff)
		if err == nil && topic == "" {
			err = errors.New("the topic evaluated to an empty string")
		}
		if err != nil {
			routeToFailure(s, ff, fmt.Errorf("evaluating topic: %w", err))
			continue
		}
		body, err := p.payload(s, ff)
		if err != nil {
			s.Return(s.Penalize(ff))
			pc.Logger().Error("reading content", "flowfile", ff.ID, "err", err)
			continue
		}
		inFlight = append(inFlight, sent{ff, topic, p.pub.Publish(ctx, topic, p.qos, p.retain, body)})
	}
	failed := 0
	for _, m := range inFlight {
		err := m.pending.Wait(ctx) // a stopping flow keeps unacknowledged flowfiles queued
		switch {
		case err == nil:
			s.Provenance().Send(m.ff, transitURI(p.opts.Broker, m.topic), "qos="+strconv.Itoa(int(p.qos)))
			s.Transfer(m.ff, edgeagent.RelSuccess)
		case errors.Is(err, mqtt.ErrInvalidTopic):
			routeToFailure(s, m.ff, err)
		default:
			// Not acknowledged: keep it, try again after the penalty.
			failed++
			s.Return(s.Penalize(m.ff))
		}
	}
	if failed > 0 {
		pc.Logger().Warn("messages not acknowledged by the broker; they stay queued and are retried", "count", failed, "broker", p.opts.Broker)
		pc.Yield()
	}
	return nil
}
