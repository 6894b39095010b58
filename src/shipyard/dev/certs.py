"""Certificates for a local control plane, made with `cryptography`.

One CA per cluster signs the API server's serving certificate and a client
certificate for each component; RBAC then sees the same user names a kubeadm
cluster has (system:kube-controller-manager, system:kube-scheduler). ECDSA P-256
keys keep generation to milliseconds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID_FOR = dt.timedelta(days=3650)


@dataclass(frozen=True)
class Client:
    """A client identity: the certificate CN is the user, O entries the groups."""

    file: str
    user: str
    groups: tuple[str, ...] = ()


CLIENTS = (
    Client("admin", "shipyard-admin", ("system:masters",)),
    Client("controller-manager", "system:kube-controller-manager"),
    Client("scheduler", "system:kube-scheduler"),
    # kwok plays every kubelet and patches any pod or node status: a master.
    Client("kwok", "kwok-controller", ("system:masters",)),
    # The API server's own client certificate, for calls back to components.
    Client("apiserver-client", "kube-apiserver", ("system:masters",)),
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate clock skew
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALID_FOR)
    )


def generate(directory: Path, cluster: str, service_ip: str = "10.96.0.1",
             extra_ips: tuple[str, ...] = ()) -> None:
    """Write ca, apiserver serving cert, client certs and the service-account key pair.
    `extra_ips`: more addresses the API server answers on (a real-node namespace's)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name(f"shipyard-{cluster}-ca")
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / "ca.crt", _pem_cert(ca))
    _write(directory / "ca.key", _pem_key(ca_key), private=True)

    def leaf(name: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> tuple:
        key = _key()
        b = _builder(name, ca_name, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    sans: list[x509.GeneralName] = [
        x509.DNSName(n)
        for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                  "kubernetes.default.svc.cluster.local")
    ]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", service_ip, *extra_ips)]
    key, cert = leaf(_name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    _write(directory / "apiserver.crt", _pem_cert(cert))
    _write(directory / "apiserver.key", _pem_key(key), private=True)

    for c in CLIENTS:
        key, cert = leaf(_name(c.user, c.groups), ExtendedKeyUsageOID.CLIENT_AUTH, [])
        _write(directory / f"{c.file}.crt", _pem_cert(cert))
        _write(directory / f"{c.file}.key", _pem_key(key), private=True)

    # Service-account tokens: the API server signs with the private key and the
    # token controller needs it too; verification uses the public half.
    sa = _key()
    _write(directory / "sa.key", _pem_key(sa), private=True)
    _write(
        directory / "sa.pub",
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def issue(ca_dir: Path, out: Path, name: str, cn: str, groups: tuple[str, ...] = (), *,
          server_sans: list[str] | None = None) -> None:
    """Sign `<out>/<name>.{crt,key}` with the cluster CA in `ca_dir`: a client
    certificate for `cn`/`groups`, or (with `server_sans`, DNS names or IPs) one that
    serves and is a client too (kubelets are both)."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    key = _key()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    b = _builder(_name(cn, groups), ca.subject, key.public_key())
    if server_sans is not None:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        sans: list[x509.GeneralName] = []
        for s in server_sans:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                sans.append(x509.DNSName(s))
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(
        ca_key, hashes.SHA256())  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "ca.crt", (ca_dir / "ca.crt").read_bytes())  # kubeconfigs embed it
    _write(out / f"{name}.crt", _pem_cert(cert))
    _write(out / f"{name}.key", _pem_key(key), private=True)
