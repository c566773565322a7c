package mqttpub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/internal/mqtttest"
)

// writePKI writes a CA, a server certificate for localhost and a client
// certificate, all signed by the CA, into dir.
func writePKI(t *testing.T, dir string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	write("ca.pem", "CERTIFICATE", caDER)
	for i, name := range []string{"server", "client"} {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:    []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		write(name+".pem", "CERTIFICATE", der)
		kb, _ := x509.MarshalECPrivateKey(k)
		write(name+"-key.pem", "EC PRIVATE KEY", kb)
	}
}

// TestTLSWithClientCertificateAndPassword connects over TLS to a broker
// that demands a client certificate and a password.
func TestTLSWithClientCertificateAndPassword(t *testing.T) {
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		for _, p := range []string{"/usr/bin/mosquitto_passwd", "/usr/sbin/mosquitto_passwd"} {
			if _, e := os.Stat(p); e == nil {
				passwd, err = p, nil
			}
		}
	}
	if err != nil {
		t.Fatal("mosquitto_passwd not found; it comes with the mosquitto package")
	}
	// Not t.TempDir: mosquitto started as root drops to its own user
	// before reading these files, and the test's temp dirs are private.
	dir, err := os.MkdirTemp("", "mqttpub-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	writePKI(t, dir)
	pwfile := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-b", "-c", pwfile, "bridge", "s3cret pass").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	os.Chmod(dir, 0o755)
	os.Chmod(pwfile, 0o644)
	for _, f := range []string{"ca.pem", "server.pem", "server-key.pem"} {
		os.Chmod(filepath.Join(dir, f), 0o644)
	}
	conf := strings.Join([]string{
		"cafile " + filepath.Join(dir, "ca.pem"),
		"certfile " + filepath.Join(dir, "server.pem"),
		"keyfile " + filepath.Join(dir, "server-key.pem"),
		"require_certificate true",
		"password_file " + pwfile,
		"allow_anonymous false", "",
	}, "\n")
	b := mqtttest.StartWith(t, conf, true)

	connects := func(cfg Config) bool {
		cfg.URL, cfg.StateTopic, cfg.ConnectTimeout = b.URL(), "t/bridge/state", 2*time.Second
		c, err := New(cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		defer func() { cancel(); <-done }()
		for ctx.Err() == nil {
			if c.Connected() {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}
	good := Config{ClientID: "tls-ok", Username: "bridge", Password: "s3cret pass", CAFile: filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client-key.pem")}
	if !connects(good) {
		t.Fatal("did not connect with CA, client certificate and password")
	}
	wrongPassword := good
	wrongPassword.ClientID, wrongPassword.Password = "tls-badpw", "nope"
	if connects(wrongPassword) {
		t.Error("connected with a wrong password")
	}
	noClientCert := good
	noClientCert.ClientID, noClientCert.CertFile, noClientCert.KeyFile = "tls-nocert", "", ""
	if connects(noClientCert) {
		t.Error("connected without the required client certificate")
	}
	systemRoots := good
	systemRoots.ClientID, systemRoots.CAFile = "tls-noca", ""
	if connects(systemRoots) {
		t.Error("trusted a certificate from an unknown CA")
	}
}
