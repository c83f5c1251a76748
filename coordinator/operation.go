package coordinator

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// Operation is a joint operation of the alliance, as the coordinator's
// configuration names it (operations:). It is a definition only: its
// results are the rollups of its phases' windows and of the whole.
//
//	operations:
//	  - name: isa-2020
//	    title: "Operation ISA 2020"
//	    phases:
//	      - {name: phase 1, from: 2020-01-01, to: 2020-05-30}
//	      - {name: phase 2, from: 2020-06-01, to: 2020-09-30}
//	    members: [FR, AE, IT, SG, ES, BH, SN, GB, AU]
type Operation struct {
	// Name identifies the operation on the command line and in URLs.
	Name string `yaml:"name"`
	// Title is the operation's name for people.
	Title string `yaml:"title"`
	// Phases are date ranges in order, not overlapping.
	Phases []Phase `yaml:"phases"`
	// Members are the codes of the members taking part; empty means every
	// registered member. Codes may be written in either case.
	Members []string `yaml:"members"`
}

// Phase is one date range of an operation.
type Phase struct {
	// Name is the phase's name for people; empty is "phase N".
	Name string `yaml:"name"`
	// From is the first day, YYYY-MM-DD.
	From string `yaml:"from"`
	// To is the last day, YYYY-MM-DD, inclusive.
	To string `yaml:"to"`
}

// ErrOperationNotFound is returned when no configured operation has the
// name asked for.
var ErrOperationNotFound = errors.New("no such operation")

var operationNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// maxTitle bounds an operation's or a phase's title, in characters.
const maxTitle = 200

// From returns the first day of the operation's first phase.
func (o Operation) From() string { return o.Phases[0].From }

// To returns the last day of the operation's last phase.
func (o Operation) To() string { return o.Phases[len(o.Phases)-1].To }

// normalize upper-cases member codes and names unnamed phases, as
// ParseFileConfig and Open expect them.
func (o *Operation) normalize() {
	for i := range o.Members {
		o.Members[i] = identity.UpperMember(o.Members[i])
	}
	for i := range o.Phases {
		if o.Phases[i].Name == "" {
			o.Phases[i].Name = fmt.Sprintf("phase %d", i+1)
		}
	}
}

// Validate says what to fix in an operation, on its own; ValidateOperations
// also checks its members against the registry.
func (o Operation) Validate() error {
	if !operationNameRE.MatchString(o.Name) {
		return fmt.Errorf("name %s: want 1-63 lower-case letters, digits and dashes, as in isa-2020", echo.Quote(o.Name))
	}
	if !printable(o.Title) {
		return fmt.Errorf("operation %s: title: want at most %d printable characters", o.Name, maxTitle)
	}
	if len(o.Phases) == 0 {
		return fmt.Errorf("operation %s: no phases; give at least one {from: YYYY-MM-DD, to: YYYY-MM-DD}", o.Name)
	}
	var prevTo uint32
	for i, p := range o.Phases {
		if !printable(p.Name) {
			return fmt.Errorf("operation %s: phases[%d]: name: want at most %d printable characters", o.Name, i, maxTitle)
		}
		from, err := records.ParseDate(p.From)
		if err != nil {
			return fmt.Errorf("operation %s: phases[%d]: from: %w", o.Name, i, err)
		}
		to, err := records.ParseDate(p.To)
		if err != nil {
			return fmt.Errorf("operation %s: phases[%d]: to: %w", o.Name, i, err)
		}
		if to < from {
			return fmt.Errorf("operation %s: phases[%d]: %s..%s ends before it starts", o.Name, i, p.From, p.To)
		}
		if i > 0 && from <= prevTo {
			return fmt.Errorf("operation %s: phases[%d] starts on %s, within or before phases[%d] (to %s); give phases in order, without overlap", o.Name, i, p.From, i-1, o.Phases[i-1].To)
		}
		prevTo = to
	}
	seen := map[string]bool{}
	for i, m := range o.Members {
		if !identity.ValidMember(m) {
			return fmt.Errorf("operation %s: members[%d]: member code %s: want 2-8 letters or digits, as in FR", o.Name, i, echo.Quote(m))
		}
		if seen[m] {
			return fmt.Errorf("operation %s: members[%d]: %s is listed twice", o.Name, i, m)
		}
		seen[m] = true
	}
	return nil
}

