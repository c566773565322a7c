package simulator

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
)

// Phase durations in simulated time. They are shaped after real S-line
// behaviour: a couple of minutes to heat and level, a minute to cool down,
// and a few minutes until someone clears the build plate.
const (
	prePrintDur    = 90 * time.Second
	postPrintDur   = 60 * time.Second
	waitCleanupDur = 4 * time.Minute
	pauseDur       = 4 * time.Minute
	transitionDur  = 10 * time.Second // pausing, resuming, aborting
	idleDur        = 3 * time.Minute  // before an idle printer gets new work
	maxRecent      = 10               // the API keeps at most ten completed jobs
	maxHistory     = 2000             // jobs per cluster the reports remember
)

type printerSpec struct {
	name, variant, firmware, latest, updateStatus string
	uniqueName, uuid, ip                          string
	cores                                         []coreSpec
	plate                                         string
	maintenance                                   bool
	chamber                                       bool // reports a chamber temperature
}

type coreSpec struct {
	core, material, brand, color string
	remaining                    float64 // mm³ left, 0 = unknown
}

type clusterSpec struct {
	name, hostName, hostGUID, printerType, hostVersion string
	online                                             bool
	printers                                           []printerSpec
	queued                                             int // jobs queued at start
	startPrinting                                      []bool
	maintenance                                        []maintSpec
}

type maintSpec struct {
	code  string
	due   bool
	dueIn time.Duration
	dueAt time.Time // set when the world starts
}

type cluster struct {
	spec        clusterSpec
	id          string
	orgID       string
	printers    []*printer
	queue       []*job
	recent      []*job // newest first
	maintenance []maintSpec
	// What the rest of the API reads and writes.
	note      string
	orgShared bool
	teamIDs   []string
	history   []*job // every job that ended, oldest first, for the reports
	maintLog  []connect.CompletedMaintenance
}

type printer struct {
	spec    printerSpec
	cluster *cluster
	enabled bool
	job     *job
	// idleUntil is when an idle printer with an empty queue gets new work.
	idleUntil time.Time
}

type job struct {
	uuid, cloudID, name, owner string
	variant                    string
	createdAt                  time.Time
	status                     string // Connect print-job status
	state                      string // waiting, in_progress, history
	phaseStart                 time.Time
	phaseDur                   time.Duration // 0 = until something else happens
	total                      time.Duration
	elapsed                    time.Duration // printed time at phaseStart
	pauseAt, abortAt           time.Duration // 0 = never
	aborted                    bool
	force                      bool
	userPaused                 bool // paused by an action: stays paused until resumed
	note                       string
	printer                    *printer
	endedAt                    time.Time
}

// world is the simulated account. All access holds Server.mu.
type world struct {
	calm     bool // no scripted pauses or aborts
	clusters []*cluster
	rng      *rand.Rand
	seq      int
	userID   string
	host     string // of the current request, for absolute URLs
	// speed, realT0 and simT0 map simulated time to the wall clock for
	// what is reported: the world runs speed times faster, and durations
	// and times in answers are wall-clock ones, so an ETA computed from
	// them is right on a watch (the demo runs at 30x).
	speed         float64
	realT0, simT0 time.Time
}

// wallDur reports a simulated duration in wall-clock seconds.
func (w *world) wallDur(d time.Duration) float64 {
	if w.speed <= 0 {
		return float64(int(d.Seconds()))
	}
	return float64(int(d.Seconds() / w.speed))
}

// wallTime reports a simulated instant on the wall clock.
func (w *world) wallTime(t time.Time) time.Time {
	if w.speed <= 0 || t.IsZero() {
		return t
	}
	return w.realT0.Add(time.Duration(float64(t.Sub(w.simT0)) / w.speed))
}

// simTime is wallTime's inverse: a wall-clock instant in simulated time.
func (w *world) simTime(t time.Time) time.Time {
	if w.speed <= 0 || t.IsZero() {
		return t
	}
	return w.simT0.Add(time.Duration(float64(t.Sub(w.realT0)) * w.speed))
}

