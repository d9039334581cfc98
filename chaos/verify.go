package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/custimport/custimport/libs/crm/crmmock"
)

// observed is everything the checks look at, gathered once the run settled.
type observed struct {
	Gen       genSummary
	Main      fileRows
	Refused   fileRows
	MainRun   importRun
	RefuseRun importRun
	Reported  map[int64]int // main file's rejects report: row -> times
	Damage    []string      // unparsable lines in it
	PG        map[string]pgRow
	PGRows    int64
	CRM       crmmock.Stats
	Dead      []deadLetter
	Faults    []kindCount
	Planned   int // faults scheduled besides the producer kill
	Kills     int
	Exits     []exit
	Converged bool
	Last      snapshot

	// PlannedStops is how many cluster node stops were scheduled (cluster
	// mode), besides Planned.
	PlannedStops int
}

// check is one pass/fail line of the verdict, with up to a few emails as
// evidence.
type check struct {
	Name    string
	OK      bool
	Detail  string
	Samples []string
}

const maxSamples = 5

func sample(set []string) []string {
	slices.Sort(set)
	if len(set) > maxSamples {
		return set[:maxSamples]
	}
	return set
}

func (o *observed) checks() []check {
	var cs []check

	cs = append(cs, check{
		Name:   "settled before the --duration bound",
		OK:     o.Converged,
		Detail: fmt.Sprintf("last seen: %d customers %v, queued %v", o.Last.Total, o.Last.States, o.Last.Ready),
	})

	// data/gen's own count and the producer's rules must agree, or the
	// expectations below are wrong, not the product.
	cs = append(cs, check{
		Name: "data/gen --count agrees with the producer's validation",
		OK:   o.Gen.UniqueEmails == int64(len(o.Main.Emails)) && o.Gen.Invalid == int64(len(o.Main.Invalid)) && o.Gen.Rows == o.Main.Rows,
		Detail: fmt.Sprintf("gen: rows %d, invalid %d, unique %d; csvsource+customer: rows %d, invalid %d, unique %d",
			o.Gen.Rows, o.Gen.Invalid, o.Gen.UniqueEmails, o.Main.Rows, len(o.Main.Invalid), len(o.Main.Emails)),
	})

	// Postgres: every valid email exactly once (UNIQUE keeps it to once;
	// the set must match) and in the state it must end in.
	var missing, unexpected, wrongState []string
	for e := range o.Main.Emails {
		r, ok := o.PG[e]
		switch {
		case !ok:
			missing = append(missing, e)
		case r.State != "synced":
			wrongState = append(wrongState, e)
		}
	}
	for e := range o.Refused.Emails {
		r, ok := o.PG[e]
		switch {
		case !ok:
			missing = append(missing, e)
		case r.State != "rejected":
			wrongState = append(wrongState, e)
		}
	}
	for e := range o.PG {
		if _, ok := o.Main.Emails[e]; ok {
			continue
		}
		if _, ok := o.Refused.Emails[e]; !ok {
			unexpected = append(unexpected, e)
		}
	}
	want := len(o.Main.Emails) + len(o.Refused.Emails)
	cs = append(cs, check{
		Name:    "Postgres holds every valid email exactly once",
		OK:      len(missing) == 0 && len(unexpected) == 0 && o.PGRows == int64(want),
		Detail:  fmt.Sprintf("want %d, rows %d, missing %d, unexpected %d", want, o.PGRows, len(missing), len(unexpected)),
		Samples: sample(append(missing, unexpected...)),
	})
	cs = append(cs, check{
		Name:    "every customer ends synced (refused domain: rejected)",
		OK:      len(wrongState) == 0,
		Detail:  fmt.Sprintf("%d in another state", len(wrongState)),
		Samples: sample(wrongState),
	})

	// CRM: each expected customer created exactly once, nothing else.
	var notOnce, extra []string
	for e := range o.Main.Emails {
		if o.CRM.PerEmail[e].Created != 1 {
			notOnce = append(notOnce, e)
		}
	}
	for e, st := range o.CRM.PerEmail {
		if _, ok := o.Main.Emails[e]; !ok && st.Created > 0 {
			extra = append(extra, e)
		}
	}
	cs = append(cs, check{
		Name: "the CRM created each expected customer exactly once",
		OK:   len(notOnce) == 0 && len(extra) == 0 && len(o.CRM.Duplicates) == 0 && o.CRM.Conflicts == 0,
		Detail: fmt.Sprintf("created %d for %d expected; not exactly once %d; not expected %d; duplicates %d; conflicts %d",
			o.CRM.Created, len(o.Main.Emails), len(notOnce), len(extra), len(o.CRM.Duplicates), o.CRM.Conflicts),
		Samples: sample(append(append(notOnce, extra...), o.CRM.Duplicates...)),
	})

	// Rows: every invalid row in the rejects report, no valid one there;
	// the valid rows are accounted for by the Postgres set above.
	var unreported, misreported []string
	for row := range o.Main.Invalid {
		if o.Reported[row] == 0 {
			unreported = append(unreported, fmt.Sprintf("row %d", row))
		}
	}
	for row := range o.Reported {
		if _, ok := o.Main.Invalid[row]; !ok {
			misreported = append(misreported, fmt.Sprintf("row %d", row))
		}
	}
	cs = append(cs, check{
		Name: "every row accounted for (valid: in Postgres; invalid: in the rejects report)",
		OK:   o.MainRun.Complete && o.RefuseRun.Complete && len(unreported) == 0 && len(misreported) == 0 && len(o.Damage) == 0,
		Detail: fmt.Sprintf("producer complete %v; invalid rows %d, reported %d distinct; unreported %d; valid rows reported %d; damaged report lines %d",
			o.MainRun.Complete, len(o.Main.Invalid), len(o.Reported), len(unreported), len(misreported), len(o.Damage)),
		Samples: sample(append(append(unreported, misreported...), o.Damage...)),
	})

	// Dead letters: only the refused domain, each of them at least once.
	var badDead []string
	refusedDead := map[string]bool{}
	for _, d := range o.Dead {
		_, refused := o.Refused.Emails[d.Email]
		if d.Reason == "crm_rejected" && refused {
			refusedDead[d.Email] = true
			continue
		}
		badDead = append(badDead, fmt.Sprintf("%s (%s: %s)", d.Email, d.Reason, d.LastError))
	}
	var notDead []string
	for e := range o.Refused.Emails {
		if !refusedDead[e] {
			notDead = append(notDead, e)
		}
	}
	cs = append(cs, check{
		Name:    "dead letters: the refused customers (crm_rejected), nothing else",
		OK:      len(badDead) == 0 && len(notDead) == 0,
		Detail:  fmt.Sprintf("%d dead letters; %d unexpected; %d refused customers not dead-lettered", len(o.Dead), len(badDead), len(notDead)),
		Samples: sample(append(badDead, notDead...)),
	})

	// A run that ended before its faults struck proves little: each kind
	// (as many kinds as faults were planned) and the producer kill must
	// have happened.
	wantKinds := min(o.Planned, len(faultWeights))
	var missingKinds []string
	struck := map[string]bool{}
	for _, f := range o.Faults {
		struck[f.name] = f.n > 0
	}
	for _, w := range faultWeights {
		if !struck[string(w.kind)] {
			missingKinds = append(missingKinds, string(w.kind))
		}
	}
	cs = append(cs, check{
		Name: "the faults struck while the import ran",
		OK:   len(faultWeights)-len(missingKinds) >= wantKinds && o.MainRun.Killed > 0,
		Detail: fmt.Sprintf("%d of %d kinds (%d wanted); producer SIGKILLed %d time(s); missing: %s",
			len(faultWeights)-len(missingKinds), len(faultWeights), wantKinds, o.MainRun.Killed, strings.Join(missingKinds, ", ")),
	})

	if o.PlannedStops > 0 {
		stops := 0
		for _, f := range o.Faults {
			if f.name == string(faultStopNode) {
				stops = f.n
			}
		}
		cs = append(cs, check{
			Name:   "cluster nodes stopped and started again mid-import",
			OK:     stops >= o.PlannedStops,
			Detail: fmt.Sprintf("%d of %d node stops, each node back", stops, o.PlannedStops),
		})
	}

	var exits []string
	for _, e := range o.Exits {
		exits = append(exits, fmt.Sprintf("%s: %s", e.Process, e.Err))
	}
	cs = append(cs, check{
		Name:    "no process exited unless killed (reconnect, do not die)",
		OK:      len(exits) == 0,
		Detail:  fmt.Sprintf("%d exits on their own (each restarted)", len(exits)),
		Samples: exits,
	})
	return cs
}

