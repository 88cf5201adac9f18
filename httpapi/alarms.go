package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqttbridge/mqttbridge/bridge"
	"github.com/mqttbridge/mqttbridge/internal/wire"
)

// AlarmList is a page of open alarms, newest first.
type AlarmList struct {
	Alarms     []wire.Alarm `json:"alarms"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// alarmConflict is the 409 answer to an acknowledgment of an alarm
// acknowledged before: the error, and the alarm as it is.
type alarmConflict struct {
	Error wire.ErrorDetail `json:"error"`
	Alarm wire.Alarm       `json:"alarm"`
}

func (s *Server) routeAlarms(v1 *gin.RouterGroup) {
	v1.GET("/alarms", s.listAlarms)
	v1.GET("/alarms/:id", s.getAlarm)
	v1.POST("/alarms/:id/ack", s.ackAlarm)
}

// listAlarms is GET /v1/alarms.
func (s *Server) listAlarms(c *gin.Context) {
	if err := checkQuery(c, "filter", "state", "limit", "cursor"); err != nil {
		s.fail(c, err)
		return
	}
	q := c.Request.URL.Query()
	query := bridge.AlarmQuery{Filter: q.Get("filter"), State: q.Get("state"), Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(c, invalid("limit must be a number from 1 to 1000, not %q", v))
			return
		}
		query.Limit = n
	}
	alarms, next, err := s.bridge.ListAlarms(c, identity(c), query)
	if err != nil {
		s.fail(c, err)
		return
	}
	now := time.Now()
	out := AlarmList{Alarms: make([]wire.Alarm, 0, len(alarms)), NextCursor: next}
	for i := range alarms {
		out.Alarms = append(out.Alarms, wire.NewAlarm(&alarms[i], false, now))
	}
	c.JSON(http.StatusOK, out)
}

// getAlarm is GET /v1/alarms/{id}: the alarm with its history.
func (s *Server) getAlarm(c *gin.Context) {
	if err := checkQuery(c); err != nil {
		s.fail(c, err)
		return
	}
	a, err := s.bridge.GetAlarm(c, identity(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, wire.NewAlarm(&a, true, time.Now()))
}

// ackAlarm is POST /v1/alarms/{id}/ack with an optional body
// {"comment": "..."}.
func (s *Server) ackAlarm(c *gin.Context) {
	if err := checkQuery(c); err != nil {
		s.fail(c, err)
		return
	}
	var req struct {
		Comment string `json:"comment"`
	}
	if err := decodeOptionalJSON(c, 64<<10, &req); err != nil {
		s.fail(c, err)
		return
	}
	a, err := s.bridge.AckAlarm(c, identity(c), c.Param("id"), req.Comment)
	now := time.Now()
	switch {
	case bridge.ErrorCode(err) == bridge.ECodeAlreadyAcknowledged:
		d, _ := wire.Detail(err)
		c.AbortWithStatusJSON(http.StatusConflict, alarmConflict{Error: d, Alarm: wire.NewAlarm(&a, true, now)})
	case err != nil:
		s.fail(c, err)
	default:
		c.JSON(http.StatusOK, wire.NewAlarm(&a, true, now))
	}
}
