package pulsar

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// SubscriptionType is how a subscription shares messages among its consumers.
type SubscriptionType string

// Subscription types.
const (
	// Exclusive allows one consumer.
	Exclusive SubscriptionType = "exclusive"
	// Shared spreads messages over all consumers.
	Shared SubscriptionType = "shared"
	// Failover delivers to one active consumer; another takes over when it goes.
	Failover SubscriptionType = "failover"
	// KeyShared spreads messages over consumers by key; one key goes to one consumer.
	KeyShared SubscriptionType = "key_shared"
)

// InitialPosition is where a new subscription starts.
type InitialPosition string

// Initial positions.
const (
	Latest   InitialPosition = "latest"
	Earliest InitialPosition = "earliest"
)

// Consumer defaults.
const (
	DefaultReceiverQueueSize   = 10
	DefaultNackRedeliveryDelay = time.Second
	DefaultPatternDiscovery    = time.Minute
)

// ConsumerOptions configures a Consumer.
type ConsumerOptions struct {
	// Topics lists topic names; TopicsPattern is a regular expression over
	// full topic names of one namespace
	// (persistent://public/default/sensor-.*). Set exactly one.
	Topics        []string
	TopicsPattern string
	// Subscription is the subscription name; the broker keeps its position.
	Subscription string
	// Type is exclusive (default), shared, failover or key_shared.
	Type SubscriptionType
	// InitialPosition is where a subscription that does not exist yet
	// starts: latest (default) or earliest.
	InitialPosition InitialPosition
	// Name is the consumer name shown by the broker; empty picks one.
	Name string
	// ReceiverQueueSize is how many messages the client prefetches
	// (default 10, kept small so that not calling Receive is backpressure;
	// pulsar-client-go holds up to about three times this many).
	ReceiverQueueSize int
	// NackRedeliveryDelay is how long a negatively acknowledged message
	// waits before redelivery (default 1s).
	NackRedeliveryDelay time.Duration
	// PatternDiscoveryInterval is how often TopicsPattern is re-evaluated
	// (default 1m).
	PatternDiscoveryInterval time.Duration
}

// Validate checks the options; every problem wraps ErrInvalidOptions.
func (o ConsumerOptions) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	switch {
	case len(o.Topics) == 0 && o.TopicsPattern == "":
		bad("consumer needs topics or a topics pattern")
	case len(o.Topics) > 0 && o.TopicsPattern != "":
		bad("set topics or a topics pattern, not both")
	}
	for i, t := range o.Topics {
		if strings.TrimSpace(t) == "" {
			bad("topic %d is empty", i+1)
		}
	}
	if o.TopicsPattern != "" {
		if _, err := regexp.Compile(o.TopicsPattern); err != nil {
			bad("topics pattern: %v", err)
		}
	}
	if strings.TrimSpace(o.Subscription) == "" {
		bad("subscription name is empty")
	}
	if _, err := o.subType(); err != nil {
		bad("%v", err)
	}
	if _, err := o.initialPosition(); err != nil {
		bad("%v", err)
	}
	if o.ReceiverQueueSize < 0 {
		bad("receiver queue size %d is negative", o.ReceiverQueueSize)
	}
	if o.NackRedeliveryDelay < 0 {
		bad("nack redelivery delay %s is negative", o.NackRedeliveryDelay)
	}
	if o.PatternDiscoveryInterval < 0 {
		bad("pattern discovery interval %s is negative", o.PatternDiscoveryInterval)
	}
	return errors.Join(errs...)
}

func (o ConsumerOptions) subType() (pulsar.SubscriptionType, error) {
	switch o.Type {
	case "", Exclusive:
		return pulsar.Exclusive, nil
	case Shared:
		return pulsar.Shared, nil
	case Failover:
		return pulsar.Failover, nil
	case KeyShared:
		return pulsar.KeyShared, nil
	}
	return 0, fmt.Errorf("subscription type %q: want exclusive, shared, failover or key_shared", o.Type)
}

func (o ConsumerOptions) initialPosition() (pulsar.SubscriptionInitialPosition, error) {
	switch o.InitialPosition {
	case "", Latest:
		return pulsar.SubscriptionPositionLatest, nil
	case Earliest:
		return pulsar.SubscriptionPositionEarliest, nil
	}
	return 0, fmt.Errorf("initial position %q: want latest or earliest", o.InitialPosition)
}

// Consumer receives from a subscription. Messages the application does not
// acknowledge are delivered again after a reconnection or a consumer
// restart; Nack asks for redelivery sooner.
//
// Receive may be called from several goroutines; Ack and Nack from any.
// Close it (or its Client) when done.
type Consumer struct {
	c    *Client
	pc   pulsar.Consumer
	opts ConsumerOptions

	closeOnce sync.Once
}

