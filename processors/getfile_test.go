package processors_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev"
	"edgeagent.dev/internal/enginetest"
	"edgeagent.dev/processors"
	"edgeagent.dev/provenance"
)

// writeFiles creates files (relative path -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
}

// byName indexes outputs by "path + filename".
func byName(outs []enginetest.Output) map[string]enginetest.Output {
	m := map[string]enginetest.Output{}
	for _, o := range outs {
		m[o.FlowFile.Attr(edgeagent.AttrPath)+o.FlowFile.Attr(edgeagent.AttrFilename)] = o
	}
	return m
}

func TestGetFileAttributesContentAndProvenance(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.txt": "alpha", "sub/b.json": `{"b":1}`, ".hidden": "h"})
	r := enginetest.NewRunner(t, processors.GetFileSpec(), map[string]string{"input_directory": dir})
	r.Run(1)
	out := byName(r.Output("success"))
	require.Len(t, out, 2)

	a := out["./a.txt"]
	require.Equal(t, "alpha", string(a.Content))
	require.Equal(t, dir+"/", a.FlowFile.Attr(edgeagent.AttrAbsPath))
	require.Equal(t, "5", a.FlowFile.Attr("file.size"))
	require.Equal(t, "rw-r--r--", a.FlowFile.Attr("file.permissions"))
	require.Contains(t, a.FlowFile.Attr(edgeagent.AttrMimeType), "text/plain")
	mod, err := time.Parse(time.RFC3339, a.FlowFile.Attr("file.lastModifiedTime"))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), mod, time.Minute)

	b := out["sub/b.json"]
	require.Equal(t, `{"b":1}`, string(b.Content))
	require.Equal(t, filepath.Join(dir, "sub")+"/", b.FlowFile.Attr(edgeagent.AttrAbsPath))
	require.Equal(t, "application/json", b.FlowFile.Attr(edgeagent.AttrMimeType))

	recv := eventsOf(r.Events(), provenance.EventReceive)
	require.Len(t, recv, 2)
	uris := []string{recv[0].TransitURI, recv[1].TransitURI}
	require.ElementsMatch(t, []string{"file://" + filepath.Join(dir, "a.txt"), "file://" + filepath.Join(dir, "sub", "b.json")}, uris)
	require.Empty(t, eventsOf(r.Events(), provenance.EventCreate), "RECEIVE replaces CREATE")

	require.NoFileExists(t, filepath.Join(dir, "a.txt"))
	require.NoFileExists(t, filepath.Join(dir, "sub", "b.json"))
	require.FileExists(t, filepath.Join(dir, ".hidden"))

	r.Run(1)
	require.Empty(t, r.Output("success"))
	require.True(t, r.Yielded(), "yields when no file qualifies")
}

func TestGetFileKeepSourceFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.txt": "alpha"})
	r := enginetest.NewRunner(t, processors.GetFileSpec(), map[string]string{"input_directory": dir, "keep_source_file": "true"})
	r.Run(2)
	require.Len(t, r.Output("success"), 2, "a kept file is picked up again, as in NiFi")
	require.FileExists(t, filepath.Join(dir, "a.txt"))
}

// TestGetFileDeletesOnlyAfterCommit fails the first trigger after GetFile
// ran: the session is rolled back, so the file must still be there, and
// the next trigger picks it up again (the in-flight claim was released).
func TestGetFileDeletesOnlyAfterCommit(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a.txt")
	writeFiles(t, dir, map[string]string{"a.txt": "alpha"})
	failNext := true
	errInjected := errors.New("injected failure")
	spec := wrapSpec(processors.GetFileSpec(), func(p edgeagent.Processor) edgeagent.Processor {
		return triggerFunc(func(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
			if err := p.OnTrigger(ctx, pc, s); err != nil {
				return err
			}
			require.FileExists(t, file, "deleted before commit")
			if failNext {
				failNext = false
				return errInjected
			}
			return nil
		})
	})
	r := enginetest.NewRunner(t, spec, map[string]string{"input_directory": dir})
	require.ErrorIs(t, r.Trigger(), errInjected)
	require.FileExists(t, file)
	require.Empty(t, r.Output("success"))

	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 1)
	require.Equal(t, "alpha", string(out[0].Content))
	require.NoFileExists(t, file)
}

// TestGetFileInFlight runs GetFile twice in one session: the second run
// must not take the files the first one claimed.
func TestGetFileInFlight(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a": "1", "b": "2", "c": "3"})
	spec := wrapSpec(processors.GetFileSpec(), func(p edgeagent.Processor) edgeagent.Processor {
		return triggerFunc(func(ctx context.Context, pc edgeagent.ProcessContext, s edgeagent.ProcessSession) error {
			if err := p.OnTrigger(ctx, pc, s); err != nil {
				return err
			}
			return p.OnTrigger(ctx, pc, s)
		})
	})
	r := enginetest.NewRunner(t, spec, map[string]string{"input_directory": dir, "batch_size": "2"})
	r.Run(1)
	require.ElementsMatch(t, []string{"1", "2", "3"}, contents(r.Output("success")))
	r.Run(1)
	require.Empty(t, r.Output("success"))
}

