package wire

import "strings"

// HeaderEscape percent-encodes s for an MQTT-* header value: every byte
// outside printable ASCII, and '%', ',', '=' and '"', so that UTF-8 text,
// topics (with their '/') and key=value lists survive any HTTP hop.
// url.PathUnescape undoes it.
func HeaderEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7F || c == '%' || c == ',' || c == '=' || c == '"' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