// printable reports whether s is short, valid UTF-8 text without control
// characters.
func printable(s string) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxTitle {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// ValidateOperations checks every operation and that names are unique.
// When members is not nil, each operation's members must be registered:
// a rollup asks the registered members, so an operation cannot take part
// of a member the coordinator never asks.
func ValidateOperations(ops []Operation, members []Member) error {
	seen := map[string]bool{}
	for i := range ops {
		ops[i].normalize()
		o := ops[i]
		if err := o.Validate(); err != nil {
			return fmt.Errorf("operations[%d]: %w", i, err)
		}
		if seen[o.Name] {
			return fmt.Errorf("operations[%d]: operation %s is declared twice", i, o.Name)
		}
		seen[o.Name] = true
		if members == nil {
			continue
		}
		for _, code := range o.Members {
			if !slices.ContainsFunc(members, func(m Member) bool { return m.Code == code }) {
				return fmt.Errorf("operations[%d]: operation %s: member %s is not registered; register it (members:) or leave it out", i, o.Name, code)
			}
		}
	}
	return nil
}

// proto returns the operation as ListOperations shows it; an operation
// without members lists every registered member.
func (o Operation) proto(registered []string) *fedreportv1.Operation {
	out := &fedreportv1.Operation{Name: o.Name, Title: o.Title, Members: slices.Clone(o.Members), From: o.From(), To: o.To()}
	if len(out.Members) == 0 {
		out.Members = slices.Clone(registered)
	}
	for _, p := range o.Phases {
		out.Phases = append(out.Phases, &fedreportv1.OperationPhase{Name: p.Name, From: p.From, To: p.To})
	}
	return out
}

// ListOperations returns a page of the configured operations.
func (c *Coordinator) ListOperations(req *fedreportv1.ListOperationsRequest) (*fedreportv1.ListOperationsResponse, error) {
	verr := &ValidationError{}
	size := int(req.GetPageSize())
	if size < 0 {
		verr.add("page_size", "%d is negative; want 0 (all operations) or more", size)
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) != 4 || int(binary.BigEndian.Uint32(b)) > len(c.operations) {
			verr.add("page_token", "not a token this coordinator issued; pass next_page_token unchanged")
		} else {
			start = int(binary.BigEndian.Uint32(b))
		}
	}
	if err := verr.errOrNil(); err != nil {
		return nil, err
	}
	end := len(c.operations)
	if size > 0 && start+size < end {
		end = start + size
	}
	resp := &fedreportv1.ListOperationsResponse{}
	codes := c.reg.codes()
	for _, o := range c.operations[start:end] {
		resp.Operations = append(resp.Operations, o.proto(codes))
	}
	if end < len(c.operations) {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, uint32(end)))
	}
	return resp, nil
}

// cloneOperations copies ops deeply, so that normalizing them leaves the
// caller's configuration as it was.
func cloneOperations(ops []Operation) []Operation {
	out := make([]Operation, len(ops))
	for i, o := range ops {
		out[i] = Operation{Name: o.Name, Title: o.Title, Phases: slices.Clone(o.Phases), Members: slices.Clone(o.Members)}
	}
	return out
}

// OperationWindow returns the window of phase of op as ListOperations gave
// it: phase "" is the whole operation, "1".."N" the phase of that number,
// anything else the phase of that name. label names the window for people.
func OperationWindow(op *fedreportv1.Operation, phase string) (from, to, label string, err error) {
	if phase == "" {
		return op.GetFrom(), op.GetTo(), "whole operation", nil
	}
	phases := op.GetPhases()
	for i, p := range phases {
		if phase == fmt.Sprint(i+1) || phase == p.GetName() {
			return p.GetFrom(), p.GetTo(), p.GetName(), nil
		}
	}
	names := make([]string, len(phases))
	for i, p := range phases {
		names[i] = fmt.Sprintf("%d (%s)", i+1, p.GetName())
	}
	return "", "", "", fmt.Errorf("operation %s has no phase %s; its phases are %s", op.GetName(), echo.Quote(phase), strings.Join(names, ", "))
}
