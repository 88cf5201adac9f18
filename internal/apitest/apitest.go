package apitest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// MultiSegment is the extension that marks a path parameter spanning every
// remaining path segment. It must be the last segment of its path template.
const MultiSegment = "x-multi-segment"

// Validator checks requests and responses against one OpenAPI document.
// It is safe for concurrent use.
type Validator struct {
	router routers.Router
	routes [][2]string    // (METHOD, path template), sorted
	multi  []multiSegment // longest prefix first
}

// multiSegment is a path template ending in a multi-segment parameter.
type multiSegment struct {
	prefix string // the template up to the parameter, e.g. "/v1/topics/"
	param  string // the parameter's name, e.g. "topic"
}

var registerDecoders sync.Once

// New loads spec (OpenAPI 3.x, YAML or JSON) and validates it, examples
// included; it fails the test if the document does not load or is invalid.
func New(tb testing.TB, spec []byte) *Validator {
	tb.Helper()
	registerDecoders.Do(func() {
		// Raw payloads: any media type without a decoder of its own is read
		// as bytes, and so is text/plain (not trimmed or reinterpreted).
		openapi3filter.RegisterBodyDecoder("*/*", openapi3filter.FileBodyDecoder)
		openapi3filter.RegisterBodyDecoder("text/plain", openapi3filter.FileBodyDecoder)
	})

	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		tb.Fatalf("apitest: loading the OpenAPI document: %v", err)
	}
	if err := doc.Validate(tb.Context()); err != nil {
		tb.Fatalf("apitest: the OpenAPI document is invalid: %v", err)
	}
	if doc.Paths == nil {
		tb.Fatalf("apitest: the OpenAPI document has no paths")
	}

	// Route by path alone: the test server's address is not the document's.
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		tb.Fatalf("apitest: building a router for the OpenAPI document: %v", err)
	}

	v := &Validator{router: router}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			v.routes = append(v.routes, [2]string{method, path})
		}
		ms, err := multiSegmentOf(path, item)
		if err != nil {
			tb.Fatalf("apitest: %v", err)
		}
		if ms != nil {
			v.multi = append(v.multi, *ms)
		}
	}
	slices.SortFunc(v.routes, func(a, b [2]string) int {
		if c := strings.Compare(a[1], b[1]); c != 0 {
			return c
		}
		return strings.Compare(a[0], b[0])
	})
	slices.SortFunc(v.multi, func(a, b multiSegment) int { return len(b.prefix) - len(a.prefix) })
	return v
}

// multiSegmentOf finds the parameter of path marked MultiSegment, if any,
// and checks that it is the template's last segment.
func multiSegmentOf(path string, item *openapi3.PathItem) (*multiSegment, error) {
	params := slices.Clone(item.Parameters)
	for _, op := range item.Operations() {
		params = append(params, op.Parameters...)
	}
	var found *multiSegment
	for _, ref := range params {
		p := ref.Value
		if p == nil || p.In != openapi3.ParameterInPath || p.Extensions[MultiSegment] != true {
			continue
		}
		prefix, ok := strings.CutSuffix(path, "{"+p.Name+"}")
		if !ok || !strings.HasSuffix(prefix, "/") {
			return nil, fmt.Errorf("%s: path parameter %q is marked %s but is not the last path segment", path, p.Name, MultiSegment)
		}
		if found != nil && found.param != p.Name {
			return nil, fmt.Errorf("%s: more than one path parameter is marked %s", path, MultiSegment)
		}
		found = &multiSegment{prefix: prefix, param: p.Name}
	}
	return found, nil
}

// Routes returns every operation of the document as (METHOD, path
// template), e.g. {"GET", "/v1/topics/{topic}"}, sorted by path then
// method.
func (v *Validator) Routes() [][2]string { return slices.Clone(v.routes) }

// Do validates req against the document, sends it with client
// (http.DefaultClient when nil), reads the whole response body, and
// validates the response: its status must be declared by the operation,
// its declared headers and its body must match. A request that does not
// match stops the test before anything is sent; a response that does not
// match fails it. The returned response's Body is a fresh reader over the
// returned bytes.
//
// req must be a client request (http.NewRequestWithContext), not one made
// with httptest.NewRequest. Defaults in the document are not added to it.
func (v *Validator) Do(tb testing.TB, client *http.Client, req *http.Request) (*http.Response, []byte) {
	tb.Helper()
	in := v.input(tb, req)
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
		tb.Fatalf("apitest: %s %s: the request does not match the OpenAPI document:\n%v", req.Method, req.URL.RequestURI(), err)
	}
	return v.send(tb, client, req, in)
}

