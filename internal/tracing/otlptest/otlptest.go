// Package otlptest is an OTLP/HTTP trace receiver for tests: an HTTP
// server on a loopback port that decodes every ExportTraceServiceRequest
// (protobuf, optionally gzip) the way a collector does and keeps its spans,
// so tests check what the real exporter really sent.
package otlptest

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened for assertions: ids in lower-case
// hex, attribute values as strings.
type Span struct {
	TraceID, SpanID, ParentSpanID string
	Name                          string
	// Kind is server, client, producer, consumer or internal.
	Kind       string
	Attributes map[string]string
	Events     []Event
	Links      []Link
	// Status is unset, ok or error.
	Status, StatusMessage string
	// Resource holds the attributes of the span's resource.
	Resource map[string]string
}

// Event is a span event.
type Event struct {
	Name       string
	Attributes map[string]string
}

// Link is a span link.
type Link struct {
	TraceID, SpanID string
	Attributes      map[string]string
}

func (s Span) String() string {
	return fmt.Sprintf("%s %q trace %s span %s parent %s %v", s.Kind, s.Name, s.TraceID, s.SpanID, s.ParentSpanID, s.Attributes)
}

// Receiver is a running OTLP/HTTP receiver.
type Receiver struct {
	// URL is where exporters send spans: http://127.0.0.1:port/v1/traces.
	URL string

	srv *httptest.Server

	mu      sync.Mutex
	spans   []Span
	headers []http.Header
	status  int
	changed chan struct{} // closed and replaced when spans arrive
}

// Start runs a receiver until the test ends.
func Start(tb testing.TB) *Receiver {
	tb.Helper()
	r := &Receiver{changed: make(chan struct{}), status: http.StatusOK}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	tb.Cleanup(r.srv.Close)
	r.URL = r.srv.URL + "/v1/traces"
	return r
}

// SetStatus makes the receiver answer every export with status (and keep
// nothing when it is not 2xx).
func (r *Receiver) SetStatus(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = status
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "want POST /v1/traces", http.StatusNotFound)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "want application/x-protobuf, got "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	status := r.status
	r.headers = append(r.headers, req.Header.Clone())
	if status/100 == 2 {
		for _, rs := range msg.ResourceSpans {
			res := attrs(rs.GetResource().GetAttributes())
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, flatten(s, res))
				}
			}
		}
		close(r.changed)
		r.changed = make(chan struct{})
	}
	r.mu.Unlock()
	if status/100 != 2 {
		http.Error(w, "refused by the test", status)
		return
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Spans returns every span received so far, in order of arrival.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Headers returns the headers of every export request received so far.
func (r *Receiver) Headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.headers...)
}

// Wait returns the first span that match accepts, waiting up to 10 s for
// it to arrive, and fails the test when none does.
func (r *Receiver) Wait(tb testing.TB, what string, match func(Span) bool) Span {
	tb.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		spans, changed := r.spans, r.changed
		r.mu.Unlock()
		for _, s := range spans {
			if match(s) {
				return s
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			var b strings.Builder
			for _, s := range spans {
				fmt.Fprintf(&b, "\n  %s", s)
			}
			tb.Fatalf("otlptest: no span %s within 10s; received:%s", what, b.String())
			return Span{}
		}
	}
}

func flatten(s *tracepb.Span, res map[string]string) Span {
	out := Span{
		TraceID:      hex.EncodeToString(s.TraceId),
		SpanID:       hex.EncodeToString(s.SpanId),
		ParentSpanID: hex.EncodeToString(s.ParentSpanId),
		Name:         s.Name,
		Kind:         strings.ToLower(strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_")),
		Attributes:   attrs(s.Attributes),
		Status:       strings.ToLower(strings.TrimPrefix(s.GetStatus().GetCode().String(), "STATUS_CODE_")),
		Resource:     res,
	}
	out.StatusMessage = s.GetStatus().GetMessage()
	for _, e := range s.Events {
		out.Events = append(out.Events, Event{Name: e.Name, Attributes: attrs(e.Attributes)})
	}
	for _, l := range s.Links {
		out.Links = append(out.Links, Link{TraceID: hex.EncodeToString(l.TraceId), SpanID: hex.EncodeToString(l.SpanId), Attributes: attrs(l.Attributes)})
	}
	return out
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.Key] = value(kv.Value)
	}
	return out
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		parts := make([]string, len(x.ArrayValue.Values))
		for i, e := range x.ArrayValue.Values {
			parts[i] = value(e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return fmt.Sprint(v)
}
