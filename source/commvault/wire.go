package commvault

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/deact/deact/state"
)

// Listed is one organization as GET /Organization lists it.
type Listed struct {
	ID      string   // shortName.id
	Name    string   // connectName
	Domains []string // providerDomainName, shortName.domainName
}

// Org is one organization's details as deact mirrors them.
type Org struct {
	ID       string
	Name     string
	Domains  []string  // every domain name the details give, as the API spells them
	Disabled state.Ops // OpLogin|OpToken, OpBackup, OpRestore from deactivateOptions (or a deactivated status)
}

// The wire types below read both of Commvault's answer formats: JSON members and, for Accept: application/xml,
// the XML form in which Commvault writes scalar members as attributes and lists as repeated elements. Root
// element names are not checked (they differ between releases); fields deact does not read are ignored.
type (
	shortName struct {
		ID         idValue `json:"id" xml:"id,attr"`
		DomainName string  `json:"domainName" xml:"domainName,attr"`
	}
	provider struct {
		ConnectName        string    `json:"connectName" xml:"connectName,attr"`
		ProviderDomainName string    `json:"providerDomainName" xml:"providerDomainName,attr"`
		ShortName          shortName `json:"shortName" xml:"shortName"`
	}
	listAnswer struct {
		genericAnswer
		Providers []provider `json:"providers" xml:"providers"`
	}
	// deactivateOptions takes the members as XML attributes (as Commvault writes scalars) or as child elements
	// (as some of its XML templates do); both at once must agree.
	deactivateOptions struct {
		DisableLogin   flagValue `json:"disableLogin" xml:"disableLogin,attr"`
		DisableBackup  flagValue `json:"disableBackup" xml:"disableBackup,attr"`
		DisableRestore flagValue `json:"disableRestore" xml:"disableRestore,attr"`
		LoginElem      flagValue `json:"-" xml:"disableLogin"`
		BackupElem     flagValue `json:"-" xml:"disableBackup"`
		RestoreElem    flagValue `json:"-" xml:"disableRestore"`
	}
	organization struct {
		ConnectName        string             `json:"connectName" xml:"connectName,attr"`
		ProviderDomainName string             `json:"providerDomainName" xml:"providerDomainName,attr"`
		ShortName          shortName          `json:"shortName" xml:"shortName"`
		EmailDomainNames   []string           `json:"emailDomainNames" xml:"emailDomainNames"`
		Status             statusValue        `json:"status" xml:"status,attr"`
		DeactivateOptions  *deactivateOptions `json:"deactivateOptions" xml:"deactivateOptions"`
	}
	organizationProperties struct {
		PrimaryDomain     string             `json:"primaryDomain" xml:"primaryDomain,attr"`
		DeactivateOptions *deactivateOptions `json:"deactivateOptions" xml:"deactivateOptions"`
	}
	organizationInfo struct {
		Organization           organization           `json:"organization" xml:"organization"`
		OrganizationProperties organizationProperties `json:"organizationProperties" xml:"organizationProperties"`
	}
	detailsAnswer struct {
		genericAnswer
		OrganizationInfo *organizationInfo `json:"organizationInfo" xml:"organizationInfo"`
	}
	loginAnswer struct {
		Token  string `json:"token" xml:"token,attr"`
		Errors []struct {
			Code    int    `json:"errorCode" xml:"errorCode,attr"`
			Message string `json:"errLogMessage" xml:"errLogMessage,attr"`
		} `json:"errList" xml:"errList"`
	}
	// genericAnswer is Commvault's error shape: errorCode and errorMessage at the top, or inside "error".
	genericAnswer struct {
		Code    int    `json:"errorCode" xml:"errorCode,attr"`
		Message string `json:"errorMessage" xml:"errorMessage,attr"`
		Error   *struct {
			Code    int    `json:"errorCode" xml:"errorCode,attr"`
			Message string `json:"errorMessage" xml:"errorMessage,attr"`
		} `json:"error" xml:"error"`
	}
)

func (g *genericAnswer) apiError() (int, string) {
	if g.Code != 0 {
		return g.Code, g.Message
	}
	if g.Error != nil && g.Error.Code != 0 {
		return g.Error.Code, g.Error.Message
	}
	return 0, ""
}

func (*loginAnswer) apiError() (int, string) { return 0, "" }

// decode reads one answer. XML goes through encoding/xml in strict mode: it resolves no external entities and
// loads no DTD, and an undefined entity is an error; the caller bounds the size.
func decode(b []byte, isXML bool, out any) error {
	if isXML {
		d := xml.NewDecoder(bytes.NewReader(b))
		d.Strict = true
		return d.Decode(out)
	}
	return json.Unmarshal(b, out)
}

// orgs checks the listing: IDs must be valid state IDs and appear once.
func (a *listAnswer) orgs() ([]Listed, error) {
	out := make([]Listed, 0, len(a.Providers))
	seen := make(map[string]bool, len(a.Providers))
	for i, p := range a.Providers {
		id := string(p.ShortName.ID)
		if err := state.ValidateID("org", id); err != nil {
			return nil, fmt.Errorf("commvault listed organization %d (%q): %w", i, printable([]byte(p.ConnectName), 80), err)
		}
		if seen[id] {
			return nil, fmt.Errorf("commvault listed organization %s twice", id)
		}
		seen[id] = true
		out = append(out, Listed{ID: id, Name: p.ConnectName, Domains: nonEmpty(p.ProviderDomainName, p.ShortName.DomainName)})
	}
	return out, nil
}

