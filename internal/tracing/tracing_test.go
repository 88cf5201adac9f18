package tracing_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/mqttbridge/mqttbridge/internal/testenv"
	"github.com/mqttbridge/mqttbridge/internal/tracing"
	"github.com/mqttbridge/mqttbridge/internal/tracing/otlptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newProvider(t *testing.T, cfg tracing.Config) *tracing.Provider {
	t.Helper()
	p, err := tracing.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

// Spans still waiting in the batch are exported by Shutdown, with the
// configured headers (and only those) and the service's resource.
func TestShutdownExportsWaitingSpans(t *testing.T) {
	rcv := otlptest.Start(t)
	p := newProvider(t, tracing.Config{Endpoint: rcv.URL, Headers: map[string]string{"X-Api-Key": "k1"}, SampleRatio: 1,
		ServiceName: "bridge-eu", InstanceID: "i7", BatchTimeout: time.Hour})
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "work")
	span.End()
	if n := len(rcv.Spans()); n != 0 {
		t.Fatalf("%d spans exported before the batch timeout", n)
	}
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	spans := rcv.Spans() // no waiting: Shutdown returned after the export
	if len(spans) != 1 || spans[0].Name != "work" || spans[0].TraceID != span.SpanContext().TraceID().String() {
		t.Fatalf("spans %v", spans)
	}
	if r := spans[0].Resource; r["service.name"] != "bridge-eu" || r["service.instance.id"] != "i7" || r["telemetry.sdk.language"] != "go" {
		t.Errorf("resource %v", r)
	}
	h := rcv.Headers()[0]
	if h.Get("X-Api-Key") != "k1" {
		t.Errorf("export headers %v", h)
	}
	// After Shutdown nothing is recorded.
	if _, late := p.TracerProvider().Tracer("test").Start(context.Background(), "late"); late.IsRecording() {
		t.Error("a span records after Shutdown")
	}
}

// Without waiting for shutdown, a span is exported within the batch
// timeout; without headers configured, OTEL_EXPORTER_OTLP_HEADERS adds none
// either.
func TestBatchTimeout(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "X-From-Env=1")
	rcv := otlptest.Start(t)
	p := newProvider(t, tracing.Config{Endpoint: rcv.URL, SampleRatio: 1, BatchTimeout: 20 * time.Millisecond})
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "soon")
	span.End()
	rcv.Wait(t, `"soon"`, func(s otlptest.Span) bool { return s.Name == "soon" })
	if h := rcv.Headers()[0]; h.Get("X-From-Env") != "" {
		t.Errorf("export headers %v", h)
	}
}

// The ratio applies to new traces; a span with a remote parent follows
// the parent's sampled flag.
func TestSamplingIsParentBased(t *testing.T) {
	rcv := otlptest.Start(t)
	p := newProvider(t, tracing.Config{Endpoint: rcv.URL, SampleRatio: 0, BatchTimeout: time.Hour})
	tr := p.TracerProvider().Tracer("test")
	_, root := tr.Start(context.Background(), "root")
	root.End()
	parent := func(flags trace.TraceFlags) context.Context {
		tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
		sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
		return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true}))
	}
	_, sampled := tr.Start(parent(trace.FlagsSampled), "sampled child")
	sampled.End()
	_, unsampled := tr.Start(parent(0), "unsampled child")
	unsampled.End()
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Spans()
	if len(spans) != 1 || spans[0].Name != "sampled child" || spans[0].ParentSpanID != "b7ad6b7169203331" {
		t.Fatalf("spans %v, want only the sampled child", spans)
	}
}

// A receiver that refuses the spans costs the spans, logged without the
// headers, not an error of the service.
func TestExportFailureIsLogged(t *testing.T) {
	rcv := otlptest.Start(t)
	rcv.SetStatus(http.StatusBadRequest)
	var logs testenv.SyncBuffer
	p := newProvider(t, tracing.Config{Endpoint: rcv.URL, SampleRatio: 1, BatchTimeout: time.Hour,
		Headers: map[string]string{"Authorization": "Bearer Zq9xTopSecret"}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "lost")
	span.End()
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "exporting spans failed") || !strings.Contains(out, "dropped=1") {
		t.Fatalf("log %q", out)
	}
	if strings.Contains(out, "Zq9xTopSecret") {
		t.Fatalf("the log shows a header value: %s", out)
	}
	if len(rcv.Headers()) == 0 {
		t.Fatal("nothing reached the receiver")
	}
}

func TestNewRefuses(t *testing.T) {
	for _, cfg := range []tracing.Config{{}, {Endpoint: "http://127.0.0.1:1/v1/traces", SampleRatio: 2}} {
		if _, err := tracing.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
