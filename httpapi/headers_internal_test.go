package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The header keys writeMetaHeaders assigns directly must be the canonical
// forms Header.Set would use, or Get and Del would not find them.
func TestCanonicalHeaderKeys(t *testing.T) {
	for name, key := range map[string]string{
		hdrMessageID: hdrMessageIDKey,
		hdrTopic:     hdrTopicKey,
		hdrQoS:       hdrQoSKey,
		hdrRetain:    hdrRetainKey,

		hdrPayloadFormat:   hdrPayloadFormatKey,
		hdrResponseTopic:   hdrResponseTopicKey,
		hdrCorrelationData: hdrCorrelationDataKey,
		hdrUserProperty:    hdrUserPropertyKey,
		"ETag":             "Etag",

		"Content-Security-Policy": "Content-Security-Policy",
		"X-Content-Type-Options":  "X-Content-Type-Options",
	} {
		if got := http.CanonicalHeaderKey(name); got != key {
			t.Errorf("CanonicalHeaderKey(%q) = %q, the code uses %q", name, got, key)
		}
	}
}

// readAll returns what io.ReadAll returns, whatever the starting size.
func TestReadAllSized(t *testing.T) {
	for _, n := range []int{0, 1, 64, 511, 512, 513, 5000} {
		data := bytes.Repeat([]byte("x"), n)
		for _, size := range []int{1, n + 1, 512} {
			got, err := readAll(bytes.NewReader(data), size)
			if err != nil || !bytes.Equal(got, data) || got == nil {
				t.Errorf("readAll(%d bytes, size %d) = %d bytes, %v", n, size, len(got), err)
			}
		}
	}
	_, err := readAll(io.MultiReader(strings.NewReader("abc"), errReader{}), 2)
	if err != io.ErrUnexpectedEOF {
		t.Errorf("readAll error = %v, want the reader's", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }
