package pulsar

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// PropertyFlowFileID is the message property that carries the flowfile ID
// on every message a Producer sends.
const PropertyFlowFileID = "edgeagent.flowfile.id"

// Compression names a payload codec.
type Compression string

// Compression codecs.
const (
	CompressionNone Compression = "none"
	CompressionLZ4  Compression = "lz4"
	CompressionZstd Compression = "zstd"
)

// Producer defaults.
const (
	DefaultBatchingMaxMessages = 1000
	DefaultBatchingMaxDelay    = 10 * time.Millisecond
	DefaultSendTimeout         = 30 * time.Second
	DefaultMaxPendingMessages  = 1000
)

// ProducerOptions configures a Producer.
type ProducerOptions struct {
	// Topic is a full name (persistent://tenant/namespace/topic) or a short
	// one (topic, meaning persistent://public/default/topic).
	Topic string
	// Name is the producer name. The broker de-duplicates by producer name
	// and sequence ID, so a producer that must resume de-duplication after
	// an agent restart keeps the same name; empty lets the broker assign
	// one (and de-duplication then cannot survive a restart).
	Name string
	// Compression is none (default), lz4 or zstd.
	Compression Compression
	// DisableBatching sends every message on its own. Batching is on by
	// default: up to BatchingMaxMessages messages or BatchingMaxDelay.
	// (Unbatched messages go out as batches of one, so a message sent alone
	// waits up to BatchingMaxDelay: the library's own unbatched path races
	// with its reconnection in pulsar-client-go v0.19.0, and reads the
	// same way in v0.20.0.)
	DisableBatching     bool
	BatchingMaxMessages int
	BatchingMaxDelay    time.Duration
	// SendTimeout fails a send the broker has not acknowledged within it,
	// reconnections included (default 30s; negative waits forever).
	SendTimeout time.Duration
	// MaxPendingMessages bounds the sends waiting for a receipt; SendAsync
	// blocks (up to its ctx) when it is reached (default 1000).
	MaxPendingMessages int
	// NoFlowFileKey leaves the message key empty when Message.Key is empty,
	// instead of using the flowfile ID. The ID is in PropertyFlowFileID
	// either way.
	NoFlowFileKey bool
}

// Validate checks the options; every problem wraps ErrInvalidOptions.
func (o ProducerOptions) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if strings.TrimSpace(o.Topic) == "" {
		bad("producer topic is empty")
	}
	if _, err := o.compression(); err != nil {
		bad("%v", err)
	}
	if o.BatchingMaxMessages < 0 {
		bad("batching max messages %d is negative", o.BatchingMaxMessages)
	}
	if o.BatchingMaxDelay < 0 {
		bad("batching max delay %s is negative", o.BatchingMaxDelay)
	}
	if o.MaxPendingMessages < 0 {
		bad("max pending messages %d is negative", o.MaxPendingMessages)
	}
	return errors.Join(errs...)
}

func (o ProducerOptions) compression() (pulsar.CompressionType, error) {
	switch o.Compression {
	case "", CompressionNone:
		return pulsar.NoCompression, nil
	case CompressionLZ4:
		return pulsar.LZ4, nil
	case CompressionZstd:
		return pulsar.ZSTD, nil
	}
	return 0, fmt.Errorf("compression %q: want none, lz4 or zstd", o.Compression)
}

// Message is one message to send.
type Message struct {
	// FlowFileID travels in PropertyFlowFileID and, unless Key is set or the
	// producer has NoFlowFileKey, as the message key.
	FlowFileID string
	// Key overrides the message key.
	Key        string
	Payload    []byte
	Properties map[string]string
	// SequenceID, when > 0, is the message's explicit sequence ID. The
	// broker drops (and acknowledges as a duplicate) a message whose
	// sequence ID is at or below the last one it stored for this producer
	// name, so IDs must increase and must survive restarts (derive them
	// from a durable counter). 0 lets the client number messages from the
	// broker's last stored ID + 1. Use one way or the other on a producer,
	// not both.
	SequenceID uint64
	// EventTime is the time the data was produced; zero leaves it unset.
	EventTime time.Time
}

