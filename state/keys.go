// Package state holds deact's deactivation state: the records and their etcd keys, the Store that writes them,
// the Replica every gateway node keeps in memory, and the node registry that confirms fan-out.
package state

import (
	"errors"
	"fmt"
	"strings"
)

// Key layout. Everything lives under one versioned prefix. Replicas watch only StatePrefix, so node
// acknowledgements, audit records and admin tokens never wake them up.
const (
	Prefix       = "/deact/v1/"
	StatePrefix  = Prefix + "state/"
	orgsPrefix   = StatePrefix + "orgs/"
	projPrefix   = StatePrefix + "projects/"
	appsPrefix   = StatePrefix + "apps/"
	clientPrefix = StatePrefix + "clients/"
	domainPrefix = StatePrefix + "domains/"
	acctPrefix   = StatePrefix + "accounts/"
	NodesPrefix  = Prefix + "nodes/"
	// AdminsPrefix holds the admin nodes that take gateways' direct reports (AdminNode records, on leases).
	AdminsPrefix = Prefix + "admins/"
	AuditPrefix  = Prefix + "audit/"
	TokensPrefix = Prefix + "tokens/"
	// AppIDsPrefix indexes app records by app ID, for the store's uniqueness checks. It lies outside StatePrefix:
	// replicas never read it.
	AppIDsPrefix = Prefix + "index/appids/"
)

// MaxIDLen bounds every ID that becomes part of a key.
const MaxIDLen = 200

// ErrInvalidID is wrapped by every ID validation failure.
var ErrInvalidID = errors.New("invalid id")

// ValidateID checks that id can be used as one path segment of a key: 1..MaxIDLen characters from
// [A-Za-z0-9._@:-], not "." or "..". ZITADEL IDs are decimal snowflakes and its client IDs look like
// "123@project"; Commvault IDs are decimal; domain names fit too.
func ValidateID(kind, id string) error {
	if id == "" {
		return fmt.Errorf("%w: %s id is empty", ErrInvalidID, kind)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: %s id is longer than %d bytes", ErrInvalidID, kind, MaxIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%w: %s id %q is reserved", ErrInvalidID, kind, id)
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return fmt.Errorf("%w: %s id has a character outside [A-Za-z0-9._@:-] at byte %d", ErrInvalidID, kind, i)
		}
	}
	return nil
}

func idByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '.', c == '_', c == '@', c == ':', c == '-':
		return true
	}
	return false
}

// NormalizeDomain lower-cases a domain name, which is how domains are keyed and looked up.
func NormalizeDomain(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

// OrgKey and the other key functions assume validated IDs.
func OrgKey(id string) string               { return orgsPrefix + id }
func ProjectKey(id string) string           { return projPrefix + id }
func AppKey(projectID, appID string) string { return appsPrefix + projectID + "/" + appID }
func ClientKey(clientID string) string      { return clientPrefix + clientID }
func DomainKey(domain string) string        { return domainPrefix + domain }
func AccountKey(id string) string           { return acctPrefix + id }
func NodeKey(id string) string              { return NodesPrefix + id }
func AdminKey(id string) string             { return AdminsPrefix + id }
func AppIDKey(appID string) string          { return AppIDsPrefix + appID }

// kind is the record type a state key holds.
type kind uint8

const (
	kindUnknown kind = iota
	kindOrg
	kindProject
	kindApp
	kindClient
	kindDomain
	kindAccount
)

// parseKey splits a state key into its kind and the ID the snapshot indexes it by ("project/app" for apps).
func parseKey[K ~string | ~[]byte](key K) (kind, K) {
	var none K
	if len(key) < len(StatePrefix) || string(key[:len(StatePrefix)]) != StatePrefix {
		return kindUnknown, none
	}
	rest := key[len(StatePrefix):]
	slash := indexByte(rest, '/')
	if slash < 0 || slash == len(rest)-1 {
		return kindUnknown, none
	}
	id := rest[slash+1:]
	switch string(rest[:slash]) {
	case "orgs":
		return kindOrg, id
	case "projects":
		return kindProject, id
	case "apps":
		if p := indexByte(id, '/'); p <= 0 || p == len(id)-1 || indexByte(id[p+1:], '/') >= 0 {
			return kindUnknown, none
		}
		return kindApp, id
	case "clients":
		return kindClient, id
	case "domains":
		return kindDomain, id
	case "accounts":
		return kindAccount, id
	}
	return kindUnknown, none
}

// keyOf is the key of the record parseKey reads as (k, id).
func keyOf(k kind, id string) string {
	switch k {
	case kindOrg:
		return orgsPrefix + id
	case kindProject:
		return projPrefix + id
	case kindApp:
		return appsPrefix + id
	case kindClient:
		return clientPrefix + id
	case kindDomain:
		return domainPrefix + id
	case kindAccount:
		return acctPrefix + id
	}
	return ""
}

// indexByte is strings.IndexByte for a key of either type.
func indexByte[K ~string | ~[]byte](s K, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
