// Command gorilla-echo is a benchmark peer for moor: a WebSocket server on
// github.com/gorilla/websocket (Debian's golang-github-gorilla-websocket-dev),
// written the way the package's own examples are written.
//
//	GET /healthz  200 "ok\n" (plain HTTP, for readiness checks)
//	GET /echo     WebSocket: every message is sent back with its type
//	GET /sub      WebSocket: receives every message published on /pub
//	GET /pub      WebSocket: every message received is sent to every /sub
//
// usage: gorilla-echo [-addr 127.0.0.1:0] [-tls-cert F -tls-key F]
//
// With -tls-cert and -tls-key (PEM files: the chain, leaf first, and its
// key) the same endpoints are served over TLS (https, wss) by Go's
// crypto/tls with its defaults: TLS 1.2 and 1.3, session tickets on, no
// session cache, ALPN http/1.1 (HTTP/2 is not configured), and nothing
// tuned for memory.
//
// Once listening it prints one line to stdout:
//
//	gorilla listening on http://127.0.0.1:PORT (pid N)
//	gorilla listening on https://127.0.0.1:PORT (pid N)   (with TLS)
//
// It is one process. When pinned to one core the Go runtime already sets
// GOMAXPROCS to 1 (it reads the CPU affinity); the runner may also set
// GOMAXPROCS=1 in the environment. Build: bench/peers/build.sh.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/gorilla/websocket"
)

const (
	// maxMessage is the largest message accepted (gorilla closes with 1009
	// above it).
	maxMessage = 16 << 20
	// subQueueCap is the most bytes queued for one subscriber; a
	// subscriber that falls further behind is disconnected (moor's default
	// "disconnect" policy).
	subQueueCap = 8 << 20
)

var upgrader = websocket.Upgrader{
	// Zero buffer sizes: reuse the buffers net/http allocated for the
	// request. A write buffer pool releases the write buffer between
	// writes, as gorilla's documentation recommends for servers with many
	// connections.
	WriteBufferPool: &sync.Pool{},
	CheckOrigin:     func(*http.Request) bool { return true },
}

func upgrade(w http.ResponseWriter, r *http.Request) *websocket.Conn {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // Upgrade has already answered with an HTTP error
	}
	c.SetReadLimit(maxMessage)
	return c
}

func echo(w http.ResponseWriter, r *http.Request) {
	c := upgrade(w, r)
	if c == nil {
		return
	}
	defer c.Close()
	for {
		mt, p, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(mt, p); err != nil {
			return
		}
	}
}

// subscriber is one /sub connection: a bounded queue drained by its own
// writer goroutine.
type subscriber struct {
	c      *websocket.Conn
	mu     sync.Mutex
	queue  []*websocket.PreparedMessage
	bytes  int
	closed bool
	wake   chan struct{} // capacity 1
}

type hub struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

var theHub = hub{subs: make(map[*subscriber]struct{})}

// push queues pm for s; false if s is over its cap (the caller drops it).
func (s *subscriber) push(pm *websocket.PreparedMessage, n int) bool {
	s.mu.Lock()
	if s.closed || s.bytes+n > subQueueCap {
		s.mu.Unlock()
		return false
	}
	s.queue = append(s.queue, pm)
	s.bytes += n
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

func (s *subscriber) shutdown() {
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.c.Close() // unblocks the reader and any write in progress
}

func (h *hub) publish(mt int, p []byte) {
	// Framed once, written to every subscriber (gorilla's broadcast API).
	pm, err := websocket.NewPreparedMessage(mt, p)
	if err != nil {
		return
	}
	var drop []*subscriber
	h.mu.Lock()
	for s := range h.subs {
		if !s.push(pm, len(p)) {
			drop = append(drop, s)
		}
	}
	for _, s := range drop {
		delete(h.subs, s)
	}
	h.mu.Unlock()
	for _, s := range drop {
		s.shutdown()
	}
}

func (h *hub) remove(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

func sub(w http.ResponseWriter, r *http.Request) {
	c := upgrade(w, r)
	if c == nil {
		return
	}
	s := &subscriber{c: c, wake: make(chan struct{}, 1)}
	theHub.mu.Lock()
	theHub.subs[s] = struct{}{}
	theHub.mu.Unlock()

	// Writer: drains the queue until the subscriber is shut down.
	go func() {
		defer s.shutdown()
		var batch []*websocket.PreparedMessage
		for range s.wake {
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				return
			}
			batch, s.queue = s.queue, batch[:0]
			s.bytes = 0
			s.mu.Unlock()
			for i, pm := range batch {
				if err := c.WritePreparedMessage(pm); err != nil {
					return
				}
				batch[i] = nil
			}
		}
	}()

	// Reader: handles pings and the close frame; data is ignored.
	for {
		if _, _, err := c.NextReader(); err != nil {
			break
		}
	}
	theHub.remove(s)
	s.shutdown()
}

func pub(w http.ResponseWriter, r *http.Request) {
	c := upgrade(w, r)
	if c == nil {
		return
	}
	defer c.Close()
	for {
		mt, p, err := c.ReadMessage()
		if err != nil {
			return
		}
		theHub.publish(mt, p)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (host:port; port 0 picks a free one)")
	certFile := flag.String("tls-cert", "", "serve TLS with this certificate chain (PEM, leaf first)")
	keyFile := flag.String("tls-key", "", "the private key of -tls-cert (PEM)")
	flag.Parse()
	if (*certFile == "") != (*keyFile == "") {
		log.Fatal("gorilla-echo: -tls-cert and -tls-key go together")
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "ok\n")
	})
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/sub", sub)
	mux.HandleFunc("/pub", pub)

	scheme := "http"
	var cfg *tls.Config
	if *certFile != "" {
		// Loaded before listening, so a bad file fails at once.
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatalf("gorilla-echo: %v", err)
		}
		// crypto/tls's defaults; only the certificate and ALPN (what
		// http.Server.ServeTLS would set without HTTP/2) are given.
		cfg = &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"http/1.1"},
		}
		scheme = "https"
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("gorilla-echo: listen %s: %v", *addr, err)
	}
	fmt.Printf("gorilla listening on %s://%s (pid %d)\n", scheme, ln.Addr(), os.Getpid())
	os.Stdout.Sync()
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	log.Fatal(http.Serve(ln, mux))
}
