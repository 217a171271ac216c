package processors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"edgeagent.dev"
)

// PutFileSpec returns the spec of PutFile, which writes flowfile content to
// files in a local directory.
func PutFileSpec() edgeagent.ProcessorSpec {
	return edgeagent.ProcessorSpec{
		Type:    "PutFile",
		Summary: "Writes the content of flowfiles to files in a local directory, crash-safely.",
		Description: "Writes each flowfile's content to directory/filename, where filename is the base name of the " +
			"filename attribute (directories in it are dropped; the uuid is used when it is empty). The content " +
			"goes to a hidden temporary file (.name.<random>.tmp) in the target directory that is synced and then " +
			"renamed over the target, and the directory is synced: a crash never leaves a partial file under the " +
			"final name. conflict_resolution says what happens when the target exists: replace it, ignore the " +
			"flowfile (routed to success without writing), or fail (routed to failure). A SEND provenance event " +
			"records the file:// URI of the written file.",
		Input: edgeagent.InputRequired,
		Properties: []edgeagent.PropertySpec{
			{Name: "directory", Description: "The directory to write to.", Required: true, Expressions: true},
			{Name: "conflict_resolution", Description: "What to do when the target file exists: replace, ignore or fail.", Kind: edgeagent.KindEnum, Allowed: []string{"replace", "ignore", "fail"}, Default: "fail"},
			{Name: "create_missing_directories", Description: "Whether to create the directory (and its parents) when it does not exist.", Kind: edgeagent.KindBool, Default: "true"},
			{Name: "permissions", Description: "The permissions of written files, in octal (0644); default: 0666 less the process umask.", Validate: validatePermissions},
		},
		Relationships: []edgeagent.Relationship{edgeagent.RelSuccess, edgeagent.RelFailure},
		New:           newPutFile,
	}
}

type putFile struct {
	// instance is random per processor instance: temporary files of this
	// instance are named .name.<instance>-<random>.tmp, so those of an
	// earlier run that was killed mid-write can be told apart and removed.
	instance  string
	directory edgeagent.PropertyValue
	conflict  string
	mkdirs    bool
	perm      fs.FileMode // 0: leave the default
}

func validatePermissions(v string) error {
	_, err := parsePermissions(v)
	return err
}

