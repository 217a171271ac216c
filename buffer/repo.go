package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"edgeagent.dev"
	"edgeagent.dev/provenance"
)

// FormatVersion is the repository format this build reads and writes.
const FormatVersion = 1

// FileName is the repository's file inside the data directory.
const FileName = "edgeagent.db"

// ChunkSize is the size of content chunks in the content store.
const ChunkSize = 256 << 10

var (
	bucketMeta    = []byte("meta")
	bucketQStats  = []byte("qstats")
	bucketContent = []byte("content")
	bucketClaims  = []byte("claims") // claim -> reference count, only for claims shared by 2+ flowfiles
	keyFormat     = []byte("format")
	keyCreated    = []byte("created")
	keyClaimHW    = []byte("claim-hw") // every claim ID ever committed is <= this
)

// Options configure a repository.
type Options struct {
	// MaxSize is the disk budget in bytes (agent.repository.max_size): at the
	// budget loss-tolerant queues are evicted and then sources see
	// backpressure. 0 means 1 GiB.
	MaxSize int64
	// MaxContentSize bounds one flowfile's content. 0 means 64 MiB.
	MaxContentSize int64
	// ProvenanceMaxAge and ProvenanceMaxSize bound provenance retention.
	// 0 means 24h and 100 MiB.
	ProvenanceMaxAge  time.Duration
	ProvenanceMaxSize int64
	// MaxBatch bounds how many changes one group commit applies. 0 means 256.
	MaxBatch int
	// NoSync skips fsync: only for tests and benchmarks that say so.
	NoSync bool
	// ReadOnly opens the file for queries (CLI); it fails while an agent
	// holds the file.
	ReadOnly bool
	// Logger receives repository messages; nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now (tests override it).
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.MaxSize <= 0 {
		o.MaxSize = 1 << 30
	}
	if o.MaxContentSize <= 0 {
		o.MaxContentSize = 64 << 20
	}
	if o.ProvenanceMaxAge <= 0 {
		o.ProvenanceMaxAge = 24 * time.Hour
	}
	if o.ProvenanceMaxSize <= 0 {
		o.ProvenanceMaxSize = 100 << 20
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Repo is the durable repository. Open it with Open and close it with Close
// once every session using it has finished.
type Repo struct {
	db   *bolt.DB
	path string
	opts Options
	log  *slog.Logger

	commits chan *commitReq
	stop    chan struct{}
	wg      sync.WaitGroup
	closed  atomic.Bool

	nextClaim atomic.Uint64
	// arena holds the queue items a transaction writes; the committer
	// reuses it once the transaction has ended (bbolt keeps references to
	// values only until then).
	arena []byte

	mu     sync.Mutex
	queues map[string]*Queue

	lastErr  atomic.Pointer[error] // the last commit's error; nil after a success
	used     atomic.Int64          // bytes of the file in use (file size less free pages)
	fileSize atomic.Int64
	evictReq atomic.Bool

	lastRelease time.Time // committer goroutine only
}

// Open opens (or creates) the repository in dir. It fails at once with
// ErrRepositoryLocked when another process holds it, with ErrRepositoryFormat
// for a file of another format version and with ErrRepositoryCorrupt for a
// file that fails its checks; it never overwrites an existing file.
func Open(dir string, opts Options) (*Repo, error) {
	opts.setDefaults()
	path := filepath.Join(dir, FileName)
	if !opts.ReadOnly {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("creating data directory %s: %w", dir, err)
		}
	} else if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opening repository %s: %w", path, err)
	}
	db, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	r := &Repo{
		db: db, path: path, opts: opts, log: opts.Logger,
		commits: make(chan *commitReq, 1024),
		stop:    make(chan struct{}),
		queues:  map[string]*Queue{},
	}
	if err := r.checkFormat(); err != nil {
		db.Close()
		return nil, err
	}
	if err := r.db.View(func(tx *bolt.Tx) error {
		// Claim IDs must never be reused while a flowfile holds one: start
		// above the high-water mark every commit records (and above the
		// content store's keys, which start with the claim ID).
		if v := tx.Bucket(bucketMeta).Get(keyClaimHW); len(v) == 8 {
			r.nextClaim.Store(binary.BigEndian.Uint64(v))
		}
		if k, _ := tx.Bucket(bucketContent).Cursor().Last(); len(k) >= 8 && binary.BigEndian.Uint64(k) > r.nextClaim.Load() {
			r.nextClaim.Store(binary.BigEndian.Uint64(k))
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("reading repository %s: %w", path, err)
	}
	r.refreshUsage()
	if !opts.ReadOnly {
		r.wg.Add(2)
		go r.committer()
		go r.housekeeper()
	}
	return r, nil
}

func openBolt(path string, opts Options) (db *bolt.DB, err error) {
	defer func() {
		// bbolt panics on some kinds of page corruption.
		if p := recover(); p != nil {
			db, err = nil, corruptError(path, fmt.Errorf("%v", p))
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        250 * time.Millisecond,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		NoSync:         opts.NoSync,
		ReadOnly:       opts.ReadOnly,
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("opening repository %s: another edgeagent process is using this data directory (stop it, or give this agent another agent.data_dir): %w", path, edgeagent.ErrRepositoryLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return nil, corruptError(path, err)
	default:
		return nil, fmt.Errorf("opening repository %s: %w", path, err)
	}
}

func corruptError(path string, cause error) error {
	return fmt.Errorf("opening repository %s: %v: the file is damaged; the agent will not overwrite it. Move it aside (mv %s %s.corrupt) to start with an empty repository, and keep the copy for recovery: %w",
		path, cause, path, path, edgeagent.ErrRepositoryCorrupt)
}

// checkFormat verifies (or, for a new file, writes) the format version and
// creates the buckets.
func (r *Repo) checkFormat() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = corruptError(r.path, fmt.Errorf("%v", p))
		}
	}()
	check := func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return corruptError(r.path, errors.New("no format record"))
			}
			return errNewFile
		}
		v := meta.Get(keyFormat)
		if len(v) != 8 {
			return corruptError(r.path, errors.New("malformed format record"))
		}
		if n := binary.BigEndian.Uint64(v); n != FormatVersion {
			return fmt.Errorf("opening repository %s: the file has format version %d and this agent reads version %d: run an agent version that supports format %d, or move the file aside to start empty: %w",
				r.path, n, FormatVersion, n, edgeagent.ErrRepositoryFormat)
		}
		for _, b := range [][]byte{bucketQStats, bucketContent, bucketClaims} {
			if tx.Bucket(b) == nil {
				return corruptError(r.path, fmt.Errorf("bucket %s missing", b))
			}
		}
		return nil
	}
	err = r.db.View(check)
	if !errors.Is(err, errNewFile) {
		return err
	}
	if r.opts.ReadOnly {
		return fmt.Errorf("opening repository %s: the file is empty: %w", r.path, edgeagent.ErrRepositoryCorrupt)
	}
	return r.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyFormat, binary.BigEndian.AppendUint64(nil, FormatVersion)); err != nil {
			return err
		}
		if err := meta.Put(keyCreated, []byte(r.opts.Now().UTC().Format(time.RFC3339))); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketQStats, bucketContent, bucketClaims} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return provenance.EnsureBuckets(tx)
	})
}

