// Command bench measures gitedge's dataplane side by side with HAProxy
// and nginx (and Caddy for the HTTP scenarios) on one machine, on
// loopback only: the same routes directory — the config `gitedge proxy`
// loads — is translated into each peer's config, the same nginx backends
// answer, and wrk (Debian's) loads each proxy in turn, pinned as the
// proxy is (proxy on one core, load generator and backends on the other).
//
//	go run ./bench run [-scenarios ka,close,...] [-proxies haproxy,nginx,gitedge] [-rounds 3] [-out DIR]
//	go run ./bench configs -routes DIR -out DIR   # haproxy.cfg, nginx.conf, Caddyfile, backends.conf
//	go run ./bench table DIR/results.jsonl         # the markdown table again
//
// `make bench` runs it with the defaults; docs/benchmarks.md holds the
// measured table and how to read it.
package main
