package processors

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pulsarlib "github.com/apache/pulsar-client-go/pulsar"

	"edgeagent.dev"
	"edgeagent.dev/transport/pulsar"
)

// PublishPulsarSpec returns the spec of PublishPulsar, which publishes each
// flowfile as a Pulsar message and lets it leave its queue only once the
// broker sent its receipt.
func PublishPulsarSpec() edgeagent.ProcessorSpec {
	props := append(pulsarConnectionProperties(),
		edgeagent.PropertySpec{Name: "topic", Description: "The topic, with expressions: name, tenant/namespace/name or persistent://tenant/namespace/name.", Required: true, Expressions: true},
		edgeagent.PropertySpec{Name: "key", Description: "The message key, with expressions. Default: the flowfile ID (an empty result also falls back to it).", Expressions: true},
		edgeagent.PropertySpec{Name: "properties", Description: "A regex of the attribute names sent as message properties (uuid included if it matches). The flowfile ID is always sent, as edgeagent.flowfile.id.", Kind: edgeagent.KindRegex},
		edgeagent.PropertySpec{Name: "compression", Description: "The payload codec.", Kind: edgeagent.KindEnum, Allowed: []string{"none", "lz4", "zstd"}, Default: "none"},
		edgeagent.PropertySpec{Name: "batching", Description: "Group messages into batches (one broker entry per batch).", Kind: edgeagent.KindBool, Default: "true"},
		edgeagent.PropertySpec{Name: "batching_max_messages", Description: "The most messages in one batch (batches are also cut at 128 KiB).", Kind: edgeagent.KindInt, Default: "1000", Validate: atLeast(1)},
		edgeagent.PropertySpec{Name: "batching_max_delay", Description: "How long a batch may wait for more messages (the last batch of a run is sent at once).", Kind: edgeagent.KindDuration, Default: "10ms"},
		edgeagent.PropertySpec{Name: "producer_name", Description: "The producer name; the broker de-duplicates by producer name and sequence ID, so it must stay the same across restarts and be unique per topic. Default: derived from agent.id and the processor name."},
		edgeagent.PropertySpec{Name: "max_in_flight", Description: "The most flowfiles one run takes and sends before it waits for their receipts.", Kind: edgeagent.KindInt, Default: "1000", Validate: atLeast(1)},
	)
	return edgeagent.ProcessorSpec{
		Type:    "PublishPulsar",
		Summary: "Publishes flowfiles to Apache Pulsar; a flowfile leaves its queue only after the broker's send receipt, and re-sends after a crash keep their sequence IDs so the broker drops duplicates.",
		Description: "Each run takes up to max_in_flight queued flowfiles and sends them (batched, in order) with the flowfile ID " +
			"as key (unless key is set) and in the edgeagent.flowfile.id property. A flowfile goes to success, with a SEND " +
			"provenance event whose transit URI is the service URL and the topic's full name, only once the broker sent its " +
			"receipt. While the broker is unreachable or a send fails the flowfiles stay queued (penalized) and the processor " +
			"yields; the client reconnects by itself and re-sends what is unacknowledged. Flowfiles whose topic or key cannot be " +
			"evaluated or whose topic is invalid go to failure with error.message, as do messages larger than the broker accepts.\n\n" +
			"De-duplication across agent crashes (for a broker with de-duplication enabled): every message carries an explicit " +
			"sequence ID under a stable producer name. Before a message leaves the agent, its flowfile ID, sequence ID, topic " +
			"and producer epoch are appended to a journal in the processor's state directory and fsynced (one fsync per run); " +
			"its receipt is journaled too (no fsync). The journal is also the sequence counter, which starts above the wall " +
			"clock in microseconds, so a lost state directory does not reuse old IDs. Sends on a producer are strictly in " +
			"ascending ID order and are never timed out by the client, and a producer with a failed send is closed (its epoch " +
			"ends): within an epoch the broker stored a prefix of what was sent. After a restart, a queued flowfile with a " +
			"journaled receipt is not sent again; one without is re-sent under its old sequence ID, alone (pulsar-client-go " +
			"de-duplicates a batch by its first ID only) and before that run's new messages, so the broker drops it if it " +
			"already stored it. An old ID is re-used only if no later epoch sent a higher ID on that topic (the broker would " +
			"drop the message as a duplicate although it never stored it); such a flowfile, and one whose send failed in a way " +
			"that breaks the prefix rule, gets a new ID: a possible duplicate, never a loss. A new ID that the broker reports " +
			"as a duplicate (the counter is behind the broker) is not taken as delivered: the counter jumps ahead and the " +
			"flowfile is sent again. Duplicates the broker cannot drop: when the agent died after the broker stored a batch " +
			"but before it read the receipt, that batch's messages after its first one (at most one batch per topic; " +
			"batching false avoids them at some throughput cost), and flowfiles given a new ID as above.",
		Input:         edgeagent.InputRequired,
		Properties:    props,
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess, edgeagent.RelFailure},
		New:           newPublishPulsar,
	}
}

