// Command go-http-idle is a benchmark peer for moor's HTTP client: the
// idle-pool memory of Go's net/http Transport (issue 15).
//
// It makes one warm-up request (so the HTTP and TLS code is paged in and
// the runtime has grown past its start-up heap), closes that connection,
// reads its own VmRSS from /proc/self/status, then fires --conns GETs at
// once, each from its own goroutine, on one Transport whose limits allow
// --conns connections to the host and --conns idle ones. Each body is read
// to the end and closed, so every connection goes back to the pool. Once
// all have answered it waits --settle, reads VmRSS again, and holds the
// idle pool for --hold. The server must hold each request long enough for
// all --conns to be in flight at once (bench/nginx_http.py's /hold);
// otherwise a request takes a connection another one has freed and fewer
// connections are made. distinct_conns counts the new connections
// (httptrace GotConn with Reused false), so that shows.
//
// bytes_per_conn is (rss_after - rss_before) / conns: the measure.
// It includes memory the burst used and freed but the runtime kept (the
// requests' goroutine stacks, buffers). live_per_conn is the growth of
// what the runtime has in use (live heap and stacks, after a collection;
// read after the hold) / conns: what the idle pool itself holds.
//
// usage: go-http-idle --url URL [--conns 1000] [--hold 2s] [--settle 500ms]
//
//	[--ca FILE | --insecure] [--warmup-url URL]
//
// The warm-up request goes to --warmup-url (default --url): a runner that
// counts the server's connections to --url sends it elsewhere on the same
// server.
//
// Prints one JSON line to stdout:
//
//	{"client":"go-nethttp","conns":N,"distinct_conns":N,"rss_before":B,
//	 "rss_after":A,"bytes_per_conn":(A-B)/N, ...}
//
// and, on stderr, "holding N idle connections for D" when the hold starts
// (a runner may count the sockets then). Exits 1 if any request failed.
// HTTP/1.1 only (HTTP/2 is not attempted). Build: bench/peers/build.sh.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is the JSON line printed at the end (the same fields as
// curl_idle's).
type result struct {
	Client        string  `json:"client"`
	Version       string  `json:"version"`
	URL           string  `json:"url"`
	Conns         int     `json:"conns"`
	DistinctConns int64   `json:"distinct_conns"`
	Errors        int64   `json:"errors"`
	RSSBefore     int64   `json:"rss_before"`
	RSSAfter      int64   `json:"rss_after"`
	RSSHeld       int64   `json:"rss_held"`
	BytesPerConn  int64   `json:"bytes_per_conn"`
	LiveBefore    int64   `json:"live_before"`
	LiveAfter     int64   `json:"live_after"`
	LivePerConn   int64   `json:"live_per_conn"`
	OpenS         float64 `json:"open_s"`
	HoldS         float64 `json:"hold_s"`
	Error         string  `json:"error,omitempty"`
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-http-idle: "+format+"\n", a...)
	os.Exit(1)
}

// vmRSS is this process's VmRSS in bytes.
func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fail("%v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(line)
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				fail("bad VmRSS line %q", line)
			}
			return kb * 1024
		}
	}
	fail("no VmRSS in /proc/self/status")
	return 0
}

// liveBytes is the memory the Go runtime has in use after a full
// collection: live heap objects (HeapAlloc) and goroutine stacks
// (StackInuse). Unlike VmRSS it leaves out what was freed and not yet
// returned to the kernel. Read after each VmRSS reading, never before one.
func liveBytes() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}

// get makes one GET, reads the body to the end and closes it; counts a
// new connection in *fresh.
func get(client *http.Client, url string, fresh *int64) error {
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				atomic.AddInt64(fresh, 1)
			}
		},
	}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func main() {
	url := flag.String("url", "", "URL to GET (http:// or https://)")
	conns := flag.Int("conns", 1000, "concurrent requests, so connections")
	hold := flag.Duration("hold", 2*time.Second, "how long to hold the idle pool")
	settle := flag.Duration("settle", 500*time.Millisecond, "wait before each VmRSS reading")
	insecure := flag.Bool("insecure", false, "do not verify the server's certificate")
	ca := flag.String("ca", "", "PEM file of the CA that signed the server's certificate")
	warmURL := flag.String("warmup-url", "", "URL of the warm-up request (default --url)")
	flag.Parse()
	if *url == "" || *conns < 1 {
		fail("usage: go-http-idle --url URL [--conns N] [--hold D] [--ca FILE | --insecure]")
	}
	n := *conns
	if *warmURL == "" {
		warmURL = url
	}

	tlsConf := &tls.Config{InsecureSkipVerify: *insecure}
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			fail("%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fail("no certificate in %s", *ca)
		}
		tlsConf.RootCAs = pool
	}
	// http.DefaultTransport's settings, with the pool's limits raised to
	// n and no idle timeout; HTTP/1.1 only (no ForceAttemptHTTP2), as
	// moor's client.
	tr := &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		MaxIdleConns:          n,
		MaxIdleConnsPerHost:   n,
		MaxConnsPerHost:       n,
		IdleConnTimeout:       0,
	}
	client := &http.Client{Transport: tr}

	// Warm-up: one request, then its connection closed, so that every
	// one of the n below is a new connection.
	var warm int64
	if err := get(client, *warmURL, &warm); err != nil {
		fail("warm-up GET %s: %v", *warmURL, err)
	}
	tr.CloseIdleConnections()
	time.Sleep(*settle)
	before := vmRSS()
	liveBefore := liveBytes()

	var fresh, errs int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := make(chan struct{})
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer wg.Done()
			<-start
			if err := get(client, *url, &fresh); err != nil {
				if atomic.AddInt64(&errs, 1) == 1 {
					firstErr.Store(err.Error())
				}
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	openS := time.Since(t0).Seconds()
	time.Sleep(*settle)
	after := vmRSS()

	fmt.Fprintf(os.Stderr, "holding %d idle connections for %v\n", fresh, *hold)
	time.Sleep(*hold)
	held := vmRSS()
	liveAfter := liveBytes()
	runtime.KeepAlive(tr)

	out := result{
		Client:        "go-nethttp",
		Version:       runtime.Version(),
		URL:           *url,
		Conns:         n,
		DistinctConns: fresh,
		Errors:        errs,
		RSSBefore:     before,
		RSSAfter:      after,
		RSSHeld:       held,
		BytesPerConn:  (after - before + int64(n)/2) / int64(n),
		LiveBefore:    liveBefore,
		LiveAfter:     liveAfter,
		LivePerConn:   (liveAfter - liveBefore + int64(n)/2) / int64(n),
		OpenS:         openS,
		HoldS:         hold.Seconds(),
	}
	if errs > 0 {
		out.Error, _ = firstErr.Load().(string)
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
	if errs > 0 {
		os.Exit(1)
	}
}
