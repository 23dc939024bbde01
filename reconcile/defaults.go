package reconcile

import "time"

// Defaults for every optional field of the repository format. They are
// applied in convert.go and nowhere else; the subsystems receive configs
// with every value filled.
const (
	// Listener
	defInspectTimeout = 5 * time.Second  // HAProxy tcp-request inspect-delay as in the seed's backends
	defRequestTimeout = 10 * time.Second // HAProxy timeout http-request
	defClientTimeout  = 60 * time.Second // HAProxy timeout client (idle keep-alive)
	defMaxHeaderBytes = 32 << 10
	defDrainTimeout   = 30 * time.Second

	// Backend
	defBalance        = "roundrobin"
	defProxyProtocol  = "none"
	defConnectTimeout = 5 * time.Second // HAProxy's usual timeout connect 5000
	defQueueTimeout   = 5 * time.Second
	defIdleTimeout    = 60 * time.Second
	defRetries        = 2
	defWeight         = 1
	defCheckInterval  = 2 * time.Second // HAProxy inter 2s
	defCheckTimeout   = 1 * time.Second
	defCheckRise      = 2 // HAProxy rise 2
	defCheckFall      = 3 // HAProxy fall 3
	defCheckPath      = "/"

	// VRRP
	defVRRPVersion    = 3
	defAdvertInterval = time.Second
	defPreempt        = true
	defGARPRepeat     = 5               // keepalived garp_master_repeat
	defGARPDelay      = 5 * time.Second // keepalived garp_master_delay
	defGARPRefresh    = 60 * time.Second

	// VirtualMachine
	defCores  = 1
	defMemory = 512 // MiB, Proxmox's default
)
