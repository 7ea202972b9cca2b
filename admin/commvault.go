package admin

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/deact/deact/state"
)

// The Commvault-compatible API: POST {root}/organization/{id}/action/deactivate and .../action/activate, and
// GET {root}/organization/{id}, with paths matched case-insensitively, bodies in XML or JSON by Content-Type,
// answers in XML (the default, as Commvault's) or JSON by Accept, and the token in the Authtoken header
// ("QSDK <token>", a bare token, or "Bearer <token>").
//
// Deactivation semantics: the options given are added to what Commvault deactivated before (disableLogin also
// refuses tokens, since a Commvault login is how a token is obtained); what other APIs deactivated stays. A
// body without deactivateOptions (or an empty body) disables login, backup and restore; options that are all 0
// are refused (errorCode 2): to enable, activate. Activate enables what Commvault deactivated, not what the
// ZITADEL or native API did; GET shows every operation that is disabled, through whichever API.
//
// Errors: the HTTP status says what went wrong (4xx for the caller's mistakes, 5xx for ours), and the body is
// Commvault's generic error, <App_GenericResp errorCode="N" errorMessage="..."/> or {"errorCode":N,
// "errorMessage":"..."}, with these codes:
const (
	cvErrInternal        = 1  // 500: the store failed
	cvErrInvalid         = 2  // 400: malformed body, DTD, bad id, no option set, bad confirm timeout
	cvErrNotFound        = 3  // 404: unknown organization (GET, activate of an org deact never saw is 4)
	cvErrState           = 4  // 409: already deactivated with these options / not deactivated
	cvErrAuth            = 5  // 401: missing or unknown token
	cvErrForbidden       = 6  // 403: the token may not act on this organization, or is read-only
	cvErrTooLarge        = 7  // 413: body over the limit
	cvErrRateLimited     = 8  // 429: too many failed authentications from this address
	cvErrUnsupported     = 9  // 415: body neither XML nor JSON
	cvErrConflict        = 10 // 409: conflicting record
	cvErrMethod          = 11 // 405: wrong method for the path
	cvErrUnavailable     = 12 // 503: etcd did not answer within the write timeout (no quorum); retry
	cvEntityTypeProvider = 61 // Commvault's entity type of an organization (provider)
)

const (
	cvActionGet        = "get"
	cvActionDeactivate = "deactivate"
	cvActionActivate   = "activate"
)

// commvaultRoute matches {root}/organization/{id}[/action/(deactivate|activate)], case-insensitively, on the
// escaped path, so that an id holding an escaped "/" is one (invalid) id rather than another route.
func (a *API) commvaultRoute(path string) (id, action string, ok bool) {
	id, action, ok = a.commvaultMatch(path)
	if ok {
		if uid, err := url.PathUnescape(id); err == nil {
			id = uid
		}
	}
	return id, action, ok
}

func (a *API) commvaultMatch(path string) (id, action string, ok bool) {
	for _, root := range a.roots {
		prefix := root + "/organization/"
		if len(path) <= len(prefix) || !strings.EqualFold(path[:len(prefix)], prefix) {
			continue
		}
		parts := strings.Split(strings.TrimSuffix(path[len(prefix):], "/"), "/")
		switch {
		case len(parts) == 1:
			return parts[0], cvActionGet, true
		case len(parts) == 3 && strings.EqualFold(parts[1], "action") && strings.EqualFold(parts[2], cvActionDeactivate):
			return parts[0], cvActionDeactivate, true
		case len(parts) == 3 && strings.EqualFold(parts[1], "action") && strings.EqualFold(parts[2], cvActionActivate):
			return parts[0], cvActionActivate, true
		}
		return "", "", false
	}
	return "", "", false
}

// cvFormat is the format of a Commvault answer.
type cvFormat int

const (
	cvXML cvFormat = iota
	cvJSON
)

func cvAccept(r *http.Request) cvFormat {
	if strings.Contains(strings.ToLower(r.Header.Get("Accept")), "json") {
		return cvJSON
	}
	return cvXML
}

func (a *API) serveCommvault(w http.ResponseWriter, r *http.Request, id, action string) {
	format := cvAccept(r)
	want := http.MethodPost
	if action == cvActionGet {
		want = http.MethodGet
	}
	if r.Method != want {
		w.Header().Set("Allow", want)
		writeCommvaultError(w, format, http.StatusMethodNotAllowed, cvErrMethod, fmt.Sprintf("%s is not allowed here, use %s", r.Method, want))
		return
	}
	err := a.commvault(w, r, id, action, format)
	if err == nil {
		a.metrics.request("commvault", action, nil)
		return
	}
	e := classify(err)
	a.metrics.request("commvault", action, e)
	a.logFailure("commvault", action, e)
	writeCommvaultError(w, format, e.httpStatus(), e.answer().commvault, e.msg)
}

