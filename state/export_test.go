package state

// SnapshotKeys maps each record's etcd key to its mod revision, for comparing a replica with etcd.
func SnapshotKeys(s *Snapshot) map[string]int64 {
	out := map[string]int64{}
	s.each(func(k kind, id string, it item) {
		var key string
		switch k {
		case kindOrg:
			key = OrgKey(id)
		case kindProject:
			key = ProjectKey(id)
		case kindApp:
			a := it.val.(*AppState)
			key = AppKey(a.ProjectID, a.ID)
		case kindClient:
			key = ClientKey(id)
		case kindDomain:
			key = DomainKey(id)
		case kindAccount:
			key = AccountKey(id)
		}
		out[key] = it.rev
	})
	return out
}
