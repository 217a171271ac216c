package processors

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"edgeagent.dev"
	"edgeagent.dev/transport/pulsar"
)

// Attributes ConsumePulsar sets.
const (
	AttrPulsarTopic           = "pulsar.topic"
	AttrPulsarKey             = "pulsar.key"
	AttrPulsarMessageID       = "pulsar.message_id"
	AttrPulsarPublishTime     = "pulsar.publish_time"
	AttrPulsarEventTime       = "pulsar.event_time"
	AttrPulsarProducerName    = "pulsar.producer_name"
	AttrPulsarRedeliveryCount = "pulsar.redelivery_count"
	// AttrPulsarPropertyPrefix prefixes each message property's name.
	AttrPulsarPropertyPrefix = "pulsar.property."
)

// consumeReceiveWait is how long a run waits for a first message, and
// consumeDrainWait how long for each further one, before committing what it
// has.
const (
	consumeReceiveWait = 100 * time.Millisecond
	consumeDrainWait   = 2 * time.Millisecond
)

// ConsumePulsarSpec returns the spec of ConsumePulsar, which turns messages
// of a Pulsar subscription into flowfiles and acknowledges each one only
// after the session holding its flowfile committed.
func ConsumePulsarSpec() edgeagent.ProcessorSpec {
	props := append(pulsarConnectionProperties(),
		edgeagent.PropertySpec{Name: "topics", Description: "Comma-separated topic names (name, tenant/namespace/name or full names). Set this or topic_pattern."},
		edgeagent.PropertySpec{Name: "topic_pattern", Description: "A regular expression over the full topic names of one namespace (persistent://public/default/sensor-.*), re-evaluated every minute. Set this or topics.", Kind: edgeagent.KindRegex},
		edgeagent.PropertySpec{Name: "subscription", Description: "The subscription name; the broker keeps its position while the agent is away.", Required: true},
		edgeagent.PropertySpec{Name: "subscription_type", Description: "exclusive: one consumer; shared: messages spread over consumers; failover: one active consumer, another takes over; key_shared: spread by key.", Kind: edgeagent.KindEnum, Allowed: []string{"exclusive", "shared", "failover", "key_shared"}, Default: "exclusive"},
		edgeagent.PropertySpec{Name: "initial_position", Description: "Where a subscription that does not exist yet starts: latest or earliest.", Kind: edgeagent.KindEnum, Allowed: []string{"latest", "earliest"}, Default: "latest"},
		edgeagent.PropertySpec{Name: "receiver_queue_size", Description: "How many messages the client fetches ahead. Kept small: under backpressure the processor is not run, the client stops asking, and the broker keeps the rest.", Kind: edgeagent.KindInt, Default: "10", Validate: atLeast(1)},
		edgeagent.PropertySpec{Name: "batch_size", Description: "The most messages one run turns into flowfiles (one commit).", Kind: edgeagent.KindInt, Default: "100", Validate: atLeast(1)},
		edgeagent.PropertySpec{Name: "consumer_name", Description: "The consumer name the broker shows. Default: derived from agent.id and the processor name."},
		edgeagent.PropertySpec{Name: "nack_redelivery_delay", Description: "How long a message whose session rolled back waits before the broker delivers it again.", Kind: edgeagent.KindDuration, Default: "1s"},
	)
	return edgeagent.ProcessorSpec{
		Type:    "ConsumePulsar",
		Summary: "Receives Pulsar messages as flowfiles; each message is acknowledged only after its flowfile was committed.",
		Description: "Each run receives up to batch_size messages and turns each into a flowfile (content: the payload) with the " +
			"attributes pulsar.topic (full name), pulsar.key (when set), pulsar.message_id, pulsar.publish_time and " +
			"pulsar.event_time (RFC 3339, UTC), pulsar.producer_name, pulsar.redelivery_count, and every message property " +
			"as pulsar.property.<name> (prefixed, so a property can never overwrite uuid, filename or another attribute; a " +
			"message from PublishPulsar carries pulsar.property.edgeagent.flowfile.id), and a RECEIVE provenance event whose " +
			"transit URI is the service URL and the topic's full name. A message is acknowledged only after the session " +
			"holding its flowfile committed; a rollback negatively acknowledges it (the broker delivers it again after " +
			"nack_redelivery_delay). A crash between the commit and the acknowledgement gives a duplicate, never a loss. Under " +
			"backpressure the processor is not run, so it stops receiving: the client holds at most a few times " +
			"receiver_queue_size messages and the broker keeps the rest.",
		Input:         edgeagent.InputForbidden,
		Properties:    props,
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		New:           newConsumePulsar,
	}
}

type consumePulsar struct {
	opts  pulsar.Options
	copts pulsar.ConsumerOptions
	batch int

	client *pulsar.Client
	mu     sync.Mutex
	c      *pulsar.Consumer
}

