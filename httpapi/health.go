package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz is 200 only when every broker is connected and subscribed and the
// store answers; else 503 with the reasons.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c, 2*time.Second)
	defer cancel()
	if problems := s.bridge.Problems(ctx); len(problems) > 0 {
		c.Header("Retry-After", "1")
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not_ready", "reasons": problems})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "reasons": []string{}})
}

func (s *Server) spec(c *gin.Context) {
	c.Data(http.StatusOK, "application/yaml", s.cfg.Spec)
}
