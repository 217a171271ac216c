package pulsartest

import (
	"hash/fnv"
	"sort"
)

// Everything in this file runs with Broker.mu held.

type topic struct {
	name      string
	entries   []*entry             // the topic's log; entry i has id i
	producers map[string]*producer // connected producers by name
	lastSeq   map[string]int64     // de-duplication: highest persisted sequence id per producer name
	subs      map[string]*subscription
}

// entry is one stored SEND: a single message or a batch.
type entry struct {
	ledger, id uint64
	data       []byte // magic, checksum, metadata and payload as the producer sent them
	meta       entryMeta
}

func (t *topic) append(ledger uint64, data []byte, meta entryMeta) *entry {
	e := &entry{ledger: ledger, id: uint64(len(t.entries)), data: data, meta: meta}
	t.entries = append(t.entries, e)
	return e
}

func (t *topic) last(producerName string) int64 {
	if seq, ok := t.lastSeq[producerName]; ok {
		return seq
	}
	return -1
}

// index returns the log index of a MessageIdData, or -1.
func (t *topic) index(id fields) int {
	entryID := id.uint(2, noID)
	if entryID >= uint64(len(t.entries)) {
		return -1
	}
	if t.entries[entryID].ledger != id.uint(1, noID) {
		return -1
	}
	return int(entryID)
}

type producer struct {
	id    uint64
	name  string
	topic *topic
	c     *conn
}

func (p *producer) remove() {
	if p.topic.producers[p.name] == p {
		delete(p.topic.producers, p.name)
	}
}

type consumer struct {
	id      uint64
	c       *conn
	sub     *subscription
	permits int
}

// subscription is a cursor on a topic: everything below markDelete is
// acknowledged, acked holds individual acknowledgements above it, readPos is
// the next entry never dispatched, replay the entries to dispatch again
// (negatively acknowledged, or left unacknowledged by a consumer that went
// away) before readPos.
type subscription struct {
	name         string
	topic        *topic
	typ          int
	durable      bool
	markDelete   int
	acked        map[int]bool
	readPos      int
	replay       []int // sorted
	pending      map[int]*consumer
	redeliveries map[int]uint32
	consumers    []*consumer // consumers[0] is the active one of exclusive and failover
	next         int         // shared round robin
}

func newSubscription(t *topic, name string, typ int, durable bool, start int) *subscription {
	return &subscription{
		name:         name,
		topic:        t,
		typ:          typ,
		durable:      durable,
		markDelete:   start,
		readPos:      start,
		acked:        map[int]bool{},
		pending:      map[int]*consumer{},
		redeliveries: map[int]uint32{},
	}
}

func (s *subscription) isAcked(i int) bool { return i < s.markDelete || s.acked[i] }

func (s *subscription) backlog() int {
	n := 0
	for i := s.markDelete; i < len(s.topic.entries); i++ {
		if !s.acked[i] {
			n += s.topic.entries[i].meta.numMessages
		}
	}
	return n
}

// dispatch sends entries to consumers while they have permits.
func (s *subscription) dispatch() {
	for {
		i, fromReplay := s.nextCandidate()
		if i < 0 {
			return
		}
		e := s.topic.entries[i]
		c := s.pickConsumer(e)
		if c == nil {
			return
		}
		if fromReplay {
			s.replay = s.replay[1:]
		} else {
			s.readPos = i + 1
		}
		s.pending[i] = c
		c.permits -= e.meta.numMessages
		msg := enc(nil).uint(1, c.id).msg(2, messageIDData(e.ledger, e.id))
		if n := s.redeliveries[i]; n > 0 {
			msg = msg.uint(3, uint64(n))
		}
		c.c.sendFrame(payloadFrame(command(cmdMessage, msg), e.data))
	}
}

func (s *subscription) nextCandidate() (int, bool) {
	for len(s.replay) > 0 {
		i := s.replay[0]
		if _, out := s.pending[i]; !out && !s.isAcked(i) {
			return i, true
		}
		s.replay = s.replay[1:]
	}
	for s.readPos < len(s.topic.entries) && s.isAcked(s.readPos) {
		s.readPos++
	}
	if s.readPos < len(s.topic.entries) {
		return s.readPos, false
	}
	return -1, false
}

