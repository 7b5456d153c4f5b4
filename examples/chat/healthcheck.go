package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// healthcheck is "chat healthcheck", the container's HEALTHCHECK (the
// image has no shell or curl): it GETs /readyz on ADDR's port on loopback
// and returns the exit status, 0 when ready, 1 otherwise (with the reason
// on stderr).
func healthcheck() int {
	_, port, err := net.SplitHostPort(envOr("ADDR", ":8080"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck: ADDR:", err)
		return 1
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort("127.0.0.1", port) + "/readyz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "healthcheck: /readyz answered", resp.Status)
		return 1
	}
	return 0
}
