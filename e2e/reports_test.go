package e2e

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/reports"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/simulator"
)

const noSideways = `document.documentElement.scrollWidth <= innerWidth + 1`

// TestJobLogAndReports: the job log and the utilisation over the API, as
// JSON and as CSV that parses back (a name with a comma, a quote and a
// line break whole), and the page's Jobs and Reports views in Chromium;
// the farm view reads no history on load (issue 30).
func TestJobLogAndReports(t *testing.T) {
	w := newWorld(t, "jobs") // at the speed of a real farm, so the hours are a real farm's
	odd := "Bracket, v2 \"final\"\nsecond line"
	if err := w.sim.AddHistory(labS5, odd, "alice", "finished", time.Now().Add(-26*time.Hour), time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	// A month of work: each printer busy a share of its hours of its own.
	for i, p := range []string{labS5, farmHost, "ultimakersystem-ccbdd3005a11", "ultimakersystem-ccbdd3007c42"} {
		for d := 2; d < 30; d += 1 + i%2 {
			result := []string{"finished", "finished", "finished", "aborted", "finished", "failed"}[(d+i)%6]
			h := time.Duration(2+(d*7+i*3)%7) * time.Hour
			elapsed := h
			if result != "finished" {
				elapsed = h / 3
			}
			if err := w.sim.AddHistory(p, fmt.Sprintf("part_%02d_%d", d, i), []string{"alice", "bob", "carol"}[d%3], result,
				time.Now().Add(-time.Duration(d)*24*time.Hour), elapsed, h); err != nil {
				t.Fatal(err)
			}
		}
	}
	addr := freeAddr(t)
	startBridge(t, append(slices.Clone(w.env), "HTTP_LISTEN="+addr))
	waitForPrinters(t, w, "jobs")
	origin := "http://" + addr
	from := time.Now().Add(-30 * 24 * time.Hour).UTC().Format("2006-01-02")

	var log reports.Result
	getJSON(t, origin+"/api/jobs?from="+from+"&per_page=500", &log)
	if log.Total < 6*5 || len(log.Jobs) != log.Total {
		t.Errorf("30 days of the simulator's history: %d jobs (%d on the page)", log.Total, len(log.Jobs))
	}
	for i := 1; i < len(log.Jobs); i++ {
		if log.Jobs[i].Created.After(log.Jobs[i-1].Created) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	var alice reports.Result
	getJSON(t, origin+"/api/jobs?from="+from+"&owner=alice&printer="+labS5, &alice)
	if alice.Total == 0 || slices.ContainsFunc(alice.Jobs, func(j reports.Job) bool { return j.Owner != "alice" || j.Printer != labS5 }) {
		t.Errorf("alice's jobs on the Lab S5: %+v", alice.Jobs)
	}
	resp, err := http.Get(origin + "/api/jobs.csv?from=" + from + "&printer=" + labS5)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("CSV: %v, %q", err, resp.Header)
	}
	if !slices.Equal(rows[0], reports.JobsHeader) || !slices.ContainsFunc(rows, func(r []string) bool { return r[1] == odd }) {
		t.Errorf("CSV header %q; the odd name whole: %v", rows[0], slices.ContainsFunc(rows, func(r []string) bool { return r[1] == odd }))
	}
	var u reports.Utilisation
	getJSON(t, origin+"/api/utilisation?from="+from+"&by=printer", &u)
	if len(u.Rows) != 6 || u.Total.Jobs == 0 || u.Total.Utilisation <= 0 {
		t.Errorf("utilisation: %d rows, total %+v", len(u.Rows), u.Total)
	}
	for _, bad := range []string{"from=yesterday", "from=2026-12-06&to=2026-01-01", "by=room"} {
		path := "/api/jobs?"
		if strings.HasPrefix(bad, "by") {
			path = "/api/utilisation?"
		}
		r, err := http.Get(origin + path + bad)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("%s%s: %s, want 400", path, bad, r.Status)
		}
	}

	b := openBrowser(t, 1400, 900)
	ready := chromedp.Poll[chromedp.Void](`window.__u2m && window.__u2m.ready`, chromedp.WithPollingTimeout(20*time.Second))
	before := w.sim.Requests("/print_jobs/reports")
	b.do("open the farm", chromedp.Navigate(origin+"/"), ready, chromedp.Sleep(time.Second))
	if n := w.sim.Requests("/print_jobs/reports") - before; n != 0 {
		t.Errorf("the farm view read the history %d times on load", n)
	}
	b.do("open the jobs", chromedp.Navigate(origin+"/?view=jobs&from="+from),
		chromedp.Poll[chromedp.Void](`window.__u2m.jobRows > 0`, chromedp.WithPollingTimeout(20*time.Second)))
	if got := b.value("the download", `document.querySelector('.results a.download').getAttribute('href')`); !strings.Contains(
		fmt.Sprint(got), "/api/jobs.csv?from="+from) {
		t.Errorf("the download link %v", got)
	}
	if b.value("sideways", noSideways) != true {
		t.Error("the jobs view scrolls sideways")
	}
	shoot(t, b.ctx, "jobs.png")
	b.do("filter by owner", chromedp.SetValue(chromedp.CSS(`input[name=owner]`), "alice"),
		chromedp.Click(chromedp.CSS(`.filters button[type=submit]`)),
		chromedp.Poll[chromedp.Void](`location.search.includes('owner=alice') && [...document.querySelectorAll('.results tbody tr')]`+
			`.every(tr => tr.children[3].textContent === 'alice')`, chromedp.WithPollingTimeout(20*time.Second)))
	b.do("open the reports", chromedp.Navigate(origin+"/?view=reports&from="+from),
		chromedp.Poll[chromedp.Void](`(window.__u2m.utilisationRows || []).length === 6`, chromedp.WithPollingTimeout(20*time.Second)))
	names := b.value("the rows", `window.__u2m.utilisationRows`)
	sorted := slices.Clone(toStrings(names))
	slices.SortFunc(sorted, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	if !slices.Equal(toStrings(names), sorted) {
		t.Errorf("rows %v, want by name", names)
	}
	if n := b.value("bars", `document.querySelectorAll('.results svg.util-bar rect.fill').length`); n != 6.0 {
		t.Errorf("%v bars", n)
	}
	shoot(t, b.ctx, "reports.png")
	b.do("sort by utilisation", chromedp.Click(chromedp.Search(`//button[starts-with(text(),"Utilisation")]`)),
		chromedp.Sleep(300*time.Millisecond))
	if v := b.value("sorted", `(() => { const r = [...document.querySelectorAll('.results tbody tr td.util .num')]`+
		`.map(e => parseFloat(e.textContent)); return r.every((v, i) => i === 0 || r[i-1] >= v) })()`); v != true {
		t.Error("sorting by utilisation did not sort the rows")
	}
	b.noErrors()
}

func toStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, s := range l {
			out = append(out, fmt.Sprint(s))
		}
	}
	return out
}