// simDur is wallDur's inverse: a wall-clock duration in simulated time.
func (w *world) simDur(d time.Duration) time.Duration {
	if w.speed <= 0 {
		return d
	}
	return time.Duration(float64(d) * w.speed)
}

// cloudID makes a deterministic 44-character URL-safe base64 id, the shape
// of every Connect cloud id.
func cloudID(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return base64.URLEncoding.EncodeToString(sum[:])
}

// uuidOf makes a deterministic lower-case version-4 style UUID.
func uuidOf(seed string) string {
	sum := sha256.Sum256([]byte("uuid:" + seed))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

var jobNames = []string{
	"bracket_v2", "gearbox_housing", "cable_clip_x20", "phone_stand", "drone_arm_left",
	"lid_prototype", "calibration_cube", "hinge_test", "fan_duct_s5", "enclosure_front",
	"lab_sample_rack", "name_tags_batch", "robot_gripper", "vase_spiral", "tool_holder",
}

var owners = []string{"jdoe", "asmith", "lab-bot", "mvdberg"}

// defaultSpecs is the scripted world: a single S5 with two extruders, a
// three-printer farm with a queue, a MakerBot with an empty GUID and an
// offline Ultimaker 3.
func defaultSpecs() []clusterSpec {
	return []clusterSpec{
		{
			name: "Lab-S5-1", hostName: "ultimakersystem-4b0fc38e95e3", printerType: "ultimaker_s5",
			hostVersion: "8.2.0.20240611", online: true, startPrinting: []bool{true},
			printers: []printerSpec{{
				name: "Lab-S5-1", variant: "Ultimaker S5", firmware: "8.2.0", latest: "8.3.0",
				updateStatus: "update_available", uniqueName: "ultimakersystem-4b0fc38e95e3", ip: "192.168.1.40",
				plate: "glass",
				cores: []coreSpec{
					{core: "AA 0.4", material: "PLA", brand: "Generic", color: "White", remaining: 180000},
					{core: "BB 0.4", material: "PVA", brand: "Ultimaker", color: "Natural", remaining: 40000},
				},
			}},
			maintenance: []maintSpec{{code: "um3_clean_printer", dueIn: 30 * 24 * time.Hour}},
		},
		{
			name: "Print Farm", hostName: "ultimakersystem-ccbdd30044ec", printerType: "ultimaker_s5",
			hostVersion: "8.3.0.20250120", online: true, queued: 3, startPrinting: []bool{true, false, true},
			printers: []printerSpec{
				{name: "Farm-S5-A", variant: "Ultimaker S5", firmware: "8.3.0", latest: "8.3.0",
					updateStatus: "up_to_date", uniqueName: "ultimakersystem-ccbdd30044ec", ip: "10.0.4.11", plate: "glass",
					cores: []coreSpec{{core: "AA 0.4", material: "Tough PLA", brand: "Ultimaker", color: "Black", remaining: 250000},
						{core: "AA 0.8", material: "empty"}}},
				{name: "Farm-S3-B", variant: "Ultimaker S3", firmware: "8.3.0", latest: "8.3.0",
					updateStatus: "up_to_date", uniqueName: "ultimakersystem-ccbdd3005a11", ip: "10.0.4.12", plate: "glass",
					maintenance: true,
					cores: []coreSpec{{core: "AA 0.4", material: "PETG", brand: "Generic", color: "Blue"},
						{core: "BB 0.4", material: "Breakaway", brand: "Ultimaker", color: "White"}}},
				{name: "Farm-S7-C", variant: "UltiMaker S7", firmware: "10.0.1", latest: "10.1.0",
					updateStatus: "update_available", uniqueName: "ultimakersystem-ccbdd3007c42", ip: "10.0.4.13", plate: "pei", chamber: true,
					cores: []coreSpec{{core: "AA 0.4", material: "PLA", brand: "Ultimaker", color: "Silver Metallic", remaining: 90000},
						{core: "AA 0.4", material: "PLA", brand: "Ultimaker", color: "Red", remaining: 120000}}},
			},
			maintenance: []maintSpec{{code: "s5_clean_printer", due: true}, {code: "s5_lubricate_axles", dueIn: 10 * 24 * time.Hour}},
		},
		{
			name: "Method-X-1", hostName: "makerbot-method-x-23a9", hostGUID: "23A9F0C417B2D8E61C55",
			printerType: "lava_f", hostVersion: "2.12.0", online: true, startPrinting: []bool{false},
			printers: []printerSpec{{
				// MakerBot printers report an empty GUID; this one also has
				// no unique name, so the bridge must fall back.
				name: "Method-X-1", variant: "MakerBot Method X", firmware: "2.12.0",
				cores: []coreSpec{{core: "1XA", material: "ABS", brand: "MakerBot", color: "Black"}},
			}},
		},
		{
			name: "Old-UM3", hostName: "ultimakersystem-0030d6123abc", printerType: "ultimaker3",
			hostVersion: "5.2.16.20191205", online: false,
			printers: []printerSpec{{
				name: "Old-UM3", variant: "Ultimaker 3", firmware: "5.2.16", latest: "5.2.16",
				updateStatus: "up_to_date", uniqueName: "ultimakersystem-0030d6123abc", ip: "192.168.1.77", plate: "glass",
				cores: []coreSpec{{core: "AA 0.4", material: "PLA", brand: "Generic", color: "Green"}, {core: "BB 0.4", material: "PVA"}},
			}},
		},
	}
}

// farmSpecs adds n single-printer S5 clusters, for load tests.
func farmSpecs(n int, idle bool, nameOf func(int) string) []clusterSpec {
	if nameOf == nil {
		nameOf = func(i int) string { return fmt.Sprintf("Farm-%04d", i) }
	}
	out := make([]clusterSpec, 0, n)
	for i := range n {
		mac := fmt.Sprintf("f0a1b2%06x", i)
		out = append(out, clusterSpec{
			name: nameOf(i + 1), hostName: "ultimakersystem-" + mac, printerType: "ultimaker_s5",
			hostVersion: "8.3.0.20250120", online: true, startPrinting: []bool{i%2 == 0 && !idle},
			printers: []printerSpec{{
				name: nameOf(i + 1), variant: "Ultimaker S5", firmware: "8.3.0", latest: "8.3.0",
				updateStatus: "up_to_date", uniqueName: "ultimakersystem-" + mac, plate: "glass",
				cores: []coreSpec{{core: "AA 0.4", material: "PLA", brand: "Generic", color: "White"}, {core: "BB 0.4", material: "PVA"}},
			}},
		})
	}
	return out
}

func newWorld(specs []clusterSpec, seed uint64, calm bool, now time.Time) *world {
	w := &world{rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), userID: cloudID("user:jdoe"), calm: calm}
	for _, cs := range specs {
		c := &cluster{spec: cs, id: cloudID("cluster:" + cs.hostName), orgID: cloudID("org:demo")}
		for _, m := range cs.maintenance {
			m.dueAt = now.Truncate(time.Hour).Add(m.dueIn)
			c.maintenance = append(c.maintenance, m)
		}
		if c.spec.hostGUID == "" {
			c.spec.hostGUID = uuidOf("host:" + cs.hostName)
		}
		for i, ps := range cs.printers {
			if ps.uuid == "" && ps.uniqueName != "" {
				ps.uuid = uuidOf("printer:" + ps.uniqueName)
			}
			p := &printer{spec: ps, cluster: c, enabled: true, idleUntil: now.Add(time.Duration(i+1) * idleDur / 2)}
			c.printers = append(c.printers, p)
		}
		for range cs.queued {
			c.queue = append(c.queue, w.newJob(c, now))
		}
		for i, p := range c.printers {
			if cs.online && i < len(cs.startPrinting) && cs.startPrinting[i] {
				j := w.newJob(c, now)
				w.start(p, j, now)
				// Start part-way through so the demo shows progress at once.
				j.status, j.phaseStart, j.phaseDur = "printing", now, 0
				j.elapsed = j.total / 3
				if j.pauseAt <= j.elapsed {
					j.pauseAt = 0
				}
				if j.abortAt <= j.elapsed {
					j.abortAt = 0
				}
			}
		}
		w.seedHistory(c, now)
		w.clusters = append(w.clusters, c)
	}
	return w
}

