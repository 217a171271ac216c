package buffer

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"edgeagent.dev"
)

// Prioritizer orders a queue.
type Prioritizer string

// Prioritizers (NiFi's).
const (
	FIFO              Prioritizer = "fifo"               // first queued, first out
	OldestFirst       Prioritizer = "oldest_first"       // oldest EntryTime first
	NewestFirst       Prioritizer = "newest_first"       // newest EntryTime first
	PriorityAttribute Prioritizer = "priority_attribute" // lowest "priority" attribute first: numbers before text, unset last
)

// QueueConfig are a connection's queue settings.
type QueueConfig struct {
	Prioritizer Prioritizer
	// MaxCount and MaxBytes are the backpressure thresholds (0: none).
	MaxCount int64
	MaxBytes int64
	// ExpireAfter drops flowfiles that waited longer in this queue (0: never).
	ExpireAfter time.Duration
	// DropOldest makes the queue loss-tolerant: at a threshold the oldest
	// flowfiles are dropped instead of stopping upstream, and at the
	// repository budget it is evicted first.
	DropOldest bool
}

// Item is a queued flowfile leased by Poll.
type Item struct {
	Queue    *Queue
	Key      []byte
	FlowFile *edgeagent.FlowFile
	Enqueued time.Time
	// Content is the content when it is stored inline (IsInline(Size)):
	// pass it back in Change.Content when the flowfile is queued again.
	Content []byte
}

// Queue is one durable connection queue. Counters and leases are in memory;
// the flowfiles are on disk.
type Queue struct {
	repo  *Repo
	name  string
	items []byte // bucket of key -> enqueued(8) + record
	age   []byte // bucket of seq(8) -> key, for prioritizers other than fifo

	mu        sync.Mutex
	cfg       QueueConfig
	count     int64
	bytes     int64
	seq       uint64
	leased    map[string]struct{}
	penalized map[string]time.Time
	// hint, for fifo queues, is a key before which every item is leased:
	// Poll starts there instead of skipping the leased head of the queue
	// one by one. nil means "scan from the start".
	hint    []byte
	ready   chan struct{} // signalled when flowfiles are added or released
	drained chan struct{} // signalled when flowfiles leave
}

// Queue opens (creating if needed) the named durable queue. Opening it again
// updates its configuration; a changed prioritizer re-orders the stored items.
// An empty cfg.Prioritizer keeps the stored one (fifo for a new queue).
func (r *Repo) Queue(name string, cfg QueueConfig) (*Queue, error) {
	switch cfg.Prioritizer {
	case "", FIFO, OldestFirst, NewestFirst, PriorityAttribute:
	default:
		return nil, fmt.Errorf("opening queue %s: unknown prioritizer %q", name, cfg.Prioritizer)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if q, ok := r.queues[name]; ok {
		q.mu.Lock()
		old := q.cfg.Prioritizer
		if cfg.Prioritizer == "" {
			cfg.Prioritizer = old
		}
		q.cfg = cfg
		q.mu.Unlock()
		if old != cfg.Prioritizer {
			if err := q.reorder(); err != nil {
				return nil, err
			}
		}
		return q, nil
	}
	q := &Queue{
		repo: r, name: name, cfg: cfg,
		items:     []byte("q:" + name),
		age:       []byte("qa:" + name),
		leased:    map[string]struct{}{},
		penalized: map[string]time.Time{},
		ready:     make(chan struct{}, 1),
		drained:   make(chan struct{}, 1),
	}
	var stored Prioritizer
	load := func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketQStats).Get([]byte(name)); v != nil {
			if len(v) < 24 {
				return fmt.Errorf("opening queue %s: malformed statistics: %w", name, edgeagent.ErrRepositoryCorrupt)
			}
			q.count = int64(binary.BigEndian.Uint64(v[0:]))
			q.bytes = int64(binary.BigEndian.Uint64(v[8:]))
			q.seq = binary.BigEndian.Uint64(v[16:])
			stored = Prioritizer(v[24:])
		}
		return nil
	}
	if r.opts.ReadOnly {
		if err := r.db.View(load); err != nil {
			return nil, err
		}
	} else if err := r.db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(q.items); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(q.age); err != nil {
			return err
		}
		if err := load(tx); err != nil {
			return err
		}
		if stored == "" {
			if q.cfg.Prioritizer == "" {
				q.cfg.Prioritizer = FIFO
			}
			stored = q.cfg.Prioritizer
			return q.putStats(tx)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("opening queue %s: %w", name, err)
	}
	if q.cfg.Prioritizer == "" || r.opts.ReadOnly {
		q.cfg.Prioritizer = stored
	}
	if q.cfg.Prioritizer == "" {
		q.cfg.Prioritizer = FIFO
	}
	if stored != "" && stored != q.cfg.Prioritizer && !r.opts.ReadOnly {
		if err := q.reorder(); err != nil {
			return nil, err
		}
	}
	r.queues[name] = q
	return q, nil
}

