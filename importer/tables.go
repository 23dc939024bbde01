package importer

import "github.com/gitedge/gitedge/importer/report"

// disposition is what the importer does with a directive or option it does
// not map: its severity and why.
type disposition struct {
	sev report.Severity
	why string
}

const (
	whyLog       = "logging: gitedge writes its own access log (gitedge proxy --access-log, or the daemon's structured log)"
	whyConn      = "connection handling: gitedge keeps client connections alive and pools server connections itself"
	whyErrPage   = "gitedge answers errors (400, 408, 502, 503, 504, …) with its own short responses; custom error pages are not carried over"
	whyStick     = "gitedge has no stick tables or persistence: a server is picked per connection by the backend's balance (balance source keeps a client on one server)"
	whyHTTPRules = "gitedge does not rewrite, redirect, deny or tag HTTP requests and responses: it routes by host and forwards as is"
	whyStats     = "HAProxy's statistics page: gitedge serves /status and /metrics on its admin listener"
	whyProcess   = "a process setting with no gitedge counterpart (gitedge runs under systemd, logs with slog and serves /status on its admin listener)"
)

// globalDropped are global keywords that change traffic, reported one by
// one; every other global keyword is a process setting, noted together.
var globalDropped = map[string]string{
	"maxconnrate":         "gitedge has no connection rate limit",
	"maxsessrate":         "gitedge has no session rate limit",
	"maxsslconn":          "gitedge does not terminate TLS",
	"maxsslrate":          "gitedge does not terminate TLS",
	"lua-load":            "gitedge runs no Lua",
	"lua-load-per-thread": "gitedge runs no Lua",
	"set-var":             "gitedge has no variables",
	"ssl-engine":          "gitedge does not terminate TLS",
	"spread-checks":       "gitedge spaces its health checks itself",
}

// optionDispositions covers the options the importer does not map.
var optionDispositions = map[string]disposition{
	"httplog": {report.Note, whyLog}, "tcplog": {report.Note, whyLog}, "httpslog": {report.Note, whyLog},
	"dontlognull": {report.Note, whyLog}, "dontlog-normal": {report.Note, whyLog}, "log-separate-errors": {report.Note, whyLog},
	"logasap": {report.Note, whyLog}, "log-health-checks": {report.Note, whyLog}, "socket-stats": {report.Note, whyLog},
	"contstats":         {report.Note, whyLog},
	"http-server-close": {report.Note, whyConn}, "http-keep-alive": {report.Note, whyConn}, "httpclose": {report.Note, whyConn},
	"http-pretend-keepalive": {report.Note, whyConn}, "forceclose": {report.Note, whyConn}, "http-no-delay": {report.Note, whyConn},
	"splice-auto": {report.Note, "gitedge splices tunnels and bodies itself"}, "splice-request": {report.Note, "gitedge splices tunnels and bodies itself"},
	"splice-response":    {report.Note, "gitedge splices tunnels and bodies itself"},
	"http-ignore-probes": {report.Note, whyLog}, "http-use-htx": {report.Note, "HAProxy internals"},
	"abortonclose":                 {report.Dropped, "gitedge does not abort queued requests whose client closed"},
	"allbackups":                   {report.Dropped, "gitedge has no backup servers"},
	"persist":                      {report.Dropped, whyStick},
	"prefer-last-server":           {report.Dropped, whyStick},
	"originalto":                   {report.Dropped, "gitedge does not add X-Original-To"},
	"tcpka":                        {report.Dropped, "gitedge does not set TCP keep-alive on its sockets"},
	"clitcpka":                     {report.Dropped, "gitedge does not set TCP keep-alive on its sockets"},
	"srvtcpka":                     {report.Dropped, "gitedge does not set TCP keep-alive on its sockets"},
	"transparent":                  {report.Dropped, "gitedge does not connect transparently"},
	"nolinger":                     {report.Dropped, "gitedge closes sockets normally"},
	"checkcache":                   {report.Dropped, "gitedge does not inspect cache headers"},
	"http-buffer-request":          {report.Dropped, "gitedge streams request bodies without buffering them first"},
	"accept-invalid-http-request":  {report.Dropped, "gitedge refuses malformed requests"},
	"accept-invalid-http-response": {report.Dropped, "gitedge refuses malformed responses"},
	"independent-streams":          {report.Dropped, "gitedge has one idle timeout per direction pair"},
	"redis-check":                  {report.Changed, "gitedge checks with a TCP connect"}, "mysql-check": {report.Changed, "gitedge checks with a TCP connect"},
	"pgsql-check": {report.Changed, "gitedge checks with a TCP connect"}, "smtpchk": {report.Changed, "gitedge checks with a TCP connect"},
	"ldap-check": {report.Changed, "gitedge checks with a TCP connect"}, "tcp-check": {report.Changed, "gitedge checks with a TCP connect"},
	"external-check": {report.Dropped, "gitedge runs no check scripts"}, "spop-check": {report.Changed, "gitedge checks with a TCP connect"},
	"h1-case-adjust-bogus-client": {report.Note, "HAProxy internals"}, "h1-case-adjust-bogus-server": {report.Note, "HAProxy internals"},
	"disable-h2-upgrade": {report.Note, "gitedge speaks HTTP/1.x to clients"},
}

