// Package relay tells the other nodes of the routes repository's nodes
// list that a new commit is on the followed branch, so that one push
// webhook (sent to the VIP, reaching one node) brings every node to the
// commit at once instead of at its next poll.
//
// A relay is a hint: a signed "commit X on ref B" (gitsource.RelayMessage,
// HMAC-SHA256 with a timestamp and a nonce) posted to each peer's
// webhook listener at gitsource.RelayPath. The peer looks at the remote
// itself; its own fetch and signature verification decide what it
// applies. A node relays what a push webhook, a poll or an operator made
// it find (Relays), never what a relay made it find, so a commit crosses
// each link at most once per sender.
//
// Deliveries run in the background, one per peer at a time, retried with
// jittered backoff for a bounded time; a peer that refuses the
// connection or answers 404 (a keepalived-only host, a node without
// gitedge) is skipped after a few tries, with one log line.
package relay
