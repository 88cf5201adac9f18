package bridge

import (
	"context"
	"encoding/hex"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// The W3C Trace Context travels between the bridge and devices in these
// MQTT v5 user properties, named and formatted as the HTTP headers are.
const (
	TraceParentProperty = "traceparent"
	TraceStateProperty  = "tracestate"
)

// tracerName is the instrumentation scope of the bridge's spans.
const tracerName = "github.com/mqttbridge/mqttbridge/bridge"

// Attributes of the bridge's spans that OpenTelemetry's semantic
// conventions do not name.
const (
	attrBroker        = attribute.Key("mqtt.broker")
	attrQoS           = attribute.Key("mqtt.qos")
	attrRetain        = attribute.Key("mqtt.retain")
	attrReasonCode    = attribute.Key("mqtt.reason_code")
	attrResponseTopic = attribute.Key("mqtt.response_topic")
)

var traceContext = propagation.TraceContext{}

// noSpan is what the bridge records into when it has no span to make.
var noSpan = trace.SpanFromContext(context.Background())

// userProperties is a propagation.TextMapCarrier over a message's user
// properties; keys match without regard to case, as header names do.
type userProperties struct{ props *[]UserProperty }

var _ propagation.TextMapCarrier = userProperties{}

func (u userProperties) Get(key string) string {
	for _, p := range *u.props {
		if strings.EqualFold(p.Key, key) {
			return p.Value
		}
	}
	return ""
}

// Set replaces the first property named key, or appends one.
func (u userProperties) Set(key, value string) {
	for i, p := range *u.props {
		if strings.EqualFold(p.Key, key) {
			(*u.props)[i].Value = value
			return
		}
	}
	*u.props = append(*u.props, UserProperty{Key: key, Value: value})
}

func (u userProperties) Keys() []string {
	keys := make([]string, len(*u.props))
	for i, p := range *u.props {
		keys[i] = p.Key
	}
	return keys
}

// TraceContext returns ctx with the remote span context of msg's
// traceparent and tracestate user properties, or ctx itself when msg has
// no valid traceparent.
func (m *Message) TraceContext(ctx context.Context) context.Context {
	return traceContext.Extract(ctx, userProperties{&m.Properties.UserProperties})
}

func (m *Message) hasTraceParent() bool {
	for _, p := range m.Properties.UserProperties {
		if strings.EqualFold(p.Key, TraceParentProperty) {
			return true
		}
	}
	return false
}

// traceParent is the parent of a publish or request span: the span in ctx,
// else the traceparent the caller put in msg (a WebSocket client, say). It
// reports whether msg has a traceparent of its own, which is then sent
// unchanged.
func traceParent(ctx context.Context, msg *Message) (context.Context, bool) {
	explicit := msg.hasTraceParent()
	if explicit && !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = msg.TraceContext(ctx)
	}
	return ctx, explicit
}

// injectTraceContext sets the user properties traceparent and then, when
// there is one, tracestate, to the trace context of the span in ctx.
func injectTraceContext(ctx context.Context, props *[]UserProperty) {
	mc := propagation.MapCarrier{}
	traceContext.Inject(ctx, mc)
	carrier := userProperties{props}
	for _, key := range []string{TraceParentProperty, TraceStateProperty} {
		if v := mc.Get(key); v != "" {
			carrier.Set(key, v)
		}
	}
}

// messageAttributes describes msg on its way to or from broker.
func messageAttributes(broker, operation string, opType attribute.KeyValue, msg *Message) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.MessagingSystemKey.String("mqtt"),
		semconv.MessagingOperationName(operation),
		opType,
		semconv.MessagingDestinationName(msg.Topic),
		semconv.MessagingMessageBodySize(len(msg.Payload)),
		attrQoS.Int(int(msg.QoS)),
		attrRetain.Bool(msg.Retain),
		attrBroker.String(broker),
	}
}

// send publishes msg to up inside a producer span "publish", and adds the
// span's trace context to msg as the user properties traceparent and
// tracestate, unless msg carries a traceparent of its own. Without
// tracing it only publishes.
func (b *Bridge) send(ctx context.Context, up Upstream, msg Message) (PublishResult, error) {
	if !b.traced {
		return up.Publish(ctx, msg)
	}
	ctx, explicit := traceParent(ctx, &msg)
	ctx, span := b.tracer.Start(ctx, "publish", trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(messageAttributes(up.Name(), "publish", semconv.MessagingOperationTypeSend, &msg)...)
	}
	if !explicit && span.SpanContext().IsValid() {
		// A copy: the caller's slice stays as it was.
		n := len(msg.Properties.UserProperties)
		props := make([]UserProperty, n, n+2)
		copy(props, msg.Properties.UserProperties)
		injectTraceContext(ctx, &props)
		msg.Properties.UserProperties = props
	}
	res, err := up.Publish(ctx, msg)
	if span.IsRecording() {
		if err != nil {
			spanError(span, err)
		} else {
			span.SetAttributes(attrReasonCode.Int(int(res.ReasonCode)))
		}
	}
	return res, err
}

// startRequest starts the client span "request" of a request; its publish
// is a child span (send).
func (b *Bridge) startRequest(ctx context.Context, up Upstream, msg *Message) (context.Context, trace.Span) {
	if !b.traced {
		return ctx, noSpan
	}
	ctx, _ = traceParent(ctx, msg)
	ctx, span := b.tracer.Start(ctx, "request", trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(messageAttributes(up.Name(), "request", semconv.MessagingOperationTypeSend, msg)...)
		span.SetAttributes(attrResponseTopic.String(msg.Properties.ResponseTopic),
			semconv.MessagingMessageConversationID(hex.EncodeToString(msg.Properties.CorrelationData)))
	}
	return ctx, span
}

// traceReply records the reply on the request's span: an event, and a link
// to the reply's traceparent when the device sent one.
func traceReply(span trace.Span, reply *Message) {
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{semconv.MessagingDestinationName(reply.Topic), semconv.MessagingMessageBodySize(len(reply.Payload))}
	if sc := trace.SpanContextFromContext(reply.TraceContext(context.Background())); sc.IsValid() {
		span.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{semconv.MessagingOperationName("reply")}})
		attrs = append(attrs, attribute.String("mqtt.reply.trace_id", sc.TraceID().String()),
			attribute.String("mqtt.reply.span_id", sc.SpanID().String()))
	}
	span.AddEvent("reply", trace.WithAttributes(attrs...))
}

// startIngest starts the consumer span "ingest" of a message a broker
// delivered with a traceparent user property, as a child of that remote
// span, so that a device's trace continues into the bridge. Messages
// without one get no span (noSpan).
func (b *Bridge) startIngest(broker string, msg *Message) trace.Span {
	if !b.traced || !msg.hasTraceParent() {
		return noSpan
	}
	ctx := msg.TraceContext(context.Background())
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return noSpan
	}
	_, span := b.tracer.Start(ctx, "ingest", trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(messageAttributes(broker, "ingest", semconv.MessagingOperationTypeProcess, msg)...)
	}
	return span
}

// ingested ends an ingest span after the store recorded msg as stored.
func ingested(span trace.Span, stored *Message) {
	if span.IsRecording() {
		span.SetAttributes(semconv.MessagingMessageID(stored.ID))
	}
	span.End()
}

// spanError marks span as failed with err and its error code.
func spanError(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(semconv.ErrorTypeKey.String(ErrorCode(err)))
	span.SetStatus(codes.Error, err.Error())
}