type publishPulsar struct {
	opts     pulsar.Options
	prodOpts pulsar.ProducerOptions // Topic set per producer
	topic    edgeagent.PropertyValue
	key      edgeagent.PropertyValue
	props    *regexp.Regexp // nil: no attributes as properties
	window   int
	stateDir string
	log      *slog.Logger // pc.Logger(), set by Start

	client *pulsar.Client
	seqs   *seqLog

	// sendMu is held while a run classifies its flowfiles, journals their
	// sequence IDs and hands them to a producer, so that sends on a
	// producer are in journal (and ascending ID) order.
	sendMu    sync.Mutex
	producers map[string]*topicProducer          // by full topic name
	known     map[string]map[uint64]uint64       // topic -> epoch -> highest ID the broker reported as already stored
	closing   map[*pulsar.Producer]chan struct{} // producers being closed
	closeWG   sync.WaitGroup

	mu   sync.Mutex
	sent map[edgeagent.ID]*sendState // sent or recovered, not yet committed
}

type topicProducer struct {
	p     *pulsar.Producer
	epoch uint64
}

// sendState is what the processor knows about a flowfile it sent (or found
// in the journal) until the session that transfers it commits.
type sendState struct {
	rec       seqRecord
	pend      *pulsar.Pending // nil: not in flight on a live producer
	fresh     bool            // rec.seq was assigned for this send
	origEpoch uint64          // for a re-send: the epoch of the record it re-used
}

func newPublishPulsar(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	o, err := pulsarOptions(cfg)
	if err != nil {
		return nil, err
	}
	p := &publishPulsar{
		opts: o, topic: cfg.Property("topic"), key: cfg.Property("key"),
		stateDir: cfg.StateDir,
	}
	if p.props, err = optionalRegex(cfg, "properties"); err != nil {
		return nil, err
	}
	n, err := intProp(cfg, "max_in_flight", 1)
	if err != nil {
		return nil, err
	}
	p.window = int(n)
	batching, err := boolProp(cfg, "batching")
	if err != nil {
		return nil, err
	}
	maxMsgs, err := intProp(cfg, "batching_max_messages", 1)
	if err != nil {
		return nil, err
	}
	delay, err := cfg.Property("batching_max_delay").Duration()
	if err != nil {
		return nil, fmt.Errorf("property batching_max_delay: %w", err)
	}
	name := cfg.Property("producer_name").String()
	if name == "" {
		name = defaultProducerName(cfg.AgentID, cfg.Name)
	}
	p.prodOpts = pulsar.ProducerOptions{
		Topic:               "validated-per-topic",
		Name:                name,
		Compression:         pulsar.Compression(cfg.Property("compression").String()),
		DisableBatching:     !batching,
		BatchingMaxMessages: int(min(maxMsgs, math.MaxInt32)),
		BatchingMaxDelay:    delay,
		// Never time a send out: the client keeps re-sending in order until
		// the broker answers or the producer is closed, which keeps the
		// stored messages of a producer a prefix of what it was given.
		// Runs stop waiting after operation_timeout instead.
		SendTimeout: -1,
		// Two runs' worth, so concurrent runs rarely block in SendAsync.
		MaxPendingMessages: int(min(2*n, math.MaxInt32)),
	}
	if err := p.prodOpts.Validate(); err != nil {
		return nil, err
	}
	if !p.topic.HasExpression() {
		if _, err := pulsarTopicName(p.topic.String()); err != nil {
			return nil, fmt.Errorf("property topic: %w", err)
		}
	}
	if cfg.StateDir == "" {
		return nil, errors.New("PublishPulsar needs a state directory for its sequence journal")
	}
	return p, nil
}

func (p *publishPulsar) Start(ctx context.Context, pc edgeagent.ProcessContext) error {
	// Missing or unusable TLS files stop the flow from starting before the
	// state directory is opened. (NewClient checks them again, and reads
	// the token, naming the file or variable, never the token.)
	if err := p.opts.TLS.Check(); err != nil {
		return err
	}
	p.log = pc.Logger()
	seqs, recovered, err := openSeqLog(filepath.Join(p.stateDir, seqLogName), p.prodOpts.Name, time.Now(), p.log)
	if err != nil {
		return err
	}
	p.seqs = seqs
	p.sent = make(map[edgeagent.ID]*sendState, len(recovered))
	for fid, rec := range recovered {
		id, err := edgeagent.ParseID(fid)
		if err != nil {
			continue
		}
		p.sent[id] = &sendState{rec: rec}
	}
	if len(recovered) > 0 {
		p.log.Info("messages that may have reached the broker before the restart will be re-sent alone under their sequence IDs",
			"count", len(recovered), "producer", p.prodOpts.Name)
	}
	p.producers = map[string]*topicProducer{}
	p.known = map[string]map[uint64]uint64{}
	p.closing = map[*pulsar.Producer]chan struct{}{}
	opts := p.opts
	opts.Logger = p.log
	if p.client, err = pulsar.NewClient(opts); err != nil {
		return err
	}
	if p.topic.HasExpression() {
		return nil
	}
	topic, _ := pulsarTopicName(p.topic.String())
	cctx, cancel := context.WithTimeout(ctx, p.opts.ConnectionTimeout)
	defer cancel()
	p.sendMu.Lock()
	_, err = p.producer(cctx, topic)
	p.sendMu.Unlock()
	if err != nil {
		if pulsarStartError(err) {
			return err
		}
		// The broker may be unreachable now (network down at boot): runs
		// retry and the flowfiles wait in their queue.
		p.log.Warn("Pulsar producer not ready yet; retrying when flowfiles arrive", "service_url", p.opts.ServiceURL, "err", err)
	}
	return nil
}

