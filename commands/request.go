package commands

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Payload limits: what Handle accepts on a topic (MaxPayloadFor); anything
// longer is refused unread.
const (
	MaxPayload       = 4 << 10  // most commands
	MaxNotePayload   = 16 << 10 // printer and cluster set topics: notes of 3,500 characters, escaped
	MaxUploadPayload = 1 << 20  // bridge/request/upload_material: a material profile in base64
)

// Request is one parsed command message.
type Request struct {
	Action string `json:"action"`
	// Transaction is the caller's correlation id, echoed in every answer:
	// a JSON string or number, kept as sent.
	Transaction json.RawMessage `json:"transaction,omitempty"`
	// Job is a print job uuid (cluster commands).
	Job string `json:"job,omitempty"`
	// Cluster names the cluster of a bridge request: its topic id or its
	// cloud id.
	Cluster string `json:"cluster,omitempty"`
	// JobID is a Digital Factory library job id (bridge request print).
	JobID string `json:"job_id,omitempty"`
	// Tasks are maintenance task codes (bridge request maintenance_done);
	// empty means every task that is due.
	Tasks []string `json:"tasks,omitempty"`

	// The fields of the management commands; fieldsOf says which action
	// takes which.
	Name                 string   `json:"name,omitempty"`
	MaterialProfileID    string   `json:"material_profile_id,omitempty"`
	Note                 *string  `json:"note,omitempty"`
	OrganizationShared   *bool    `json:"organization_shared,omitempty"`
	TeamIDs              []string `json:"team_ids,omitempty"`
	Confirm              string   `json:"confirm,omitempty"`
	RequirePrintApproval *bool    `json:"require_print_approval,omitempty"`
	EnablePrintPrep      *bool    `json:"enable_print_prep,omitempty"`
	Content              string   `json:"content,omitempty"`
	File                 string   `json:"file,omitempty"`
	Printers             []string `json:"printers,omitempty"`
	Status               string   `json:"status,omitempty"`
	Page                 int      `json:"page,omitempty"`
	Limit                int      `json:"limit,omitempty"`
	Start                string   `json:"start,omitempty"`
	End                  string   `json:"end,omitempty"`
	PIN                  string   `json:"pin,omitempty"`
	PrinterBrand         string   `json:"printer_brand,omitempty"`
	ConnectionID         string   `json:"connection_id,omitempty"`
	MakerBotPrinterID    string   `json:"makerbot_printer_id,omitempty"`
	User                 string   `json:"user,omitempty"`
	Team                 string   `json:"team,omitempty"`
	Version              string   `json:"version,omitempty"`
	// Printer is a printer's topic id or LAN address (bridge request pair).
	Printer string `json:"printer,omitempty"`

	// fields are the JSON keys the payload carried, for checkFields.
	fields []string
}

// fieldsOf lists the fields each action takes beside action and
// transaction; any other field is refused, so {"action": "abort", "job":
// "<other uuid>"} cannot look like it aborts that other job.
var fieldsOf = map[string][]string{
	"move_to_top": {"job"}, "remove": {"job"}, "force": {"job"}, "reprint": {"job"},
	"refresh": {"cluster"}, "maintenance_done": {"cluster", "tasks"}, "print": {"cluster", "job_id"},
	"rename": {"name"}, "import_material": {"material_profile_id"},
	"note": {"note"}, "job_note": {"job", "note"}, "share": {"organization_shared", "team_ids"}, "delete": {"confirm"},
	"settings":        {"require_print_approval", "enable_print_prep"},
	"upload_material": {"name", "content", "file", "printers"},
	"job":             {"cluster", "job"}, "print_jobs": {"cluster", "status", "page", "limit"},
	"report":    {"cluster", "start", "end", "page", "limit"},
	"register":  {"pin", "printer_brand", "connection_id", "makerbot_printer_id"},
	"share_all": {"organization_shared", "team_ids"}, "team_count": {"team_ids"},
	"cluster": {"cluster"}, "user_clusters": {"user"}, "spec": {"version"}, "delete_team": {"team", "confirm"},
	"pair": {"printer"},
}

// checkFields refuses a field the action does not take.
func checkFields(r Request) error {
	for _, f := range r.fields {
		if f == "action" || f == "transaction" || slices.Contains(fieldsOf[r.Action], f) {
			continue
		}
		if takes := fieldsOf[r.Action]; len(takes) > 0 {
			return fmt.Errorf("%s takes %s, not %q", r.Action, strings.Join(takes, ", "), f)
		}
		return fmt.Errorf("%s takes no field %q (only action and transaction)", r.Action, f)
	}
	return nil
}

// actionsOf lists the actions of a kind of command topic. A printer's
// topic also takes the cluster management actions, for a cluster of one
// printer (which has no device of its own).
func actionsOf(kind topics.Kind) []string {
	switch kind {
	case topics.Printer:
		return append(slices.Clone(PrinterActions), ClusterManagement...)
	case topics.Cluster:
		return ClusterActions
	case topics.Workspace:
		return WorkspaceActions
	}
	return BridgeActions
}