// seedHistory gives every printer six jobs that ended over the past 30
// days (four finished, one aborted, one failed), so the reports and the
// statistics have something to show from the start.
func (w *world) seedHistory(c *cluster, now time.Time) {
	results := []string{"finished", "finished", "aborted", "finished", "failed", "finished"}
	for i, p := range c.printers {
		for k, result := range results {
			// Not from w.rng: the scripted world stays what it was.
			seed := fmt.Sprintf("history:%s:%d:%d", c.spec.hostName, i, k)
			j := &job{uuid: uuidOf(seed), cloudID: cloudID(seed), name: jobNames[(i+k)%len(jobNames)],
				owner: owners[k%len(owners)], variant: p.spec.variant, total: time.Duration(30+10*k) * time.Minute}
			j.printer, j.status, j.state = p, result, "history"
			j.endedAt = now.Add(-time.Duration(len(results)-k) * 4 * 24 * time.Hour)
			j.createdAt = j.endedAt.Add(-j.total - time.Hour)
			j.elapsed = j.total
			if result != "finished" {
				j.elapsed = j.total / 3
			}
			c.history = append(c.history, j)
		}
	}
}

func (w *world) newJob(c *cluster, now time.Time) *job {
	w.seq++
	name := jobNames[w.rng.IntN(len(jobNames))]
	j := &job{
		uuid:      uuidOf(fmt.Sprintf("job:%s:%d", c.spec.hostName, w.seq)),
		cloudID:   cloudID(fmt.Sprintf("cloudjob:%s:%d", c.spec.hostName, w.seq)),
		name:      name,
		owner:     owners[w.rng.IntN(len(owners))],
		variant:   c.printers[0].spec.variant,
		createdAt: now,
		status:    "queued",
		state:     "waiting",
		total:     time.Duration(20+w.rng.IntN(100)) * time.Minute,
	}
	// About one job in four pauses once, one in ten is aborted.
	switch r := w.rng.IntN(20); {
	case w.calm:
	case r < 5:
		j.pauseAt = j.total * time.Duration(30+w.rng.IntN(40)) / 100
	case r < 7:
		j.abortAt = j.total * time.Duration(10+w.rng.IntN(60)) / 100
	}
	return j
}

