package main

// Checks of the files in deploy/ that can run here (Docker and Kubernetes
// do not): they parse, use only configuration keys, environment variables,
// ports and paths the server has, the nginx configuration passes nginx -t,
// and the binary built as the Dockerfile builds it starts and answers.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

const deployDir = "../../deploy"

// The port and probe paths every deploy file must agree on.
const (
	deployPort      = 8080
	deployLiveness  = "/healthz"
	deployReadiness = "/readyz"
)

// deployYAMLDocs decodes every document of a YAML file.
func deployYAMLDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// dig walks nested maps and lists: keys are map keys or list indexes.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestDeployFilesParse(t *testing.T) {
	n := 0
	err := filepath.WalkDir(deployDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			if len(deployYAMLDocs(t, path)) == 0 {
				t.Errorf("%s: no YAML document", path)
			}
			n++
		case ".json":
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			var v map[string]any
			if err := json.Unmarshal(data, &v); err != nil {
				t.Errorf("%s: %v", path, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 12 {
		t.Fatalf("checked only %d YAML/JSON files in deploy/", n)
	}
}

// checkEnvNames fails for a MQTTBRIDGE_* name Load does not read (Load
// ignores unknown variables, so a typo would pass silently).
func checkEnvNames(t *testing.T, where string, names []string) {
	t.Helper()
	known := config.EnvVars()
	for _, n := range names {
		if strings.HasPrefix(n, "MQTTBRIDGE_") && !slices.Contains(known, n) {
			t.Errorf("%s: %s is not a variable Load reads (known: %s)", where, n, strings.Join(known, ", "))
		}
	}
}

var composeVarRe = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?+][^}]*)?\}`)

func TestDeployCompose(t *testing.T) {
	path := filepath.Join(deployDir, "docker-compose.yml")
	docs := deployYAMLDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", path, len(docs))
	}
	services, _ := docs[0]["services"].(map[string]any)
	for _, s := range []string{"mosquitto", "redis", "nginx", "prometheus", "grafana"} {
		if services[s] == nil {
			t.Errorf("no service %s", s)
		}
	}
	for _, s := range []string{"prometheus", "grafana"} {
		if p, _ := dig(services, s, "profiles").([]any); !slices.Contains(p, any("monitoring")) {
			t.Errorf("service %s is not under the monitoring profile: %v", s, p)
		}
	}
	if img, _ := dig(services, "mosquitto", "image").(string); !strings.HasPrefix(img, "eclipse-mosquitto:2") {
		t.Errorf("mosquitto image %q, want eclipse-mosquitto:2", img)
	}
	if img, _ := dig(services, "redis", "image").(string); !strings.HasPrefix(img, "redis:7") {
		t.Errorf("redis image %q, want redis:7", img)
	}
	// The files the services mount exist.
	for name := range services {
		vols, _ := dig(services, name, "volumes").([]any)
		for _, v := range vols {
			src, _, _ := strings.Cut(fmt.Sprint(v), ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(deployDir, src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			}
		}
	}

	nginxConf, err := os.ReadFile(filepath.Join(deployDir, "nginx", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var bridges []string
	for name, s := range services {
		env, _ := dig(s, "environment").(map[string]any)
		if env["MQTTBRIDGE_MQTT_URL"] == nil {
			continue
		}
		bridges = append(bridges, name)
		names := make([]string, 0, len(env))
		vars := map[string]string{}
		for k, v := range env {
			names = append(names, k)
			// Compose substitutes ${VAR:?...} from deploy/.env.
			vars[k] = composeVarRe.ReplaceAllString(fmt.Sprint(v), "compose-value")
		}
		checkEnvNames(t, "service "+name, names)
		cfg, err := config.Load(nil, func(k string) string { return vars[k] })
		if err != nil {
			t.Errorf("service %s: its environment does not load: %v", name, err)
			continue
		}
		if port := addrPort(t, cfg.HTTP.Addr); port != deployPort {
			t.Errorf("service %s listens on %d, want %d", name, port, deployPort)
		}
		if cfg.UsesEmbedded() || !cfg.Redis.Enabled() {
			t.Errorf("service %s: want the external broker and Redis", name)
		}
		if exp, _ := dig(s, "expose").([]any); !slices.Contains(exp, any(strconv.Itoa(deployPort))) {
			t.Errorf("service %s exposes %v, want %d", name, exp, deployPort)
		}
		if !strings.Contains(string(nginxConf), fmt.Sprintf("server %s:%d", name, deployPort)) {
			t.Errorf("nginx.conf has no upstream server %s:%d", name, deployPort)
		}
		if !strings.Contains(string(readDeploy(t, "prometheus/prometheus.yml")), fmt.Sprintf("%s:%d", name, deployPort)) {
			t.Errorf("prometheus.yml does not scrape %s:%d", name, deployPort)
		}
	}
	if len(bridges) != 3 {
		t.Errorf("bridge services %v, want three replicas", bridges)
	}
}

func readDeploy(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func addrPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// The Kubernetes manifests: what kustomization.yaml lists exists and
// parses, the Deployment's ports, probes and environment fit the server,
// and the ConfigMap's mqttbridge.yaml loads with the Secret's files where
// the Deployment mounts them.
func TestDeployKubernetes(t *testing.T) {
	dir := filepath.Join(deployDir, "k8s")
	kust := deployYAMLDocs(t, filepath.Join(dir, "kustomization.yaml"))[0]
	byKind := map[string]map[string]any{}
	resources, _ := kust["resources"].([]any)
	for _, r := range resources {
		for _, d := range deployYAMLDocs(t, filepath.Join(dir, fmt.Sprint(r))) {
			kind, _ := d["kind"].(string)
			if d["apiVersion"] == nil || kind == "" || dig(d, "metadata", "name") == nil {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", r)
			}
			byKind[kind] = d
		}
	}
	for _, k := range []string{"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"} {
		if byKind[k] == nil {
			t.Errorf("no %s in the kustomization's resources", k)
		}
	}
	dep := byKind["Deployment"]
	if dep == nil {
		t.FailNow()
	}
	depName := dig(dep, "metadata", "name")
	for _, k := range []string{"HorizontalPodAutoscaler"} {
		if got := dig(byKind[k], "spec", "scaleTargetRef", "name"); got != depName {
			t.Errorf("%s targets %v, want %v", k, got, depName)
		}
	}
	podLabels, _ := dig(dep, "spec", "template", "metadata", "labels").(map[string]any)
	for _, k := range []string{"Service", "PodDisruptionBudget", "NetworkPolicy"} {
		sel, _ := dig(byKind[k], "spec", "selector").(map[string]any)
		if m, ok := sel["matchLabels"].(map[string]any); ok {
			sel = m
		}
		if m, ok := dig(byKind[k], "spec", "podSelector", "matchLabels").(map[string]any); ok {
			sel = m
		}
		if len(sel) == 0 {
			t.Errorf("%s has no selector", k)
		}
		for l, v := range sel {
			if podLabels[l] != v {
				t.Errorf("%s selects %s=%v, which the pods do not have (%v)", k, l, v, podLabels)
			}
		}
	}

	c := dig(dep, "spec", "template", "spec", "containers", 0)
	if dig(c, "ports", 0, "containerPort") != deployPort || dig(c, "ports", 0, "name") != "http" {
		t.Errorf("container port %v %v, want http %d", dig(c, "ports", 0, "name"), dig(c, "ports", 0, "containerPort"), deployPort)
	}
	if p := dig(c, "livenessProbe", "httpGet", "path"); p != deployLiveness {
		t.Errorf("liveness probe path %v, want %s", p, deployLiveness)
	}
	if p := dig(c, "readinessProbe", "httpGet", "path"); p != deployReadiness {
		t.Errorf("readiness probe path %v, want %s", p, deployReadiness)
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
		if port := dig(c, probe, "httpGet", "port"); port != "http" && port != deployPort {
			t.Errorf("%s port %v", probe, port)
		}
	}
	if dig(c, "lifecycle", "preStop") == nil {
		t.Error("no preStop hook")
	}
	if dig(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
		t.Error("the pod does not require runAsNonRoot")
	}
	if tp := dig(byKind["Service"], "spec", "ports", 0, "targetPort"); tp != "http" && tp != deployPort {
		t.Errorf("Service targetPort %v", tp)
	}
	if np := dig(byKind["NetworkPolicy"], "spec", "ingress", 0, "ports", 0, "port"); np != deployPort {
		t.Errorf("NetworkPolicy admits port %v, want %d", np, deployPort)
	}

	// Environment and mounts.
	env := map[string]string{}
	var names []string
	envList, _ := dig(c, "env").([]any)
	for _, e := range envList {
		n := fmt.Sprint(dig(e, "name"))
		names = append(names, n)
		env[n] = fmt.Sprint(dig(e, "value"))
	}
	checkEnvNames(t, "Deployment", names)
	mounts := map[string]string{} // volume name -> mount path
	ml, _ := dig(c, "volumeMounts").([]any)
	for _, m := range ml {
		mounts[fmt.Sprint(dig(m, "name"))] = fmt.Sprint(dig(m, "mountPath"))
	}
	var configMount, secretMount string
	secretKeys := map[string]bool{}
	vl, _ := dig(dep, "spec", "template", "spec", "volumes").([]any)
	cmName := ""
	if gens, _ := kust["configMapGenerator"].([]any); len(gens) > 0 {
		cmName = fmt.Sprint(dig(gens[0], "name"))
		if files, _ := dig(gens[0], "files").([]any); !slices.Contains(files, any("mqttbridge.yaml")) {
			t.Errorf("configMapGenerator files %v, want mqttbridge.yaml", files)
		}
	}
	for _, v := range vl {
		name := fmt.Sprint(dig(v, "name"))
		if n := dig(v, "configMap", "name"); n != nil {
			if n != cmName {
				t.Errorf("volume %s mounts ConfigMap %v, the kustomization generates %q", name, n, cmName)
			}
			configMount = mounts[name]
		}
		if dig(v, "secret", "secretName") != nil {
			secretMount = mounts[name]
			items, _ := dig(v, "secret", "items").([]any)
			for _, it := range items {
				secretKeys[fmt.Sprint(dig(it, "path"))] = true
			}
		}
	}
	if configMount == "" || secretMount == "" {
		t.Fatalf("the config (%q) or the secret (%q) is not mounted", configMount, secretMount)
	}
	if want := configMount + "/mqttbridge.yaml"; env[config.EnvConfig] != want {
		t.Errorf("%s=%q, want %q", config.EnvConfig, env[config.EnvConfig], want)
	}

	// The file loads, with the secret's files where the pod has them.
	src := string(readDeploy(t, "k8s/mqttbridge.yaml"))
	tmp := t.TempDir()
	fileRe := regexp.MustCompile(regexp.QuoteMeta(secretMount) + `/([A-Za-z0-9_.-]+)`)
	refs := fileRe.FindAllStringSubmatch(src, -1)
	if len(refs) < 2 {
		t.Errorf("mqttbridge.yaml uses %d files of the secret, want the passwords", len(refs))
	}
	for _, m := range refs {
		if !secretKeys[m[1]] {
			t.Errorf("mqttbridge.yaml reads %s, which the Secret volume does not project", m[0])
		}
		if err := os.WriteFile(filepath.Join(tmp, m[1]), []byte(strings.Repeat("s3cret-", 8)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(src, "password:") {
		t.Error("mqttbridge.yaml has a password; use a *_file key")
	}
	yamlPath := filepath.Join(tmp, "mqttbridge.yaml")
	if err := os.WriteFile(yamlPath, []byte(strings.ReplaceAll(src, secretMount, tmp)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]string{"--config", yamlPath}, func(k string) string {
		if k == "MQTTBRIDGE_INSTANCE_ID" { // the pod name, from the downward API
			return "mqttbridge-7d9f8c6b5d-x2x9q"
		}
		return ""
	})
	if err != nil {
		t.Fatalf("deploy/k8s/mqttbridge.yaml does not load: %v", err)
	}
	if port := addrPort(t, cfg.HTTP.Addr); port != deployPort {
		t.Errorf("mqttbridge.yaml listens on %d, want %d", port, deployPort)
	}
	if cfg.MQTT.Password == "" || cfg.Redis.Password == "" {
		t.Error("the passwords were not read from the secret's files")
	}
	// The grace period covers preStop and the server's own shutdown.
	grace, _ := dig(dep, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)
	sleep, _ := dig(c, "lifecycle", "preStop", "sleep", "seconds").(int)
	if shut := time.Duration(cfg.HTTP.ShutdownTimeout); time.Duration(grace)*time.Second <= time.Duration(sleep)*time.Second+shut {
		t.Errorf("terminationGracePeriodSeconds %d <= preStop %ds + http.shutdown_timeout %v", grace, sleep, shut)
	}
}

// nginx -t on a copy of nginx.conf whose upstream host names resolve here.
func TestDeployNginx(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, err := os.Stat(p); err == nil {
				nginx = p
			}
		}
	}
	if nginx == "" {
		t.Skip("nginx is not installed (apt-get install -y nginx-light); nginx.conf was not checked with nginx -t")
	}
	conf := string(readDeploy(t, "nginx/nginx.conf"))
	for _, s := range []string{"proxy_set_header Upgrade $http_upgrade", "proxy_set_header Connection $connection_upgrade",
		"proxy_buffering off", "proxy_read_timeout 3600s", "location = /v1/ws", "location = /mqtt", "location = /v1/stream"} {
		if !strings.Contains(conf, s) {
			t.Errorf("nginx.conf lacks %q", s)
		}
	}
	prefix := t.TempDir()
	conf = regexp.MustCompile(`bridge-\d+:`).ReplaceAllString(conf, "127.0.0.1:")
	// Writable paths for a test run by any user.
	conf = strings.Replace(conf, "http {", "http {\n    client_body_temp_path "+prefix+"/body;\n    proxy_temp_path "+prefix+"/proxy;\n"+
		"    fastcgi_temp_path "+prefix+"/fcgi;\n    uwsgi_temp_path "+prefix+"/uwsgi;\n    scgi_temp_path "+prefix+"/scgi;\n", 1)
	path := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-t", "-p", prefix, "-c", path, "-g", "pid " + prefix + "/nginx.pid; error_log " + prefix + "/error.log;"}
	if out, err := exec.Command(nginx, append([]string{"-e", prefix + "/error.log"}, args...)...).CombinedOutput(); err != nil {
		if !strings.Contains(string(out), "invalid option") {
			t.Fatalf("nginx -t: %v\n%s", err, out)
		}
		// nginx before 1.19.5 has no -e.
		if out, err := exec.Command(nginx, args...).CombinedOutput(); err != nil {
			t.Fatalf("nginx -t: %v\n%s", err, out)
		}
	} else {
		t.Logf("%s", out)
	}
}

// The Dockerfile builds as this test does, copies the binary it built, runs
// as non-root and exposes the server's port.
func TestDeployDockerfile(t *testing.T) {
	df := string(readDeploy(t, "Dockerfile"))
	for _, s := range []string{
		"FROM golang:1.26 AS build",
		`RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/mqttbridge ./cmd/mqttbridge`,
		"FROM gcr.io/distroless/static",
		"USER 65532:65532",
		fmt.Sprintf("EXPOSE %d", deployPort),
		"COPY --from=build /out/mqttbridge /usr/local/bin/mqttbridge",
		`ENTRYPOINT ["/usr/local/bin/mqttbridge"]`,
	} {
		if !strings.Contains(df, s) {
			t.Errorf("Dockerfile lacks %q", s)
		}
	}
}

// The binary built the Dockerfile's way starts with the embedded broker on
// free ports, answers /healthz and /readyz, and stops on SIGTERM.
func TestDeployBinaryStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "mqttbridge")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w\": %v\n%s", err, out)
	}
	httpPort, mqttPort := testenv.FreePort(t), testenv.FreePort(t)
	var logs testenv.SyncBuffer // written by exec's copying goroutines
	cmd := exec.Command(bin, "--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--embedded-mqtt-addr", fmt.Sprintf("127.0.0.1:%d", mqttPort))
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // nothing from the test's MQTTBRIDGE_*
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}) // closed when the process has exited, with waitErr set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	get := func(path string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{deployLiveness, deployReadiness} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, body := get(path)
			if code == 200 {
				break
			}
			select {
			case <-done:
				t.Fatalf("the binary exited: %v\n%s", waitErr, logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %d %s\n%s", path, code, body, logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The dashboard's metrics, against the server's /metrics.
	if code, body := get("/metrics"); code == 200 {
		checkDashboardMetrics(t, body+sourceMetricNames(t))
	} else {
		t.Errorf("GET /metrics: %d; the dashboard's metric names cannot be checked against the server", code)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the binary did not stop within 20s of SIGTERM\n%s", logs.String())
	}
}

var metricNameRe = regexp.MustCompile(`\bmqttbridge_[a-z0-9_]+`)

// dashboardMetrics returns the metric names the dashboard's queries use,
// without the _bucket/_sum/_count of histograms.
func dashboardMetrics(t *testing.T) []string {
	var dash map[string]any
	if err := json.Unmarshal(readDeploy(t, "grafana/mqttbridge-dashboard.json"), &dash); err != nil {
		t.Fatal(err)
	}
	var names []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "expr" || k == "query") {
					names = append(names, metricNameRe.FindAllString(s, -1)...)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(dash)
	slices.Sort(names)
	return slices.Compact(names)
}

func TestDeployDashboard(t *testing.T) {
	names := dashboardMetrics(t)
	if len(names) < 10 {
		t.Fatalf("the dashboard queries %d mqttbridge_ metrics: %v", len(names), names)
	}
	src := sourceMetricNames(t)
	if src == "" {
		t.Fatal("no metric names in internal/metrics: the dashboard's cannot be checked")
	}
	checkDashboardMetrics(t, src)
	var dash map[string]any
	_ = json.Unmarshal(readDeploy(t, "grafana/mqttbridge-dashboard.json"), &dash)
	panels, _ := dash["panels"].([]any)
	ids := map[any]bool{}
	for _, p := range panels {
		id := dig(p, "id")
		if ids[id] {
			t.Errorf("panel id %v twice", id)
		}
		ids[id] = true
		if dig(p, "type") != "row" && dig(p, "targets", 0, "expr") == nil {
			t.Errorf("panel %v has no query", dig(p, "title"))
		}
	}
}

// Every metric the server declares has a row in docs/operations.md's
// metrics table.
func TestMetricsDocumented(t *testing.T) {
	src := sourceMetricNames(t)
	if src == "" {
		t.Fatal("no metrics declared in internal/metrics")
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields(src) {
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("docs/operations.md has no row for %s in its metrics table", name)
		}
	}
}

var metricSourceRe = regexp.MustCompile(`(?:Name:\s*"|ns\s*\+\s*"_)([a-z0-9_]+)"`)

// sourceMetricNames returns the metric names declared in internal/metrics
// (Name: "x" and ns+"_x"), as "mqttbridge_x" lines; "" without the package.
func sourceMetricNames(t *testing.T) string {
	files, _ := filepath.Glob("../../internal/metrics/*.go")
	var b strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricSourceRe.FindAllStringSubmatch(string(data), -1) {
			b.WriteString("mqttbridge_" + m[1] + "\n")
		}
	}
	return b.String()
}

// checkDashboardMetrics reports dashboard metrics the server does not
// export (in its /metrics text, HELP lines included, or declared in
// internal/metrics, for metrics without samples here such as webhooks').
func checkDashboardMetrics(t *testing.T, exposition string) {
	have := map[string]bool{}
	for _, n := range metricNameRe.FindAllString(exposition, -1) {
		have[n] = true
	}
	for _, n := range dashboardMetrics(t) {
		base := n
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suf)
		}
		if !have[n] && !have[base] {
			t.Errorf("the dashboard queries %s, which /metrics does not export", n)
		}
	}
}
