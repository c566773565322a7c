package web

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/activity"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/poller"
)

const (
	// flushEvery coalesces a page's updates: a printer that changed
	// several times within it is sent once, as it is then.
	flushEvery = 250 * time.Millisecond
	// heartbeat keeps an idle stream open through proxies, and tells the
	// page it is still live: a page that hears nothing for twice as long
	// says it is not, and connects again.
	heartbeat = 5 * time.Second
	// feedLength is how many activity items a page is sent.
	feedLength = activity.Length
	// maxPages bounds the open streams: each holds a connection and a
	// goroutine, and a wall of screens is a few dozen. maxPagesPerClient
	// bounds one client's: one address cannot take every slot.
	maxPages          = 256
	maxPagesPerClient = 8
	// streamWrite bounds each write to a stream: a client that stops
	// reading is let go.
	streamWrite = 30 * time.Second
)

// hub keeps what the page needs besides the renderer's states and the
// activity feed (statistics, the workspace) and tells each open page
// what changed.
type hub struct {
	feed Activity

	mu         sync.Mutex
	pages      map[*page]bool
	perClient  map[string]int // open pages by client
	statistics map[string]json.RawMessage
	workspace  json.RawMessage
}

// page is one open stream and what it has not been sent yet.
type page struct {
	client string
	wake   chan struct{}
	// The printers and clusters that changed, with their state as the
	// update had it encoded already (one encoding shared by every page).
	printers   map[string][]byte
	clusters   map[string][]byte
	gone       map[string]bool // printers that left
	goneC      map[string]bool // clusters that left
	info       bool
	statistics bool
	workspace  bool
	feed       []activity.Item
	pictures   map[string]time.Time // printers with a new picture, and when it was taken
}

func newHub(feed Activity) *hub {
	return &hub{feed: feed, pages: map[*page]bool{}, perClient: map[string]int{},
		statistics: map[string]json.RawMessage{}}
}

// Observe takes note of an update (the renderer's, render.Watch): what
// changed is marked for every open page. It never blocks.
func (s *Server) Observe(u poller.Update) { s.hub.observe(u) }

func (h *hub) observe(u poller.Update) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, st := range u.Statistics {
		b, _ := json.Marshal(st)
		h.statistics[id] = b
	}
	for _, p := range u.RemovedPrinters {
		delete(h.statistics, p.ID)
	}
	if u.Workspace != nil {
		h.workspace, _ = json.Marshal(u.Workspace)
	}
	if len(h.pages) == 0 {
		return
	}
	printers := make([][]byte, len(u.Printers))
	for i, p := range u.Printers {
		printers[i] = p.JSON()
	}
	var cluster []byte
	if u.Cluster != nil {
		cluster = u.Cluster.JSON()
	}
	for pg := range h.pages {
		for i, p := range u.Printers {
			pg.printers[p.ID] = printers[i]
			delete(pg.gone, p.ID)
		}
		for _, p := range u.RemovedPrinters {
			pg.gone[p.ID] = true
			delete(pg.printers, p.ID)
		}
		if u.Cluster != nil {
			pg.clusters[u.Cluster.ID] = cluster
		}
		for _, c := range u.RemovedClusters {
			pg.goneC[c.ID] = true
			delete(pg.clusters, c.ID)
		}
		pg.info = pg.info || u.Stats != nil
		pg.statistics = pg.statistics || len(u.Statistics) > 0
		pg.workspace = pg.workspace || u.Workspace != nil
		pg.poke()
	}
}

// Pictured takes note of a printer's new picture (the renderer's,
// render.WatchPictures): open pages show it.
func (s *Server) Pictured(printer string, at time.Time) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	for pg := range h.pages {
		pg.pictures[printer] = at
		pg.poke()
	}
}

// Activity takes the items added to the activity feed
// (activity.Feed.Watch): open pages are sent them.
func (s *Server) Activity(items []activity.Item) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	for pg := range h.pages {
		pg.queue(items)
		pg.poke()
	}
}

