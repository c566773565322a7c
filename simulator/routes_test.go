package simulator

import (
	"context"
	"testing"
	"time"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/connect"
)

// TestEveryRoute calls each route of the reference's §2 that the bridge
// uses beyond status and actions, through the real client, and checks the
// simulator's answer and its effect (issue 11).
func TestEveryRoute(t *testing.T) {
	sim, _, c, clk := start(t, Options{Calm: true})
	ctx := context.Background()
	ids := sim.ClusterIDs()
	lab, farm := ids[0], ids[1]
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	up, err := c.Root(ctx)
	must(err)
	if !up.OK || up.Time.IsZero() {
		t.Errorf("root %+v", up)
	}
	if tea, err := c.Teapot(ctx); err != nil || !tea {
		t.Errorf("teapot %v %v", tea, err)
	}
	if spec, err := c.Spec(ctx, ""); err != nil || len(spec) == 0 {
		t.Errorf("spec %v", err)
	}
	acc, err := c.AccessibleClusters(ctx, []string{lab, "Tm90QUNsdXN0ZXJXZUtub3dPZjAwMDAwMDAwMDAwMDA="})
	must(err)
	if len(acc) != 1 || acc[0] != lab {
		t.Errorf("accessible %v", acc)
	}

	st, err := c.SetSettings(ctx, connect.Settings{RequirePrintApproval: true})
	must(err)
	if got, _ := c.Settings(ctx); !st.RequirePrintApproval || got == nil || !got.RequirePrintApproval || got.EnablePrintPrep {
		t.Errorf("settings %+v then %+v", st, got)
	}
	if u, err := c.Usage(ctx); err != nil || len(u) == 0 {
		t.Errorf("usage %s %v", u, err)
	}

	now := clk.Now()
	var reps, pages int
	must(c.WalkReports(ctx, now.Add(-30*24*time.Hour), now, func(rs []connect.Report) { reps, pages = reps+len(rs), pages+1 }))
	if reps != 6*6 || pages != 1 { // six printers, six seeded jobs each, on one page of up to 1,000
		t.Errorf("%d reports on %d pages, want 36 on 1", reps, pages)
	}
	page, p, err := c.Reports(ctx, connect.ReportQuery{Start: now.Add(-30 * 24 * time.Hour), End: now, Page: 2, Limit: 10})
	must(err)
	if len(page) != 10 || p.TotalPages != 4 || p.TotalCount != 36 {
		t.Errorf("page 2: %d items, %+v", len(page), p)
	}
	jobs, _, err := c.PrintJobs(ctx, connect.PrintJobQuery{ClusterIDs: []string{farm}, States: []string{"waiting"}})
	must(err)
	fst, _ := c.ClusterStatus(ctx, farm)
	queued := 0
	for _, j := range fst.PrintJobs {
		if j.Status == "queued" {
			queued++
		}
	}
	if len(jobs) != queued || queued == 0 {
		t.Errorf("%d waiting jobs in the farm, want its %d queued", len(jobs), queued)
	}
	if fs, err := c.Filters(ctx); err != nil || len(fs) == 0 || fs[0].Key == "" {
		t.Errorf("filters %+v %v", fs, err)
	}
	d, err := c.SetJobNote(ctx, farm, jobs[0].UUID, "blue PLA please")
	must(err)
	if d.Note != "blue PLA please" {
		t.Errorf("job note %q", d.Note)
	}

	cl, err := c.SetClusterNote(ctx, farm, "nozzle swapped")
	must(err)
	if cl.Note == nil || cl.Note.Note != "nozzle swapped" {
		t.Errorf("note %+v", cl.Note)
	}
	if cl, err = c.SetClusterNote(ctx, farm, ""); err != nil || cl.Note != nil {
		t.Errorf("cleared note %+v %v", cl.Note, err)
	}
	if _, err := c.ShareCluster(ctx, farm, connect.Sharing{OrganizationShared: true, TeamIDs: []string{"t1"}}); connect.KindOf(err) != connect.KindBadRequest {
		t.Errorf("org and teams at once: %v", err)
	}
	cl, err = c.ShareCluster(ctx, farm, connect.Sharing{TeamIDs: []string{"t1", "t2"}})
	must(err)
	if cl.OrganizationShared || len(cl.TeamIDs) != 2 {
		t.Errorf("shared %+v %v", cl.OrganizationShared, cl.TeamIDs)
	}
	counts, err := c.TeamCount(ctx, []string{"t1", "t3"})
	must(err)
	if counts["t1"] != 1 || counts["t3"] != 0 {
		t.Errorf("team counts %v", counts)
	}
	if _, err := c.ShareAll(ctx, connect.Sharing{OrganizationShared: true}); err != nil {
		t.Errorf("share all: %v", err)
	}
	if err := c.DeleteTeam(ctx, "t1"); connect.KindOf(err) != connect.KindNotFound {
		t.Errorf("delete a team no cluster has now: %v", err) // share_all replaced the teams
	}

	must(c.CompleteMaintenance(ctx, farm, []string{"s5_clean_printer"}))
	log, err := c.CompletedMaintenance(ctx, farm, 10)
	must(err)
	if len(log) != 1 || log[0].TaskCodes[0] != "s5_clean_printer" || log[0].CompletedAt.IsZero() {
		t.Errorf("maintenance log %+v", log)
	}

	reg, err := c.ConfirmRegistrationPIN(ctx, "A1B2C3", "ultimaker")
	must(err)
	if reg.ClusterID == "" || reg.HostName == "" {
		t.Errorf("registration %+v", reg)
	}
	if _, err := c.ConfirmRegistrationPIN(ctx, "nope", ""); connect.KindOf(err) != connect.KindNotFound {
		t.Errorf("bad pin: %v", err)
	}
	if _, err := c.ConfirmRegistration(ctx, "Q29ubmVjdGlvbklkRXhhbXBsZTAwMDAwMDAwMDAwMDE="); err != nil {
		t.Errorf("by connection id: %v", err)
	}
	if _, err := c.RegisterMakerBot(ctx, "23A9F0C417B2D8E61C99"); err != nil {
		t.Errorf("makerbot: %v", err)
	}
	all, _ := c.Clusters(ctx)
	if len(all) != len(ids)+3 {
		t.Errorf("%d clusters after three registrations, want %d", len(all), len(ids)+3)
	}

	mp, err := c.UploadMaterial(ctx, "generic_pla.xml.fdm_material", "application/zip", []byte("PK\x03\x04material"))
	must(err)
	if mp.MaterialProfileID == "" {
		t.Fatalf("material %+v", mp)
	}
	st2, _ := c.ClusterStatus(ctx, lab)
	if _, err := c.PrinterAction(ctx, lab, st2.Printers[0].UUID, "import_material", &connect.PrinterActionBody{MaterialProfileID: mp.MaterialProfileID}); err != nil {
		t.Errorf("import_material: %v", err)
	}
	if _, err := c.PrinterAction(ctx, lab, st2.Printers[0].UUID, "import_material", &connect.PrinterActionBody{MaterialProfileID: "x"}); connect.KindOf(err) != connect.KindNotFound {
		t.Errorf("import of an unknown material: %v", err)
	}

	uc, err := c.UserClusters(ctx, all[0].UserID)
	must(err)
	if len(uc) != len(all) {
		t.Errorf("user clusters %d", len(uc))
	}
	must(c.DeleteCluster(ctx, farm))
	if _, err := c.ClusterStatus(ctx, farm); connect.KindOf(err) != connect.KindNotFound {
		t.Errorf("deleted cluster still answers: %v", err)
	}
}