func (p *publishPulsar) Stop(ctx context.Context) error {
	if p.client != nil {
		st := p.client.Stats()
		p.client.Close()
		p.log.Info("pulsar producer stopped", "sent", st.Sent, "broker_duplicates", st.Duplicates, "send_errors", st.SendErrors, "reconnects", st.Reconnects)
	}
	p.closeWG.Wait()
	if p.seqs != nil {
		return p.seqs.close()
	}
	return nil
}

// producer returns the topic's producer, creating it (a new epoch) if
// needed. p.sendMu is held.
func (p *publishPulsar) producer(ctx context.Context, topic string) (*topicProducer, error) {
	if tp := p.producers[topic]; tp != nil {
		return tp, nil
	}
	// The previous producer of this topic (same name) must be gone first.
	for prod, done := range p.closing {
		if prod.Topic() == topic {
			select {
			case <-done:
			case <-ctx.Done():
				return nil, fmt.Errorf("closing the previous producer on %s: %w", topic, ctx.Err())
			}
		}
	}
	o := p.prodOpts
	o.Topic = topic
	cctx, cancel := context.WithTimeout(ctx, p.opts.OperationTimeout)
	defer cancel()
	prod, err := p.client.NewProducer(cctx, o)
	if err != nil {
		return nil, err
	}
	tp := &topicProducer{p: prod, epoch: p.seqs.newEpoch()}
	p.producers[topic] = tp
	return tp, nil
}

// retire closes a producer after a failed send, so its epoch ends: a later
// send on the topic uses a new producer and epoch. p.sendMu is held.
func (p *publishPulsar) retire(topic string, tp *topicProducer) {
	if p.producers[topic] != tp {
		return
	}
	delete(p.producers, topic)
	done := make(chan struct{})
	p.closing[tp.p] = done
	p.closeWG.Add(1)
	go func() {
		defer p.closeWG.Done()
		tp.p.Close() // fails what is still pending: those flowfiles stay queued
		close(done)
		p.sendMu.Lock()
		delete(p.closing, tp.p)
		p.sendMu.Unlock()
	}()
}

// pubItem is one flowfile of a run.
type pubItem struct {
	ff      *edgeagent.FlowFile
	topic   string // full name
	msg     pulsar.Message
	old     *sendState // the state found for it before this run's send
	st      *sendState // nil: not sent
	known   bool       // the broker already has it (a journaled receipt, or a duplicate receipt of a higher re-sent ID)
	sendErr error      // could not be sent (no producer, journal failure)
	noProd  bool       // sendErr: the topic's producer is not available
}

