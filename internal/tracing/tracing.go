package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Config configures a Provider. Zero values get the documented defaults.
type Config struct {
	// Endpoint is the full URL spans are POSTed to, OTLP/HTTP protobuf
	// (config.Tracing.ExportURL); required.
	Endpoint string
	// Headers are sent with every export request; never logged.
	Headers map[string]string
	// SampleRatio is the share of new traces recorded, 0 to 1; spans with
	// a parent follow the parent's sampled flag.
	SampleRatio float64
	// ServiceName is the resource's service.name; default "mqttbridge".
	ServiceName string
	// InstanceID is the resource's service.instance.id; optional.
	InstanceID string
	// BatchTimeout is the longest a finished span waits for export;
	// default 5s.
	BatchTimeout time.Duration
	// ExportTimeout bounds one export request; default 10s.
	ExportTimeout time.Duration
	// Logger reports failed exports, at most once a minute; default
	// discards.
	Logger *slog.Logger
}

// Provider is the tracer provider of a running mqttbridge: spans are
// batched and exported over OTLP/HTTP.
type Provider struct {
	tp   *sdktrace.TracerProvider
	once sync.Once
	err  error
}

// New builds the provider. It starts no connection: the exporter sends
// its first batch when spans exist, and failures are logged, never fatal.
func New(cfg Config) (*Provider, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("tracing: Config.Endpoint is required")
	}
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 || cfg.SampleRatio != cfg.SampleRatio {
		return nil, fmt.Errorf("tracing: SampleRatio %g is not between 0 and 1", cfg.SampleRatio)
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "mqttbridge"
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 5 * time.Second
	}
	if cfg.ExportTimeout <= 0 {
		cfg.ExportTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	headers := cfg.Headers
	if headers == nil {
		// Given, even empty, so that OTEL_EXPORTER_OTLP_HEADERS does not
		// add headers nobody configured here.
		headers = map[string]string{}
	}
	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(cfg.Endpoint),
		otlptracehttp.WithHeaders(headers),
		otlptracehttp.WithTimeout(cfg.ExportTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: the OTLP exporter: %w", err)
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(cfg.ServiceName)}
	if cfg.InstanceID != "" {
		attrs = append(attrs, semconv.ServiceInstanceID(cfg.InstanceID))
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, attrs...))
	if err != nil {
		return nil, fmt.Errorf("tracing: the resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(&loggingExporter{SpanExporter: exp, log: cfg.Logger, endpoint: cfg.Endpoint},
			sdktrace.WithBatchTimeout(cfg.BatchTimeout), sdktrace.WithExportTimeout(cfg.ExportTimeout)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(res),
	)
	return &Provider{tp: tp}, nil
}

// TracerProvider is what the bridge and the HTTP API make spans with.
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// Shutdown exports the spans still waiting, within ctx, and stops; later
// spans are dropped. Safe to call twice.
func (p *Provider) Shutdown(ctx context.Context) error {
	p.once.Do(func() { p.err = p.tp.Shutdown(ctx) })
	return p.err
}

// loggingExporter logs failed exports with the service's logger, at most
// once a minute, instead of through OpenTelemetry's global error handler
// (which writes to stderr): the exporter has retried by then, and the
// spans are dropped.
type loggingExporter struct {
	sdktrace.SpanExporter
	log      *slog.Logger
	endpoint string

	mu      sync.Mutex
	lastLog time.Time
	dropped int
}

func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err == nil {
		return nil
	}
	e.mu.Lock()
	e.dropped += len(spans)
	now := time.Now()
	if !e.lastLog.IsZero() && now.Sub(e.lastLog) < time.Minute {
		e.mu.Unlock()
		return nil
	}
	dropped := e.dropped
	e.lastLog, e.dropped = now, 0
	e.mu.Unlock()
	e.log.Warn("tracing: exporting spans failed; they are dropped", "endpoint", e.endpoint, "dropped", dropped, "err", err)
	return nil
}