func (a *API) commvault(w http.ResponseWriter, r *http.Request, id, action string, format cvFormat) error {
	ctx := r.Context()
	p, err := a.auth.authenticate(ctx, commvaultToken(r.Header), ipFromContext(ctx))
	if err != nil {
		return err
	}
	if err := state.ValidateID("organization", id); err != nil {
		return err
	}
	if err := p.authorize(id, action != cvActionGet); err != nil {
		return err
	}
	if action == cvActionGet {
		v, err := a.store.GetOrg(ctx, id)
		if err != nil {
			return fmt.Errorf("organization %s: %w", id, err)
		}
		writeCommvault(w, format, http.StatusOK, cvOrgXML(v.Record), cvOrgJSON(v.Record))
		return nil
	}
	body, err := a.readBody(r)
	if err != nil {
		return err
	}
	timeout, err := a.confirmTimeout(r)
	if err != nil {
		return err
	}
	var res state.Result
	if action == cvActionDeactivate {
		ops, err := parseDeactivateOptions(r.Header.Get("Content-Type"), body)
		if err != nil {
			return err
		}
		res, err = a.store.DeactivateOrg(ctx, id, ops, false, changeVia(p, state.SourceCommvault, "commvault deactivate "+ops.String()))
		if err != nil {
			return err
		}
	} else {
		if _, err := parseBodyFormat(r.Header.Get("Content-Type"), body); err != nil {
			return err
		}
		if res, err = a.store.ReactivateOrg(ctx, id, changeVia(p, state.SourceCommvault, "commvault activate")); err != nil {
			return err
		}
	}
	c := a.confirm(ctx, res.Revision, timeout)
	a.logWrite("commvault", action, p, "org "+id, res, c)
	domain := id
	// The confirmation wait may have used up the request's store bound: the read for the answer gets its own.
	rctx, cancel := a.storeContext(ctx)
	defer cancel()
	if v, err := a.store.GetOrg(rctx, id); err == nil {
		domain = providerDomain(v.Record)
	}
	setConfirmHeaders(w.Header(), c)
	root := "Api_DeactivateOrganizationResponse"
	if action == cvActionActivate {
		root = "Api_ActivateOrganizationResponse"
	}
	writeCommvault(w, format, http.StatusOK, cvActionXML(root, domain, id), cvActionJSON(domain, id))
	return nil
}

// parseBodyFormat says whether the body is JSON (true) or XML (false), and refuses other media types and XML
// with a document type declaration (entities are the classic XML attack; Go would not expand them, but a DTD
// has no business in these requests).
func parseBodyFormat(contentType string, body []byte) (bool, error) {
	mt := ""
	if contentType != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return false, newError(kindUnsupportedMedia, "DEACT-MediaType", "Content-Type %q is not valid", contentType)
		}
	}
	isJSON := strings.HasSuffix(mt, "json")
	if !isJSON && mt != "" && !strings.HasSuffix(mt, "xml") && mt != "text/plain" {
		return false, newError(kindUnsupportedMedia, "DEACT-MediaType", "Content-Type %q is neither XML nor JSON", mt)
	}
	if mt == "" && len(bytes.TrimSpace(body)) > 0 && bytes.TrimSpace(body)[0] == '{' {
		isJSON = true
	}
	if !isJSON {
		upper := bytes.ToUpper(body)
		if bytes.Contains(upper, []byte("<!DOCTYPE")) || bytes.Contains(upper, []byte("<!ENTITY")) {
			return false, newError(kindInvalid, "DEACT-XMLDTD", "XML with a document type declaration or entities is not accepted")
		}
	}
	return isJSON, nil
}

// cvBool is a Commvault option: 0/1, true/false, as a JSON boolean, number or string, or an XML attribute.
type cvBool struct {
	set, on bool
}

func parseCVBool(s string) (cvBool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true":
		return cvBool{set: true, on: true}, nil
	case "0", "false", "":
		return cvBool{set: true}, nil
	}
	return cvBool{}, fmt.Errorf("option value %q is not 0, 1, true or false", s)
}

func (b *cvBool) UnmarshalJSON(data []byte) error {
	s := string(data)
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	if s == "null" {
		return nil
	}
	v, err := parseCVBool(s)
	*b = v
	return err
}

func (b *cvBool) UnmarshalXMLAttr(attr xml.Attr) error {
	v, err := parseCVBool(attr.Value)
	*b = v
	return err
}

type cvOptions struct {
	DisableLogin   cvBool `json:"disableLogin" xml:"disableLogin,attr"`
	DisableBackup  cvBool `json:"disableBackup" xml:"disableBackup,attr"`
	DisableRestore cvBool `json:"disableRestore" xml:"disableRestore,attr"`
}

type cvDeactivateRequest struct {
	XMLName xml.Name   `json:"-" xml:"Api_DeactivateOrganizationRequest"`
	Options *cvOptions `json:"deactivateOptions" xml:"deactivateOptions"`
}