func TestGetFileSelection(t *testing.T) {
	tree := map[string]string{
		"a.txt":          "a",
		"b.log":          "bb",
		"sub/c.txt":      "ccc",
		"sub/deep/d.txt": "dddd",
		"other/e.txt":    "eeeee",
		"sub/.f.txt":     "f",
	}
	tests := []struct {
		name  string
		props map[string]string
		want  []string // path+filename of the files picked up
	}{
		{name: "recurse", want: []string{"./a.txt", "./b.log", "sub/c.txt", "sub/deep/d.txt", "other/e.txt"}},
		{name: "no recurse", props: map[string]string{"recurse": "false"}, want: []string{"./a.txt", "./b.log"}},
		{name: "file filter", props: map[string]string{"file_filter": `.*\.txt`}, want: []string{"./a.txt", "sub/c.txt", "sub/deep/d.txt", "other/e.txt"}},
		{name: "file filter matches whole name", props: map[string]string{"file_filter": `a`}, want: []string{}},
		{name: "path filter", props: map[string]string{"path_filter": `sub(/.*)?`}, want: []string{"./a.txt", "./b.log", "sub/c.txt", "sub/deep/d.txt"}},
		{name: "path filter exact", props: map[string]string{"path_filter": `sub/deep`}, want: []string{"./a.txt", "./b.log", "sub/deep/d.txt"}},
		{name: "hidden included", props: map[string]string{"ignore_hidden_files": "false", "file_filter": `.*\.txt`, "recurse": "true", "path_filter": "sub"}, want: []string{"./a.txt", "sub/c.txt", "sub/.f.txt"}},
		{name: "min size", props: map[string]string{"min_file_size": "3B"}, want: []string{"sub/c.txt", "sub/deep/d.txt", "other/e.txt"}},
		{name: "max size", props: map[string]string{"max_file_size": "2B"}, want: []string{"./a.txt", "./b.log"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tree)
			props := map[string]string{"input_directory": dir, "batch_size": "100"}
			for k, v := range tt.props {
				props[k] = v
			}
			r := enginetest.NewRunner(t, processors.GetFileSpec(), props)
			r.Run(1)
			got := []string{}
			for name := range byName(r.Output("success")) {
				got = append(got, name)
			}
			require.ElementsMatch(t, tt.want, got)
			require.Equal(t, len(tt.want) == 0, r.Yielded())
		})
	}
}

func TestGetFileAge(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"new": "n", "old": "o", "ancient": "a"})
	now := time.Now()
	require.NoError(t, os.Chtimes(filepath.Join(dir, "old"), now, now.Add(-2*time.Hour)))
	require.NoError(t, os.Chtimes(filepath.Join(dir, "ancient"), now, now.Add(-72*time.Hour)))

	r := enginetest.NewRunner(t, processors.GetFileSpec(), map[string]string{
		"input_directory": dir, "min_file_age": "1h", "max_file_age": "1d",
	})
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 1)
	require.Equal(t, "old", out[0].FlowFile.Attr(edgeagent.AttrFilename))

	r.Run(1)
	require.Empty(t, r.Output("success"), "the new file is too young, the ancient one too old")
	require.True(t, r.Yielded())
	require.FileExists(t, filepath.Join(dir, "new"))

	require.NoError(t, os.Chtimes(filepath.Join(dir, "new"), now, now.Add(-90*time.Minute)))
	r.Run(1)
	require.Len(t, r.Output("success"), 1)
}

func TestGetFileBatchSize(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	for i := range 25 {
		files["f"+strconv.Itoa(i)] = strconv.Itoa(i)
	}
	writeFiles(t, dir, files)
	r := enginetest.NewRunner(t, processors.GetFileSpec(), map[string]string{"input_directory": dir})
	var got []string
	for _, want := range []int{10, 10, 5, 0} {
		r.Run(1)
		out := r.Output("success")
		require.Len(t, out, want)
		got = append(got, contents(out)...)
	}
	slices.Sort(got)
	require.Len(t, slices.Compact(got), 25)
}

func TestGetFileLargeFile(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 20<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644))
	r := enginetest.NewRunner(t, processors.GetFileSpec(), map[string]string{"input_directory": dir})
	r.Run(1)
	out := r.Output("success")
	require.Len(t, out, 1)
	require.Equal(t, big, out[0].Content)
	require.Equal(t, strconv.Itoa(len(big)), out[0].FlowFile.Attr("file.size"))
}

func TestGetFileUnreadableFileIsSkipped(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files regardless of their mode")
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a": "ok", "b": "secret"})
	require.NoError(t, os.Chmod(filepath.Join(dir, "b"), 0))
	r := enginetest.NewRunner(t, processors.GetFileSpec(), map[string]string{"input_directory": dir})
	r.Run(1)
	require.Equal(t, []string{"ok"}, contents(r.Output("success")))
	require.FileExists(t, filepath.Join(dir, "b"))
}

func TestGetFileMissingDirectoryYields(t *testing.T) {
	r := enginetest.NewRunner(t, processors.GetFileSpec(), map[string]string{"input_directory": filepath.Join(t.TempDir(), "nope")})
	r.Run(1)
	require.True(t, r.Yielded())
}

func TestGetFileConfigErrors(t *testing.T) {
	spec := processors.GetFileSpec()
	requireConfigError(t, spec, map[string]string{}, "input_directory")
	requireConfigError(t, spec, map[string]string{"input_directory": "/tmp", "file_filter": "("}, "file_filter")
	requireConfigError(t, spec, map[string]string{"input_directory": "/tmp", "batch_size": "0"}, "batch_size")
	requireConfigError(t, spec, map[string]string{"input_directory": "/tmp", "min_file_age": "soon"}, "min_file_age")
}
