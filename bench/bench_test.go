package main

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A smoke run, not a benchmark: the generator runs for about a second
// against an in-process noop server and must count what it sent. No
// timing is asserted.
func TestGeneratorSmoke(t *testing.T) {
	srv := httptest.NewServer(noopHandler())
	defer srv.Close()
	for _, client := range []string{"raw", "std"} {
		for _, method := range []string{"POST", "GET"} {
			t.Run(client+"/"+method, func(t *testing.T) {
				d := 300 * time.Millisecond
				if client == "raw" && method == "POST" {
					d = time.Second // the P1 configuration gets the full second
				}
				res, err := runGen(context.Background(), genConfig{
					URL:      srv.URL + "/v1/topics/bench/smoke?qos=0",
					Method:   method,
					Conns:    4,
					Duration: d,
					Warmup:   100 * time.Millisecond,
					BodySize: 64,
					Client:   client,
				})
				if err != nil {
					t.Fatal(err)
				}
				if res.Requests == 0 || res.Status["204"] != res.Requests {
					t.Fatalf("requests %d, statuses %v: want every request counted as 204", res.Requests, res.Status)
				}
				if !res.Valid || res.Errors != 0 {
					t.Fatalf("run invalid: %s", res.Invalid)
				}
				if res.P50ms <= 0 || res.P99ms < res.P50ms {
					t.Fatalf("latency p50 %v p99 %v", res.P50ms, res.P99ms)
				}
			})
		}
	}
}

// Non-2xx answers are counted and make the run invalid.
func TestGeneratorCountsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	res, err := runGen(context.Background(), genConfig{
		URL: srv.URL + "/x", Method: "GET", Conns: 2, Duration: 300 * time.Millisecond, Client: "raw",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Status["503"] != res.Requests || res.Valid {
		t.Fatalf("requests %d, statuses %v, valid %v: want all 503 and invalid", res.Requests, res.Status, res.Valid)
	}
}

// A fixed offered rate is a bounded run too.
func TestGeneratorFixedRate(t *testing.T) {
	srv := httptest.NewServer(noopHandler())
	defer srv.Close()
	res, err := runGen(context.Background(), genConfig{
		URL: srv.URL + "/v1/topics/a", Method: "GET", Conns: 4, Duration: 500 * time.Millisecond, Client: "raw", Rate: 200,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || !res.Valid {
		t.Fatalf("requests %d, valid %v (%s)", res.Requests, res.Valid, res.Invalid)
	}
}

func TestReadResponse(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" +
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: v\r\n\r\n" +
		"HTTP/1.1 204 No Content\r\n\r\n" +
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\n\r\n" +
		"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno" +
		"HTTP/1.0 200 OK\r\n\r\nto the end"
	br := bufio.NewReader(strings.NewReader(in))
	want := []struct {
		status int
		keep   bool
	}{{200, true}, {200, true}, {204, true}, {304, true}, {503, false}, {200, false}}
	for i, w := range want {
		status, keep, err := readResponse(br, false)
		if err != nil || status != w.status || keep != w.keep {
			t.Fatalf("response %d: status %d keep %v err %v; want %d %v", i, status, keep, err, w.status, w.keep)
		}
	}
}

func TestHistQuantile(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.quantile(c.q)
		if d := got - c.want; d < -c.want/50 || d > c.want/50 {
			t.Errorf("q%.2f = %v, want %v within 2%%", c.q, got, c.want)
		}
	}
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345} {
		i := histIndex(v)
		if m := histValue(i); float64(m) < float64(v)*0.98 || float64(m) > float64(v)*1.02+1 {
			t.Errorf("value %d -> bucket %d -> %d", v, i, m)
		}
	}
}
