package processors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"edgeagent.dev"
)

// GetFileSpec returns the spec of GetFile, a source that picks up files from
// a local directory.
func GetFileSpec() edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "GetFile",
		Summary: "Creates flowfiles from the files in a local directory, deleting the files afterwards unless told to keep them.",
		Description: "Lists input_directory (and its subdirectories when recurse is true), and turns up to batch_size " +
			"matching files into flowfiles, streaming their content. Each flowfile gets filename, path (the " +
			"directory relative to input_directory, like ./ or sub/dir/), absolute.path, file.size, " +
			"file.lastModifiedTime, file.permissions and, when the extension tells it, mime.type, and a RECEIVE " +
			"provenance event. Unless keep_source_file is true a file is deleted only after the session that " +
			"took it was committed: a crash in between gives a duplicate, never a loss. With keep_source_file " +
			"true the same files are picked up again on every run (as in NiFi). Files that vanish or cannot be " +
			"read are skipped and logged.",
		Input: edgeagent.InputForbidden,
		Properties: []edgeagent.PropertySpec{
			{Name: "input_directory", Description: "The directory to pick files up from.", Required: true},
			{Name: "file_filter", Description: "Only files whose name (without directory) matches this regular expression are picked up.", Kind: edgeagent.KindRegex, Default: `[^\.].*`},
			{Name: "path_filter", Description: "When recurse is true, only files in subdirectories whose relative path matches this regular expression are picked up (files directly in input_directory always are).", Kind: edgeagent.KindRegex},
			{Name: "recurse", Description: "Whether to pick up files from subdirectories.", Kind: edgeagent.KindBool, Default: "true"},
			{Name: "keep_source_file", Description: "Whether to leave the files in place; false deletes each file once its flowfile is committed.", Kind: edgeagent.KindBool, Default: "false"},
			{Name: "min_file_age", Description: "Files modified more recently than this are left alone (still being written).", Kind: edgeagent.KindDuration, Default: "0s"},
			{Name: "max_file_age", Description: "Files last modified longer ago than this are ignored.", Kind: edgeagent.KindDuration},
			{Name: "min_file_size", Description: "Smaller files are ignored.", Kind: edgeagent.KindSize},
			{Name: "max_file_size", Description: "Larger files are ignored.", Kind: edgeagent.KindSize},
			{Name: "ignore_hidden_files", Description: "Whether to ignore files whose name starts with a dot.", Kind: edgeagent.KindBool, Default: "true"},
			{Name: "batch_size", Description: "The most files picked up in one run.", Kind: edgeagent.KindInt, Default: "10", Validate: atLeast(1)},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess},
		New:           newGetFile,
	}
}

type getFile struct {
	dir        string
	fileFilter *regexp.Regexp
	pathFilter *regexp.Regexp // nil: every subdirectory
	recurse    bool
	keep       bool
	minAge     time.Duration
	maxAge     time.Duration // -1: no limit
	minSize    int64         // -1: no limit
	maxSize    int64         // -1: no limit
	skipHidden bool
	batch      int

	mu       sync.Mutex
	inFlight map[string]struct{} // absolute paths taken by uncommitted sessions
}

func newGetFile(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	p := &getFile{dir: cfg.Property("input_directory").String(), inFlight: map[string]struct{}{}}
	if p.dir == "" {
		return nil, errors.New("property input_directory: required")
	}
	var err error
	if p.fileFilter, err = compileFullMatch("file_filter", cfg.Property("file_filter").String()); err != nil {
		return nil, err
	}
	if p.pathFilter, err = optionalRegex(cfg, "path_filter"); err != nil {
		return nil, err
	}
	if p.recurse, err = boolProp(cfg, "recurse"); err != nil {
		return nil, err
	}
	if p.keep, err = boolProp(cfg, "keep_source_file"); err != nil {
		return nil, err
	}
	if p.skipHidden, err = boolProp(cfg, "ignore_hidden_files"); err != nil {
		return nil, err
	}
	if p.minAge, err = cfg.Property("min_file_age").Duration(); err != nil {
		return nil, fmt.Errorf("property min_file_age: %w", err)
	}
	if p.maxAge, err = optionalDuration(cfg, "max_file_age"); err != nil {
		return nil, err
	}
	if p.minSize, err = optionalSize(cfg, "min_file_size"); err != nil {
		return nil, err
	}
	if p.maxSize, err = optionalSize(cfg, "max_file_size"); err != nil {
		return nil, err
	}
	n, err := intProp(cfg, "batch_size", 1)
	if err != nil {
		return nil, err
	}
	p.batch = int(n)
	return p, nil
}

// candidate is a file selected for pickup.
type candidate struct {
	abs  string // absolute path of the file
	rel  string // directory relative to the input directory: "./" or "sub/dir/"
	info fs.FileInfo
}

