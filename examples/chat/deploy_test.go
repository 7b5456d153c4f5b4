package main

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The Dockerfile's build line is the one buildChat runs, and its binary
// is static: no ELF interpreter, no shared libraries. The final stage
// runs as a non-root user with a HEALTHCHECK, and "chat healthcheck"
// answers as the HEALTHCHECK expects.
func TestDockerfileBuildsAStaticBinary(t *testing.T) {
	t.Parallel()
	df, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	text := string(df)
	assert.Contains(t, strings.ReplaceAll(text, `"`, ""), "CGO_ENABLED=0 go "+strings.Join(dockerBuildArgs, " "),
		"the Dockerfile builds with the flags the tests use")
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(text, -1)
	require.Len(t, froms, 2, "a build stage and a final stage")
	assert.Equal(t, "scratch", froms[1][1], "the final image holds the binary only")
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(text)
	require.NotNil(t, user, "USER in the final stage")
	assert.NotRegexp(t, `^(0|root)(:|$)`, user[1])
	assert.Regexp(t, `(?m)^HEALTHCHECK .*CMD \["/chat", "healthcheck"\]`, text)
	// What the build stage copies exists (the context is the repository's root).
	for _, m := range regexp.MustCompile(`(?m)^COPY ([^-\n][^\n]*) \S+$`).FindAllStringSubmatch(text, -1) {
		for _, src := range strings.Fields(m[1]) {
			if src != "." {
				assert.FileExists(t, filepath.Join("..", "..", src))
			}
		}
	}

	bin := buildChat(t)
	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "a static binary has no interpreter")
	}
	libs, err := f.ImportedLibraries()
	require.NoError(t, err)
	assert.Empty(t, libs)

	// The HEALTHCHECK: 0 against a ready app, 1 where nothing listens.
	_, _, base := startOps(t, testConfig(), slog.New(slog.DiscardHandler))
	check := func(addr string) error {
		cmd := exec.Command(bin, "healthcheck")
		cmd.Env = append(os.Environ(), "ADDR="+addr)
		return cmd.Run()
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	assert.NoError(t, check(":"+port))
	var exit *exec.ExitError
	require.ErrorAs(t, check(freeAddr(t)), &exit)
	assert.Equal(t, 1, exit.ExitCode())
}

