"""A site's certificates for MQTT over TLS (port 8883) and HTTPS, from its own CA.

One directory per site holds:

- `ca.pem`/`ca.der` and `ca.key`: the site CA. Meters pin it (`"broker": {"ca": "ca.der"}`
  in their config): they trust this CA and nothing else, so a broker with a certificate
  from any public CA is refused. The CA key signs only the certificates below; keep it
  offline once they are made (docs/deploy.md).
- `broker.pem`/`broker.key`: Mosquitto's TLS listener, for the names and addresses meters
  and the hub use to reach it.
- `server.pem`/`server.key`: an HTTPS server (the hub's page or the platform behind a
  proxy that does not issue its own).

Keys are ECDSA P-256 (what mbedtls on an ESP32 and the MicroPython unix port handshake
fastest) and written 0600. Running it again keeps an existing CA (meters stay pinned to
it) and issues new leaf certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825


class CertError(Exception):
    """A user-facing failure: a bad name, a damaged CA file."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SiteCerts:
    directory: Path
    ca_created: bool

    @property
    def ca_der(self) -> Path:
        return self.directory / "ca.der"


def _write(path: Path, data: bytes, secret: bool) -> None:
    """Write atomically; a key is 0600 from its first byte."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if (
                not host
                or len(host) > 253
                or not all(
                    part and len(part) <= 63 and part.replace("-", "").isalnum()
                    for part in host.split(".")
                )
            ):
                raise CertError(
                    "bad_host", f"{host!r} is neither an IP address nor a DNS name"
                ) from None
            out.append(x509.DNSName(host))
    return out


def _load_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    key_path, cert_path = directory / "ca.key", directory / "ca.pem"
    if not key_path.exists() and not cert_path.exists():
        return None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertError("bad_ca", f"the CA in {directory} cannot be read ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or (
        key.public_key().public_numbers() != cert.public_key().public_numbers()  # type: ignore[union-attr]
    ):
        raise CertError("bad_ca", f"ca.key and ca.pem in {directory} do not belong together")
    return key, cert


def _new_ca(
    site: str, now: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"GridTokenX site CA {site}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    common_name: str,
    hosts: list[str],
    now: datetime.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_site(
    directory: Path, site: str, broker_hosts: list[str], server_hosts: list[str]
) -> SiteCerts:
    """Make (or keep) the site CA and issue the broker's and the server's certificates."""
    if not broker_hosts:
        raise CertError("bad_host", "the broker needs at least one name or address")
    _names(broker_hosts + server_hosts)  # every name checked before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    loaded = _load_ca(directory)
    created = loaded is None
    if loaded is None:
        loaded = _new_ca(site, now)
        _write(directory / "ca.key", _key_pem(loaded[0]), secret=True)
        _write(directory / "ca.pem", loaded[1].public_bytes(serialization.Encoding.PEM), False)
        _write(directory / "ca.der", loaded[1].public_bytes(serialization.Encoding.DER), False)
    ca_key, ca = loaded
    for name, hosts in (("broker", broker_hosts), ("server", server_hosts or broker_hosts)):
        key, cert = _leaf(ca_key, ca, f"{site} {name}", hosts, now)
        _write(directory / f"{name}.key", _key_pem(key), secret=True)
        _write(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM), False)
    return SiteCerts(directory, created)
