package authz

import (
	"strings"

	"github.com/deact/deact/state"
)

// loginNamesInBody checks the login names and user IDs of a login request body: any "username", "loginName" or
// "userId" field in any spelling an upstream accepts (fieldIs: protojson's "login_name" too), nested ones
// included (ZITADEL's checks.user.loginName), in JSON, XML (attributes or elements, e.g. Commvault's
// DM2ContentIndexing_CheckCredentialReq), a form, or the protobuf of a gRPC, gRPC-Web or Connect
// SessionService call. A "domain" field names an org domain directly where domainField is set (Commvault). A
// body deact cannot read whole is recorded on e (the decision refuses it unless something else denies).
func loginNamesInBody(in *bodyInput, e *evaluator, domainField bool) bool {
	st := walkBody(in, func(k, v string) bool {
		switch {
		case fieldIs(k, "username"), fieldIs(k, "loginname"):
			return e.checkLogin(v)
		case fieldIs(k, "userid"):
			return e.check(SubjectAccount, strings.TrimSpace(v))
		case domainField && fieldIs(k, "domain") && strings.TrimSpace(v) != "":
			return e.check(SubjectDomain, state.NormalizeDomain(strings.TrimSpace(v)))
		}
		return false
	})
	e.bodyFailed(st)
	return e.denied
}

// commvaultTaskOp classifies a Commvault CreateTask by its subtasks. A task deact cannot tell apart (no body, as
// behind nginx, a body cut at the proxy's limit, or one it cannot read) is checked against both the backup and
// the restore flags; a whole body without a backup or restore subtask is op other.
func commvaultTaskOp(in *bodyInput) (Action, state.Ops) {
	both := state.OpBackup | state.OpRestore
	if strings.TrimSpace(in.body) == "" {
		return ActionBackup, both
	}
	var backup, restore bool
	st := walkBody(in, func(k, v string) bool {
		if !fieldIs(k, "subtasktype") && !fieldIs(k, "operationtype") {
			return false
		}
		switch {
		case containsFold(v, "restore"):
			restore = true
		case containsFold(v, "backup"):
			backup = true
		case fieldIs(k, "subtasktype") && strings.TrimSpace(v) == "2": // TMMsg: BACKUP
			backup = true
		case fieldIs(k, "subtasktype") && strings.TrimSpace(v) == "3": // TMMsg: RESTORE
			restore = true
		}
		return false
	})
	switch {
	case st != bodyRead || (backup && restore):
		if restore {
			return ActionRestore, both
		}
		return ActionBackup, both
	case restore:
		return ActionRestore, state.OpRestore
	case backup:
		return ActionBackup, state.OpBackup
	}
	return ActionOther, 0
}
