package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

func (d *Daemon) serverTLS() (*tls.Config, error) {
	if d.cfg.TLSCert == "" {
		return nil, nil
	}
	info := transport.TLSInfo{CertFile: d.cfg.TLSCert, KeyFile: d.cfg.TLSKey, TrustedCAFile: d.cfg.TLSClientCA, ClientCertAuth: d.cfg.TLSClientCA != ""}
	c, err := info.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("listener TLS: %w", err)
	}
	return c, nil
}

// serveHTTP listens on addr and serves h; with h2c it also speaks HTTP/2 without TLS (gRPC on the admin port).
func (d *Daemon) serveHTTP(name, addr string, h http.Handler, h2c bool) (string, error) {
	lis, err := d.listen(name, addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler: markBusy(h), ConnContext: connContext,
		ReadHeaderTimeout: d.cfg.HandshakeTimeout, ReadTimeout: 30 * time.Second, IdleTimeout: d.cfg.IdleTimeout,
		MaxHeaderBytes: 64 << 10, Protocols: new(http.Protocols),
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	srv.Protocols.SetHTTP1(true)
	tlsCfg, err := d.serverTLS()
	if err != nil {
		lis.Close()
		return "", err
	}
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg
		srv.Protocols.SetHTTP2(true)
	} else if h2c {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	d.https = append(d.https, srv)
	go func() {
		var err error
		if tlsCfg != nil {
			err = srv.ServeTLS(lis, "", "")
		} else {
			err = srv.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.fail(fmt.Errorf("http %s: %w", addr, err))
		}
	}()
	return lis.Addr().String(), nil
}