// errMissingAction is fine for bridge requests, whose topic names the
// action.
var errMissingAction = errors.New(`missing "action"`)

// bareWord reports whether w can be an action: a lowercase letter, then
// up to 39 lowercase letters or underscores.
func bareWord(w string) bool {
	if len(w) == 0 || len(w) > 40 || w[0] < 'a' || w[0] > 'z' {
		return false
	}
	for _, c := range []byte(w[1:]) {
		if (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// Parse reads a command payload: a bare word such as "pause", or a JSON
// object {"action": …, "transaction": …, …}. Unknown fields and wrong types
// are errors, so a typo never turns into a different command.
func Parse(payload []byte, limit int) (Request, error) {
	var r Request
	if len(payload) > limit {
		return r, fmt.Errorf("payload is %d bytes; at most %d", len(payload), limit)
	}
	p := bytes.TrimSpace(payload)
	if len(p) == 0 {
		return r, errors.New("empty payload")
	}
	if p[0] != '{' {
		w := strings.ToLower(string(p))
		if !bareWord(w) {
			return r, errors.New(`want a bare action word or a JSON object {"action": …}`)
		}
		r.Action = w
		return r, nil
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		// Keep the action when it is readable, so the answer names it.
		return Request{Action: ActionOf(p)}, errors.New(jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return Request{Action: ActionOf(p)}, errors.New("invalid JSON: trailing data after the object")
	}
	var keys map[string]json.RawMessage
	if json.Unmarshal(p, &keys) == nil {
		for k := range keys {
			r.fields = append(r.fields, k)
		}
		slices.Sort(r.fields)
	}
	if len(r.Transaction) > 0 {
		// Keep the transaction even when the rest is bad, so the error
		// reaches the caller's correlation.
		switch r.Transaction[0] {
		case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		default:
			tx := r.Transaction
			return Request{Transaction: nil}, fmt.Errorf("transaction must be a string or a number, not %s", truncate(string(tx), 40))
		}
		if len(r.Transaction) > 128 {
			return Request{}, errors.New("transaction is longer than 128 bytes")
		}
	}
	r.Action = strings.ToLower(strings.TrimSpace(r.Action))
	if r.Action == "" {
		return r, errMissingAction
	}
	if !bareWord(r.Action) {
		return r, fmt.Errorf("action %q is not a word", truncate(r.Action, 40))
	}
	return r, nil
}

// ActionOf digs the action out of a payload that failed to parse (or
// was not parsed): a bare word or the JSON "action" string; "" when it is
// not readable.
func ActionOf(payload []byte) string {
	p := bytes.TrimSpace(payload)
	if len(p) == 0 || len(p) > MaxUploadPayload {
		return ""
	}
	if p[0] != '{' {
		if w := strings.ToLower(string(p)); bareWord(w) {
			return w
		}
		return ""
	}
	var v struct {
		Action json.RawMessage `json:"action"`
	}
	var a string
	if json.Unmarshal(p, &v) != nil || json.Unmarshal(v.Action, &a) != nil {
		return ""
	}
	if a = strings.ToLower(strings.TrimSpace(a)); bareWord(a) {
		return a
	}
	return ""
}

// TransactionOf digs the transaction out of a payload that failed to
// parse, so even a bad command's answer carries it when possible.
func TransactionOf(payload []byte) json.RawMessage {
	if len(payload) > MaxUploadPayload {
		return nil
	}
	var v struct {
		Transaction json.RawMessage `json:"transaction"`
	}
	if json.Unmarshal(payload, &v) != nil || len(v.Transaction) == 0 || len(v.Transaction) > 128 {
		return nil
	}
	switch v.Transaction[0] {
	case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return v.Transaction
	}
	return nil
}

func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "want a JSON object {\"action\": …}, not " + te.Value
		}
		return fmt.Sprintf("field %q must be %s", te.Field, typeWord(te.Type.String()))
	}
	// encoding/json says `json: unknown field "x"`; say it plainly.
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + truncate(f, 60)
	}
	return "invalid JSON: " + truncate(strings.TrimPrefix(err.Error(), "json: "), 120)
}

func typeWord(t string) string {
	switch t {
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	}
	return t
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// prefixRe finds "action" or "transaction" with a string or number value
// in the first bytes of a payload too large to parse. Compiled on the
// first such payload: the bounded repeats make programs of a quarter MB.
var prefixRe = sync.OnceValue(func() map[string]*regexp.Regexp {
	return map[string]*regexp.Regexp{
		"action":      regexp.MustCompile(`"action"\s*:\s*"([a-z][a-z_]{0,39})"`),
		"transaction": regexp.MustCompile(`"transaction"\s*:\s*("(?:[^"\\]|\\.){0,126}"|-?[0-9][0-9.eE+-]{0,30})`),
	}
})

// prefixField digs a field out of the start of an oversized payload, for
// its answer; "" when it is not there.
func prefixField(prefix []byte, field string) string {
	m := prefixRe()[field].FindSubmatch(prefix)
	if m == nil {
		return ""
	}
	if field == "transaction" && !json.Valid(m[1]) {
		return ""
	}
	return string(m[1])
}
