package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
)

// Requests with made-up methods and paths, before authentication, add no
// series to /metrics: unknown methods count as _OTHER, unmatched routes as
// "unmatched".
func TestMetricsLabelsBounded(t *testing.T) {
	in := startLogged(t, withAuth, nil)
	in.waitReady(t)
	series := func() int {
		t.Helper()
		return len(scrape(t, in.base, "Authorization", "Bearer "+svcKey))
	}
	client := &http.Client{}
	flood := func(n int) {
		t.Helper()
		for range n {
			method := fmt.Sprintf("ZZ%X", rand.Uint64())
			switch rand.IntN(4) {
			case 0:
				method = "GET"
			case 1:
				method = "DELETE"
			}
			path := fmt.Sprintf("/%x", rand.Uint64())
			switch rand.IntN(3) {
			case 0:
				path = "/v1/topics" + path
			case 1:
				path = "/v1" + path
			}
			req, err := http.NewRequest(method, in.base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	series() // the scrape's own series
	flood(100)
	before := series()
	flood(2000)
	if after := series(); after > before+5 {
		t.Fatalf("/metrics grew from %d to %d series after 2000 requests with made-up methods and paths", before, after)
	}
}
