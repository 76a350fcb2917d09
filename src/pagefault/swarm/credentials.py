"""Swarm membership as X.509: a swarm CA signs one certificate per node.

The CA certificate goes into every model's SSL torrent, so libtorrent accepts only peers
whose certificate that CA signed. The coordinator holds the CA key and issues a node
certificate to any agent presenting the swarm token: no token, no certificate, no pieces.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pagefault.errors import SwarmError
from pagefault.system.files import write_atomic

__all__ = ["NodeCredentials", "SwarmCA"]

_CERT_FILE, _KEY_FILE = "swarm-ca.crt", "swarm-ca.key"
_NODE_LIFETIME = datetime.timedelta(days=7)


@dataclass(frozen=True)
class NodeCredentials:
    """A node's certificate (signed by the swarm CA) and private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class SwarmCA:
    """The swarm's certificate authority (PEM certificate and key)."""

    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def create(cls, name: str = "pagefault swarm") -> SwarmCA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(name)
        cert = (
            _builder(subject, subject, key, datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    @classmethod
    def load_or_create(cls, directory: Path) -> SwarmCA:
        """The CA kept in ``directory`` (created there on first use)."""
        cert_path, key_path = directory / _CERT_FILE, directory / _KEY_FILE
        if cert_path.exists() and key_path.exists():
            return cls(cert_path.read_bytes(), key_path.read_bytes())
        if cert_path.exists() or key_path.exists():
            raise SwarmError(f"{directory}: has one of {_CERT_FILE}/{_KEY_FILE} but not both")
        ca = cls.create()
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(key_path, [ca.key_pem], mode=0o600)  # the CA's private key
        write_atomic(cert_path, [ca.cert_pem])
        return ca

    def issue(self, node: str) -> NodeCredentials:
        """A fresh key and a certificate for ``node``, valid for a week."""
        ca_cert = x509.load_pem_x509_certificate(self.cert_pem)
        ca_key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise SwarmError("swarm CA key is not an EC key")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _builder(_name(node), ca_cert.subject, key, _NODE_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # libtorrent matches the name against the torrent's; "*" serves every model.
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("*")]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return NodeCredentials(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, life: datetime.timedelta
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + life)
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