func (p *publishPulsar) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	batch := s.GetBatch(p.window)
	if len(batch) == 0 {
		return nil
	}
	byTopic := map[string][]*pubItem{}
	var topics []string
	var items []*pubItem
	var failedIDs []edgeagent.ID
	for i, ff := range batch {
		if stopping(ctx, s, batch[i:]) {
			break
		}
		it, err := p.prepare(s, ff)
		if err != nil {
			routeToFailure(s, ff, err)
			failedIDs = append(failedIDs, ff.ID) // drops a record it may have
			continue
		}
		if byTopic[it.topic] == nil {
			topics = append(topics, it.topic)
		}
		byTopic[it.topic] = append(byTopic[it.topic], it)
		items = append(items, it)
	}
	// Read the content of what will be sent (not of flowfiles in flight or
	// answered) before taking the send lock.
	p.mu.Lock()
	for _, it := range items {
		it.old = p.sent[it.ff.ID]
	}
	p.mu.Unlock()
	for _, it := range items {
		if it.old != nil && it.old.pend != nil {
			continue
		}
		body, err := s.ReadAll(it.ff)
		if err != nil {
			it.sendErr = fmt.Errorf("reading content: %w", err)
			continue
		}
		it.msg.Payload = body
	}
	deadline := time.Now().Add(p.opts.OperationTimeout)
	var flush []*pulsar.Producer
	for _, topic := range topics {
		if prod := p.send(ctx, s, topic, byTopic[topic], deadline); prod != nil {
			flush = append(flush, prod)
		}
	}
	// Send the last batches now rather than after batching_max_delay: the
	// run waits for their receipts anyway.
	fctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for _, prod := range flush {
		_ = prod.Flush(fctx) // a failure shows in the receipts
	}
	// Wait for the receipts, up to operation_timeout.
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
wait:
	for _, it := range items {
		if it.st == nil || it.st.pend == nil {
			continue
		}
		select {
		case <-it.st.pend.Done():
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	if len(failedIDs) > 0 {
		s.OnCommitted(func() { p.committed(failedIDs) })
	}
	return p.finish(pc, s, items)
}

// prepare evaluates a flowfile's topic, key and properties (and takes its
// event time from capture.time).
func (p *publishPulsar) prepare(s edgeagent.ProcessSession, ff *edgeagent.FlowFile) (*pubItem, error) {
	t, err := p.topic.Evaluate(ff)
	if err != nil {
		return nil, fmt.Errorf("evaluating topic: %w", err)
	}
	topic, err := pulsarTopicName(t)
	if err != nil {
		return nil, err
	}
	it := &pubItem{ff: ff, topic: topic, msg: pulsar.Message{FlowFileID: ff.ID.String()}}
	if p.key.IsSet() {
		if it.msg.Key, err = p.key.Evaluate(ff); err != nil {
			return nil, fmt.Errorf("evaluating key: %w", err)
		}
	}
	if p.props != nil {
		for k, v := range ff.AllAttributes() {
			if p.props.MatchString(k) {
				if it.msg.Properties == nil {
					it.msg.Properties = map[string]string{}
				}
				it.msg.Properties[k] = v
			}
		}
	}
	if ct := ff.Attr(edgeagent.AttrCaptureTime); ct != "" {
		if t, err := time.Parse(time.RFC3339Nano, ct); err == nil {
			it.msg.EventTime = t
		}
	}
	return it, nil
}

// send classifies the flowfiles of one topic, journals their sequence IDs
// and hands them to the topic's producer: first the re-sends, each alone,
// then the new ones. It returns the producer when it sent new messages.
func (p *publishPulsar) send(ctx context.Context, s edgeagent.ProcessSession, topic string, items []*pubItem, deadline time.Time) *pulsar.Producer {
	sctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	tp, err := p.producer(sctx, topic)
	if err != nil {
		for _, it := range items {
			if it.sendErr == nil {
				it.sendErr, it.noProd = err, true
			}
		}
		return nil
	}
	var resend, fresh []*pubItem
	for _, it := range items {
		st := it.old
		switch {
		case it.sendErr != nil:
		case st != nil && st.pend != nil:
			it.st = st // in flight, or answered: no second send
		case st != nil && st.rec.topic == topic:
			if st.rec.acked || p.known[topic][st.rec.epoch] >= st.rec.seq {
				it.st, it.known = st, true
			} else if p.seqs.valid(st.rec) {
				resend = append(resend, it)
			} else {
				fresh = append(fresh, it)
			}
		default:
			fresh = append(fresh, it)
		}
	}
	if len(resend)+len(fresh) == 0 {
		return nil
	}
	slices.SortFunc(resend, func(a, b *pubItem) int { return cmp.Compare(a.old.rec.seq, b.old.rec.seq) })
	first := p.seqs.reserve(len(fresh))
	lines := make([]seqLine, 0, len(resend)+len(fresh))
	states := make(map[*pubItem]*sendState, len(resend)+len(fresh))
	for _, it := range resend {
		st := &sendState{rec: seqRecord{seq: it.old.rec.seq, epoch: tp.epoch, topic: topic}, origEpoch: it.old.rec.epoch}
		states[it] = st
		lines = append(lines, seqLine{fid: it.ff.ID.String(), rec: st.rec})
	}
	for i, it := range fresh {
		st := &sendState{rec: seqRecord{seq: first + uint64(i), epoch: tp.epoch, topic: topic}, fresh: true}
		states[it] = st
		lines = append(lines, seqLine{fid: it.ff.ID.String(), rec: st.rec})
	}
	if err := p.seqs.appendSent(lines); err != nil {
		for _, it := range slices.Concat(resend, fresh) {
			it.sendErr = err
		}
		return nil
	}
	// From here the journal holds every record: register them before any
	// send, so a later run sees the same state as a restart would.
	p.mu.Lock()
	for it, st := range states {
		p.sent[it.ff.ID] = st
		it.st = st
	}
	p.mu.Unlock()
	broken := false
	if len(resend) > 0 {
		// Cut the batch being filled, so the first re-send does not join
		// messages sent before it.
		_ = tp.p.Flush(sctx)
	}
	for _, it := range resend {
		if !p.handOver(sctx, tp, it) {
			broken = true
			break
		}
		// A re-send must be alone in its batch: the broker de-duplicates a
		// batch by its first sequence ID only.
		if err := tp.p.Flush(sctx); err != nil {
			broken = true
			break
		}
	}
	for _, it := range fresh {
		if broken || !p.handOver(sctx, tp, it) {
			broken = true
			break
		}
	}
	if broken {
		p.retire(topic, tp)
		return nil
	}
	if len(fresh) == 0 {
		return nil
	}
	return tp.p
}

// handOver gives one journaled message to the producer. It returns false
// when the send failed at once in a way that may leave a gap in the
// producer's sequence (the producer must then be retired).
func (p *publishPulsar) handOver(ctx context.Context, tp *topicProducer, it *pubItem) bool {
	it.msg.SequenceID = it.st.rec.seq
	pend := tp.p.SendAsync(ctx, it.msg)
	p.mu.Lock()
	it.st.pend = pend
	p.mu.Unlock()
	select {
	case <-pend.Done():
		_, err := pend.Result()
		return err == nil || errors.Is(err, pulsarlib.ErrMessageTooLarge)
	default:
		return true
	}
}

// finish transfers, fails or returns every prepared flowfile according to
// its receipt.
func (p *publishPulsar) finish(pc edgeagent.ProcessContext, s edgeagent.ProcessSession, items []*pubItem) error {
	var done []edgeagent.ID
	var acked []string
	var kept int
	var firstErr error
	keep := func(it *pubItem, err error) {
		if it.noProd {
			// Nothing was attempted: keep the queue order (a penalty
			// would let later flowfiles overtake re-sends after a
			// restart); the processor yields.
			s.Return(it.ff)
		} else {
			s.Return(s.Penalize(it.ff))
		}
		kept++
		if firstErr == nil {
			firstErr = err
		}
	}
	for _, it := range items {
		switch {
		case it.sendErr != nil:
			keep(it, it.sendErr)
		case it.known:
			s.Provenance().Send(it.ff, transitURI(p.opts.ServiceURL, it.topic),
				fmt.Sprintf("sequence_id=%d acknowledged by the broker before a restart", it.st.rec.seq))
			s.Transfer(it.ff, edgeagent.RelSuccess)
			done = append(done, it.ff.ID)
		case it.st == nil || it.st.pend == nil:
			keep(it, errors.New("not sent"))
		default:
			select {
			case <-it.st.pend.Done():
			default:
				keep(it, fmt.Errorf("no receipt within %s", p.opts.OperationTimeout))
				continue
			}
			r, err := it.st.pend.Result()
			if err != nil {
				if errors.Is(err, pulsarlib.ErrMessageTooLarge) {
					routeToFailure(s, it.ff, err)
					done = append(done, it.ff.ID)
					continue
				}
				p.failed(it, err)
				keep(it, err)
				continue
			}
			if r.Duplicate && it.st.fresh {
				p.behind(it)
				keep(it, fmt.Errorf("the broker already has sequence id %d from producer %s", it.st.rec.seq, p.prodOpts.Name))
				continue
			}
			details := fmt.Sprintf("sequence_id=%d message_id=%s", it.st.rec.seq, r.MessageID)
			if r.Duplicate {
				p.learn(it)
				details = fmt.Sprintf("sequence_id=%d re-sent after a restart; the broker already had it", it.st.rec.seq)
			}
			s.Provenance().Send(it.ff, transitURI(p.opts.ServiceURL, it.topic), details)
			s.Transfer(it.ff, edgeagent.RelSuccess)
			done = append(done, it.ff.ID)
			acked = append(acked, it.ff.ID.String())
		}
	}
	// Should the agent die before the commit, a restart knows these are
	// stored and sends them no more.
	p.seqs.acked(acked)
	if len(done) > 0 {
		s.OnCommitted(func() { p.committed(done) })
	}
	if kept > 0 {
		level := slog.LevelWarn
		if errors.Is(firstErr, pulsar.ErrAuthentication) {
			level = slog.LevelError
		}
		p.log.Log(context.Background(), level, "flowfiles not acknowledged by the broker; they stay queued and are retried",
			"count", kept, "service_url", p.opts.ServiceURL, "err", firstErr)
		pc.Yield()
	}
	return nil
}

// failed handles a send that completed with an error: the producer is
// retired (its epoch ends), and unless the error is the producer closing
// (which fails everything still pending: the stored messages stay a prefix)
// the record is dropped, so the flowfile gets a new sequence ID.
func (p *publishPulsar) failed(it *pubItem, err error) {
	p.sendMu.Lock()
	if tp := p.producers[it.topic]; tp != nil && tp.epoch == it.st.rec.epoch {
		p.retire(it.topic, tp)
	}
	p.sendMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if errors.Is(err, pulsar.ErrClosed) {
		it.st.pend = nil
		return
	}
	delete(p.sent, it.ff.ID)
	p.seqs.forget(it.ff.ID.String())
}

// behind handles a new sequence ID the broker reported as a duplicate: the
// message was not stored, so the counter is behind the broker's last ID for
// this producer name (the state directory was lost, or the name reused).
func (p *publishPulsar) behind(it *pubItem) {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if err := p.seqs.jump(it.topic, it.st.rec.seq); err != nil {
		p.log.Error("recording the sequence counter jump", "err", err)
	}
	p.log.Error("the broker already has this producer's sequence IDs: the sequence journal is behind the broker (state directory lost, or producer_name used elsewhere); jumping ahead and re-sending",
		"producer", p.prodOpts.Name, "topic", it.topic, "sequence_id", it.st.rec.seq)
	if tp := p.producers[it.topic]; tp != nil {
		p.retire(it.topic, tp)
	}
	p.mu.Lock()
	delete(p.sent, it.ff.ID)
	p.mu.Unlock()
	p.seqs.done([]string{it.ff.ID.String()})
}

// learn records that the broker already stored a re-sent ID: every record
// of the same epoch with an ID at or below it is stored too.
func (p *publishPulsar) learn(it *pubItem) {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	raiseMax(p.known, it.topic, it.st.origEpoch, it.st.rec.seq)
}

// committed forgets flowfiles whose session committed.
func (p *publishPulsar) committed(ids []edgeagent.ID) {
	fids := make([]string, len(ids))
	p.mu.Lock()
	for i, id := range ids {
		delete(p.sent, id)
		fids[i] = id.String()
	}
	p.mu.Unlock()
	p.seqs.done(fids)
}

// ---- the sequence journal ----

// seqLogName is the journal's file name in the processor's state directory.
const seqLogName = "pulsar-sequence.log"

// seqLogRewriteLines is how many lines are appended before the journal is
// rewritten with only what is still needed.
const seqLogRewriteLines = 100_000

// seqRecord is a sent message's sequence ID, the epoch (producer instance)
// that sent it, and its topic's full name.
type seqRecord struct {
	seq, epoch uint64
	topic      string
	acked      bool // the broker acknowledged it (an R line)
}

type seqLine struct {
	fid string
	rec seqRecord
}

// seqLog is PublishPulsar's journal: for every message handed to a
// producer, a line with its flowfile ID, sequence ID, epoch and topic,
// fsynced before the send; a line when its flowfile was committed. It is
// also the durable sequence counter (the highest ID ever journaled) and the
// source of the highest ID each epoch sent on each topic, which decides
// whether an old record may be re-used.
//
// Lines are "CRC32 payload": P name, N next, E epoch, T index topic,
// H index epoch max, S epoch seq index fid (sent), R fid (acknowledged by
// the broker), D fid (committed). A torn or corrupt line
// (a crash while appending) is skipped: the send it described never
// happened, since sends wait for the fsync.
//
// A seqLog is safe for concurrent use.
type seqLog struct {
	mu       sync.Mutex
	path     string
	log      *slog.Logger
	f        *os.File
	lines    int
	producer string
	next     uint64                       // next new sequence ID
	epoch    uint64                       // last epoch handed out
	live     map[string]seqRecord         // fid -> record, not yet done
	hw       map[string]map[uint64]uint64 // topic -> epoch -> highest ID journaled
	topicIdx map[string]int               // topic -> index in the current file
	closed   bool
}

// openSeqLog loads the journal at path (creating it), then rewrites it.
// It returns the records of flowfiles not yet committed (from earlier runs).
// A journal written for another producer name is discarded, but its counter
// is kept.
func openSeqLog(path, producer string, now time.Time, log *slog.Logger) (*seqLog, map[string]seqRecord, error) {
	j := &seqLog{path: path, log: log, producer: producer, live: map[string]seqRecord{}, hw: map[string]map[uint64]uint64{}}
	bad, err := j.load()
	if err != nil {
		return nil, nil, err
	}
	if bad > 0 {
		log.Warn("skipped corrupt lines of the sequence journal (a crash while appending)", "path", path, "lines", bad)
	}
	// New IDs start above the wall clock in microseconds, so that a lost
	// journal does not hand out IDs the broker already has.
	if us := uint64(max(now.UnixMicro(), 0)); us > j.next {
		j.next = us
	}
	j.next = max(j.next, 1)
	if err := j.rewrite(); err != nil {
		return nil, nil, err
	}
	return j, maps.Clone(j.live), nil
}

func (j *seqLog) load() (bad int, err error) {
	f, err := os.Open(j.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("opening sequence journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	topics := map[int]string{}
	name := j.producer
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				bad++ // torn last line
			}
			break
		}
		if err != nil {
			return bad, fmt.Errorf("reading sequence journal %s: %w", j.path, err)
		}
		payload, ok := checkLine(line)
		if !ok {
			bad++
			continue
		}
		if !j.apply(payload, topics, &name) {
			bad++
		}
	}
	if name != j.producer {
		j.log.Warn("the producer name changed: sequence records of the old name are dropped (those flowfiles may be stored twice)",
			"old", name, "new", j.producer, "records", len(j.live))
		clear(j.live)
		clear(j.hw)
	}
	return bad, nil
}