// org maps the details. deactivateOptions, when present, says what is disabled: under organization (as
// research of cvpysdk found it) or under organizationProperties (as deact's own Commvault-compatible API writes
// it); both present must agree. Without it a status member decides (a deactivated status disables login,
// token, backup and restore, as Commvault's deactivate does by default); with neither the organization is active.
func (a *detailsAnswer) org() (Org, error) {
	if a.OrganizationInfo == nil {
		return Org{}, errors.New("the answer has no organizationInfo")
	}
	o := a.OrganizationInfo.Organization
	out := Org{ID: string(o.ShortName.ID), Name: o.ConnectName,
		Domains: nonEmpty(append([]string{o.ProviderDomainName, o.ShortName.DomainName, a.OrganizationInfo.OrganizationProperties.PrimaryDomain}, o.EmailDomainNames...)...)}
	var found []state.Ops
	for _, d := range []*deactivateOptions{o.DeactivateOptions, a.OrganizationInfo.OrganizationProperties.DeactivateOptions} {
		if d == nil {
			continue
		}
		ops, err := d.ops()
		if err != nil {
			return Org{}, err
		}
		found = append(found, ops)
	}
	switch {
	case len(found) == 2 && found[0] != found[1]:
		return Org{}, errors.New("organization.deactivateOptions and organizationProperties.deactivateOptions disagree")
	case len(found) > 0:
		out.Disabled = found[0]
		return out, nil
	}
	if o.Status != "" {
		active, err := o.Status.active()
		if err != nil {
			return Org{}, err
		}
		if !active {
			out.Disabled = state.OpLogin | state.OpToken | state.OpBackup | state.OpRestore
		}
	}
	return out, nil
}

// ops maps deactivateOptions: disableLogin denies login and token (a Commvault login is how its users get a
// token, as deact's own Commvault-compatible API has it), disableBackup backup, disableRestore restore.
func (d *deactivateOptions) ops() (state.Ops, error) {
	var ops state.Ops
	for _, f := range []struct {
		name     string
		attr     flagValue
		elem     flagValue
		disables state.Ops
	}{{"disableLogin", d.DisableLogin, d.LoginElem, state.OpLogin | state.OpToken},
		{"disableBackup", d.DisableBackup, d.BackupElem, state.OpBackup},
		{"disableRestore", d.DisableRestore, d.RestoreElem, state.OpRestore}} {
		on, err := f.attr.value()
		if err != nil {
			return 0, fmt.Errorf("deactivateOptions.%s: %w", f.name, err)
		}
		if f.elem != "" {
			onElem, err := f.elem.value()
			if err != nil {
				return 0, fmt.Errorf("deactivateOptions.%s: %w", f.name, err)
			}
			if f.attr != "" && onElem != on {
				return 0, fmt.Errorf("deactivateOptions.%s: the attribute and the element disagree", f.name)
			}
			on = onElem
		}
		if on {
			ops |= f.disables
		}
	}
	return ops, nil
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// idValue is an ID Commvault writes as a JSON number (or string); XML gives it as text.
type idValue string

func (v *idValue) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*v = idValue(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("an id must be a number or a string, not %s", printable(b, 40))
	}
	*v = idValue(s)
	return nil
}

// flagValue is one deactivateOptions member as it came: Commvault's documentation writes them as 1/0 (XML
// templates) and its SDK sends JSON booleans, so true/false and 1/0, as booleans, numbers or strings, are
// accepted; anything else is an error rather than a guess. Absent is false.
type flagValue string

func (f *flagValue) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*f = flagValue(s)
		return nil
	}
	*f = flagValue(bytes.TrimSpace(b)) // true, false, 0, 1, null, or something value() refuses
	return nil
}

func (f *flagValue) UnmarshalXMLAttr(a xml.Attr) error {
	*f = flagValue(a.Value)
	return nil
}

func (f flagValue) value() (bool, error) {
	switch strings.ToLower(strings.TrimSpace(string(f))) {
	case "", "null":
		return false, nil
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("unknown value %q (want true, false, 1 or 0)", printable([]byte(f), 40))
}

// statusValue is an organization's status member, a string or a number in the answer.
type statusValue string

func (s *statusValue) UnmarshalJSON(b []byte) error {
	var str string
	if json.Unmarshal(b, &str) == nil {
		*s = statusValue(str)
		return nil
	}
	if string(bytes.TrimSpace(b)) == "null" {
		*s = ""
		return nil
	}
	*s = statusValue(bytes.TrimSpace(b))
	return nil
}

// active maps the status spellings deact knows; others are an error.
func (s statusValue) active() (bool, error) {
	switch strings.ToUpper(strings.TrimSpace(string(s))) {
	case "ACTIVE", "ACTIVATED", "ENABLED":
		return true, nil
	case "DEACTIVATED", "INACTIVE", "DISABLED":
		return false, nil
	}
	if n, err := strconv.Atoi(string(s)); err == nil {
		return false, fmt.Errorf("numeric status %d: deact does not know what it means", n)
	}
	return false, fmt.Errorf("unknown status %q", printable([]byte(s), 40))
}

// readSecret reads a password or token file: the first line, without its line break.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}
