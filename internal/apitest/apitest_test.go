package apitest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mqttbridge/mqttbridge/internal/apitest"
)

// spec is a small document with what openapi.yaml needs: a multi-segment
// path parameter, a raw body of any media type, a JSON response.
const spec = `
openapi: 3.1.0
info: {title: apitest self-test, version: "1"}
servers: [{url: "http://localhost:8080"}]
paths:
  /things/{name}:
    parameters:
      - name: name
        in: path
        required: true
        x-multi-segment: true
        schema: {type: string, minLength: 1, pattern: '^[^+#]+$'}
    post:
      operationId: putThing
      parameters:
        - {name: mode, in: query, schema: {type: string, enum: [good, badbody, badheader, teapot, stale]}}
      requestBody:
        content:
          '*/*':
            schema: {type: string, format: binary}
      responses:
        '200':
          description: stored
          headers:
            Thing-Size:
              required: true
              schema: {type: integer, minimum: 0}
          content:
            application/json:
              schema:
                type: object
                required: [name, size]
                additionalProperties: false
                properties:
                  name: {type: string}
                  size: {type: integer}
    get:
      operationId: getThing
      responses:
        '200':
          description: the raw thing
          content:
            '*/*':
              schema: {type: string, format: binary}
  /health:
    get:
      operationId: health
      responses:
        '204': {description: fine}
`

// handler serves spec: POST echoes what it got as JSON, with a body or a
// header that breaks the document for ?mode=badbody and ?mode=badheader,
// with an undeclared status for ?mode=teapot or 304 for
// ?mode=stale; GET answers raw bytes with an arbitrary media type.
func handler(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /things/{name...}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("handler: reading the body: %v", err)
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		switch r.URL.Query().Get("mode") {
		case "badbody":
			w.Header().Set("Thing-Size", fmt.Sprint(len(body)))
			fmt.Fprintf(w, `{"name":%q,"size":"%d"}`, r.PathValue("name"), len(body))
		case "badheader":
			w.Header().Set("Thing-Size", "many")
			fmt.Fprintf(w, `{"name":%q,"size":%d}`, r.PathValue("name"), len(body))
		case "teapot":
			w.WriteHeader(http.StatusTeapot)
		case "stale":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Thing-Size", fmt.Sprint(len(body)))
			_ = json.NewEncoder(w).Encode(map[string]any{"name": r.PathValue("name"), "size": len(body)})
		}
	})
	mux.HandleFunc("GET /things/{name...}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/x-thing")
		_, _ = w.Write([]byte{0xff, 0x00, 0xfe, '\n'})
	})
	return mux
}

func newServer(t *testing.T) (*apitest.Validator, *httptest.Server) {
	t.Helper()
	v := apitest.New(t, []byte(spec))
	srv := httptest.NewServer(handler(t))
	t.Cleanup(srv.Close)
	return v, srv
}

func newRequest(t *testing.T, method, url, contentType string, body []byte) *http.Request {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// recorder is a testing.TB that records failures instead of failing the
// test; Fatal and FailNow end the goroutine, as on a real test. Methods it
// does not override (Context, TempDir, Cleanup, ...) go to the real test.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msgs   []string
}

func (r *recorder) Helper() {}
func (r *recorder) Fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
}
func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}
func (r *recorder) FailNow()                          { r.Fail(); runtime.Goexit() }
func (r *recorder) Log(args ...any)                   { r.add(fmt.Sprint(args...)) }
func (r *recorder) Logf(format string, args ...any)   { r.add(fmt.Sprintf(format, args...)) }
func (r *recorder) Error(args ...any)                 { r.Log(args...); r.Fail() }
func (r *recorder) Errorf(format string, args ...any) { r.Logf(format, args...); r.Fail() }
func (r *recorder) Fatal(args ...any)                 { r.Log(args...); r.FailNow() }
func (r *recorder) Fatalf(format string, args ...any) { r.Logf(format, args...); r.FailNow() }

func (r *recorder) add(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msg)
}

func (r *recorder) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.msgs, "\n")
}

// record runs fn with a recorder in its own goroutine, so that Fatal can
// stop it, and returns the recorder once fn has ended.
func record(t *testing.T, fn func(tb testing.TB)) *recorder {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	return r
}

// mustFail checks that fn failed its recorder with a message containing want.
func mustFail(t *testing.T, want string, fn func(tb testing.TB)) {
	t.Helper()
	r := record(t, fn)
	if !r.Failed() {
		t.Fatalf("the check passed; want it to fail with %q", want)
	}
	t.Logf("recorded failure: %s", r.output())
	if out := r.output(); !strings.Contains(out, want) {
		t.Fatalf("the failure message\n%s\ndoes not contain %q", out, want)
	}
}

