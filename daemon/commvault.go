package daemon

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/deact/deact/source/commvault"
)

// CommvaultConfig is the Commvault source: on admin nodes, one at a time, a poll of Commvault's organizations
// (deactivateOptions and domain names) into the mirrored layer.
type CommvaultConfig struct {
	URL          string        // the web service root, e.g. https://cv.example.com/webconsole/api; empty: off
	User         string        // logs in with POST /Login ...
	PasswordFile string        // ... and the password in this file (first line)
	TokenFile    string        // or uses the fixed Authtoken in this file, read again after a 401
	SyncInterval time.Duration // between rounds [1m], with jitter
	Concurrency  int           // detail requests in flight [8]
	Timeout      time.Duration // per request to Commvault [30s]
}

func (c *CommvaultConfig) validate(cfg *Config) []error {
	var errs []error
	if c.URL == "" {
		if c.User != "" || c.PasswordFile != "" || c.TokenFile != "" || c.SyncInterval != 0 || c.Concurrency != 0 || c.Timeout != 0 {
			errs = append(errs, errors.New("--commvault-user, --commvault-password-file, --commvault-token-file, --commvault-sync-interval, --commvault-concurrency and --commvault-timeout need --commvault-url"))
		}
		return errs
	}
	if !cfg.admin() {
		errs = append(errs, fmt.Errorf("--commvault-url needs --role all or admin (not %s)", cfg.Role))
	}
	login := c.User != "" || c.PasswordFile != ""
	switch {
	case login && c.TokenFile != "":
		errs = append(errs, errors.New("--commvault-token-file excludes --commvault-user and --commvault-password-file"))
	case login && (c.User == "" || c.PasswordFile == ""):
		errs = append(errs, errors.New("--commvault-user and --commvault-password-file go together"))
	case !login && c.TokenFile == "":
		errs = append(errs, errors.New("--commvault-url needs --commvault-user with --commvault-password-file, or --commvault-token-file"))
	}
	if c.SyncInterval < 0 || (c.SyncInterval > 0 && c.SyncInterval < 100*time.Millisecond) {
		errs = append(errs, fmt.Errorf("--commvault-sync-interval %v: want at least 100ms", c.SyncInterval))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("--commvault-timeout %v: want a positive duration", c.Timeout))
	}
	if c.Concurrency < 0 || c.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("--commvault-concurrency %d: want 1..256", c.Concurrency))
	}
	return errs
}

// addCommvault adds the Commvault source to the sources this admin node runs. The password (or token) file is
// read now; a file others can read is worth a warning, not a refusal.
func (d *Daemon) addCommvault() error {
	c := d.cfg.Commvault
	if c.URL == "" {
		return nil
	}
	cc := commvault.ClientConfig{URL: c.URL, User: c.User, Timeout: c.Timeout}
	read := func(flag, path string) (string, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flag, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			d.log.Warn("a Commvault secret file is readable by others; 0600 is recommended", "flag", flag, "file", path, "mode", fi.Mode().Perm().String())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flag, err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if line = strings.TrimRight(line, "\r"); line == "" {
			return "", fmt.Errorf("%s %s: the first line is empty", flag, path)
		}
		return line, nil
	}
	var err error
	if c.PasswordFile != "" {
		if cc.Password, err = read("--commvault-password-file", c.PasswordFile); err != nil {
			return err
		}
	} else {
		if cc.Token, err = read("--commvault-token-file", c.TokenFile); err != nil {
			return err
		}
		cc.TokenFile = c.TokenFile
	}
	src, err := commvault.New(commvault.Config{Client: cc, Interval: c.SyncInterval, Concurrency: c.Concurrency})
	if err != nil {
		return fmt.Errorf("--commvault-*: %w", err)
	}
	d.cfg.Sources = append(d.cfg.Sources, src)
	return nil
}
