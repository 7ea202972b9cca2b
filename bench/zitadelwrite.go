package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/state"
)

// zitadelOrgHeader is the header in which a ZITADEL management API call names its organization (ZITADEL's
// published API; deact's ZITADEL-compatible API reads it the same way).
const zitadelOrgHeader = "x-zitadel-orgid"

// zitadelWriter writes through deact's ZITADEL-compatible REST API what a ZITADEL client calls to (de)activate
// an org (login and token off), and reads deact's confirmation headers from the answer. adminapi.Client is a
// client of the native API only; this is the one ZITADEL call the propagation benchmark makes.
type zitadelWriter struct {
	base, token string
	confirm     time.Duration
	http        *http.Client
}

func newZitadelWriter(base, token string, confirm time.Duration) *zitadelWriter {
	return &zitadelWriter{base: strings.TrimSuffix(base, "/"), token: token, confirm: confirm,
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}, Timeout: time.Minute}}
}

func (z *zitadelWriter) close() { z.http.CloseIdleConnections() }

// setOrg is POST /management/v1/orgs/me/_deactivate (or _reactivate) for org id.
func (z *zitadelWriter) setOrg(ctx context.Context, id string, deactivate bool) (adminapi.WriteResult, error) {
	action := "_reactivate"
	if deactivate {
		action = "_deactivate"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, z.base+"/management/v1/orgs/me/"+action, strings.NewReader("{}"))
	if err != nil {
		return adminapi.WriteResult{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+z.token)
	req.Header.Set(zitadelOrgHeader, id)
	req.Header.Set(adminapi.HeaderConfirmTimeout, z.confirm.String())
	resp, err := z.http.Do(req)
	if err != nil {
		return adminapi.WriteResult{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return adminapi.WriteResult{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return adminapi.WriteResult{}, fmt.Errorf("ZITADEL API %s: HTTP %d: %s", action, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	w := adminapi.WriteResult{Revision: writeRevision(body), OrgID: id}
	c := state.Confirmation{Revision: w.Revision}
	if v := resp.Header.Get(adminapi.HeaderConfirmed); v != "" {
		done, total, ok := strings.Cut(v, "/")
		if !ok {
			return w, fmt.Errorf("ZITADEL API %s: %s %q is not confirmed/total", action, adminapi.HeaderConfirmed, v)
		}
		c.Confirmed, _ = strconv.Atoi(done)
		c.Total, _ = strconv.Atoi(total)
	}
	c.WaitedMs, _ = strconv.ParseFloat(resp.Header.Get(adminapi.HeaderConfirmWaitMs), 64)
	w.Confirmation = c
	return w, nil
}
