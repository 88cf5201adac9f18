package wire

import "strings"

// HeaderEscape percent-encodes s for an MQTT-* header value: every byte
// outside printable ASCII, and '%', ',', '=' and '"', so that UTF-8 text,
// topics (with their '/') and key=value lists survive any HTTP hop.
// url.PathUnescape undoes it.
func HeaderEscape(s string) string {
	const hex = "0123456789ABCDEF"
	i := 0
	for i < len(s) && !headerEscaped(s[i]) {
		i++
	}
	if i == len(s) {
		return s // nothing to escape (the usual case): no copy
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if headerEscaped(c) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// headerEscaped reports whether HeaderEscape percent-encodes c.
func headerEscaped(c byte) bool {
	return c <= ' ' || c >= 0x7F || c == '%' || c == ',' || c == '=' || c == '"'
}