// Queues returns the names of every queue stored in the repository, open or not.
func (r *Repo) Queues() ([]string, error) {
	var names []string
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQStats).ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	return names, err
}

// Name returns the queue's name.
func (q *Queue) Name() string { return q.name }

// Config returns the queue's settings.
func (q *Queue) Config() QueueConfig {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cfg
}

// Len returns the committed count and bytes (leased flowfiles included).
func (q *Queue) Len() (count, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count, q.bytes
}

// Available returns how many flowfiles are queued and not leased (penalized
// ones included).
func (q *Queue) Available() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count - int64(len(q.leased))
}

// Full reports whether the queue is at a backpressure threshold. A
// loss-tolerant (drop_oldest) queue is never full: it drops instead.
func (q *Queue) Full() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.cfg.DropOldest && q.overLocked()
}

func (q *Queue) overLocked() bool {
	return (q.cfg.MaxCount > 0 && q.count >= q.cfg.MaxCount) || (q.cfg.MaxBytes > 0 && q.bytes >= q.cfg.MaxBytes)
}

// Ready is signalled when flowfiles become available.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

// Drained is signalled when flowfiles leave the queue.
func (q *Queue) Drained() <-chan struct{} { return q.drained }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Oldest returns the enqueue time of the flowfile that has waited longest
// (zero when empty).
func (q *Queue) Oldest() (time.Time, error) {
	var t time.Time
	err := q.repo.db.View(func(tx *bolt.Tx) error {
		items := tx.Bucket(q.items)
		if items == nil {
			return nil
		}
		var v []byte
		if q.prioritizer() == FIFO {
			_, v = items.Cursor().First()
		} else if ab := tx.Bucket(q.age); ab != nil {
			if _, k := ab.Cursor().First(); k != nil {
				v = items.Get(k)
			}
		}
		if len(v) >= 8 {
			t = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
		}
		// (the enqueue time is the first field of every item value)
		return nil
	})
	return t, err
}

func (q *Queue) prioritizer() Prioritizer {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cfg.Prioritizer
}

