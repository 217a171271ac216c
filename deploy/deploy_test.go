// Package deploy_test checks the Jetson deployment files in deploy/jetson:
// the systemd unit (with systemd-analyze), the example flow, and
// install.sh/uninstall.sh run into a temporary root.
package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edgeagent.dev/internal/config"
	"edgeagent.dev/processors/all"
)

const jetson = "jetson" // deploy/jetson, relative to this package

func src(name string) string { return filepath.Join(jetson, name) }

// ---- helpers ----------------------------------------------------------------

var (
	agentOnce sync.Once
	agentDir  string
	agentPath string
	agentErr  error
	agentOut  []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	if agentDir != "" {
		os.RemoveAll(agentDir)
	}
	os.Exit(code)
}

// agentBinary builds cmd/edgeagent for this machine once per test run; the
// installer runs it to validate flows, and systemd-analyze wants an
// executable ExecStart.
func agentBinary(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		agentDir, agentErr = os.MkdirTemp("", "edgeagent-deploy-test-")
		if agentErr != nil {
			return
		}
		agentPath = filepath.Join(agentDir, "edgeagent")
		cmd := exec.Command(goTool(), "build", "-o", agentPath, "./cmd/edgeagent")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		agentOut, agentErr = cmd.CombinedOutput()
	})
	require.NoError(t, agentErr, "building cmd/edgeagent: %s", agentOut)
	return agentPath
}

// goTool finds the go command that runs these tests (make test uses the
// one from scripts/ensure-go.sh, which need not be on PATH).
func goTool() string {
	for _, root := range []string{os.Getenv("GOROOT"), runtime.GOROOT()} {
		if root == "" {
			continue
		}
		if p := filepath.Join(root, "bin", "go"); isExecutable(p) {
			return p
		}
	}
	return "go"
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// systemdAnalyze returns the path of systemd-analyze, failing the test
// (not skipping it) when it is missing: the unit must be checked.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is not installed, so the systemd unit cannot be verified: " +
			"install the Debian/Ubuntu package \"systemd\" (apt-get install systemd; scripts/setup.sh does)")
	}
	return p
}