// writeTable prints the counts and the verdict.
func writeTable(w io.Writer, o *observed, cs []check) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows, published, rejected := o.MainRun.sum()
	line := func(k string, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...))
	}
	line("rows in file", "%d (+%d refused-domain rows in a second file)", o.Main.Rows, o.Refused.Rows)
	line("producer runs", "%d (%d SIGKILLed on purpose, %d exited on their own)", o.MainRun.Runs, o.MainRun.Killed, len(o.MainRun.Exits))
	line("rows read (summaries)", "%d; published %d, rejected %d (killed runs print none; resumes overlap)", rows, published, rejected)
	line("rejected", "%d distinct rows in the report, %d expected invalid", len(o.Reported), len(o.Main.Invalid))
	line("expected valid emails", "%d (data/gen --count %d) + %d refused", len(o.Main.Emails), o.Gen.UniqueEmails, len(o.Refused.Emails))
	states := slices.Sorted(maps.Keys(stateCounts(o.PG)))
	counts := stateCounts(o.PG)
	var parts []string
	for _, s := range states {
		parts = append(parts, fmt.Sprintf("%s %d", s, counts[s]))
	}
	line("in Postgres", "%d (%s)", o.PGRows, strings.Join(parts, ", "))
	line("CRM creations", "%d (distinct %d; requests %d, replays %d, injected 503 %d, 429 %d, 4xx %d)",
		o.CRM.Created, o.CRM.Customers, o.CRM.Requests, o.CRM.Replays, o.CRM.Failed, o.CRM.RateLimited, o.CRM.Rejected)
	line("CRM duplicates", "%d (duplicates %d + conflicts %d)", len(o.CRM.Duplicates)+o.CRM.Conflicts, len(o.CRM.Duplicates), o.CRM.Conflicts)
	byReason := map[string]int{}
	for _, d := range o.Dead {
		byReason[d.Reason]++
	}
	var dl []string
	for _, r := range slices.Sorted(maps.Keys(byReason)) {
		dl = append(dl, fmt.Sprintf("%s %d", r, byReason[r]))
	}
	if len(dl) == 0 {
		dl = []string{"none"}
	}
	line("dead letters by reason", "%s", strings.Join(dl, ", "))
	var fs []string
	total := 0
	for _, f := range o.Faults {
		fs = append(fs, fmt.Sprintf("%s %d", f.name, f.n))
		total += f.n
	}
	line("faults injected", "%d: %s; producer SIGKILL %d", total, strings.Join(fs, ", "), o.MainRun.Killed)
	line("consumer exits on their own", "%d", len(o.Exits)-len(o.MainRun.Exits)-len(o.RefuseRun.Exits))
	fmt.Fprintln(tw)
	for _, c := range cs {
		mark := "PASS"
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s: %s\n", mark, c.Name, c.Detail)
		for _, s := range c.Samples {
			fmt.Fprintf(tw, "\t    %s%s\n", s, evidence(o, s))
		}
	}
	return tw.Flush()
}