func newConsumePulsar(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	o, err := pulsarOptions(cfg)
	if err != nil {
		return nil, err
	}
	p := &consumePulsar{opts: o}
	co := pulsar.ConsumerOptions{
		TopicsPattern:   cfg.Property("topic_pattern").String(),
		Subscription:    cfg.Property("subscription").String(),
		Type:            pulsar.SubscriptionType(cfg.Property("subscription_type").String()),
		InitialPosition: pulsar.InitialPosition(cfg.Property("initial_position").String()),
		Name:            cfg.Property("consumer_name").String(),
	}
	for _, t := range strings.Split(cfg.Property("topics").String(), ",") {
		if t = strings.TrimSpace(t); t != "" {
			full, err := pulsarTopicName(t)
			if err != nil {
				return nil, fmt.Errorf("property topics: %w", err)
			}
			co.Topics = append(co.Topics, full)
		}
	}
	if co.Name == "" {
		co.Name = defaultProducerName(cfg.AgentID, cfg.Name)
	}
	n, err := intProp(cfg, "receiver_queue_size", 1)
	if err != nil {
		return nil, err
	}
	co.ReceiverQueueSize = int(n)
	if n, err = intProp(cfg, "batch_size", 1); err != nil {
		return nil, err
	}
	p.batch = int(n)
	if co.NackRedeliveryDelay, err = cfg.Property("nack_redelivery_delay").Duration(); err != nil {
		return nil, fmt.Errorf("property nack_redelivery_delay: %w", err)
	}
	if co.NackRedeliveryDelay == 0 {
		co.NackRedeliveryDelay = time.Millisecond // 0 would mean the client's default
	}
	if err := co.Validate(); err != nil {
		return nil, err
	}
	p.copts = co
	return p, nil
}

func (p *consumePulsar) Start(ctx context.Context, pc edgeagent.ProcessContext) error {
	// NewClient refuses missing or unusable TLS files and token (naming the
	// file or variable, never the token): the flow does not start.
	opts := p.opts
	opts.Logger = pc.Logger()
	var err error
	if p.client, err = pulsar.NewClient(opts); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, p.opts.ConnectionTimeout)
	defer cancel()
	if _, err := p.consumer(cctx); err != nil {
		if pulsarStartError(err) {
			return err
		}
		pc.Logger().Warn("Pulsar broker not reachable yet; retrying", "service_url", p.opts.ServiceURL, "err", err)
	}
	return nil
}

func (p *consumePulsar) Stop(context.Context) error {
	if p.client != nil {
		p.client.Close() // what was received and not acknowledged is delivered again
	}
	return nil
}

// consumer returns the consumer, subscribing first if needed.
func (p *consumePulsar) consumer(ctx context.Context) (*pulsar.Consumer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c != nil {
		return p.c, nil
	}
	cctx, cancel := context.WithTimeout(ctx, p.opts.OperationTimeout)
	defer cancel()
	c, err := p.client.Subscribe(cctx, p.copts)
	if err != nil {
		return nil, err
	}
	p.c = c
	return c, nil
}

// drop closes a consumer that failed, so the next run subscribes again.
func (p *consumePulsar) drop(c *pulsar.Consumer) {
	p.mu.Lock()
	if p.c == c {
		p.c = nil
	}
	p.mu.Unlock()
	c.Close()
}

func (p *consumePulsar) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	c, err := p.consumer(ctx)
	if err != nil {
		if ctx.Err() == nil {
			pc.Logger().Warn("subscribing to Pulsar; retrying after the yield", "service_url", p.opts.ServiceURL, "err", err)
		}
		pc.Yield()
		return nil
	}
	var msgs []*pulsar.Received
	wait := consumeReceiveWait
	for len(msgs) < p.batch {
		rctx, cancel := context.WithTimeout(ctx, wait)
		m, err := c.Receive(rctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				pc.Logger().Warn("receiving from Pulsar; subscribing again after the yield", "err", err)
				pc.Yield()
				if len(msgs) == 0 {
					p.drop(c)
				}
			}
			break
		}
		msgs = append(msgs, m)
		wait = consumeDrainWait
	}
	if len(msgs) == 0 {
		return nil
	}
	for _, m := range msgs {
		ff := s.Create()
		ff = s.Write(ff, m.Payload())
		ff = s.PutAttributes(ff, receivedAttributes(m))
		s.Provenance().Receive(ff, transitURI(p.opts.ServiceURL, m.Topic()), "message_id="+m.MessageID())
		s.Transfer(ff, edgeagent.RelSuccess)
	}
	s.OnCommitted(func() {
		for _, m := range msgs {
			if err := m.Ack(); err != nil {
				// The broker delivers it again: a duplicate, not a loss.
				pc.Logger().Warn("acknowledging a committed message", "err", err)
			}
		}
	})
	s.OnRolledBack(func() {
		for _, m := range msgs {
			m.Nack()
		}
	})
	return nil
}

// receivedAttributes are the flowfile attributes of a received message.
func receivedAttributes(m *pulsar.Received) map[string]string {
	props := m.Properties()
	a := make(map[string]string, len(props)+7)
	for k, v := range props {
		a[AttrPulsarPropertyPrefix+k] = v
	}
	a[AttrPulsarTopic] = m.Topic()
	if k := m.Key(); k != "" {
		a[AttrPulsarKey] = k
	}
	a[AttrPulsarMessageID] = m.MessageID()
	a[AttrPulsarPublishTime] = m.PublishTime().UTC().Format(time.RFC3339Nano)
	if t := m.EventTime(); !t.IsZero() {
		a[AttrPulsarEventTime] = t.UTC().Format(time.RFC3339Nano)
	}
	a[AttrPulsarProducerName] = m.ProducerName()
	a[AttrPulsarRedeliveryCount] = strconv.FormatUint(uint64(m.RedeliveryCount()), 10)
	return a
}