func (w *world) start(p *printer, j *job, now time.Time) {
	j.printer = p
	j.status, j.state, j.phaseStart, j.phaseDur = "pre_print", "in_progress", now, prePrintDur
	p.job = j
}

// elapsed is the printed time of j at now.
func (j *job) elapsedAt(now time.Time) time.Duration {
	if j.status == "printing" {
		return min(j.elapsed+now.Sub(j.phaseStart), j.total)
	}
	return j.elapsed
}

// advance moves every printer of every online cluster to now.
func (w *world) advance(now time.Time) {
	for _, c := range w.clusters {
		w.advanceCluster(c, now)
	}
}

// advanceCluster moves the printers of c to now. Clusters are moved only
// when asked about: a request for one cluster costs that cluster, not the
// whole world (a farm of 1,000 would otherwise cost 1,000 per request).
func (w *world) advanceCluster(c *cluster, now time.Time) {
	if !c.spec.online {
		return
	}
	for _, p := range c.printers {
		// Bounded so a clock jump cannot spin: each step ends a phase.
		for range 64 {
			if !w.step(c, p, now) {
				break
			}
		}
	}
}

// step makes at most one transition of p that is due by now, and reports
// whether it made one.
func (w *world) step(c *cluster, p *printer, now time.Time) bool {
	j := p.job
	if j == nil {
		if !p.enabled {
			return false
		}
		if len(c.queue) > 0 {
			next := c.queue[0]
			c.queue = c.queue[1:]
			w.start(p, next, now)
			return true
		}
		if !now.Before(p.idleUntil) {
			c.queue = append(c.queue, w.newJob(c, p.idleUntil))
			p.idleUntil = now.Add(idleDur)
			return true
		}
		return false
	}
	if j.status == "printing" {
		el := j.elapsedAt(now)
		at := func(mark time.Duration) time.Time { return j.phaseStart.Add(mark - j.elapsed) }
		switch {
		case j.pauseAt > 0 && el >= j.pauseAt:
			t := at(j.pauseAt)
			j.elapsed, j.pauseAt = j.pauseAt, 0
			j.status, j.phaseStart, j.phaseDur = "pausing", t, transitionDur
			return true
		case j.abortAt > 0 && el >= j.abortAt:
			t := at(j.abortAt)
			j.elapsed, j.abortAt = j.abortAt, 0
			j.status, j.phaseStart, j.phaseDur = "aborting", t, transitionDur
			return true
		case el >= j.total:
			t := at(j.total)
			j.elapsed = j.total
			j.status, j.phaseStart, j.phaseDur = "post_print", t, postPrintDur
			return true
		}
		return false
	}
	if j.phaseDur == 0 {
		return false
	}
	end := j.phaseStart.Add(j.phaseDur)
	if now.Before(end) {
		return false
	}
	switch j.status {
	case "pre_print", "resuming":
		j.status, j.phaseStart, j.phaseDur = "printing", end, 0
	case "pausing":
		j.status, j.phaseStart, j.phaseDur = "paused", end, pauseDur
		if j.userPaused {
			j.phaseDur = 0 // a person paused it: it waits for them
		}
	case "paused":
		j.status, j.phaseStart, j.phaseDur = "resuming", end, transitionDur
	case "aborting":
		j.aborted = true
		j.status, j.phaseStart, j.phaseDur = "wait_cleanup", end, waitCleanupDur
	case "post_print":
		j.status, j.phaseStart, j.phaseDur = "wait_cleanup", end, waitCleanupDur
	case "wait_cleanup":
		w.complete(c, p, end)
	default:
		j.phaseDur = 0
	}
	return true
}