// DoInvalid is Do for a request that breaks the document on purpose, to
// test how the server refuses it: it fails the test if req is valid (use
// Do then), sends it anyway, and validates the response like Do does. The
// request must still reach an operation of the document.
func (v *Validator) DoInvalid(tb testing.TB, client *http.Client, req *http.Request) (*http.Response, []byte) {
	tb.Helper()
	in := v.input(tb, req)
	if err := openapi3filter.ValidateRequest(req.Context(), in); err == nil {
		tb.Fatalf("apitest: %s %s: the request matches the OpenAPI document; DoInvalid is for requests that do not (use Do)", req.Method, req.URL.RequestURI())
	}
	return v.send(tb, client, req, in)
}

// DoUnchecked sends req without judging it against the document, for bad
// input that the document may or may not already rule out (an invalid
// topic in a path, say), and validates the response like Do does.
func (v *Validator) DoUnchecked(tb testing.TB, client *http.Client, req *http.Request) (*http.Response, []byte) {
	tb.Helper()
	return v.send(tb, client, req, v.input(tb, req))
}

// input finds req's operation and builds the validation input.
func (v *Validator) input(tb testing.TB, req *http.Request) *openapi3filter.RequestValidationInput {
	tb.Helper()
	route, params, err := v.findRoute(req)
	if err != nil {
		tb.Fatalf("apitest: %s %s: no operation of the OpenAPI document serves it: %v", req.Method, req.URL.RequestURI(), err)
	}
	return &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc,
			ExcludeRequestBody:                false,
			SkipSettingDefaults:               true, // send the request as the test wrote it
			RejectWhenRequestBodyNotSpecified: true,
			IncludeResponseStatus:             true,
			MultiError:                        true,
		},
	}
}

// findRoute routes req. For a template ending in a multi-segment
// parameter, it routes a copy whose path has the rest of the path escaped
// into one segment, and sets the parameter to the real rest.
func (v *Validator) findRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	path := req.URL.Path
	for _, ms := range v.multi {
		rest, ok := strings.CutPrefix(path, ms.prefix)
		if !ok {
			continue
		}
		seg := url.PathEscape(rest) // escapes every "/"
		if seg == "" {
			seg = "_" // route it; the empty parameter then fails as missing
		}
		u := *req.URL
		u.Path, u.RawPath = ms.prefix+seg, ""
		routed := req.WithContext(req.Context())
		routed.URL = &u
		route, params, err := v.router.FindRoute(routed)
		if err != nil {
			return nil, nil, err
		}
		if route.Path == ms.prefix+"{"+ms.param+"}" {
			params[ms.param] = rest
		}
		return route, params, nil
	}
	return v.router.FindRoute(req)
}

// send sends req, reads the response and validates it.
func (v *Validator) send(tb testing.TB, client *http.Client, req *http.Request, in *openapi3filter.RequestValidationInput) (*http.Response, []byte) {
	tb.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	what := req.Method + " " + req.URL.RequestURI()
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("apitest: %s: %v", what, err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		tb.Fatalf("apitest: %s: reading the response body: %v", what, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))

	responses := in.Route.Operation.Responses
	if responses.Status(resp.StatusCode) == nil && responses.Default() == nil {
		// ValidateResponse lets some statuses (304, redirects) through
		// unchecked; an undeclared status is a mismatch all the same.
		tb.Errorf("apitest: %s: status %d is not declared by operation %q\nbody: %s", what, resp.StatusCode, in.Route.Operation.OperationID, excerpt(body))
		return resp, body
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                in.Options,
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		tb.Errorf("apitest: %s: the response (status %d, Content-Type %q) does not match the OpenAPI document:\n%v\nbody: %s",
			what, resp.StatusCode, resp.Header.Get("Content-Type"), err, excerpt(body))
	}
	return resp, body
}

// excerpt shows at most 2 KiB of a body in a failure message.
func excerpt(body []byte) string {
	const max = 2 << 10
	if len(body) > max {
		return fmt.Sprintf("%q… (%d bytes)", body[:max], len(body))
	}
	return fmt.Sprintf("%q", body)
}