// verifyUnit copies unit (and its drop-in directory, if any) to a temporary
// directory with ExecStart pointing at an existing binary, and runs
// systemd-analyze verify on it: any diagnostic about the unit fails.
func verifyUnit(t *testing.T, unit, dropins, binary string) {
	t.Helper()
	analyze := systemdAnalyze(t)
	data, err := os.ReadFile(unit)
	require.NoError(t, err)
	re := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/edgeagent `)
	require.True(t, re.Match(data), "%s: ExecStart=/usr/local/bin/edgeagent expected", unit)
	data = re.ReplaceAll(data, []byte("ExecStart="+binary+" "))
	dir := t.TempDir()
	path := filepath.Join(dir, "edgeagent.service")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	if dropins != "" {
		d := filepath.Join(dir, "edgeagent.service.d")
		require.NoError(t, os.Mkdir(d, 0o755))
		entries, err := os.ReadDir(dropins)
		require.NoError(t, err)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dropins, e.Name()))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(d, e.Name()), b, 0o644))
		}
	}
	cmd := exec.Command(analyze, "verify", "--man=no", path)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var about []string
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "edgeagent") {
			about = append(about, strings.TrimSpace(line))
		} else if strings.TrimSpace(line) != "" {
			t.Logf("systemd-analyze (not about the unit): %s", strings.TrimSpace(line))
		}
	}
	require.NoError(t, err, "systemd-analyze verify failed:\n%s", out)
	require.Empty(t, about, "systemd-analyze verify reported problems with the unit")
}

func run(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s\n%s", filepath.Base(name), strings.Join(args, " "), out)
	return string(out), err
}

// unitSettings parses a unit file into section.key -> values (in order).
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "%s: %q is not key=value", path, line)
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	require.NoError(t, sc.Err())
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Mode().Perm()
}

func requireMissing(t *testing.T, path string) {
	t.Helper()
	_, err := os.Lstat(path)
	require.True(t, errors.Is(err, os.ErrNotExist), "%s should not exist (%v)", path, err)
}

// countLines counts the lines of file that start with prefix.
func countLines(t *testing.T, file, prefix string) int {
	t.Helper()
	n := 0
	for line := range strings.Lines(readFile(t, file)) {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

// ---- the unit ---------------------------------------------------------------

func TestUnitVerifies(t *testing.T) {
	// A drop-in like the one install.sh writes is checked along.
	dropins := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dropins, "onnxruntime.conf"),
		[]byte("[Service]\nEnvironment=ONNXRUNTIME_LIB=/usr/lib/aarch64-linux-gnu/libonnxruntime.so.1.16.3\n"), 0o644))
	verifyUnit(t, src("edgeagent.service"), dropins, agentBinary(t))
}

// The hardening keeps its level: systemd-analyze security rates the unit's
// exposure from 0 (locked down) to 10 (unrestricted).
func TestUnitSecurityExposure(t *testing.T) {
	analyze := systemdAnalyze(t)
	dir := t.TempDir()
	data := strings.Replace(readFile(t, src("edgeagent.service")), "ExecStart=/usr/local/bin/edgeagent ", "ExecStart="+agentBinary(t)+" ", 1)
	path := filepath.Join(dir, "edgeagent.service")
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", path).CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("--offline")) {
		t.Skipf("this systemd-analyze has no offline security check (systemd < 250): %s", out)
	}
	require.NoError(t, err, "%s", out)
	m := regexp.MustCompile(`Overall exposure level for edgeagent\.service: ([0-9.]+)`).FindSubmatch(out)
	require.NotNil(t, m, "no exposure level in:\n%s", out)
	level, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	t.Logf("exposure level %.1f", level)
	require.LessOrEqual(t, level, 4.0, "the unit's hardening regressed:\n%s", out)
}

// The settings issue 7 asks for are there (a guard against edits).
func TestUnitSettings(t *testing.T) {
	u := unitSettings(t, src("edgeagent.service"))
	one := func(key, want string) {
		t.Helper()
		require.Equal(t, []string{want}, u[key], key)
	}
	one("Service.Type", "notify")
	one("Service.NotifyAccess", "main")
	one("Service.ExecStart", "/usr/local/bin/edgeagent run --config /etc/edgeagent/flow.yaml")
	one("Service.ExecReload", "/bin/kill -HUP $MAINPID")
	one("Service.WatchdogSec", "30s")
	one("Service.Restart", "on-failure")
	one("Service.RestartSec", "5s")
	one("Service.TimeoutStopSec", "30s")
	one("Service.User", "edgeagent")
	one("Service.Group", "edgeagent")
	one("Service.StateDirectory", "edgeagent")
	one("Service.ConfigurationDirectory", "edgeagent")
	one("Service.NoNewPrivileges", "yes")
	one("Service.ProtectSystem", "strict")
	one("Service.ProtectHome", "yes")
	one("Service.PrivateTmp", "yes")
	one("Service.ProtectKernelTunables", "yes")
	one("Service.ProtectKernelModules", "yes")
	one("Service.ProtectControlGroups", "yes")
	one("Service.RestrictSUIDSGID", "yes")
	one("Service.LockPersonality", "yes")
	one("Service.RestrictRealtime", "yes")
	one("Service.DevicePolicy", "closed")
	one("Install.WantedBy", "multi-user.target")
	require.NotEmpty(t, u["Service.LimitNOFILE"])
	require.Empty(t, u["Service.MemoryMax"], "MemoryMax is a commented example")
	require.Contains(t, readFile(t, src("edgeagent.service")), "#MemoryMax=")
	groups := strings.Fields(strings.Join(u["Service.SupplementaryGroups"], " "))
	require.Subset(t, groups, []string{"video", "i2c", "gpio"})
	allow := map[string]string{}
	for _, v := range u["Service.DeviceAllow"] {
		dev, perm, _ := strings.Cut(v, " ")
		allow[dev] = perm
	}
	for _, dev := range []string{"char-video4linux", "char-i2c", "char-gpiochip",
		"/dev/nvhost-ctrl", "/dev/nvhost-ctrl-gpu", "/dev/nvhost-prof-gpu", "/dev/nvmap",
		"/dev/nvhost-gpu", "/dev/nvhost-as-gpu", "/dev/nvhost-vic", "/dev/nvgpu/igpu0/ctrl"} {
		require.Equal(t, "rw", allow[dev], "DeviceAllow=%s rw", dev)
	}

	// The drain fits in the stop timeout.
	stop, err := time.ParseDuration(u["Service.TimeoutStopSec"][0])
	require.NoError(t, err)
	flow, err := config.Load(src("flow.yaml"), all.Registry())
	require.NoError(t, err)
	require.Less(t, flow.Agent.ShutdownTimeout, stop, "agent.shutdown_timeout of the example flow vs TimeoutStopSec")
	watchdog, err := time.ParseDuration(u["Service.WatchdogSec"][0])
	require.NoError(t, err)
	require.GreaterOrEqual(t, watchdog, 10*time.Second, "a keep-alive every WatchdogSec/2 needs slack")
}

// ---- the example flow -------------------------------------------------------

func TestExampleFlow(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/edgeagent") // as systemd sets it
	flow, err := config.Load(src("flow.yaml"), all.Registry())
	require.NoError(t, err)
	require.Equal(t, "/var/lib/edgeagent", flow.Agent.DataDir, "data_dir defaults to $STATE_DIRECTORY")
	require.True(t, strings.HasPrefix(flow.Agent.HTTP, "127.0.0.1:"), "the HTTP API stays on loopback by default")
	// ProtectSystem=strict: the unit can write only below its state directory.
	for _, p := range flow.Processors {
		for _, key := range []string{"input_directory", "directory"} {
			if dir, ok := p.Properties[key]; ok {
				require.True(t, strings.HasPrefix(dir, "/var/lib/edgeagent/"), "%s.%s = %s is not writable under the unit", p.Name, key, dir)
			}
		}
	}
}

// ---- install.sh and uninstall.sh ----------------------------------------------

func TestScriptsParse(t *testing.T) {
	for _, s := range []string{src("install.sh"), src("uninstall.sh")} {
		_, err := run(t, nil, "sh", "-n", s)
		require.NoError(t, err, "%s does not parse", s)
		require.NotZero(t, mode(t, s)&0o111, "%s is not executable", s)
	}
	_, err := run(t, nil, "bash", "-n", "../scripts/test-arm64.sh")
	require.NoError(t, err)
	require.NotZero(t, mode(t, "../scripts/test-arm64.sh")&0o111, "scripts/test-arm64.sh is not executable")
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		_, err := run(t, nil, sc, src("install.sh"), src("uninstall.sh"), "../scripts/test-arm64.sh")
		require.NoError(t, err, "shellcheck")
	}
}

func TestInstallUninstall(t *testing.T) {
	agent := agentBinary(t)
	root := t.TempDir()
	install := func(args ...string) (string, error) {
		t.Helper()
		return run(t, nil, src("install.sh"), append([]string{"--root", root}, args...)...)
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	example := readFile(t, src("flow.yaml"))

	// ONNX Runtime as a tarball under /usr/local/lib would leave it: the
	// highest version wins, the providers are not the runtime.
	lib := p("usr/local/lib")
	require.NoError(t, os.MkdirAll(lib, 0o755))
	for _, f := range []string{"libonnxruntime.so.1.9.0", "libonnxruntime.so.1.17.3", "libonnxruntime_providers_cuda.so"} {
		require.NoError(t, os.WriteFile(filepath.Join(lib, f), nil, 0o644))
	}

	// First install.
	out, err := install(agent)
	require.NoError(t, err)
	require.Equal(t, readFile(t, agent), readFile(t, p("usr/local/bin/edgeagent")))
	require.Equal(t, os.FileMode(0o755), mode(t, p("usr/local/bin/edgeagent")))
	require.Equal(t, readFile(t, src("edgeagent.service")), readFile(t, p("etc/systemd/system/edgeagent.service")))
	require.Equal(t, example, readFile(t, p("etc/edgeagent/flow.yaml")))
	require.Equal(t, os.FileMode(0o640), mode(t, p("etc/edgeagent/flow.yaml")), "the flow may hold credentials")
	requireMissing(t, p("etc/edgeagent/flow.yaml.dist"))
	require.FileExists(t, p("usr/local/share/doc/edgeagent/README.md"))
	require.Contains(t, readFile(t, p("etc/systemd/system/edgeagent.service.d/onnxruntime.conf")),
		"\nEnvironment=ONNXRUNTIME_LIB=/usr/local/lib/libonnxruntime.so.1.17.3\n")
	require.Contains(t, out, "installed the example flow")
	for _, g := range []string{"video:", "render:", "i2c:", "gpio:", "edgeagent:"} {
		require.Equal(t, 1, countLines(t, p("etc/group"), g), g)
	}
	require.Equal(t, 1, countLines(t, p("etc/passwd"), "edgeagent:"))
	require.Regexp(t, `(?m)^edgeagent:x:\d+:\d+:[^:]*:/var/lib/edgeagent:/usr/sbin/nologin$`, readFile(t, p("etc/passwd")))
	if _, err := exec.LookPath("systemctl"); err == nil {
		target, err := os.Readlink(p("etc/systemd/system/multi-user.target.wants/edgeagent.service"))
		require.NoError(t, err, "enabled offline with systemctl --root")
		require.Equal(t, "/etc/systemd/system/edgeagent.service", target)
	}
	// The installed unit with its drop-in passes systemd-analyze.
	verifyUnit(t, p("etc/systemd/system/edgeagent.service"), p("etc/systemd/system/edgeagent.service.d"), p("usr/local/bin/edgeagent"))

	// The operator edits the flow, the agent has data.
	edited := strings.Replace(example, "http: 127.0.0.1:9180", "http: 127.0.0.1:9999", 1)
	require.NotEqual(t, example, edited)
	require.NoError(t, os.WriteFile(p("etc/edgeagent/flow.yaml"), []byte(edited), 0o640))
	require.NoError(t, os.MkdirAll(p("var/lib/edgeagent"), 0o750))
	require.NoError(t, os.WriteFile(p("var/lib/edgeagent/repository.db"), []byte("queued flowfiles"), 0o640))

	// Second install (an upgrade): the edited flow is kept, the new example
	// goes next to it; users and groups are not added twice.
	out, err = install(agent)
	require.NoError(t, err)
	require.Equal(t, edited, readFile(t, p("etc/edgeagent/flow.yaml")), "an edited flow is never overwritten")
	require.Equal(t, example, readFile(t, p("etc/edgeagent/flow.yaml.dist")))
	require.Contains(t, out, "flow.yaml.dist")
	for _, g := range []string{"video:", "render:", "i2c:", "gpio:", "edgeagent:"} {
		require.Equal(t, 1, countLines(t, p("etc/group"), g), g)
	}
	require.Equal(t, 1, countLines(t, p("etc/passwd"), "edgeagent:"))
	require.Equal(t, "queued flowfiles", readFile(t, p("var/lib/edgeagent/repository.db")))

	// A flow the new binary does not accept stops the upgrade before it
	// changes anything; --force overrides.
	require.NoError(t, os.WriteFile(p("etc/edgeagent/flow.yaml"), []byte(edited+"\nbogus_section: 1\n"), 0o640))
	require.NoError(t, os.Remove(p("usr/local/bin/edgeagent")))
	out, err = install(agent)
	require.Error(t, err)
	require.Contains(t, out, "does not validate with the new binary")
	requireMissing(t, p("usr/local/bin/edgeagent"))
	_, err = install("--force", agent)
	require.NoError(t, err)
	require.FileExists(t, p("usr/local/bin/edgeagent"))

	// Back to the example: the stale .dist goes. --onnxruntime overrides
	// the search.
	require.NoError(t, os.WriteFile(p("etc/edgeagent/flow.yaml"), []byte(example), 0o640))
	_, err = install("--onnxruntime", "/usr/local/lib/libonnxruntime.so.1.9.0", agent)
	require.NoError(t, err)
	requireMissing(t, p("etc/edgeagent/flow.yaml.dist"))
	require.Contains(t, readFile(t, p("etc/systemd/system/edgeagent.service.d/onnxruntime.conf")),
		"ONNXRUNTIME_LIB=/usr/local/lib/libonnxruntime.so.1.9.0\n")

	// Without ONNX Runtime the drop-in goes.
	require.NoError(t, os.RemoveAll(lib))
	out, err = install(agent)
	require.NoError(t, err)
	require.Contains(t, out, "no libonnxruntime.so found")
	requireMissing(t, p("etc/systemd/system/edgeagent.service.d"))

	// A drop-in of the operator's own (systemctl edit).
	require.NoError(t, os.MkdirAll(p("etc/systemd/system/edgeagent.service.d"), 0o755))
	require.NoError(t, os.WriteFile(p("etc/systemd/system/edgeagent.service.d/override.conf"), []byte("[Service]\nMemoryMax=1G\n"), 0o644))

	// Uninstall keeps the flow, the data, the operator's drop-in and the user.
	_, err = run(t, nil, src("uninstall.sh"), "--root", root)
	require.NoError(t, err)
	for _, gone := range []string{"usr/local/bin/edgeagent", "etc/systemd/system/edgeagent.service",
		"etc/systemd/system/multi-user.target.wants/edgeagent.service", "usr/local/share/doc/edgeagent"} {
		requireMissing(t, p(gone))
	}
	require.Equal(t, example, readFile(t, p("etc/edgeagent/flow.yaml")))
	require.Equal(t, "queued flowfiles", readFile(t, p("var/lib/edgeagent/repository.db")))
	require.FileExists(t, p("etc/systemd/system/edgeagent.service.d/override.conf"))
	require.Equal(t, 1, countLines(t, p("etc/passwd"), "edgeagent:"))

	// --purge removes them; the device groups stay.
	_, err = run(t, nil, src("uninstall.sh"), "--root", root, "--purge")
	require.NoError(t, err)
	for _, gone := range []string{"etc/edgeagent", "var/lib/edgeagent", "etc/systemd/system/edgeagent.service.d"} {
		requireMissing(t, p(gone))
	}
	require.Zero(t, countLines(t, p("etc/passwd"), "edgeagent:"))
	require.Zero(t, countLines(t, p("etc/group"), "edgeagent:"))
	for _, g := range []string{"video:", "render:", "i2c:", "gpio:"} {
		require.Equal(t, 1, countLines(t, p("etc/group"), g), g)
	}
}

func TestInstallDestdirAndErrors(t *testing.T) {
	agent := agentBinary(t)
	root := t.TempDir()
	_, err := run(t, []string{"DESTDIR=" + root}, src("install.sh"), agent)
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "usr/local/bin/edgeagent"))
	require.FileExists(t, filepath.Join(root, "etc/edgeagent/flow.yaml"))

	out, err := run(t, nil, src("install.sh"), "--root", t.TempDir(), filepath.Join(t.TempDir(), "no-such-binary"))
	require.Error(t, err)
	require.Contains(t, out, "not found")
	out, err = run(t, nil, src("install.sh"), "--root", t.TempDir(), "--bogus")
	require.Error(t, err)
	require.Contains(t, out, "unknown option")

	// A binary of another architecture installs into a root, unvalidated.
	foreign := filepath.Join(t.TempDir(), "edgeagent-other-arch")
	require.NoError(t, os.WriteFile(foreign, []byte("\x7fELF not for this machine"), 0o755))
	out, err = run(t, nil, src("install.sh"), "--root", root, foreign)
	require.NoError(t, err)
	require.Contains(t, out, "does not run here")
}