// directiveDispositions covers proxy keywords the importer does not map.
var directiveDispositions = map[string]disposition{
	"log": {report.Note, whyLog}, "log-format": {report.Note, whyLog}, "log-format-sd": {report.Note, whyLog},
	"log-tag": {report.Note, whyLog}, "error-log-format": {report.Note, whyLog}, "capture": {report.Note, whyLog},
	"declare": {report.Note, whyLog}, "unique-id-format": {report.Dropped, "gitedge adds no unique-id header"},
	"unique-id-header": {report.Dropped, "gitedge adds no unique-id header"},
	"description":      {report.Note, "descriptive only"}, "id": {report.Note, "HAProxy's numeric proxy id"},
	"bind-process": {report.Note, "HAProxy internals"}, "grace": {report.Note, "HAProxy internals"},
	"errorfile": {report.Dropped, whyErrPage}, "errorfiles": {report.Dropped, whyErrPage}, "errorloc": {report.Dropped, whyErrPage},
	"errorloc302": {report.Dropped, whyErrPage}, "errorloc303": {report.Dropped, whyErrPage}, "http-error": {report.Dropped, whyErrPage},
	"stick-table": {report.Dropped, whyStick}, "stick": {report.Dropped, whyStick}, "cookie": {report.Dropped, whyStick},
	"force-persist": {report.Dropped, whyStick}, "ignore-persist": {report.Dropped, whyStick}, "persist": {report.Dropped, whyStick},
	"http-request": {report.Dropped, whyHTTPRules}, "http-response": {report.Dropped, whyHTTPRules},
	"http-after-response": {report.Dropped, whyHTTPRules}, "redirect": {report.Dropped, whyHTTPRules},
	"compression": {report.Dropped, "gitedge does not compress responses"}, "filter": {report.Dropped, "gitedge has no filters"},
	"use-server":             {report.Dropped, "gitedge picks servers by the backend's balance only"},
	"fullconn":               {report.Dropped, "gitedge has no dynamic maxconn"},
	"rate-limit":             {report.Dropped, "gitedge has no rate limit"},
	"monitor-uri":            {report.Dropped, "gitedge serves /healthz and /readyz on its admin listener"},
	"monitor":                {report.Dropped, "gitedge serves /healthz and /readyz on its admin listener"},
	"monitor-net":            {report.Dropped, "gitedge serves /healthz and /readyz on its admin listener"},
	"stats":                  {report.Dropped, whyStats},
	"source":                 {report.Dropped, "gitedge connects from the system's default source address"},
	"dispatch":               {report.Dropped, "write the address as a server"},
	"http-reuse":             {report.Note, whyConn},
	"email-alert":            {report.Dropped, "gitedge notifies through the node config's notify section"},
	"server-template":        {report.Dropped, "gitedge needs each server written out with its address"},
	"server-state-file-name": {report.Note, "HAProxy internals"}, "load-server-state-from-file": {report.Note, "HAProxy internals"},
	"external-check":        {report.Dropped, "gitedge runs no check scripts"},
	"tcp-response":          {report.Dropped, "gitedge does not inspect responses"},
	"hash-type":             {report.Changed, "gitedge hashes the client address its own way: balance source keeps each client on one server, but not on the one HAProxy picked"},
	"hash-balance-factor":   {report.Dropped, "gitedge hashes the client address its own way"},
	"enabled":               {report.Note, "the proxy is enabled"},
	"disabled":              {report.Dropped, "a disabled proxy: gitedge serves every listener it declares; remove it if it should not serve"},
	"http-check":            {report.Dropped, "gitedge's http check sends GET to its path and counts any 2xx or 3xx as healthy"},
	"option":                {report.Dropped, "unknown option"},
	"acl":                   {report.Note, "used only by rules that are reported where they are"},
	"balance":               {report.Note, "no effect"},
	"max-keep-alive-queue":  {report.Note, whyConn},
	"max-session-srv-conns": {report.Note, whyConn},
	"retry-on":              {report.Changed, "gitedge retries on connection failures only"},
	"guid":                  {report.Note, "HAProxy internals"},
	"http-send-name-header": {report.Dropped, whyHTTPRules},
}
