// Package mqtttest starts a real mosquitto broker for tests and watches what it holds.
package mqtttest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Broker is a mosquitto process on a loopback port, without persistence:
// a restart loses every retained message, as a real broker without
// persistence does.
type Broker struct {
	t     testing.TB
	port  int
	dir   string
	extra string // more mosquitto.conf lines, e.g. TLS or a password file
	tls   bool
	// persistent: the broker keeps retained messages and sessions across
	// a restart (StartPersistent), and is stopped gracefully to save them.
	persistent bool
	cmd        *exec.Cmd
	done       chan struct{}
}

// StartWith runs mosquitto with extra configuration lines below its
// listener (cafile, certfile, password_file, …); tls says whether the
// listener speaks TLS, for URL.
func StartWith(t testing.TB, extra string, tls bool) *Broker {
	t.Helper()
	b := Prepare(t)
	b.extra, b.tls = extra, tls
	b.start()
	return b
}

// Dir is a private directory for the broker's files.
func (b *Broker) Dir() string { return b.dir }

// mosquittoPath finds the broker binary; Debian puts it in /usr/sbin,
// which is not always on PATH.
func mosquittoPath() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("mosquitto not found: install it (apt-get install mosquitto) or run ./test.sh")
}

// Start runs mosquitto on a free loopback port until the test ends. It
// fails the test when mosquitto is missing: these tests are not optional.
func Start(t testing.TB) *Broker {
	t.Helper()
	b := Prepare(t)
	b.start()
	return b
}

// Prepare picks a port for a broker without starting it, to test clients
// that start before their broker; Begin starts it.
func Prepare(t testing.TB) *Broker {
	t.Helper()
	b := &Broker{t: t, port: freePort(t), dir: t.TempDir()}
	t.Cleanup(b.Stop)
	return b
}

// Begin starts a prepared broker.
func (b *Broker) Begin() {
	b.t.Helper()
	b.start()
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (b *Broker) start() {
	b.t.Helper()
	bin, err := mosquittoPath()
	if err != nil {
		b.t.Fatal(err)
	}
	conf := filepath.Join(b.dir, "mosquitto.conf")
	persistence := "persistence false\n"
	if b.persistent {
		persistence = fmt.Sprintf("persistence true\npersistence_location %s/\n", b.dir)
	}
	body := fmt.Sprintf("listener %d 127.0.0.1\n%slog_dest stderr\nlog_type error\n", b.port, persistence)
	if !strings.Contains(b.extra, "password_file") {
		body += "allow_anonymous true\n"
	}
	body += b.extra
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		b.t.Fatal(err)
	}
	var lastErr error
	// The port can be taken between freePort and here, or still be in
	// TIME_WAIT after a restart: retry briefly.
	for range 50 {
		cmd := exec.Command(bin, "-c", conf)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		if waitPort(b.port, done, 5*time.Second) {
			b.cmd, b.done = cmd, done
			return
		}
		cmd.Process.Kill()
		<-done
		lastErr = fmt.Errorf("mosquitto did not listen on %d: %s", b.port, strings.TrimSpace(stderr.String()))
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatal(lastErr)
}

func waitPort(port int, exited <-chan struct{}, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// URL is the broker's tcp:// URL.
func (b *Broker) URL() string {
	if b.tls {
		return fmt.Sprintf("ssl://localhost:%d", b.port)
	}
	return fmt.Sprintf("tcp://127.0.0.1:%d", b.port)
}

// StartPersistent runs mosquitto with persistence: retained messages,
// sessions and the messages queued for them survive Stop and Restart, as
// on most brokers in use.
func StartPersistent(t testing.TB) *Broker {
	t.Helper()
	b := Prepare(t)
	b.persistent = true
	b.start()
	return b
}

// Stop kills the broker abruptly, dropping every connection without a
// DISCONNECT. A persistent broker is stopped with SIGTERM, which saves
// what it holds; its clients are dropped the same way.
func (b *Broker) Stop() {
	if b.cmd == nil {
		return
	}
	if b.persistent {
		b.cmd.Process.Signal(syscall.SIGTERM)
	} else {
		b.cmd.Process.Kill()
	}
	<-b.done
	b.cmd = nil
}

// Restart stops the broker and starts an empty one on the same port.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// Message is one message a Watcher saw.
type Message struct {
	Topic    string
	Payload  string
	Retained bool
	At       time.Time // when the watcher received it
}

// Watcher is an MQTT client that records every message on a filter.
type Watcher struct {
	t   testing.TB
	cli mqtt.Client
	mu  sync.Mutex
	all []Message
	// last holds the latest message per topic; a deleted retained topic
	// (empty payload) stays, with an empty payload.
	last map[string]Message
	note chan struct{}
}

// Watch subscribes to filter on url and records until the test ends.
func Watch(t testing.TB, url, filter string) *Watcher {
	t.Helper()
	return WatchQoS(t, url, filter, 1)
}

// WatchQoS is Watch with a subscription of the given QoS. QoS 0 takes a
// flood without mosquitto's per-client queue limit (max_queued_messages,
// 1,000 by default) dropping part of it.
func WatchQoS(t testing.TB, url, filter string, qos byte) *Watcher {
	t.Helper()
	return watch(t, url, filter, qos, "")
}

func watch(t testing.TB, url, filter string, qos byte, session string) *Watcher {
	t.Helper()
	w := &Watcher{t: t, last: map[string]Message{}, note: make(chan struct{}, 1)}
	id := session
	if id == "" {
		id = fmt.Sprintf("watch-%d", time.Now().UnixNano())
	}
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).
		SetCleanSession(session == "").SetResumeSubs(session != "").SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(200 * time.Millisecond).SetOrderMatters(true)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		c.Subscribe(filter, qos, func(_ mqtt.Client, m mqtt.Message) {
			w.mu.Lock()
			msg := Message{Topic: m.Topic(), Payload: string(m.Payload()), Retained: m.Retained(), At: time.Now()}
			w.all = append(w.all, msg)
			w.last[msg.Topic] = msg
			w.mu.Unlock()
			select {
			case w.note <- struct{}{}:
			default:
			}
		})
	})
	w.cli = mqtt.NewClient(opts)
	if tok := w.cli.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	t.Cleanup(func() { w.cli.Disconnect(0) })
	return w
}