// complete moves p's job to the cluster's recently completed list.
func (w *world) complete(c *cluster, p *printer, at time.Time) {
	j := p.job
	j.status, j.state, j.endedAt = "finished", "history", at
	if j.aborted {
		j.status = "aborted"
	}
	p.job = nil
	p.idleUntil = at.Add(idleDur)
	w.remember(c, j)
}

// remember puts an ended job into the cluster's recent list and history.
func (w *world) remember(c *cluster, j *job) {
	c.recent = append([]*job{j}, c.recent...)
	if len(c.recent) > maxRecent {
		c.recent = c.recent[:maxRecent]
	}
	c.history = append(c.history, j)
	if len(c.history) > maxHistory {
		c.history = c.history[len(c.history)-maxHistory:]
	}
}

// findJob looks a job up in c's queue, on its printers and in its history.
func (c *cluster) findJob(uuid string) *job {
	for _, j := range c.queue {
		if j.uuid == uuid {
			return j
		}
	}
	for _, p := range c.printers {
		if p.job != nil && p.job.uuid == uuid {
			return p.job
		}
	}
	for _, j := range c.recent {
		if j.uuid == uuid {
			return j
		}
	}
	return nil
}

func (w *world) cluster(id string) *cluster {
	for _, c := range w.clusters {
		if c.id == id {
			return c
		}
	}
	return nil
}