// parseDeactivateOptions reads a deactivate body into the ops it disables.
func parseDeactivateOptions(contentType string, body []byte) (state.Ops, error) {
	isJSON, err := parseBodyFormat(contentType, body)
	if err != nil {
		return 0, err
	}
	var req cvDeactivateRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if isJSON {
			err = json.Unmarshal(body, &req)
		} else {
			dec := xml.NewDecoder(bytes.NewReader(body))
			dec.Strict = true
			err = dec.Decode(&req)
		}
		if err != nil {
			return 0, newError(kindInvalid, "DEACT-BadBody", "malformed request body: %s", bodyError(err))
		}
	}
	if req.Options == nil {
		return state.OpsAll, nil
	}
	var ops state.Ops
	if req.Options.DisableLogin.on {
		ops |= state.OpLogin | state.OpToken
	}
	if req.Options.DisableBackup.on {
		ops |= state.OpBackup
	}
	if req.Options.DisableRestore.on {
		ops |= state.OpRestore
	}
	if ops == 0 {
		return 0, newError(kindInvalid, "DEACT-NoOption", "no deactivate option set: set disableLogin, disableBackup or disableRestore to 1 (to enable everything, activate)")
	}
	return ops, nil
}

// bodyError shortens a decoder error for the caller, without echoing the body.
func bodyError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("JSON syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("JSON field %s has the wrong type", te.Field)
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// providerDomain is what Commvault calls the org's domain name: its name, else its first domain, else its ID.
func providerDomain(o state.Org) string {
	switch {
	case o.Name != "":
		return o.Name
	case len(o.Domains) > 0:
		return o.Domains[0]
	}
	return o.ID
}

const xmlHeader = `<?xml version="1.0" encoding="UTF-8" standalone="no" ?>` + "\n"

func xmlAttr(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// cvActionXML is the success answer, byte for byte as Commvault writes it.
func cvActionXML(root, domain, id string) []byte {
	return []byte(xmlHeader + "<" + root + `> <processinginstructioninfo> <attributes name="exitval" value="0"/> </processinginstructioninfo> <response errorCode="0"> <entity GUID="" _type_="` +
		strconv.Itoa(cvEntityTypeProvider) + `" providerDomainName="` + xmlAttr(domain) + `" providerId="` + xmlAttr(id) + `"/> </response>` + "\n</" + root + ">")
}

// cvID is the provider id as Commvault's JSON has it: a number when the id is one.
func cvID(id string) any {
	if n, err := strconv.ParseInt(id, 10, 64); err == nil {
		return n
	}
	return id
}

func cvActionJSON(domain, id string) any {
	return map[string]any{
		"processinginstructioninfo": map[string]any{"attributes": []map[string]string{{"name": "exitval", "value": "0"}}},
		"response": map[string]any{
			"errorCode": 0,
			"entity":    map[string]any{"GUID": "", "_type_": cvEntityTypeProvider, "providerDomainName": domain, "providerId": cvID(id)},
		},
	}
}

func cvFlag(on bool) string {
	if on {
		return "1"
	}
	return "0"
}

func cvOrgXML(o state.Org) []byte {
	id, name := xmlAttr(o.ID), xmlAttr(providerDomain(o))
	return []byte(xmlHeader + `<Api_GetOrganizationResponse> <organizationInfo> <organization connectName="` + name + `"> <shortName id="` + id + `" domainName="` + name + `"/> </organization> <organizationProperties> <deactivateOptions disableLogin="` +
		cvFlag(o.Disabled&state.OpLogin != 0) + `" disableBackup="` + cvFlag(o.Disabled&state.OpBackup != 0) + `" disableRestore="` + cvFlag(o.Disabled&state.OpRestore != 0) +
		`"/> </organizationProperties> </organizationInfo>` + "\n</Api_GetOrganizationResponse>")
}

func cvOrgJSON(o state.Org) any {
	name := providerDomain(o)
	return map[string]any{"organizationInfo": map[string]any{
		"organization": map[string]any{"connectName": name, "shortName": map[string]any{"id": cvID(o.ID), "domainName": name}},
		"organizationProperties": map[string]any{"deactivateOptions": map[string]bool{
			"disableLogin": o.Disabled&state.OpLogin != 0, "disableBackup": o.Disabled&state.OpBackup != 0, "disableRestore": o.Disabled&state.OpRestore != 0,
		}},
	}}
}

func writeCommvault(w http.ResponseWriter, format cvFormat, status int, xmlBody []byte, jsonBody any) {
	if format == cvJSON {
		b, _ := json.Marshal(jsonBody)
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write(b)
		return
	}
	w.Header().Set("Content-Type", "application/xml;charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(xmlBody)
}

func writeCommvaultError(w http.ResponseWriter, format cvFormat, status, code int, msg string) {
	writeCommvault(w, format, status,
		[]byte(xmlHeader+`<App_GenericResp errorCode="`+strconv.Itoa(code)+`" errorMessage="`+xmlAttr(msg)+`"/>`),
		map[string]any{"errorCode": code, "errorMessage": msg})
}
