// Command probe prints the netpoll order of the runtime it was built with
// (netpollorder_test.go builds it with and without the overlay).
package main

import (
	"fmt"

	"github.com/gitedge/gitedge/internal/netpollorder"
)

func main() { fmt.Println(netpollorder.Order()) }