func checkLine(line []byte) ([]byte, bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	sum, payload, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(sum) != 8 {
		return nil, false
	}
	want, err := strconv.ParseUint(string(sum), 16, 32)
	if err != nil || uint32(want) != crc32.ChecksumIEEE(payload) {
		return nil, false
	}
	return payload, true
}

// apply applies one journal line while loading.
func (j *seqLog) apply(payload []byte, topics map[int]string, name *string) bool {
	typ, rest, _ := strings.Cut(string(payload), " ")
	nums := func(n int) ([]uint64, string, bool) {
		out := make([]uint64, 0, n)
		for range n {
			var f string
			f, rest, _ = strings.Cut(rest, " ")
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return nil, "", false
			}
			out = append(out, v)
		}
		return out, rest, true
	}
	switch typ {
	case "P":
		s, err := strconv.Unquote(rest)
		if err != nil {
			return false
		}
		*name = s
	case "N":
		v, _, ok := nums(1)
		if !ok {
			return false
		}
		j.next = max(j.next, v[0])
	case "E":
		v, _, ok := nums(1)
		if !ok {
			return false
		}
		j.epoch = max(j.epoch, v[0])
	case "T":
		idx, s, ok := strings.Cut(rest, " ")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil {
			return false
		}
		t, err := strconv.Unquote(s)
		if err != nil {
			return false
		}
		topics[i] = t
	case "H":
		v, _, ok := nums(3)
		if !ok || topics[int(v[0])] == "" {
			return false
		}
		j.raise(topics[int(v[0])], v[1], v[2])
	case "S":
		v, fid, ok := nums(3)
		if !ok || topics[int(v[2])] == "" || fid == "" {
			return false
		}
		rec := seqRecord{epoch: v[0], seq: v[1], topic: topics[int(v[2])]}
		j.live[fid] = rec
		j.raise(rec.topic, rec.epoch, rec.seq)
		j.next = max(j.next, rec.seq+1)
	case "D":
		delete(j.live, rest)
	case "R":
		if r, ok := j.live[rest]; ok {
			r.acked = true
			j.live[rest] = r
		}
	default:
		return false
	}
	return true
}

