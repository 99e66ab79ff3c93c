"""A certificate authority made with openssl for a test: a root and one server certificate."""

import subprocess
from pathlib import Path


def make_ca(directory, dns=("localhost", "*.localhost"), ips=("127.0.0.1",)):
    """Create ca.pem (root), server.pem and server.key (for *dns* and *ips*) in *directory*.

    Returns {"ca": path, "cert": path, "key": path}."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def openssl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=linohost test CA", "-keyout", d / "ca.key", "-out", d / "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={dns[0]}",
            "-keyout", d / "server.key", "-out", d / "server.csr")
    san = ",".join([f"DNS:{n}" for n in dns] + [f"IP:{ip}" for ip in ips])
    (d / "ext.cnf").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                               f"extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.pem",
            "-CAkey", d / "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", d / "ext.cnf", "-out", d / "server.pem")
    (d / "ca.key").unlink()                  # nothing more is signed with it
    for name in ("server.key",):
        (d / name).chmod(0o600)
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}