func (p *getFile) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	log := pc.Logger()
	files, err := p.list(log)
	if err != nil {
		log.Warn("listing input directory", "dir", p.dir, "error", err)
		pc.Yield()
		return nil
	}
	// The files taken by this session: deleted (unless kept) and released
	// once it commits, released if it rolls back.
	var taken []string
	if len(files) > 0 {
		s.OnCommitted(func() {
			if !p.keep {
				for _, f := range taken {
					if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
						log.Error("deleting picked up file; it will be picked up again", "file", f, "error", err)
					}
				}
			}
			p.release(taken...)
		})
		s.OnRolledBack(func() { p.release(taken...) })
	}
	for i, c := range files {
		if ctx.Err() != nil {
			p.release(filesPaths(files[i:])...)
			break
		}
		ok, err := p.take(s, log, c)
		if ok {
			taken = append(taken, c.abs)
		} else {
			p.release(c.abs)
		}
		if err != nil {
			p.release(filesPaths(files[i+1:])...)
			return err
		}
	}
	if len(taken) == 0 {
		pc.Yield()
	}
	return nil
}

// filesPaths returns the absolute paths of cs.
func filesPaths(cs []candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.abs
	}
	return out
}

// take turns one file into a flowfile. It returns false when the file was
// skipped (vanished, unreadable, too large for the repository), and an
// error only when the session itself failed.
func (p *getFile) take(s edgeagent.ProcessSession, log *slog.Logger, c candidate) (bool, error) {
	f, err := os.Open(c.abs)
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, fs.ErrNotExist) {
			level = slog.LevelDebug
		}
		log.Log(context.Background(), level, "skipping file that cannot be opened", "file", c.abs, "error", err)
		return false, nil
	}
	defer f.Close()
	ff := s.Create()
	attrs := map[string]string{
		edgeagent.AttrFilename:  c.info.Name(),
		edgeagent.AttrPath:      c.rel,
		edgeagent.AttrAbsPath:   filepath.Dir(c.abs) + string(filepath.Separator),
		"file.size":             strconv.FormatInt(c.info.Size(), 10),
		"file.lastModifiedTime": c.info.ModTime().Format(time.RFC3339),
		"file.permissions":      c.info.Mode().Perm().String()[1:],
	}
	if mt := mimeTypeByExtension(c.info.Name()); mt != "" {
		attrs[edgeagent.AttrMimeType] = mt
	}
	ff = s.PutAttributes(ff, attrs)
	src := &readErrReader{r: f}
	nff, err := s.WriteFrom(ff, src)
	ff = latest(nff, ff)
	if err != nil {
		if src.err != nil || errors.Is(err, edgeagent.ErrContentTooLarge) {
			log.Warn("skipping file that cannot be read", "file", c.abs, "error", err)
			s.Remove(ff)
			return false, nil
		}
		s.Remove(ff)
		return false, fmt.Errorf("storing content of %s: %w", c.abs, err)
	}
	s.Provenance().Receive(ff, "file://"+filepath.ToSlash(c.abs), "")
	s.Transfer(ff, edgeagent.RelSuccess)
	return true, nil
}

// mimeTypeByExtension returns the media type (without parameters) that the
// file name's extension suggests, or "".
func mimeTypeByExtension(name string) string {
	ext := filepath.Ext(name)
	if ext == "" {
		return ""
	}
	mt, _, _ := strings.Cut(mime.TypeByExtension(ext), ";")
	return strings.TrimSpace(mt)
}

// list walks the input directory and claims up to batch files that qualify
// and are not taken by another session. The caller releases the claims.
func (p *getFile) list(log *slog.Logger) ([]candidate, error) {
	root, err := filepath.Abs(p.dir)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", p.dir, err)
	}
	if _, err := os.Stat(root); err != nil {
		return nil, err
	}
	now := time.Now()
	var out []candidate
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			log.Warn("skipping unreadable path", "path", path, "error", err)
			return nil
		}
		if d.IsDir() {
			if path != root && !p.recurse {
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		if p.skipHidden && strings.HasPrefix(name, ".") || !p.fileFilter.MatchString(name) {
			return nil
		}
		relDir, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return nil
		}
		relDir = filepath.ToSlash(relDir)
		if relDir != "." && p.pathFilter != nil && !p.pathFilter.MatchString(relDir) {
			return nil
		}
		info, err := os.Stat(path) // follows symbolic links
		if err != nil || !info.Mode().IsRegular() {
			return nil
		}
		if !p.qualifies(info, now) {
			return nil
		}
		if !p.claim(path) {
			return nil
		}
		rel := "./"
		if relDir != "." {
			rel = relDir + "/"
		}
		out = append(out, candidate{abs: path, rel: rel, info: info})
		if len(out) >= p.batch {
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		p.release(filesPaths(out)...)
		return nil, err
	}
	return out, nil
}

// qualifies checks the age and size limits.
func (p *getFile) qualifies(info fs.FileInfo, now time.Time) bool {
	age := now.Sub(info.ModTime())
	size := info.Size()
	return age >= p.minAge &&
		(p.maxAge < 0 || age <= p.maxAge) &&
		(p.minSize < 0 || size >= p.minSize) &&
		(p.maxSize < 0 || size <= p.maxSize)
}

// claim marks path as taken; false when another session already has it.
func (p *getFile) claim(path string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, busy := p.inFlight[path]; busy {
		return false
	}
	p.inFlight[path] = struct{}{}
	return true
}

// release forgets the claims on paths.
func (p *getFile) release(paths ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, path := range paths {
		delete(p.inFlight, path)
	}
}
