package e2e

import (
	"net"
	"time"
)

func dial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 200*time.Millisecond) }
