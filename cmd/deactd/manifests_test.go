package main

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/deact/deact/envoy"
	"sigs.k8s.io/yaml"
)

// TestKubernetesManifests: every document parses; every deactd container's args and environment are accepted
// by deactd's own flag parsing and validation; the ports the probes, the container and the Envoy configuration
// use agree.
func TestKubernetesManifests(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/deact.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var m struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []container `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("document does not parse: %v\n%s", err, doc)
		}
		kinds[m.Kind]++
		for _, c := range m.Spec.Template.Spec.Containers {
			checkContainer(t, m.Kind, c)
		}
	}
	for _, k := range []string{"DaemonSet", "Deployment", "Service", "PodDisruptionBudget"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in the manifests", k)
		}
	}
}

type container struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
	Env  []struct {
		Name      string         `json:"name"`
		Value     string         `json:"value"`
		ValueFrom map[string]any `json:"valueFrom"`
	} `json:"env"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	ReadinessProbe struct {
		GRPC *struct {
			Port    int    `json:"port"`
			Service string `json:"service"`
		} `json:"grpc"`
		HTTPGet *struct {
			Path string `json:"path"`
			Port int    `json:"port"`
		} `json:"httpGet"`
	} `json:"readinessProbe"`
}

func checkContainer(t *testing.T, kind string, c container) {
	t.Helper()
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			switch e.Name {
			case "DEACT_ETCD_ENDPOINTS":
				v = "https://etcd-0:2379,https://etcd-1:2379"
			case "DEACT_ADMIN_TOKEN":
				v = "secret-from-kubernetes-0123456789"
			default:
				v = "from-kubernetes"
			}
		}
		t.Setenv(e.Name, v)
	}
	cfg, err := parse(c.Args)
	if err != nil {
		t.Fatalf("%s/%s: deactd rejects the args: %v", kind, c.Name, err)
	}
	cfg.Logger = nil
	if err := (&cfg).Validate(); err != nil {
		t.Fatalf("%s/%s: invalid configuration: %v", kind, c.Name, err)
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if p := ports["admin"]; p == 0 || portOf(t, cfg.AdminAddr) != p {
		t.Errorf("%s: admin port %d, --admin-addr %s", kind, p, cfg.AdminAddr)
	}
	if cfg.Role == "admin" {
		if c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port != ports["admin"] {
			t.Errorf("%s: readiness should be /readyz on the admin port", kind)
		}
		return
	}
	authzPort := portOf(t, cfg.AuthzAddr)
	if ports["authz"] != authzPort || portOf(t, cfg.HTTPCheckAddr) != ports["check"] {
		t.Errorf("%s: container ports %v disagree with --authz-addr %s / --http-check-addr %s", kind, ports, cfg.AuthzAddr, cfg.HTTPCheckAddr)
	}
	probe := c.ReadinessProbe.GRPC
	if probe == nil || probe.Port != authzPort || probe.Service != "envoy.service.auth.v3.Authorization" {
		t.Errorf("%s: readiness must be gRPC health of the Authorization service on %d: %+v", kind, authzPort, probe)
	}
	// Envoy's generated configuration reaches deact on the same port by default.
	b, err := envoy.Bootstrap(envoy.Options{Preset: "zitadel", Upstream: "zitadel:8080"})
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range b.StaticResources.Clusters {
		if cl.Name != envoy.DeactCluster {
			continue
		}
		sa := cl.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress()
		if int(sa.GetPortValue()) != authzPort {
			t.Errorf("Envoy reaches deact on %d, the DaemonSet serves ext_authz on %d", sa.GetPortValue(), authzPort)
		}
		if hc := cl.HealthChecks[0].GetGrpcHealthCheck(); hc.ServiceName != probe.Service {
			t.Errorf("Envoy health-checks %q, Kubernetes %q", hc.ServiceName, probe.Service)
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/systemd/deactd.service")
	if err != nil {
		t.Fatal(err)
	}
	var exec string
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec = v
		}
	}
	fields := strings.Fields(exec)
	if len(fields) < 2 || !strings.HasSuffix(fields[0], "/deactd") {
		t.Fatalf("ExecStart = %q", exec)
	}
	cfg, err := parse(fields[1:])
	if err != nil {
		t.Fatalf("deactd rejects the unit's args: %v", err)
	}
	if err := (&cfg).Validate(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "KillSignal=SIGTERM") || !strings.Contains(string(raw), "StateDirectory=deact") {
		t.Error("unit must stop with SIGTERM and keep state in /var/lib/deact")
	}
}

func portOf(t *testing.T, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range p {
		n = n*10 + int(c-'0')
	}
	return n
}
