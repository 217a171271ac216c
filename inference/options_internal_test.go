package inference

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func touch(t *testing.T, p string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o750))
	require.NoError(t, os.WriteFile(p, nil, 0o600))
}

func TestFindLibrary(t *testing.T) {
	root := t.TempDir()
	sys := filepath.Join(root, "usr", "lib")
	touch(t, filepath.Join(sys, "libonnxruntime.so"))
	touch(t, filepath.Join(sys, "libonnxruntime.so.1"))
	touch(t, filepath.Join(sys, "libonnxruntime.so.1.29.0"))
	touch(t, filepath.Join(sys, "libonnxruntime.so.1.30.1"))
	local := filepath.Join(root, "usr", "local", "lib")
	touch(t, filepath.Join(local, "libonnxruntime.so.1"))
	repo := filepath.Join(root, "repo")
	touch(t, filepath.Join(repo, CacheLibrary))
	wd := filepath.Join(repo, "processors")
	require.NoError(t, os.MkdirAll(wd, 0o750))
	globs := []string{filepath.Join(sys, "libonnxruntime.so*"), filepath.Join(local, "libonnxruntime.so*"), filepath.Join(root, "missing", "*")}
	noEnv := func(string) string { return "" }

	got := findLibrary("", noEnv, globs, wd, "")
	require.Equal(t, []LibraryCandidate{
		{Path: filepath.Join(sys, "libonnxruntime.so.1.29.0"), Source: "system"},
		{Path: filepath.Join(sys, "libonnxruntime.so.1"), Source: "system"},
		{Path: filepath.Join(sys, "libonnxruntime.so"), Source: "system"},
		{Path: filepath.Join(sys, "libonnxruntime.so.1.30.1"), Source: "system"},
		{Path: filepath.Join(local, "libonnxruntime.so.1"), Source: "system"},
		{Path: filepath.Join(repo, CacheLibrary), Source: "cache"},
	}, got)

	// The executable's directory (bin/ beside the cache) counts too.
	got = findLibrary("", noEnv, nil, root, filepath.Join(repo, "bin", "edgeagent"))
	require.Equal(t, []LibraryCandidate{{Path: filepath.Join(repo, "bin", "..", CacheLibrary), Source: "cache"}}, got)

	// Configured and the environment win, as they are, even when missing.
	env := func(k string) string {
		if k == LibraryEnv {
			return "/opt/ort/libonnxruntime.so"
		}
		return ""
	}
	require.Equal(t, []LibraryCandidate{{Path: "/x/lib.so", Source: "config"}}, findLibrary("/x/lib.so", env, globs, wd, ""))
	require.Equal(t, []LibraryCandidate{{Path: "/opt/ort/libonnxruntime.so", Source: LibraryEnv}}, findLibrary("", env, globs, wd, ""))
	require.Empty(t, findLibrary("", noEnv, nil, t.TempDir(), ""))
}

func TestCheckVersion(t *testing.T) {
	for _, ok := range []string{"1.29.0", "1.29.1", "1.30.0", "1.31.2-dev"} {
		require.NoError(t, checkVersion(ok), ok)
	}
	for _, bad := range []string{"1.28.1", "1.16.3", "2.0.0", "", "one.two"} {
		err := checkVersion(bad)
		require.ErrorIs(t, err, ErrRuntimeVersion, bad)
		require.ErrorContains(t, err, "1.29.0")
	}
}