// raise records that epoch sent seq on topic. j.mu is held (or loading).
func (j *seqLog) raise(topic string, epoch, seq uint64) {
	raiseMax(j.hw, topic, epoch, seq)
	j.epoch = max(j.epoch, epoch)
}

// raiseMax raises m[topic][epoch] (topic -> epoch -> highest ID) to at
// least seq.
func raiseMax(m map[string]map[uint64]uint64, topic string, epoch, seq uint64) {
	byEpoch := m[topic]
	if byEpoch == nil {
		byEpoch = map[uint64]uint64{}
		m[topic] = byEpoch
	}
	byEpoch[epoch] = max(byEpoch[epoch], seq)
}

func encodeLine(b []byte, payload string) []byte {
	b = fmt.Appendf(b, "%08x ", crc32.ChecksumIEEE([]byte(payload)))
	b = append(b, payload...)
	return append(b, '\n')
}

// topicLine returns the index of topic in the current file, adding a T line
// to b when it is new. j.mu is held.
func (j *seqLog) topicLine(b []byte, topic string) ([]byte, int) {
	if i, ok := j.topicIdx[topic]; ok {
		return b, i
	}
	i := len(j.topicIdx)
	j.topicIdx[topic] = i
	return encodeLine(b, "T "+strconv.Itoa(i)+" "+strconv.Quote(topic)), i
}

