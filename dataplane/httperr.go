package dataplane

import (
	"errors"
	"fmt"
	"net/http"
)

// Why the proxy answered or cut a request itself (the access log's error;
// the dynamic ones are built where they happen).
var (
	errNoRoute       = errors.New("no route and no default backend")
	errDrainCut      = errors.New("the drain closed the connection before the request reached a server")
	errHeadTimeout   = errors.New("no complete request head within requestTimeout")
	errRespTimeout   = errors.New("no response head from the server within the backend's idleTimeout")
	errUnaskedSwitch = errors.New("the server switched protocols (101) for a request that did not ask to, or before its body")
	errCodedFor10    = errors.New("a response coded besides chunked (gzip, chunked) for an HTTP/1.0 client")
)

// The proxy's own answers, built once, worded as HAProxy words them so an
// operator recognises them.
var errorMessages = map[int]string{
	400: "Your browser sent an invalid request.",
	403: "Request forbidden by administrative rules.",
	405: "Method not allowed.",
	408: "Your browser didn't send a complete request in time.",
	431: "Request header fields too large.",
	500: "An internal server error occurred.",
	501: "The request uses a transfer coding this proxy does not implement.",
	502: "The server returned an invalid or incomplete response.",
	503: "No server is available to handle this request.",
	504: "The server didn't respond in time.",
	505: "HTTP version not supported.",
	508: "The request came back to this proxy: a backend leads to the proxy itself.",
}

var cannedClose, cannedKeep = map[int][]byte{}, map[int][]byte{}

func init() {
	for code, msg := range errorMessages {
		body := fmt.Sprintf("<html><body><h1>%d %s</h1>\n%s\n</body></html>\n", code, http.StatusText(code), msg)
		head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Length: %d\r\nCache-Control: no-cache\r\nContent-Type: text/html\r\n", code, http.StatusText(code), len(body))
		cannedClose[code] = []byte(head + "Connection: close\r\n\r\n" + body)
		cannedKeep[code] = []byte(head + "\r\n" + body)
	}
}

// errorResponse returns the proxy's answer with that status.
func errorResponse(status int, keepAlive bool) []byte {
	if _, ok := errorMessages[status]; !ok {
		status = 500
	}
	if keepAlive {
		return cannedKeep[status]
	}
	return cannedClose[status]
}