// Poll leases up to max flowfiles in priority order, skipping leased and
// penalized ones. Leased flowfiles stay on disk until a commit removes them
// or Release gives them back.
func (q *Queue) Poll(max int) ([]*Item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.count-int64(len(q.leased)) <= 0 || max <= 0 {
		return nil, nil
	}
	now := q.repo.opts.Now()
	var out []*Item
	var newHint []byte // the first key not known to be leased
	err := q.repo.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(q.items)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if q.cfg.Prioritizer == FIFO && q.hint != nil {
			k, v = c.Seek(q.hint)
		} else {
			k, v = c.First()
		}
		for ; k != nil && len(out) < max; k, v = c.Next() {
			if _, ok := q.leased[string(k)]; ok {
				continue
			}
			if until, ok := q.penalized[string(k)]; ok {
				if now.Before(until) {
					if newHint == nil {
						newHint = append([]byte(nil), k...)
					}
					continue
				}
				delete(q.penalized, string(k))
			}
			enq, ff, inline, err := decodeItem(v)
			if err != nil {
				return fmt.Errorf("polling queue %s: %w", q.name, err)
			}
			it := &Item{Queue: q, Key: []byte(string(k)), FlowFile: ff, Enqueued: time.Unix(0, enq)}
			if len(inline) > 0 {
				it.Content = append([]byte(nil), inline...)
			}
			out = append(out, it)
		}
		if q.cfg.Prioritizer == FIFO && newHint == nil {
			switch {
			case k != nil:
				newHint = append([]byte(nil), k...)
			case len(out) > 0: // everything up to the end is leased now
				newHint = append(append([]byte(nil), out[len(out)-1].Key...), 0)
			default:
				newHint = q.hint
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	q.hint = newHint
	for _, it := range out {
		q.leased[string(it.Key)] = struct{}{}
	}
	return out, nil
}

// Release gives leased items back without committing anything; with a
// penalty they are skipped by Poll until it has passed.
func (q *Queue) Release(items []*Item, penalty time.Duration) {
	q.mu.Lock()
	q.hint = nil // released items are available again, wherever they are
	until := q.repo.opts.Now().Add(penalty)
	for _, it := range items {
		delete(q.leased, string(it.Key))
		if penalty > 0 {
			q.penalized[string(it.Key)] = until
		}
	}
	q.mu.Unlock()
	signal(q.ready)
}

// itemKey builds the priority key of a flowfile with queue sequence seq.
func itemKey(p Prioritizer, ff *edgeagent.FlowFile, seq uint64) []byte {
	var k []byte
	switch p {
	case OldestFirst:
		k = binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(timeNanos(ff.EntryTime)))
	case NewestFirst:
		k = binary.BigEndian.AppendUint64(make([]byte, 0, 16), ^uint64(timeNanos(ff.EntryTime)))
	case PriorityAttribute:
		v, set := ff.Attributes[edgeagent.AttrPriority]
		k = priorityKey(v, set)
	default:
		k = make([]byte, 0, 8)
	}
	return binary.BigEndian.AppendUint64(k, seq)
}

// priorityKey orders numbers (ascending) before text (lexical) before unset.
func priorityKey(v string, set bool) []byte {
	if !set {
		return []byte{2}
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) {
		bits := math.Float64bits(f)
		if f >= 0 {
			bits ^= 1 << 63
		} else {
			bits = ^bits
		}
		return binary.BigEndian.AppendUint64([]byte{0}, bits)
	}
	k := make([]byte, 0, len(v)+10)
	k = append(k, 1)
	for i := 0; i < len(v) && i < 64; i++ {
		c := v[i]
		if c == 0 {
			c = 1
		}
		k = append(k, c)
	}
	return append(k, 0)
}

// putStats writes the persistent counters. Called with q.mu held or before
// the queue is shared.
func (q *Queue) putStats(tx *bolt.Tx) error {
	v := make([]byte, 24, 24+len(q.cfg.Prioritizer))
	binary.BigEndian.PutUint64(v[0:], uint64(q.count))
	binary.BigEndian.PutUint64(v[8:], uint64(q.bytes))
	binary.BigEndian.PutUint64(v[16:], q.seq)
	v = append(v, q.cfg.Prioritizer...)
	return tx.Bucket(bucketQStats).Put([]byte(q.name), v)
}

// reorder re-keys every stored item after a prioritizer change.
func (q *Queue) reorder() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.cfg.Prioritizer
	return q.repo.db.Update(func(tx *bolt.Tx) error {
		items := tx.Bucket(q.items)
		type kv struct {
			seq uint64
			v   []byte
		}
		var all []kv
		c := items.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			all = append(all, kv{binary.BigEndian.Uint64(k[len(k)-8:]), append([]byte(nil), v...)})
		}
		for _, name := range [][]byte{q.items, q.age} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		items, age := tx.Bucket(q.items), tx.Bucket(q.age)
		for _, e := range all {
			_, ff, _, err := decodeItem(e.v)
			if err != nil {
				return err
			}
			k := itemKey(p, ff, e.seq)
			if err := items.Put(k, e.v); err != nil {
				return err
			}
			if p != FIFO {
				if err := age.Put(binary.BigEndian.AppendUint64(nil, e.seq), k); err != nil {
					return err
				}
			}
		}
		q.leased = map[string]struct{}{}
		q.penalized = map[string]time.Time{}
		q.hint = nil
		return q.putStats(tx)
	})
}