// Receipt is the broker's acknowledgement of one message.
type Receipt struct {
	// MessageID is the message ID as pulsar-client-go prints it.
	MessageID string
	LedgerID  int64
	EntryID   int64
	// BatchIndex is the message's position in its batch (-1 or 0 when sent
	// alone).
	BatchIndex int32
	// SequenceID is the message's explicit sequence ID (0 when the client
	// assigned one).
	SequenceID uint64
	// Duplicate is true when the broker acknowledged the message without
	// storing it because it already had that producer name and sequence ID
	// (the message ID is then -1:-1).
	Duplicate bool
}

// Pending is a send in flight. It completes once: with a Receipt when the
// broker acknowledged the message, or with an error.
type Pending struct {
	done    chan struct{}
	once    sync.Once
	receipt Receipt
	err     error
}

// Done is closed when the send has completed.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Result returns the outcome; call it after Done is closed.
func (p *Pending) Result() (Receipt, error) { return p.receipt, p.err }

// Wait blocks until the send completes or ctx ends. When ctx ends first the
// send stays in flight (it completes later with a receipt or an error).
func (p *Pending) Wait(ctx context.Context) (Receipt, error) {
	select {
	case <-p.done:
		return p.receipt, p.err
	case <-ctx.Done():
		return Receipt{}, ctx.Err()
	}
}

// complete records the outcome; only the first call counts. It adds the
// outcome to count (when not nil) before waking the waiters, so Stats read
// after Wait include this send, and reports whether this call completed p.
func (p *Pending) complete(r Receipt, err error, count *counters) bool {
	first := false
	p.once.Do(func() {
		p.receipt, p.err = r, err
		if count != nil {
			count.send(r.Duplicate, err)
		}
		close(p.done)
		first = true
	})
	return first
}

// Producer publishes to one topic. Messages are delivered in SendAsync
// order; after a lost connection the client reconnects with backoff and
// re-sends what the broker has not acknowledged, with the same producer name
// and sequence IDs so a broker with de-duplication drops what it already
// stored.
//
// A Producer is safe for concurrent use. Close it (or its Client) when done.
type Producer struct {
	c     *Client
	p     pulsar.Producer
	topic string
	opts  ProducerOptions

	mu          sync.Mutex
	closed      bool
	outstanding map[*Pending]struct{}
}

// NewProducer creates a producer on the broker that owns the topic. It
// returns when the broker accepted the producer, when ctx ends, or after
// the client's OperationTimeout.
func (c *Client) NewProducer(ctx context.Context, opts ProducerOptions) (*Producer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	codec, _ := opts.compression()
	po := pulsar.ProducerOptions{
		Topic:                   opts.Topic,
		Name:                    opts.Name,
		CompressionType:         codec,
		BatchingMaxMessages:     uint(opts.BatchingMaxMessages),
		BatchingMaxPublishDelay: opts.BatchingMaxDelay,
		SendTimeout:             opts.SendTimeout,
		MaxPendingMessages:      opts.MaxPendingMessages,
	}
	switch {
	case opts.DisableBatching:
		// Not pulsar-client-go's DisableBatching: its unbatched send path
		// reads the producer's encryptor while a reconnection replaces it
		// (a data race in v0.19.0; v0.20.0 reads it the same way). A batch
		// of one is the same on the wire apart from num_messages_in_batch,
		// and de-duplicates per message.
		po.BatchingMaxMessages = 1
	case po.BatchingMaxMessages == 0:
		po.BatchingMaxMessages = DefaultBatchingMaxMessages
	}
	if po.BatchingMaxPublishDelay == 0 {
		po.BatchingMaxPublishDelay = DefaultBatchingMaxDelay
	}
	switch {
	case po.SendTimeout == 0:
		po.SendTimeout = DefaultSendTimeout
	case po.SendTimeout < 0:
		po.SendTimeout = -1 // pulsar-client-go: no timeout
	}
	if po.MaxPendingMessages == 0 {
		po.MaxPendingMessages = DefaultMaxPendingMessages
	}
	pp, err := start(ctx, c, func() (pulsar.Producer, error) { return c.pc.CreateProducer(po) },
		func(p pulsar.Producer) { p.Close() })
	if err != nil {
		return nil, fmt.Errorf("creating producer on topic %s: %w", opts.Topic, c.explain(err))
	}
	p := &Producer{c: c, p: pp, topic: opts.Topic, opts: opts, outstanding: map[*Pending]struct{}{}}
	if !c.register(p, nil) {
		pp.Close()
		return nil, ErrClosed
	}
	c.log.Info("pulsar producer ready", "topic", opts.Topic, "producer", pp.Name())
	return p, nil
}

