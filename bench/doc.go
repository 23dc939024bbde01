// Command bench measures gitedge's dataplane side by side with HAProxy
// and nginx (and Caddy for the HTTP scenarios) on one machine, on
// loopback only: the same routes directory — the config `gitedge proxy`
// loads — is translated into each peer's config, the same nginx backends
// answer, and wrk (Debian's) loads each proxy in turn, pinned as the
// proxy is (proxy on one core, load generator and backends on the other).
//
//	go run ./bench run [-scenarios ka,close,...] [-proxies haproxy,nginx,gitedge] [-rounds N] [-out DIR]
//	go run ./bench configs -routes DIR -out DIR   # haproxy.cfg, nginx.conf, Caddyfile
//	go run ./bench table DIR/results.jsonl         # the markdown table again
//
// -rounds defaults to the number of -proxies, so that each proxy runs in
// each place of a round once. The servers' own nginx config
// (backends.conf) is written by run only, in its results directory.
//
// `make bench` runs it with the defaults; docs/benchmarks.md holds the
// measured table and how to read it.
package main
