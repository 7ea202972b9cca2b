package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Versioned is a record read from etcd with the revision it was last changed at.
type Versioned[T any] struct {
	Record   T     `json:"record"`
	Revision int64 `json:"revision"`
}

func get[T any](ctx context.Context, s *Store, key string) (Versioned[T], error) {
	var v Versioned[T]
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return v, err
	}
	if len(resp.Kvs) == 0 {
		return v, ErrNotFound
	}
	v.Revision = resp.Kvs[0].ModRevision
	return v, json.Unmarshal(resp.Kvs[0].Value, &v.Record)
}

// GetOrg reads one org (linearizable).
func (s *Store) GetOrg(ctx context.Context, id string) (Versioned[Org], error) {
	if err := ValidateID("org", id); err != nil {
		return Versioned[Org]{}, err
	}
	return get[Org](ctx, s, OrgKey(id))
}

// GetProject reads one project.
func (s *Store) GetProject(ctx context.Context, id string) (Versioned[Project], error) {
	if err := ValidateID("project", id); err != nil {
		return Versioned[Project]{}, err
	}
	return get[Project](ctx, s, ProjectKey(id))
}

// GetApp reads one app.
func (s *Store) GetApp(ctx context.Context, projectID, appID string) (Versioned[App], error) {
	if err := errors.Join(ValidateID("project", projectID), ValidateID("app", appID)); err != nil {
		return Versioned[App]{}, err
	}
	return get[App](ctx, s, AppKey(projectID, appID))
}

// GetAccount reads one account's registration.
func (s *Store) GetAccount(ctx context.Context, id string) (Versioned[Account], error) {
	if err := ValidateID("account", id); err != nil {
		return Versioned[Account]{}, err
	}
	return get[Account](ctx, s, AccountKey(id))
}

// Page is one page of a listing; Next is the cursor for the following page, empty at the end.
type Page[T any] struct {
	Items    []Versioned[T] `json:"items"`
	Next     string         `json:"next,omitempty"`
	Revision int64          `json:"revision"`
}

func list[T any](ctx context.Context, s *Store, prefix, after string, limit int64) (Page[T], error) {
	var p Page[T]
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	key := prefix
	if after != "" {
		key = prefix + after + "\x00"
	}
	resp, err := s.cli.Get(ctx, key, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(limit))
	if err != nil {
		return p, err
	}
	p.Revision = resp.Header.Revision
	for _, kv := range resp.Kvs {
		v := Versioned[T]{Revision: kv.ModRevision}
		if err := json.Unmarshal(kv.Value, &v.Record); err != nil {
			return p, fmt.Errorf("stored record %s is unreadable: %w", kv.Key, err)
		}
		p.Items = append(p.Items, v)
	}
	if resp.More && len(resp.Kvs) > 0 {
		p.Next = string(resp.Kvs[len(resp.Kvs)-1].Key[len(prefix):])
	}
	return p, nil
}

// ListOrgs lists orgs in ID order after the cursor.
func (s *Store) ListOrgs(ctx context.Context, after string, limit int64) (Page[Org], error) {
	return list[Org](ctx, s, orgsPrefix, after, limit)
}

// ListProjects lists projects in ID order after the cursor.
func (s *Store) ListProjects(ctx context.Context, after string, limit int64) (Page[Project], error) {
	return list[Project](ctx, s, projPrefix, after, limit)
}

// ListApps lists apps in (project, app) order after the cursor "project/app".
func (s *Store) ListApps(ctx context.Context, after string, limit int64) (Page[App], error) {
	return list[App](ctx, s, appsPrefix, after, limit)
}
