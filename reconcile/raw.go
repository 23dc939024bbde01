package reconcile

// The raw structs mirror the YAML format (docs/repository.md) exactly. Durations,
// sizes and addresses stay strings here; pointers mark fields where unset
// differs from zero. convert.go turns them into the subsystems' types.

import "github.com/gitedge/gitedge/secrets"

const apiVersion = "gitedge/v1"

type rawMeta struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type rawHeader struct {
	APIVersion string  `json:"apiVersion"`
	Kind       string  `json:"kind"`
	Metadata   rawMeta `json:"metadata"`
}

type edgeDoc struct {
	rawHeader
	Spec *rawEdge `json:"spec"`
}

type backendDoc struct {
	rawHeader
	Spec *rawBackend `json:"spec"`
}

type routeDoc struct {
	rawHeader
	Spec *rawRoute `json:"spec"`
}

type vmDoc struct {
	rawHeader
	Spec *rawVM `json:"spec"`
}

type rawEdge struct {
	Nodes     []rawNode     `json:"nodes"`
	Failover  []rawInstance `json:"failover"`
	Listeners []rawListener `json:"listeners"`
	Infra     *rawInfra     `json:"infra"`
	BGP       *rawBGP       `json:"bgp"`
}

type rawNode struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

type rawInstance struct {
	Name            string         `json:"name"`
	Interface       string         `json:"interface"`
	VirtualRouterID *int           `json:"virtualRouterID"`
	Version         *int           `json:"version"`
	AdvertInterval  string         `json:"advertInterval"`
	Priority        map[string]int `json:"priority"`
	Preempt         *bool          `json:"preempt"`
	PreemptDelay    string         `json:"preemptDelay"`
	Auth            *rawAuth       `json:"auth"`
	UnicastPeers    bool           `json:"unicastPeers"`
	VIPs            []string       `json:"vips"`
	Track           *rawTrack      `json:"track"`
	GARP            *rawGARP       `json:"garp"`
}

type rawAuth struct {
	Type     string        `json:"type"`
	Password secrets.Value `json:"password"` // the value, {secret: NAME} or {age: ARMOR}
}

type rawTrack struct {
	Proxy      bool     `json:"proxy"`
	Interfaces []string `json:"interfaces"`
}

type rawGARP struct {
	Repeat  *int   `json:"repeat"`
	Delay   string `json:"delay"`
	Refresh string `json:"refresh"`
}

type rawListener struct {
	Name           string   `json:"name"`
	Bind           string   `json:"bind"`
	Mode           string   `json:"mode"`
	DefaultBackend string   `json:"defaultBackend"`
	ForwardFor     bool     `json:"forwardFor"`
	InspectTimeout string   `json:"inspectTimeout"`
	AcceptProxy    []string `json:"acceptProxy"`
	RequestTimeout string   `json:"requestTimeout"`
	ClientTimeout  string   `json:"clientTimeout"`
	MaxHeaderBytes *int     `json:"maxHeaderBytes"`
	DrainTimeout   string   `json:"drainTimeout"`
	MaxConn        *int     `json:"maxConn"`
	DeferAccept    *bool    `json:"deferAccept"`
}

type rawInfra struct {
	Leader string `json:"leader"`
	Prune  bool   `json:"prune"`
}

// rawBGP is spec.bgp. AS numbers and MEDs are int64 so that a value
// outside 32 bits gets a located error rather than a decoding one.
type rawBGP struct {
	ASN      *int64            `json:"asn"`
	RouterID map[string]string `json:"routerID"`
	Peers    []rawBGPPeer      `json:"peers"`
	Announce []rawAnnounce     `json:"announce"`
}

type rawBGPPeer struct {
	Address     string        `json:"address"`
	ASN         *int64        `json:"asn"`
	HoldTime    string        `json:"holdTime"`
	RestartTime string        `json:"restartTime"`
	Password    secrets.Value `json:"password"` // the value, {secret: NAME} or {age: ARMOR}
	Port        *int          `json:"port"`
	BFD         bool          `json:"bfd"`
}

type rawAnnounce struct {
	Prefix      string            `json:"prefix"`
	Track       *rawAnnounceTrack `json:"track"`
	Communities []string          `json:"communities"`
	MED         map[string]int64  `json:"med"`
}

type rawAnnounceTrack struct {
	Proxy bool `json:"proxy"`
}

type rawBackend struct {
	Balance        string          `json:"balance"`
	ProxyProtocol  string          `json:"proxyProtocol"`
	ConnectTimeout string          `json:"connectTimeout"`
	QueueTimeout   string          `json:"queueTimeout"`
	MaxQueue       *int            `json:"maxQueue"`
	IdleTimeout    string          `json:"idleTimeout"`
	Retries        *int            `json:"retries"`
	HealthCheck    *rawHealthCheck `json:"healthCheck"`
	Servers        []rawServer     `json:"servers"`
}

type rawHealthCheck struct {
	Type     string `json:"type"`
	Path     string `json:"path"`
	Host     string `json:"host"`
	Interval string `json:"interval"`
	Timeout  string `json:"timeout"`
	Rise     *int   `json:"rise"`
	Fall     *int   `json:"fall"`
}

type rawServer struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Weight  *int   `json:"weight"`
	MaxConn *int   `json:"maxConn"`
}

type rawRoute struct {
	Hosts []string     `json:"hosts"`
	HTTP  *rawRouteUse `json:"http"`
	TLS   *rawRouteUse `json:"tls"`
}

type rawRouteUse struct {
	Backend string `json:"backend"`
}

type rawVM struct {
	VMID          *int          `json:"vmid"`
	Node          string        `json:"node"`
	Clone         string        `json:"clone"`
	CPU           string        `json:"cpu"`
	Cores         *int          `json:"cores"`
	Memory        *int          `json:"memory"`
	OnBoot        bool          `json:"onBoot"`
	Agent         bool          `json:"agent"`
	Description   string        `json:"description"`
	Disk          *rawDisk      `json:"disk"`
	Network       []rawNIC      `json:"network"`
	CloudInit     *rawCloudInit `json:"cloudInit"`
	Serial        string        `json:"serial"`
	VGA           string        `json:"vga"`
	HA            *rawHA        `json:"ha"`
	IgnoreChanges []string      `json:"ignoreChanges"`
}

type rawDisk struct {
	Bus     string `json:"bus"`
	Storage string `json:"storage"`
	Size    string `json:"size"`
	Format  string `json:"format"`
}

type rawNIC struct {
	Model  string `json:"model"`
	Bridge string `json:"bridge"`
	VLAN   *int   `json:"vlan"`
}

type rawCloudInit struct {
	User         string       `json:"user"`
	IPConfig     *rawIPConfig `json:"ipConfig"`
	Nameserver   string       `json:"nameserver"`
	SearchDomain string       `json:"searchDomain"`
	SSHKeys      []string     `json:"sshKeys"`
}

type rawIPConfig struct {
	IP      string `json:"ip"` // CIDR or "dhcp"
	Gateway string `json:"gateway"`
}

type rawHA struct {
	Group string `json:"group"`
	State string `json:"state"`
}