// TestWallAtFarmScale: 1,000 printers with long names on a 1920×1080
// wall: at least 48 on a screen, every name shown distinct and keeping
// its end, nothing scrolls; a room's wall and the attention wall show
// only theirs (issue 30).
func TestWallAtFarmScale(t *testing.T) {
	const n = 1000
	b := newWorld(t, "scale")
	rooms := "ABCDEFGHIJ"
	name := func(i int) string { return fmt.Sprintf("Room %c · UltiMaker S5 Farm %d", rooms[(i-1)/100], i) }
	b.sim = simulator.New(simulator.Options{Speed: 1, Seed: 2, Calm: true, Tokens: []string{testToken}, ExtraPrinters: n,
		OnlyExtra: true, ExtraName: name})
	srv := httptest.NewServer(b.sim)
	t.Cleanup(srv.Close)
	env := slices.DeleteFunc(slices.Clone(b.env), func(kv string) bool {
		return strings.HasPrefix(kv, "ULTIMAKER_API_URL=") || strings.HasPrefix(kv, "POLL_") || strings.HasPrefix(kv, "LOG_LEVEL")
	})
	addr := freeAddr(t)
	env = append(env, "ULTIMAKER_API_URL="+srv.URL+simulator.BasePath, "HTTP_LISTEN="+addr, "POLL_INTERVAL=10s",
		"POLL_IDLE_INTERVAL=60s", "POLL_MAX_IN_FLIGHT=16", "HA_DISCOVERY=false", "LOG_LEVEL=info")
	_, logs := startBridge(t, env)
	origin := "http://" + addr
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var ps []json.RawMessage
		if resp, err := http.Get(origin + "/api/printers"); err == nil {
			json.NewDecoder(resp.Body).Decode(&ps)
			resp.Body.Close()
		}
		if len(ps) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Log(logs.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d printers after 90 s", len(ps))
		}
	}
	p := openBrowser(t, 1920, 1080)
	start := time.Now()
	p.do("open the wall", chromedp.EmulateViewport(1920, 1080), chromedp.Navigate(origin+"/?view=wall"),
		chromedp.Poll[chromedp.Void](`window.__u2m.ready && (window.__u2m.wallNames || []).length > 0`,
			chromedp.WithPollingTimeout(30*time.Second)))
	t.Logf("1,000 printers: the wall's first page shown %s after the navigation", time.Since(start).Round(10*time.Millisecond))
	perPage := p.value("per page", `window.__u2m.wallPerPage`)
	shown := toStrings(p.value("names", `window.__u2m.wallNames`))
	tiles := p.value("tiles", `document.querySelectorAll('.wall-tile').length`)
	t.Logf("%v printers a page, %v pages; %v tiles shown; names like %q", perPage, p.value("pages", `window.__u2m.wallPages`),
		tiles, shown[:3])
	if f, _ := perPage.(float64); f < 48 || tiles != perPage {
		t.Errorf("%v printers a page, %v tiles: want at least 48", perPage, tiles)
	}
	seen := map[string]bool{}
	for _, s := range shown {
		if seen[s] {
			t.Errorf("two tiles show %q", s)
		}
		seen[s] = true
	}
	full := toStrings(p.value("full names", `[...document.querySelectorAll('.wall-tile .name')].map(n => n.dataset.full)`))
	for i, s := range shown {
		num := full[i][strings.LastIndex(full[i], " ")+1:]
		if !strings.HasSuffix(s, num) {
			t.Errorf("%q is shown as %q: its end is lost", full[i], s)
		}
	}
	if v := p.value("fits", noSideways+` && document.documentElement.scrollHeight <= innerHeight + 1 && `+
		`[...document.querySelectorAll('.wall-tile .name')].every(n => n.scrollWidth <= n.clientWidth + 1 && `+
		`parseFloat(getComputedStyle(n).fontSize) >= 18)`); v != true {
		t.Error("the wall scrolls, or a name overflows its tile, or is under 18 px")
	}
	shoot(t, p.ctx, "wall-1000.png")

	// One room (two clusters here), and only what needs a person.
	ids := toStrings(p.value("two ids", `[...document.querySelectorAll('.wall-tile')].slice(0, 2).map(t => t.dataset.id)`))
	var clusterOf []string
	for _, id := range ids {
		var st struct {
			Cluster string `json:"cluster"`
		}
		getJSON(t, origin+"/api/printers/"+id, &st)
		clusterOf = append(clusterOf, st.Cluster)
	}
	p.do("a room's wall", chromedp.Navigate(origin+"/?view=wall&cluster="+strings.Join(clusterOf, ",")),
		chromedp.Poll[chromedp.Void](`window.__u2m.ready`, chromedp.WithPollingTimeout(30*time.Second)), chromedp.Sleep(1500*time.Millisecond))
	if got := toStrings(p.value("room", `[...document.querySelectorAll('.tile')].map(t => t.dataset.id)`)); len(got) != 2 {
		t.Errorf("the room's wall shows %v, want its 2 printers", got)
	}
	p.do("the attention wall", chromedp.Navigate(origin+"/?view=wall&filter=attention"),
		chromedp.Poll[chromedp.Void](`window.__u2m.ready`, chromedp.WithPollingTimeout(30*time.Second)), chromedp.Sleep(1500*time.Millisecond))
	if v := p.value("attention only", `[...document.querySelectorAll('.tile')].every(t => t.matches('.s-attention, .s-done') || `+
		`t.querySelector('.why'))`); v != true {
		t.Error("the attention wall shows a printer that needs no one")
	}
	p.noErrors()
}

