// gofcgi: the Go peer of bench/peers.sh, hello on Go's standard library
// net/http/fcgi (one goroutine per connection, requests on a kept-alive
// connection served in turn, the Go scheduler using GOMAXPROCS threads).
//
// Usage: gofcgi SOCKET-PATH
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gofcgi SOCKET-PATH")
		os.Exit(2)
	}
	os.Remove(os.Args[1])
	l, err := net.Listen("unix", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "Hello, world!\n")
	})
	if err := fcgi.Serve(l, hello); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