// rewrite replaces the file with what is still needed: the counters, the
// live records, and per topic the highest IDs of the epochs after the
// oldest live record's. j.mu is held (or opening).
func (j *seqLog) rewrite() error {
	if j.f != nil {
		if err := j.f.Close(); err != nil {
			j.log.Warn("closing sequence journal", "err", err)
		}
		j.f = nil
	}
	j.topicIdx = map[string]int{}
	b := encodeLine(nil, "P "+strconv.Quote(j.producer))
	b = encodeLine(b, "N "+strconv.FormatUint(j.next, 10))
	b = encodeLine(b, "E "+strconv.FormatUint(j.epoch, 10))
	oldest := map[string]uint64{}
	for _, r := range j.live {
		if e, ok := oldest[r.topic]; !ok || r.epoch < e {
			oldest[r.topic] = r.epoch
		}
	}
	for _, topic := range slices.Sorted(maps.Keys(oldest)) {
		var i int
		b, i = j.topicLine(b, topic)
		for _, e := range slices.Sorted(maps.Keys(j.hw[topic])) {
			if e > oldest[topic] {
				b = encodeLine(b, fmt.Sprintf("H %d %d %d", i, e, j.hw[topic][e]))
			}
		}
	}
	for _, fid := range slices.Sorted(maps.Keys(j.live)) {
		r := j.live[fid]
		var i int
		b, i = j.topicLine(b, r.topic)
		b = encodeLine(b, fmt.Sprintf("S %d %d %d %s", r.epoch, r.seq, i, fid))
		if r.acked {
			b = encodeLine(b, "R "+fid)
		}
	}
	if err := os.MkdirAll(filepath.Dir(j.path), 0o750); err != nil {
		return fmt.Errorf("creating sequence journal directory: %w", err)
	}
	tmp := j.path + ".tmp"
	if err := writeFileSync(tmp, b); err != nil {
		return fmt.Errorf("writing sequence journal: %w", err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fmt.Errorf("replacing sequence journal: %w", err)
	}
	if err := syncDir(filepath.Dir(j.path)); err != nil {
		return fmt.Errorf("syncing sequence journal directory: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening sequence journal: %w", err)
	}
	j.f = f
	j.lines = 0
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// newEpoch returns a new epoch for a new producer instance. An epoch that
// never sent anything leaves no trace and may be handed out again after a
// restart, which is harmless.
func (j *seqLog) newEpoch() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.epoch++
	return j.epoch
}

// reserve returns the first of n new sequence IDs. They are durable once
// journaled by appendSent.
func (j *seqLog) reserve(n int) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	first := j.next
	j.next += uint64(n)
	return first
}