// keepNewest appends items to feed and keeps its newest feedLength items,
// moving them to the front only once feed is twice as long: one copy per
// feedLength items, not one per item.
func keepNewest(feed, items []activity.Item) []activity.Item {
	feed = append(feed, items...)
	if len(feed) >= 2*feedLength {
		feed = append(feed[:0:0], feed[len(feed)-feedLength:]...)
	}
	return feed
}

// newest is the last feedLength items of feed.
func newest(feed []activity.Item) []activity.Item { return feed[max(0, len(feed)-feedLength):] }

func (h *hub) statisticsOf(id string) (json.RawMessage, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.statistics[id]
	return b, ok
}

// queue adds feed items for pg, keeping the newest feedLength: a page
// that reads slowly misses old lines, the bridge does not grow.
func (pg *page) queue(items []activity.Item) { pg.feed = keepNewest(pg.feed, items) }

func (pg *page) poke() {
	select {
	case pg.wake <- struct{}{}:
	default:
	}
}

// open registers a client's page; from now on it is told what changes.
// Nil, and why, when maxPages are open already, or maxPagesPerClient of
// this client's.
func (h *hub) open(client string) (*page, string) {
	pg := &page{client: client, wake: make(chan struct{}, 1), printers: map[string][]byte{}, clusters: map[string][]byte{},
		gone: map[string]bool{}, goneC: map[string]bool{}, pictures: map[string]time.Time{}}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case len(h.pages) >= maxPages:
		return nil, fmt.Sprintf("%d pages are open already", maxPages)
	case h.perClient[client] >= maxPagesPerClient:
		return nil, fmt.Sprintf("%d pages of this client are open already", maxPagesPerClient)
	}
	h.pages[pg] = true
	h.perClient[client]++
	return pg, ""
}

func (h *hub) close(pg *page) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.pages[pg] {
		return
	}
	delete(h.pages, pg)
	if h.perClient[pg.client]--; h.perClient[pg.client] <= 0 {
		delete(h.perClient, pg.client)
	}
}

// take is what pg was not sent yet, and marks it sent.
func (h *hub) take(pg *page) (changes page, stats map[string]json.RawMessage, workspace json.RawMessage) {
	h.mu.Lock()
	defer h.mu.Unlock()
	changes = *pg
	changes.feed = newest(pg.feed)
	pg.printers, pg.clusters = map[string][]byte{}, map[string][]byte{}
	pg.gone, pg.goneC = map[string]bool{}, map[string]bool{}
	pg.pictures = map[string]time.Time{}
	pg.info, pg.statistics, pg.workspace, pg.feed = false, false, false, nil
	if changes.statistics {
		stats = make(map[string]json.RawMessage, len(h.statistics))
		for k, v := range h.statistics {
			stats[k] = v
		}
	}
	if changes.workspace {
		workspace = h.workspace
	}
	return changes, stats, workspace
}

// stream serves the live updates as Server-Sent Events: first everything
// (a snapshot: a page that reconnects catches up with it), then what
// changed, each printer at most once per flushEvery.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	if _, ok := w.(http.Flusher); !ok {
		problem(w, http.StatusInternalServerError, "streaming is not supported here")
		return
	}
	pg, full := s.hub.open(s.clients.of(r)) // before the snapshot: what changes meanwhile is sent after it
	if pg == nil {
		// The page shows the state all the same (/api/snapshot) and tries
		// again.
		w.Header().Set("Retry-After", "10")
		problem(w, http.StatusServiceUnavailable, full)
		return
	}
	defer s.hub.close(pg)
	// The endpoint's write bound would end a stream: each write has a
	// deadline of its own instead.
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	out := bufio.NewWriterSize(w, 64<<10)
	flush := func() bool {
		rc.SetWriteDeadline(time.Now().Add(streamWrite))
		if out.Flush() != nil {
			return false
		}
		return rc.Flush() == nil
	}
	out.WriteString("retry: 2000\n\nevent: snapshot\ndata: ")
	s.writeSnapshot(out)
	out.WriteString("\n\n")
	if !flush() {
		return
	}
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-beat.C:
			out.WriteString("event: ping\ndata: {}\n\n")
		case <-pg.wake:
			// Let what comes within flushEvery join this flush.
			select {
			case <-time.After(flushEvery):
			case <-r.Context().Done():
				return
			}
			s.writeChanges(out, pg)
		}
		if !flush() {
			return
		}
	}
}

