package httpapi

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// statusOf is the one table from bridge error codes to HTTP statuses.
var statusOf = map[string]int{
	bridge.ECodeInvalidTopic:      http.StatusBadRequest,
	bridge.ECodeInvalidRequest:    http.StatusBadRequest,
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
}

// errorBody is the JSON shape of every error.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	ReasonCode *int   `json:"reason_code,omitempty"`
}

// toError turns err into the status and body the client sees. Errors that
// are not *bridge.Error are internal: logged, and shown without detail.
func (s *Server) toError(c *gin.Context, err error) (int, errorBody) {
	var e *bridge.Error
	if !errors.As(err, &e) {
		s.log.Error("internal error", "method", c.Request.Method, "path", c.FullPath(), "err", err)
		return http.StatusInternalServerError, errorBody{errorDetail{Code: bridge.ECodeInternal, Message: "internal error"}}
	}
	status, ok := statusOf[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	d := errorDetail{Code: e.Code, Message: e.Message}
	if e.ReasonCode != 0 {
		rc := int(e.ReasonCode)
		d.ReasonCode = &rc
	}
	return status, errorBody{d}
}

// fail writes err as the response and aborts the request. A 503 says when
// to retry.
func (s *Server) fail(c *gin.Context, err error) {
	status, body := s.toError(c, err)
	if status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "1")
	}
	c.AbortWithStatusJSON(status, body)
}

func invalid(format string, args ...any) error {
	return bridge.Errorf(bridge.ECodeInvalidRequest, format, args...)
}