// Subscribe creates the subscription if needed and attaches a consumer to
// it. It returns when the broker accepted the consumer, when ctx ends, or
// after the client's OperationTimeout.
func (c *Client) Subscribe(ctx context.Context, opts ConsumerOptions) (*Consumer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	subType, _ := opts.subType()
	pos, _ := opts.initialPosition()
	co := pulsar.ConsumerOptions{
		Topics:                      opts.Topics,
		TopicsPattern:               opts.TopicsPattern,
		SubscriptionName:            opts.Subscription,
		Type:                        subType,
		SubscriptionInitialPosition: pos,
		Name:                        opts.Name,
		ReceiverQueueSize:           opts.ReceiverQueueSize,
		NackRedeliveryDelay:         opts.NackRedeliveryDelay,
		AutoDiscoveryPeriod:         opts.PatternDiscoveryInterval,
	}
	if co.ReceiverQueueSize == 0 {
		co.ReceiverQueueSize = DefaultReceiverQueueSize
	}
	if co.NackRedeliveryDelay == 0 {
		co.NackRedeliveryDelay = DefaultNackRedeliveryDelay
	}
	if co.AutoDiscoveryPeriod == 0 {
		co.AutoDiscoveryPeriod = DefaultPatternDiscovery
	}
	what := opts.TopicsPattern
	if what == "" {
		what = strings.Join(opts.Topics, ",")
	}
	pc, err := start(ctx, c, func() (pulsar.Consumer, error) { return c.pc.Subscribe(co) },
		func(cs pulsar.Consumer) { cs.Close() })
	if err != nil {
		return nil, fmt.Errorf("subscribing %s to %s: %w", opts.Subscription, what, c.explain(err))
	}
	cs := &Consumer{c: c, pc: pc, opts: opts}
	if !c.register(nil, cs) {
		pc.Close()
		return nil, ErrClosed
	}
	c.log.Info("pulsar consumer ready", "topics", what, "subscription", opts.Subscription)
	return cs, nil
}

// Receive returns the next message, waiting for one until ctx ends.
func (cs *Consumer) Receive(ctx context.Context) (*Received, error) {
	m, err := cs.pc.Receive(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("receiving from subscription %s: %w", cs.opts.Subscription, err)
	}
	cs.c.count.received.Add(1)
	return &Received{m: m, cs: cs}, nil
}

// Close detaches the consumer; what it received and did not acknowledge is
// delivered again (to another consumer, or to this subscription's next one).
func (cs *Consumer) Close() {
	cs.c.unregister(nil, cs)
	cs.close()
}

func (cs *Consumer) close() { cs.closeOnce.Do(cs.pc.Close) }

// Received is one received message.
type Received struct {
	m  pulsar.Message
	cs *Consumer
}

// Payload is the message content.
func (r *Received) Payload() []byte { return r.m.Payload() }

// Topic is the full name of the topic the message came from.
func (r *Received) Topic() string { return r.m.Topic() }

// Key is the message key.
func (r *Received) Key() string { return r.m.Key() }

// Properties are the message properties (the caller must not modify them).
func (r *Received) Properties() map[string]string { return r.m.Properties() }

// FlowFileID is the edgeagent flowfile ID the sender attached, or "".
func (r *Received) FlowFileID() string { return r.m.Properties()[PropertyFlowFileID] }

// MessageID is the broker's message ID as a string (ledger:entry:batch:partition).
func (r *Received) MessageID() string { return r.m.ID().String() }

// PublishTime is when the producer published the message.
func (r *Received) PublishTime() time.Time { return r.m.PublishTime() }

// EventTime is the producer's event time, zero when unset.
func (r *Received) EventTime() time.Time { return r.m.EventTime() }

// ProducerName is the name of the producer that sent the message.
func (r *Received) ProducerName() string { return r.m.ProducerName() }

// RedeliveryCount is how many times the message was delivered before.
func (r *Received) RedeliveryCount() uint32 { return r.m.RedeliveryCount() }

// Ack acknowledges the message: the subscription will not deliver it again.
func (r *Received) Ack() error {
	if err := r.cs.pc.Ack(r.m); err != nil {
		r.cs.c.count.ackErrors.Add(1)
		return fmt.Errorf("acknowledging %s: %w", r.m.ID(), err)
	}
	r.cs.c.count.acked.Add(1)
	return nil
}

// Nack asks for the message to be delivered again after the consumer's
// NackRedeliveryDelay.
func (r *Received) Nack() {
	r.cs.pc.Nack(r.m)
	r.cs.c.count.nacked.Add(1)
}