// snapshot serves what the stream's snapshot says, once: the page asks
// for it while it cannot have a stream, so it shows the farm as it is.
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	out := bufio.NewWriterSize(w, 64<<10)
	s.writeSnapshot(out)
	out.Flush()
}

// sse writes one event; data is JSON (which holds no raw newline).
func sse(out *bufio.Writer, event string, data []byte) {
	out.WriteString("event: ")
	out.WriteString(event)
	out.WriteString("\ndata: ")
	out.Write(data)
	out.WriteString("\n\n")
}

// sseList writes one event whose data is a JSON array of the encodings.
func sseList(out *bufio.Writer, event string, items map[string][]byte) {
	out.WriteString("event: ")
	out.WriteString(event)
	out.WriteString("\ndata: [")
	first := true
	for _, b := range items {
		if !first {
			out.WriteByte(',')
		}
		first = false
		out.Write(b)
	}
	out.WriteString("]\n\n")
}

// writeSnapshot writes everything a page shows, printer by printer, as
// one JSON object.
func (s *Server) writeSnapshot(out *bufio.Writer) {
	out.WriteString("{\"printers\":[")
	for i, p := range s.src.Printers() {
		if i > 0 {
			out.WriteByte(',')
		}
		out.Write(p.JSON())
	}
	out.WriteString("],\"clusters\":[")
	for i, c := range s.src.Clusters() {
		if i > 0 {
			out.WriteByte(',')
		}
		out.Write(c.JSON())
	}
	h := s.hub
	feed, _ := json.Marshal(h.feed.Recent())
	h.mu.Lock()
	stats, _ := json.Marshal(h.statistics)
	workspace := h.workspace
	h.mu.Unlock()
	if workspace == nil {
		workspace = json.RawMessage("null")
	}
	health, _ := json.Marshal(s.cfg.Health())
	out.WriteString("],\"info\":")
	out.Write(s.src.Info())
	out.WriteString(",\"health\":")
	out.Write(health)
	out.WriteString(",\"feed\":")
	out.Write(feed)
	out.WriteString(",\"statistics\":")
	out.Write(stats)
	out.WriteString(",\"workspace\":")
	out.Write(workspace)
	pictures := map[string]time.Time{}
	for _, p := range s.src.Printers() {
		if pic, ok := s.src.LatestPicture(p.ID); ok {
			pictures[p.ID] = pic.TakenAt.UTC()
		}
	}
	pb, _ := json.Marshal(pictures)
	out.WriteString(",\"pictures\":")
	out.Write(pb)
	out.WriteString(",\"controls\":")
	out.WriteString(map[bool]string{true: "true", false: "false"}[s.guard.hasKey])
	out.WriteString("}")
}

// writeChanges writes what changed for pg since its last flush.
func (s *Server) writeChanges(out *bufio.Writer, pg *page) {
	c, stats, workspace := s.hub.take(pg)
	if len(c.printers) > 0 {
		sseList(out, "printers", c.printers)
	}
	if len(c.clusters) > 0 {
		sseList(out, "clusters", c.clusters)
	}
	if len(c.gone) > 0 || len(c.goneC) > 0 {
		b, _ := json.Marshal(map[string][]string{"printers": keys(c.gone), "clusters": keys(c.goneC)})
		sse(out, "removed", b)
	}
	if c.info {
		health, _ := json.Marshal(s.cfg.Health())
		b, _ := json.Marshal(map[string]json.RawMessage{"info": s.src.Info(), "health": health})
		sse(out, "bridge", b)
	}
	if len(c.feed) > 0 {
		b, _ := json.Marshal(c.feed)
		sse(out, "feed", b)
	}
	if stats != nil {
		b, _ := json.Marshal(stats)
		sse(out, "statistics", b)
	}
	if workspace != nil {
		sse(out, "workspace", workspace)
	}
	if len(c.pictures) > 0 {
		b, _ := json.Marshal(c.pictures)
		sse(out, "pictures", b)
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