// TestJobLogOfALANPrinter: a bridge without a cloud account has a job log
// all the same, from the printer's own history on the LAN (issue 30).
func TestJobLogOfALANPrinter(t *testing.T) {
	w := newWorld(t, "lanjobs")
	_, addr := serveLocal(t, w.sim, labS5, simulator.LocalOptions{})
	page := freeAddr(t)
	env := append(lanEnv(w, "lanjobs", addr), "HTTP_LISTEN="+page, "LOCAL_AUTH_FILE="+t.TempDir()+"/a.json")
	startBridge(t, env)
	from := time.Now().Add(-30 * 24 * time.Hour).UTC().Format("2006-01-02")
	var log reports.Result
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if resp, err := http.Get("http://" + page + "/api/jobs?from=" + from); err == nil {
			json.NewDecoder(resp.Body).Decode(&log)
			resp.Body.Close()
		}
		if log.Total > 0 || time.Now().After(deadline) {
			break
		}
	}
	if log.Total < 5 {
		t.Fatalf("%d jobs from the LAN printer's history, want its month's", log.Total)
	}
	for _, j := range log.Jobs {
		if j.Source != "local" || j.Printer != labS5 || j.PrinterName == "" || j.Ended == nil ||
			!slices.Contains([]string{reports.Finished, reports.Aborted, reports.Failed}, j.Status) {
			t.Errorf("row %+v", j)
		}
	}
}