var errNewFile = errors.New("new file")

// Path returns the repository file's path.
func (r *Repo) Path() string { return r.path }

// DB returns the underlying bbolt database for read-only queries
// (provenance views). Never write through it.
func (r *Repo) DB() *bolt.DB { return r.db }

// Close stops the committer (after the queued commits are applied) and
// closes the file.
func (r *Repo) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(r.stop)
	r.wg.Wait()
	return r.db.Close()
}

// Err returns the error of the most recent commit, or nil when it succeeded:
// a repository that cannot write (disk full, I/O errors) is unhealthy.
func (r *Repo) Err() error {
	if p := r.lastErr.Load(); p != nil {
		return *p
	}
	if r.closed.Load() {
		return edgeagent.ErrRepositoryClosed
	}
	return nil
}

// NewClaim returns a new content claim ID.
func (r *Repo) NewClaim() uint64 { return r.nextClaim.Add(1) }

// MaxContentSize is the per-flowfile content limit.
func (r *Repo) MaxContentSize() int64 { return r.opts.MaxContentSize }

// Usage returns the bytes in use, the file size and the budget.
func (r *Repo) Usage() (used, fileSize, budget int64) {
	return r.used.Load(), r.fileSize.Load(), r.opts.MaxSize
}

// Full reports whether the repository is at its disk budget: sources must
// not add data. Loss-tolerant queues are evicted before this happens.
func (r *Repo) Full() bool {
	return r.used.Load() >= r.opts.MaxSize*97/100
}

func (r *Repo) refreshUsage() {
	var size int64
	_ = r.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	free := int64(r.db.Stats().FreeAlloc)
	r.used.Store(size - free)
	if fi, err := os.Stat(r.path); err == nil {
		r.fileSize.Store(fi.Size())
	}
	if r.used.Load() >= r.opts.MaxSize*90/100 {
		r.evictReq.Store(true)
	}
}

// ReadContent opens a claim's content. Each chunk is read in its own short
// read transaction, so a slow reader does not hold the file's free pages.
func (r *Repo) ReadContent(claim uint64, size int64) io.ReadCloser {
	return &contentReader{r: r, claim: claim, size: size}
}

type contentReader struct {
	r     *Repo
	claim uint64
	size  int64
	chunk uint32
	buf   []byte
	read  int64
	err   error
}

func (c *contentReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.read >= c.size {
			return 0, io.EOF
		}
		if c.r.closed.Load() {
			c.err = edgeagent.ErrRepositoryClosed
			return 0, c.err
		}
		key := chunkKey(c.claim, c.chunk)
		err := c.r.db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketContent).Get(key[:])
			if v == nil {
				return fmt.Errorf("reading content claim %d chunk %d: missing: %w", c.claim, c.chunk, edgeagent.ErrRepositoryCorrupt)
			}
			c.buf = append(c.buf[:0], v...)
			return nil
		})
		if err != nil {
			c.err = err
			return 0, err
		}
		c.chunk++
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	c.read += int64(n)
	return n, nil
}

func (c *contentReader) Close() error { c.buf = nil; return nil }

func chunkKey(claim uint64, chunk uint32) [12]byte {
	var k [12]byte
	binary.BigEndian.PutUint64(k[:8], claim)
	binary.BigEndian.PutUint32(k[8:], chunk)
	return k
}

// housekeeper expires old flowfiles, prunes provenance and refreshes the
// usage figures.
func (r *Repo) housekeeper() {
	defer r.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		// The committer refreshes the usage figures after each housekeeping
		// transaction; the eviction request they set is served by the next.
		ctx := context.Background()
		if err := r.submit(ctx, &commitReq{housekeeping: true}); err != nil && !errors.Is(err, edgeagent.ErrRepositoryClosed) {
			r.log.Error("housekeeping failed", "err", err)
		}
	}
}