// evidence describes an email's fate in Postgres and the CRM, when s is one.
func evidence(o *observed, s string) string {
	if !strings.Contains(s, "@") || strings.Contains(s, " ") {
		return ""
	}
	out := ""
	if r, ok := o.PG[s]; ok {
		out += fmt.Sprintf(" | postgres: %s, attempts %d, lease %q, row %d, last error %q", r.State, r.Attempts, r.LeaseOwner, r.SourceRow, r.LastError)
	} else {
		out += " | postgres: absent"
	}
	st := o.CRM.PerEmail[s]
	out += fmt.Sprintf(" | crm: created %d, replays %d, conflicts %d", st.Created, st.Replays, st.Conflicts)
	if row, ok := o.Main.Emails[s]; ok {
		out += fmt.Sprintf(" | first in row %d", row)
	}
	return out
}

func stateCounts(pg map[string]pgRow) map[string]int {
	out := map[string]int{}
	for _, r := range pg {
		out[r.State]++
	}
	return out
}

// failingEmails lists the emails named by failing checks, for the log search.
func failingEmails(cs []check) []string {
	seen := map[string]bool{}
	for _, c := range cs {
		if c.OK {
			continue
		}
		for _, s := range c.Samples {
			if f := strings.Fields(s); len(f) > 0 && strings.Contains(f[0], "@") {
				seen[f[0]] = true
			}
		}
	}
	out := slices.Collect(maps.Keys(seen))
	sort.Strings(out)
	return out
}
