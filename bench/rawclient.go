package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// rawConn is a minimal HTTP/1.1 keep-alive client for one connection. The
// request bytes are built once and written as they are; the response is
// parsed just enough to find its status and the end of its body
// (Content-Length, chunked, or no body for 1xx/204/304/HEAD). It allocates
// nothing per request, so the generator costs far less CPU than with
// net/http's client.
type rawConn struct {
	addr    string
	req     []byte
	head    bool
	timeout time.Duration
	refresh time.Time // when to push the deadline forward again
	conn    net.Conn
	br      *bufio.Reader
}

// buildRequest serialises one HTTP/1.1 request.
func buildRequest(method string, u *url.URL, headers [][2]string, body []byte) []byte {
	var b bytes.Buffer
	path := u.RequestURI()
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mqttbench\r\n", method, path, u.Host)
	for _, h := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	if len(body) > 0 || method == "POST" || method == "PUT" || method == "PATCH" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

func (c *rawConn) dial() error {
	conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
	if err != nil {
		return err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c.conn = conn
	c.refresh = time.Time{}
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 16<<10)
	} else {
		c.br.Reset(conn)
	}
	return nil
}

func (c *rawConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// do sends the request and reads the whole response; it returns the status
// code. On any error the connection is closed and the next call redials.
func (c *rawConn) do() (int, error) {
	if c.conn == nil {
		if err := c.dial(); err != nil {
			return 0, err
		}
	}
	// Refresh the deadline only every tenth of the timeout: setting it on
	// every request costs the generator a timer update each time.
	if c.timeout > 0 {
		if now := time.Now(); now.After(c.refresh) {
			_ = c.conn.SetDeadline(now.Add(c.timeout))
			c.refresh = now.Add(c.timeout / 10)
		}
	}
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return 0, err
	}
	status, keep, err := readResponse(c.br, c.head)
	if err != nil {
		c.close()
		return status, err
	}
	if !keep {
		c.close()
	}
	return status, nil
}

var errMalformed = errors.New("malformed HTTP response")

// readResponse reads one response from br, discarding its body. keep is
// false when the server will close the connection.
func readResponse(br *bufio.Reader, head bool) (status int, keep bool, err error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		// "HTTP/1.1 204 No Content\r\n"
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
			return 0, false, errMalformed
		}
		status = atoi3(line[9:12])
		if status < 100 {
			return 0, false, errMalformed
		}
		keep = line[7] == '1'
		contentLength := int64(-1)
		chunked := false
		for {
			h, err := br.ReadSlice('\n')
			if err != nil {
				return status, false, err
			}
			if len(h) <= 2 {
				break
			}
			colon := bytes.IndexByte(h, ':')
			if colon < 0 {
				return status, false, errMalformed
			}
			name, value := h[:colon], bytes.TrimSpace(h[colon+1:])
			switch {
			case asciiEqualFold(name, "content-length"):
				n, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || n < 0 {
					return status, false, errMalformed
				}
				contentLength = n
			case asciiEqualFold(name, "transfer-encoding"):
				chunked = asciiEqualFold(value, "chunked")
			case asciiEqualFold(name, "connection"):
				if asciiEqualFold(value, "close") {
					keep = false
				} else if asciiEqualFold(value, "keep-alive") {
					keep = true
				}
			}
		}
		if status >= 100 && status < 200 && status != 101 {
			continue // interim response (100 Continue): the real one follows
		}
		switch {
		case head || status == 204 || status == 304:
		case chunked:
			if err := discardChunked(br); err != nil {
				return status, false, err
			}
		case contentLength >= 0:
			if _, err := br.Discard(int(contentLength)); err != nil {
				return status, false, err
			}
		default:
			// No length: the body runs to the end of the connection.
			_, err := io.Copy(io.Discard, br)
			return status, false, err
		}
		return status, keep, nil
	}
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimSpace(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(line), 16, 64)
		if err != nil || n < 0 {
			return errMalformed
		}
		if n == 0 {
			// trailers until an empty line
			for {
				t, err := br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(t) <= 2 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

func atoi3(b []byte) int {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func asciiEqualFold[T []byte | string](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