func parsePermissions(v string) (fs.FileMode, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o7777 || n == 0 {
		return 0, fmt.Errorf("%q is not an octal file mode like 0644", v)
	}
	// Go's FileMode keeps setuid/setgid/sticky outside the permission bits.
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

func newPutFile(cfg *edgeagent.ProcessorConfig) (edgeagent.Processor, error) {
	var inst [4]byte
	rand.Read(inst[:])
	p := &putFile{instance: hex.EncodeToString(inst[:]), directory: cfg.Property("directory"), conflict: cfg.Property("conflict_resolution").String()}
	if p.directory.String() == "" {
		return nil, errors.New("property directory: required")
	}
	switch p.conflict {
	case "replace", "ignore", "fail":
	default:
		return nil, fmt.Errorf("property conflict_resolution: %q is not one of replace, ignore, fail", p.conflict)
	}
	var err error
	if p.mkdirs, err = boolProp(cfg, "create_missing_directories"); err != nil {
		return nil, err
	}
	if p.perm, err = parsePermissions(cfg.Property("permissions").String()); err != nil {
		return nil, fmt.Errorf("property permissions: %w", err)
	}
	return p, nil
}

// errTargetExists is the failure when conflict_resolution is fail.
var errTargetExists = errors.New("target file exists and conflict_resolution is fail")

func (p *putFile) OnTrigger(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
	batch := s.GetBatch(batchSize)
	if len(batch) == 0 {
		return nil
	}
	log := pc.Logger()
	for i, ff := range batch {
		if stopping(ctx, s, batch[i:]) {
			break
		}
		target, written, err := p.put(s, ff)
		switch {
		case err != nil:
			routeToFailure(s, ff, err)
		case !written:
			log.Info("target file exists; not writing it", "file", target, "flowfile", ff.ID)
			s.Transfer(ff, edgeagent.RelSuccess)
		default:
			if err := syncDir(filepath.Dir(target)); err != nil {
				// The file is complete under its name; only the rename
				// may not survive a power loss.
				log.Warn("syncing directory after rename", "dir", filepath.Dir(target), "error", err)
			}
			s.Provenance().Send(ff, "file://"+filepath.ToSlash(target), "")
			s.Transfer(ff, edgeagent.RelSuccess)
		}
	}
	return nil
}

// targetName reduces a filename attribute to a base name that stays in the
// target directory.
func targetName(ff *edgeagent.FlowFile) string {
	name := path.Base(strings.ReplaceAll(ff.Attr(edgeagent.AttrFilename), `\`, "/"))
	switch name {
	case ".", "..", "/", "":
		return ff.ID.String()
	}
	return name
}

// put writes ff's content to its target. It returns the target path and
// whether the file was written (false: ignored because it exists).
func (p *putFile) put(s edgeagent.ProcessSession, ff *edgeagent.FlowFile) (string, bool, error) {
	dir, err := p.directory.Evaluate(ff)
	if err != nil {
		return "", false, fmt.Errorf("evaluating directory: %w", err)
	}
	if dir == "" {
		return "", false, errors.New("directory evaluated to an empty string")
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return "", false, fmt.Errorf("resolving directory: %w", err)
	}
	target := filepath.Join(dir, targetName(ff))
	if info, err := os.Stat(dir); err != nil {
		if !errors.Is(err, fs.ErrNotExist) || !p.mkdirs {
			return target, false, fmt.Errorf("checking directory: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return target, false, fmt.Errorf("creating directory: %w", err)
		}
	} else if !info.IsDir() {
		return target, false, fmt.Errorf("%s is not a directory", dir)
	}
	if p.conflict != "replace" {
		if _, err := os.Lstat(target); err == nil {
			if p.conflict == "ignore" {
				return target, false, nil
			}
			return target, false, fmt.Errorf("writing %s: %w", target, errTargetExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return target, false, fmt.Errorf("checking target: %w", err)
		}
	}
	if err := p.writeAtomically(s, ff, target); err != nil {
		return target, false, err
	}
	return target, true, nil
}

// writeAtomically writes the content to a temporary file next to target,
// syncs it and renames it over target.
func (p *putFile) writeAtomically(s edgeagent.ProcessSession, ff *edgeagent.FlowFile, target string) (err error) {
	tmp, f, err := createTemp(target, p.instance)
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	r, err := s.Read(ff)
	if err != nil {
		return fmt.Errorf("reading content: %w", err)
	}
	_, err = io.Copy(f, r)
	r.Close()
	if err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if p.perm != 0 {
		if err := f.Chmod(p.perm); err != nil {
			return fmt.Errorf("setting permissions of %s: %w", tmp, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, target); err != nil {
		return fmt.Errorf("renaming temporary file: %w", err)
	}
	removeStaleTemps(target, p.instance)
	return nil
}

// removeStaleTemps deletes temporary files for target left by an earlier
// instance that was killed mid-write (its flowfile was not committed, so it
// is written again; the leftover would otherwise stay forever).
func removeStaleTemps(target, instance string) {
	dir, name := filepath.Split(target)
	matches, err := filepath.Glob(filepath.Join(dir, "."+globEscape(name)+".*.tmp"))
	if err != nil {
		return
	}
	own := "." + name + "." + instance + "-"
	for _, m := range matches {
		if !strings.HasPrefix(filepath.Base(m), own) {
			os.Remove(m)
		}
	}
}

func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// createTemp creates .name.<instance>-<random>.tmp next to target, with the
// default permissions (0666 less the umask).
func createTemp(target, instance string) (string, *os.File, error) {
	dir, name := filepath.Split(target)
	var rnd [8]byte
	for range 10 {
		rand.Read(rnd[:])
		tmp := filepath.Join(dir, "."+name+"."+instance+"-"+hex.EncodeToString(rnd[:])+".tmp")
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("creating temporary file: %w", err)
		}
		return tmp, f, nil
	}
	return "", nil, errors.New("creating temporary file: too many name collisions")
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