// Name is the producer name (assigned by the broker when none was set).
func (p *Producer) Name() string { return p.p.Name() }

// Topic is the topic the producer publishes to.
func (p *Producer) Topic() string { return p.topic }

// SendAsync queues msg and returns at once; the Pending completes when the
// broker acknowledges the message or the send fails. ctx bounds only the
// queueing (blocked on MaxPendingMessages); a queued message is governed by
// SendTimeout.
func (p *Producer) SendAsync(ctx context.Context, msg Message) *Pending {
	pend := &Pending{done: make(chan struct{})}
	if msg.SequenceID > math.MaxInt64 {
		pend.complete(Receipt{}, fmt.Errorf("sequence id %d exceeds the int64 range", msg.SequenceID), nil)
		return pend
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pend.complete(Receipt{}, ErrClosed, nil)
		return pend
	}
	p.outstanding[pend] = struct{}{}
	p.mu.Unlock()

	pm := &pulsar.ProducerMessage{
		Payload:   msg.Payload,
		Key:       msg.Key,
		EventTime: msg.EventTime,
	}
	if pm.Key == "" && !p.opts.NoFlowFileKey {
		pm.Key = msg.FlowFileID
	}
	if len(msg.Properties) > 0 || msg.FlowFileID != "" {
		pm.Properties = make(map[string]string, len(msg.Properties)+1)
		for k, v := range msg.Properties {
			pm.Properties[k] = v
		}
		if msg.FlowFileID != "" {
			pm.Properties[PropertyFlowFileID] = msg.FlowFileID
		}
	}
	if msg.SequenceID > 0 {
		seq := int64(msg.SequenceID)
		pm.SequenceID = &seq
	}
	p.p.SendAsync(ctx, pm, func(id pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
		p.finish(pend, msg.SequenceID, id, err)
	})
	return pend
}

func (p *Producer) finish(pend *Pending, seq uint64, id pulsar.MessageID, err error) {
	var r Receipt
	if err == nil {
		r = Receipt{
			MessageID:  id.String(),
			LedgerID:   id.LedgerID(),
			EntryID:    id.EntryID(),
			BatchIndex: id.BatchIdx(),
			SequenceID: seq,
			Duplicate:  id.LedgerID() == -1 && id.EntryID() == -1,
		}
	} else {
		if errors.Is(err, pulsar.ErrProducerClosed) {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		err = fmt.Errorf("sending to %s: %w", p.topic, p.c.watch.redactErr(err))
	}
	if !pend.complete(r, err, &p.c.count) {
		return
	}
	p.mu.Lock()
	delete(p.outstanding, pend)
	p.mu.Unlock()
}

// Send is SendAsync followed by Wait.
func (p *Producer) Send(ctx context.Context, msg Message) (Receipt, error) {
	return p.SendAsync(ctx, msg).Wait(ctx)
}

// Flush sends the current batch now and waits until every message sent
// before it was acknowledged (or ctx ends).
func (p *Producer) Flush(ctx context.Context) error {
	if err := p.p.FlushWithCtx(ctx); err != nil {
		return fmt.Errorf("flushing producer on %s: %w", p.topic, err)
	}
	return nil
}

// Close closes the producer. Sends not yet acknowledged fail with ErrClosed
// (Flush first to deliver them). It blocks up to the client's
// OperationTimeout when the broker is unreachable.
func (p *Producer) Close() {
	p.c.unregister(p, nil)
	p.close()
}

func (p *Producer) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.p.Close()
	// pulsar-client-go does not complete messages still in its batch or
	// queue when it closes; fail them here so no Pending waits forever.
	p.mu.Lock()
	left := p.outstanding
	p.outstanding = map[*Pending]struct{}{}
	p.mu.Unlock()
	for pend := range left {
		pend.complete(Receipt{}, fmt.Errorf("sending to %s: %w", p.topic, ErrClosed), &p.c.count)
	}
}