// pickConsumer chooses who gets e, or nil when that consumer has no permits.
// Key_Shared hashes the key over the connected consumers (no sticky ranges,
// no reassignment rules) and waits for that consumer's permits.
func (s *subscription) pickConsumer(e *entry) *consumer {
	n := len(s.consumers)
	if n == 0 {
		return nil
	}
	var c *consumer
	switch s.typ {
	case subShared:
		for k := range n {
			cand := s.consumers[(s.next+k)%n]
			if cand.permits > 0 {
				s.next = (s.next + k + 1) % n
				return cand
			}
		}
		return nil
	case subKeyShared:
		h := fnv.New32a()
		h.Write([]byte(e.meta.key))
		c = s.consumers[int(h.Sum32()%uint32(n))]
	default:
		c = s.consumers[0]
	}
	if c.permits <= 0 {
		return nil
	}
	return c
}

// ack applies a CommandAck. A MessageIdData with a non-empty ack_set that
// still has bits set acknowledges only part of a batch and is ignored: the
// entry stays unacknowledged until the whole batch is.
func (s *subscription) ack(cumulative bool, ids []fields) {
	for _, id := range ids {
		i := s.topic.index(id)
		if i < 0 {
			continue
		}
		partial := false
		for _, w := range id.uints(5) {
			if w != 0 {
				partial = true
			}
		}
		if partial {
			continue
		}
		if cumulative {
			for j := range s.pending {
				if j <= i {
					delete(s.pending, j)
				}
			}
			if i+1 > s.markDelete {
				for j := s.markDelete; j <= i; j++ {
					delete(s.acked, j)
				}
				s.markDelete = i + 1
			}
		} else {
			delete(s.pending, i)
			if i >= s.markDelete {
				s.acked[i] = true
			}
		}
		delete(s.redeliveries, i)
	}
	for s.acked[s.markDelete] {
		delete(s.acked, s.markDelete)
		s.markDelete++
	}
}

// redeliver applies REDELIVER_UNACKNOWLEDGED_MESSAGES: the listed entries
// (all of the consumer's unacknowledged ones when none are listed) go back
// to the replay queue with their redelivery count raised.
func (s *subscription) redeliver(c *consumer, ids []fields) {
	var idx []int
	if len(ids) == 0 {
		for i, owner := range s.pending {
			if owner == c {
				idx = append(idx, i)
			}
		}
	} else {
		for _, id := range ids {
			if i := s.topic.index(id); i >= 0 && s.pending[i] != nil {
				idx = append(idx, i)
			}
		}
	}
	for _, i := range idx {
		delete(s.pending, i)
		s.redeliveries[i]++
	}
	s.addReplay(idx)
	s.dispatch()
}

func (s *subscription) addReplay(idx []int) {
	if len(idx) == 0 {
		return
	}
	seen := make(map[int]bool, len(s.replay))
	for _, i := range s.replay {
		seen[i] = true
	}
	for _, i := range idx {
		if !seen[i] {
			s.replay = append(s.replay, i)
			seen[i] = true
		}
	}
	sort.Ints(s.replay)
}

// removeConsumer takes a consumer off the subscription; what it had not
// acknowledged is dispatched again to the remaining (or next) consumers.
func (s *subscription) removeConsumer(c *consumer) {
	var idx []int
	for i, owner := range s.pending {
		if owner == c {
			idx = append(idx, i)
			delete(s.pending, i)
		}
	}
	s.addReplay(idx)
	wasActive := len(s.consumers) > 0 && s.consumers[0] == c
	for k, other := range s.consumers {
		if other == c {
			s.consumers = append(s.consumers[:k], s.consumers[k+1:]...)
			break
		}
	}
	if len(s.consumers) == 0 {
		s.next = 0
		if !s.durable {
			delete(s.topic.subs, s.name)
		}
		return
	}
	s.next %= len(s.consumers)
	if wasActive && s.typ == subFailover {
		a := s.consumers[0]
		a.c.send(command(cmdActiveConsumerChg, enc(nil).uint(1, a.id).bool(2, true)))
	}
	s.dispatch()
}