// compose.yaml and prometheus.yml parse, and what they name exists: the
// build context and Dockerfile, the mounted files, the services nginx and
// Prometheus send to, the variables the app reads.
func TestComposeAndPrometheusFilesAreConsistent(t *testing.T) {
	t.Parallel()
	var compose struct {
		Services map[string]struct {
			Build *struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
			Image           string            `yaml:"image"`
			Command         []string          `yaml:"command"`
			Environment     map[string]string `yaml:"environment"`
			Volumes         []string          `yaml:"volumes"`
			StopGracePeriod string            `yaml:"stop_grace_period"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	data, err := os.ReadFile("compose.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &compose))
	documented := envTable(t, "README.md")
	replicas := []string{"chat1", "chat2"}
	for _, name := range replicas {
		s, ok := compose.Services[name]
		require.True(t, ok, "service %s", name)
		require.NotNil(t, s.Build, "%s builds the image", name)
		assert.FileExists(t, filepath.Join(s.Build.Context, s.Build.Dockerfile))
		assert.FileExists(t, filepath.Join(s.Build.Context, "go.work"), "the build context is the repository's root")
		for k := range s.Environment {
			assert.Contains(t, documented, k, "%s sets %s, which the README's table does not list", name, k)
		}
		assert.Equal(t, "redis://redis:6379/0", s.Environment["REDIS_URL"])
		assert.Equal(t, "mailpit:1025", s.Environment["SMTP_ADDR"])
		grace, err := time.ParseDuration(s.StopGracePeriod)
		require.NoError(t, err)
		assert.Greater(t, grace, shutdownTimeout, "the runtime waits for the drain before it kills")
	}
	assert.Equal(t, "axllent/mailpit", compose.Services["mailpit"].Image)
	redisSvc := compose.Services["redis"]
	assert.Contains(t, strings.Join(redisSvc.Command, " "), "--appendonly yes", "Redis persists")
	assert.Contains(t, redisSvc.Volumes, "redis-data:/data")
	assert.Contains(t, compose.Volumes, "redis-data")
	for svc, file := range map[string]string{"nginx": "nginx.conf", "prometheus": "prometheus.yml"} {
		vols := compose.Services[svc].Volumes
		require.NotEmpty(t, vols, svc)
		assert.True(t, strings.HasPrefix(vols[0], "./"+file+":"), "%s mounts %s: %v", svc, file, vols)
		assert.FileExists(t, file)
	}

	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	data, err = os.ReadFile("prometheus.yml")
	require.NoError(t, err)
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&struct {
		Global        map[string]string `yaml:"global"`
		ScrapeConfigs any               `yaml:"scrape_configs"`
	}{}))
	require.NoError(t, yaml.Unmarshal(data, &prom))
	require.Len(t, prom.ScrapeConfigs, 1)
	sc := prom.ScrapeConfigs[0]
	assert.Equal(t, "/metrics", sc.MetricsPath)
	var targets []string
	for _, s := range sc.StaticConfigs {
		targets = append(targets, s.Targets...)
	}
	var want []string
	for _, r := range replicas {
		want = append(want, r+compose.Services[r].Environment["ADDR"])
	}
	assert.ElementsMatch(t, want, targets, "Prometheus scrapes every replica")

	// nginx sends to the same replicas.
	conf, err := os.ReadFile("nginx.conf")
	require.NoError(t, err)
	var upstream []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server (\S+?)[ ;]`).FindAllStringSubmatch(string(conf), -1) {
		upstream = append(upstream, m[1])
	}
	assert.ElementsMatch(t, want, upstream, "nginx balances over every replica")
}

// nginxBin is Debian's nginx (package nginx-light in CI).
const nginxBin = "/usr/sbin/nginx"

// needNginx skips without nginx, unless RTKIT_REQUIRE_BROWSER=1 (CI,
// which installs it next to Chromium) makes that a failure.
func needNginx(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(nginxBin); err != nil {
		if os.Getenv("RTKIT_REQUIRE_BROWSER") == "1" {
			t.Fatalf("%s missing and RTKIT_REQUIRE_BROWSER=1: install Debian's nginx-light", nginxBin)
		}
		t.Skipf("%s missing (install Debian's nginx-light to run this test)", nginxBin)
	}
}

// localNginx writes nginx.conf into a directory with its upstream
// servers replaced by upstream and its port by a free loopback one, and
// returns the file and nginx's base URL.
func localNginx(t *testing.T, upstream string) (string, string) {
	t.Helper()
	data, err := os.ReadFile("nginx.conf")
	require.NoError(t, err)
	dir := t.TempDir()
	listen := freeAddr(t)
	conf := regexp.MustCompile(`(?m)^(\s*server )chat\d:8080`).ReplaceAllString(string(data), "${1}"+upstream)
	conf = strings.Replace(conf, "listen 80;", "listen "+listen+";", 1)
	conf = strings.ReplaceAll(conf, "/tmp/", dir+"/")
	require.NotEqual(t, string(data), conf)
	path := filepath.Join(dir, "nginx.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o644))
	return path, "http://" + listen
}

func TestNginxConfigIsValid(t *testing.T) {
	t.Parallel()
	needNginx(t)
	path, _ := localNginx(t, "127.0.0.1:1")
	out, err := exec.Command(nginxBin, "-t", "-e", "stderr", "-c", path).CombinedOutput()
	require.NoError(t, err, "nginx -t:\n%s", out)
	assert.Contains(t, string(out), "test is successful")
}

// Through nginx as configured, a WebSocket upgrades and carries messages,
// and an SSE stream delivers each event as it is published.
func TestNginxPassesWebSocketsAndStreams(t *testing.T) {
	t.Parallel()
	needNginx(t)
	cfg := testConfig()
	cfg.StatsEvery = 200 * time.Millisecond
	_, _, app := startOps(t, cfg, slog.New(slog.DiscardHandler))
	path, base := localNginx(t, strings.TrimPrefix(app, "http://"))
	cmd := exec.Command(nginxBin, "-e", "stderr", "-c", path, "-g", "daemon off;")
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "nginx never answered; its log:\n%s", &logs)

	// The metrics stay inside.
	status, _ := get(t, base, "/metrics", "")
	assert.Equal(t, http.StatusNotFound, status)

	// WebSocket: two users talk through nginx.
	ana := dial(t, base, register(t, base, "ana"))
	bob := dial(t, base, register(t, base, "bob"))
	enter(t, ana, "general")
	enter(t, bob, "general")
	say(t, ana, "general", "through nginx")
	nextText(t, bob, "general", "through nginx")

	// SSE: the dashboard's stats arrive, one event at a time, while the
	// stream stays open (nginx does not hold them in a buffer).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
	require.NoError(t, err)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: register(t, base, "carol")})
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", strings.Split(resp.Header.Get("Content-Type"), ";")[0])
	sc := bufio.NewScanner(resp.Body)
	events := 0
	for events < 3 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") {
			events++
		}
	}
	require.NoError(t, sc.Err(), "the stream is still open")
	assert.Equal(t, 3, events, fmt.Sprintf("events arrive through nginx; its log:\n%s", &logs))
}