// valid reports whether a record may be re-sent under its sequence ID: no
// later epoch journaled a higher ID on its topic (the broker would drop the
// message as a duplicate even if it never stored it).
func (j *seqLog) valid(r seqRecord) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for e, m := range j.hw[r.topic] {
		if e > r.epoch && m >= r.seq {
			return false
		}
	}
	return true
}

// appendSent journals records and fsyncs them.
func (j *seqLog) appendSent(lines []seqLine) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return errors.New("sequence journal is closed")
	}
	if j.lines >= seqLogRewriteLines {
		if err := j.rewrite(); err != nil {
			return err
		}
	}
	var b []byte
	for _, l := range lines {
		var i int
		b, i = j.topicLine(b, l.rec.topic)
		b = encodeLine(b, fmt.Sprintf("S %d %d %d %s", l.rec.epoch, l.rec.seq, i, l.fid))
	}
	if err := j.write(b, true); err != nil {
		return err
	}
	for _, l := range lines {
		j.live[l.fid] = l.rec
		j.raise(l.rec.topic, l.rec.epoch, l.rec.seq)
	}
	j.lines += len(lines)
	return nil
}

func (j *seqLog) write(b []byte, sync bool) error {
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("appending to sequence journal: %w", err)
	}
	if sync {
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("syncing sequence journal: %w", err)
		}
	}
	return nil
}

// done records that flowfiles left the processor (committed), without an
// fsync: a record whose D line is lost stays live, harmlessly, until the
// journal is rewritten after a restart.
func (j *seqLog) done(fids []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var b []byte
	for _, fid := range fids {
		if _, ok := j.live[fid]; ok {
			delete(j.live, fid)
			b = encodeLine(b, "D "+fid)
		}
	}
	j.appendUnsynced(b, len(fids), "journaling committed flowfiles")
}

// acked records that the broker acknowledged messages, without an fsync:
// a lost R line only means the message is re-sent (and de-duplicated, or
// stored twice) after a restart.
func (j *seqLog) acked(fids []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var b []byte
	for _, fid := range fids {
		if r, ok := j.live[fid]; ok && !r.acked {
			r.acked = true
			j.live[fid] = r
			b = encodeLine(b, "R "+fid)
		}
	}
	j.appendUnsynced(b, len(fids), "journaling acknowledged messages")
}

// appendUnsynced appends b, when there is something to append and the
// journal is open, without an fsync (a failure is only logged, as what):
// the D and R lines whose loss is harmless. j.mu is held.
func (j *seqLog) appendUnsynced(b []byte, lines int, what string) {
	if len(b) == 0 || j.closed {
		return
	}
	if err := j.write(b, false); err != nil {
		j.log.Warn(what, "err", err)
	}
	j.lines += lines
}

// jump moves the counter far ahead after the broker reported a new ID as a
// duplicate, and journals a synthetic epoch at that height on topic, which
// makes every older record of the topic unusable for a re-send.
func (j *seqLog) jump(topic string, seq uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.next = min(max(j.next, seq)*2+1<<32, math.MaxInt64/2)
	j.epoch++
	j.raise(topic, j.epoch, j.next-1)
	b, i := j.topicLine(nil, topic)
	b = encodeLine(b, "N "+strconv.FormatUint(j.next, 10))
	b = encodeLine(b, fmt.Sprintf("H %d %d %d", i, j.epoch, j.next-1))
	return j.write(b, true)
}

// forget drops a record that must not be re-used (its send failed in a way
// that may have left a gap), durably: the flowfile gets a new ID.
func (j *seqLog) forget(fid string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.live[fid]; !ok || j.closed {
		return
	}
	delete(j.live, fid)
	if err := j.write(encodeLine(nil, "D "+fid), true); err != nil {
		j.log.Warn("journaling a dropped sequence record", "err", err)
	}
	j.lines++
}

func (j *seqLog) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed || j.f == nil {
		return nil
	}
	j.closed = true
	err := j.f.Sync()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}