// printerStatus is the Connect printer status of p.
func (p *printer) status() string {
	switch {
	case !p.cluster.spec.online:
		return "unreachable"
	case p.job == nil:
		return "idle"
	case p.job.status == "pre_print":
		return "pre_print"
	default:
		return "printing"
	}
}

func (w *world) jobJSON(c *cluster, j *job, now time.Time) connect.PrintJob {
	el := j.elapsedAt(now)
	pj := connect.PrintJob{
		UUID: j.uuid, CloudJobID: j.cloudID, ClusterID: c.id, Name: j.name, Owner: j.owner,
		MachineVariant: j.variant, Status: j.status, State: j.state, Started: j.printer != nil,
		Force: j.force, IsOnline: c.spec.online, SentFrom: "cloud", CreatedAt: connect.Time{Time: w.wallTime(j.createdAt)},
		TimeTotal: w.wallDur(j.total), TimeElapsed: w.wallDur(el),
		TimeRemaining:             w.wallDur(j.total - el),
		PreviewURL:                "",
		Note:                      j.note,
		CompatibleMachineFamilies: []string{j.variant},
	}
	if j.printer != nil {
		pj.PrinterUUID, pj.PrinterName, pj.AssignedTo = j.printer.spec.uuid, j.printer.spec.name, j.printer.spec.name
		pj.PrintedOnUUID = j.printer.spec.uuid
	}
	return pj
}

// configurationOf is a report's printer configuration: the printer's
// cores and the materials loaded (nil without a printer).
func (w *world) configurationOf(p *printer) *connect.ReportConfiguration {
	if p == nil {
		return nil
	}
	rc := &connect.ReportConfiguration{}
	for i, cs := range p.spec.cores {
		cfg := connect.PrintCoreConfiguration{ExtruderIndex: float64(i), PrintCoreID: cs.core,
			Material: &connect.Material{Material: cs.material, Brand: cs.brand, Color: cs.color}}
		rc.PrintCores = append(rc.PrintCores, cfg)
	}
	return rc
}

func (w *world) printerJSON(p *printer, now time.Time) connect.Printer {
	s := p.spec
	cp := connect.Printer{
		UUID: s.uuid, UniqueName: s.uniqueName, FriendlyName: s.name, MachineVariant: s.variant,
		Status: p.status(), Enabled: p.enabled, FirmwareVersion: s.firmware, LatestAvailableFirmware: s.latest,
		FirmwareUpdateStatus: s.updateStatus, IPAddress: s.ip, MaintenanceRequired: s.maintenance,
		Errors: []connect.PrinterError{}, Faults: []connect.PrinterFault{},
	}
	if s.plate != "" {
		t := 24.5
		if p.job != nil && (p.job.status == "printing" || p.job.status == "pre_print") {
			t = 60.0
		}
		cp.BuildPlate = &connect.BuildPlate{Type: s.plate, Temperature: &t}
	}
	if s.chamber {
		t := 28.0
		if p.job != nil {
			t = 34.5
		}
		cp.Chamber = &connect.Chamber{Temperature: &t}
	}
	for i, cs := range s.cores {
		cfg := connect.PrintCoreConfiguration{ExtruderIndex: float64(i), PrintCoreID: cs.core,
			Material: &connect.Material{Material: cs.material, Brand: cs.brand, Color: cs.color}}
		if cs.material != "empty" {
			cfg.Material.GUID = uuidOf("material:" + cs.brand + cs.material + cs.color)
		}
		if cs.remaining > 0 {
			left := cs.remaining
			if p.job != nil {
				left -= p.job.elapsedAt(now).Seconds() * 2 // about 2 mm³/s
			}
			orig := 300000.0
			cfg.EstimatedMaterialVolume, cfg.OriginalMaterialVolume = &left, &orig
		}
		cp.Configuration = append(cp.Configuration, cfg)
	}
	return cp
}
