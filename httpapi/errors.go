package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// statusOf is the one table from bridge error codes to HTTP statuses.
var statusOf = map[string]int{
	bridge.ECodeInvalidTopic:      http.StatusBadRequest,
	bridge.ECodeInvalidRequest:    http.StatusBadRequest,
	bridge.ECodeInvalidCursor:     http.StatusBadRequest,
	bridge.ECodeNotBridged:        http.StatusNotFound,
	bridge.ECodeUnauthorized:      http.StatusUnauthorized,
	bridge.ECodeForbidden:         http.StatusForbidden,
	bridge.ECodeNotFound:          http.StatusNotFound,
	bridge.ECodePayloadTooLarge:   http.StatusRequestEntityTooLarge,
	bridge.ECodeRateLimited:       http.StatusTooManyRequests,
	bridge.ECodeBrokerUnavailable: http.StatusServiceUnavailable,
	bridge.ECodeStoreUnavailable:  http.StatusServiceUnavailable,
	bridge.ECodeTimeout:           http.StatusGatewayTimeout,
	bridge.ECodeBrokerRejected:    http.StatusBadGateway,
	bridge.ECodeInternal:          http.StatusInternalServerError,

	bridge.ECodeAlreadyAcknowledged: http.StatusConflict,
}

// errorBody is the JSON shape of every error.
type errorBody struct {
	Error wire.ErrorDetail `json:"error"`
}

// toError turns err into the status and body the client sees. Errors that
// are not *bridge.Error are internal: logged, and shown without detail.
func (s *Server) toError(c *gin.Context, err error) (int, errorBody) {
	d, ok := wire.Detail(err)
	if !ok {
		s.log.Error("internal error", "method", c.Request.Method, "path", c.FullPath(), "err", err)
	}
	status, known := statusOf[d.Code]
	if !known {
		status = http.StatusInternalServerError
	}
	return status, errorBody{d}
}

// fail writes err as the response and aborts the request. A 503 or 429
// says when to retry, a 401 how to authenticate.
func (s *Server) fail(c *gin.Context, err error) {
	status, body := s.toError(c, err)
	switch status {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		c.Header("Retry-After", retryAfter(err))
	case http.StatusUnauthorized:
		c.Header("WWW-Authenticate", `Bearer realm="mqttbridge"`)
	}
	c.AbortWithStatusJSON(status, body)
}

func invalid(format string, args ...any) error {
	return bridge.Errorf(bridge.ECodeInvalidRequest, format, args...)
}