// WatchSession is Watch with a persistent session (QoS 1, clean session
// off) under the client id id: a persistent broker queues what arrives
// while the watcher is away, even across its restart, so no message sent
// while the watcher reconnects is missed.
func WatchSession(t testing.TB, url, filter, id string) *Watcher {
	t.Helper()
	return watch(t, url, filter, 1, id)
}

// Publish sends a message from the watcher's own client.
func (w *Watcher) Publish(topic, payload string, retain bool) {
	w.t.Helper()
	tok := w.cli.Publish(topic, 1, retain, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		w.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// All returns every message seen so far.
func (w *Watcher) All() []Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Message(nil), w.all...)
}

// Last returns the latest message on topic.
func (w *Watcher) Last(topic string) (Message, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.last[topic]
	return m, ok
}

// Reset forgets everything seen so far.
func (w *Watcher) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all, w.last = nil, map[string]Message{}
}

// WaitFor waits until cond holds for the messages seen, or fails the test
// after within.
func (w *Watcher) WaitFor(within time.Duration, what string, cond func(last map[string]Message) bool) {
	w.t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		snap := make(map[string]Message, len(w.last))
		for k, v := range w.last {
			snap[k] = v
		}
		w.mu.Unlock()
		if cond(snap) {
			return
		}
		select {
		case <-w.note:
		case <-tick.C:
		case <-deadline.C:
			w.t.Fatalf("timed out after %s waiting for %s", within, what)
		}
	}
}

// Retained connects a fresh client, collects every retained message on
// filter, and returns them by topic: what a newcomer to the broker sees.
func Retained(t testing.TB, url, filter string, settle time.Duration) map[string]string {
	t.Helper()
	out := map[string]string{}
	var mu sync.Mutex
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("retained-%d", time.Now().UnixNano())).SetCleanSession(true)
	cli := mqtt.NewClient(opts)
	if tok := cli.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer cli.Disconnect(0)
	tok := cli.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		if m.Retained() {
			mu.Lock()
			out[m.Topic()] = string(m.Payload())
			mu.Unlock()
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	time.Sleep(settle)
	mu.Lock()
	defer mu.Unlock()
	cp := make(map[string]string, len(out))
	for k, v := range out {
		cp[k] = v
	}
	return cp
}

// Snapshot returns the latest message of every topic seen so far.
func (w *Watcher) Snapshot() map[string]Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]Message, len(w.last))
	for k, v := range w.last {
		out[k] = v
	}
	return out
}