func TestDoGoodExchange(t *testing.T) {
	v, srv := newServer(t)
	cases := []struct {
		name, path, contentType string
		body                    []byte
		wantName                string
	}{
		{"binary, several segments", "/things/demo/a/b", "application/octet-stream", []byte{0, 1, 2, 0xff}, "demo/a/b"},
		{"text", "/things/demo/temp", "text/plain; charset=utf-8", []byte("  21.5\n"), "demo/temp"},
		{"arbitrary media type", "/things/demo/temp", "application/x-thing", []byte("{not json"), "demo/temp"},
		{"JSON-looking media type, not JSON", "/things/demo/temp", "application/json", []byte("{not json"), "demo/temp"},
		{"no content type", "/things/demo", "", []byte("x"), "demo"},
		{"escaped segments", "/things/plant%201/a%2Fb/", "", nil, "plant 1/a/b/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := newRequest(t, http.MethodPost, srv.URL+c.path, c.contentType, c.body)
			resp, body := v.Do(t, srv.Client(), req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %s", resp.StatusCode, body)
			}
			var got struct {
				Name string
				Size int
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got.Name != c.wantName || got.Size != len(c.body) {
				t.Errorf("the handler got %q and %d bytes; want %q and %d", got.Name, got.Size, c.wantName, len(c.body))
			}
			if again, _ := io.ReadAll(resp.Body); !bytes.Equal(again, body) {
				t.Errorf("resp.Body reads %q, want the returned body %q", again, body)
			}
		})
	}

	t.Run("raw response of any media type", func(t *testing.T) {
		resp, body := v.Do(t, nil, newRequest(t, http.MethodGet, srv.URL+"/things/demo/a", "", nil))
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, []byte{0xff, 0x00, 0xfe, '\n'}) {
			t.Errorf("status %d, body %q", resp.StatusCode, body)
		}
	})
}

func TestDoBadResponse(t *testing.T) {
	v, srv := newServer(t)
	for _, c := range []struct{ mode, want string }{
		{"badbody", `response body doesn't match schema`},
		{"badheader", `unable to decode header "Thing-Size"`},
		{"teapot", "status 418 is not declared"},
		{"stale", "status 304 is not declared"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			mustFail(t, c.want, func(tb testing.TB) {
				v.Do(tb, srv.Client(), newRequest(t, http.MethodPost, srv.URL+"/things/demo?mode="+c.mode, "text/plain", []byte("x")))
			})
		})
	}
}

func TestDoBadRequest(t *testing.T) {
	v, srv := newServer(t)
	for _, c := range []struct{ name, method, path, want string }{
		{"query value", http.MethodPost, "/things/demo?mode=ugly", "the request does not match"},
		{"wildcard in a later segment", http.MethodPost, "/things/demo/+/b", "the request does not match"},
		{"empty multi-segment parameter", http.MethodPost, "/things/", "the request does not match"},
		{"body where none is declared", http.MethodGet, "/health", "the request does not match"},
		{"unknown path", http.MethodGet, "/nothing", "no operation of the OpenAPI document"},
		{"unknown method", http.MethodDelete, "/things/demo", "no operation of the OpenAPI document"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.method == http.MethodGet {
				body = []byte("unexpected")
			}
			mustFail(t, c.want, func(tb testing.TB) {
				v.Do(tb, srv.Client(), newRequest(t, c.method, srv.URL+c.path, "", body))
				tb.Fatalf("Do returned after an invalid request")
			})
		})
	}
}

func TestDoInvalid(t *testing.T) {
	v, srv := newServer(t)
	t.Run("invalid request, valid response", func(t *testing.T) {
		resp, _ := v.DoInvalid(t, srv.Client(), newRequest(t, http.MethodPost, srv.URL+"/things/a/+", "", []byte("x")))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("valid request", func(t *testing.T) {
		mustFail(t, "the request matches the OpenAPI document", func(tb testing.TB) {
			v.DoInvalid(tb, srv.Client(), newRequest(t, http.MethodPost, srv.URL+"/things/a", "", []byte("x")))
		})
	})
	t.Run("invalid request, invalid response", func(t *testing.T) {
		mustFail(t, "the response (status 200", func(tb testing.TB) {
			v.DoInvalid(tb, srv.Client(), newRequest(t, http.MethodPost, srv.URL+"/things/a/+?mode=badbody", "", []byte("x")))
		})
	})
}

func TestNewInvalidSpec(t *testing.T) {
	for _, c := range []struct{ name, doc, want string }{
		{"not YAML", "openapi: [", "loading the OpenAPI document"},
		{"dangling $ref", strings.Replace(spec, "schema: {type: string, format: binary}", "schema: {$ref: '#/components/schemas/Nope'}", 1), "loading the OpenAPI document"},
		{"example against its schema", strings.Replace(spec, "            application/json:\n", "            application/json:\n              example: {name: 5, size: 1}\n", 1), "invalid example"},
		{"path parameter not declared", strings.Replace(spec, "/things/{name}:", "/things:", 1), "must define exactly all path parameters"},
		{"multi-segment not last", strings.Replace(spec, "/things/{name}:", "/things/{name}/x:", 1), "is marked x-multi-segment but is not the last path segment"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.doc == spec {
				t.Fatal("the document was not changed")
			}
			mustFail(t, c.want, func(tb testing.TB) { apitest.New(tb, []byte(c.doc)) })
		})
	}
}

func TestRoutes(t *testing.T) {
	v := apitest.New(t, []byte(spec))
	want := [][2]string{{"GET", "/health"}, {"GET", "/things/{name}"}, {"POST", "/things/{name}"}}
	if got := v.Routes(); !slices.Equal(got, want) {
		t.Errorf("Routes() = %q, want %q", got, want)
	}
}

func TestDoConcurrent(t *testing.T) {
	v, srv := newServer(t)
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			body := bytes.Repeat([]byte{byte(i)}, i)
			resp, _ := v.Do(t, srv.Client(), newRequest(t, http.MethodPost, fmt.Sprintf("%s/things/demo/%d", srv.URL, i), "application/octet-stream", body))
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
}
