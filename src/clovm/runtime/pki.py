"""A private CA per datacenter home and one TLS certificate per host (mutual TLS everywhere).

Keys are EC P-256, written 0600. ``ensure_pki`` is idempotent: it only creates what is missing.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from typing import TYPE_CHECKING, cast

from ..fsutil import atomic_write
from .home import Home

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

_VALID = datetime.timedelta(days=3650)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization  # lazy: see ensure_pki

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str) -> x509.Name:
    from cryptography import x509  # lazy: see ensure_pki
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "clovm"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def ensure_pki(home: Home, names: dict[str, str | None]) -> None:
    """Create the CA and a certificate for every ``name -> loopback address`` (address may be None)."""
    # Imported here, not at module level: only ``clovm up`` issues certificates, while every
    # daemon imports this module for its TLS contexts, which need nothing but ``ssl``.
    # cryptography's X.509 costs ~50 ms of CPU per process, paid by ~40 daemons at start-up.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    d = home.pki_dir
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    if not (d / "ca.pem").exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(_name("clovm CA"))
            .issuer_name(_name("clovm CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        atomic_write(d / "ca.key", _key_pem(ca_key), mode=0o600)
        atomic_write(d / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    # (the EC key written above)
    ca_key = cast(ec.EllipticCurvePrivateKey, serialization.load_pem_private_key((d / "ca.key").read_bytes(), None))
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    for name, addr in names.items():
        if (d / f"{name}.pem").exists():
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(name)]
        if addr:
            sans.append(x509.IPAddress(ipaddress.ip_address(addr)))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALID)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        atomic_write(d / f"{name}.key", _key_pem(key), mode=0o600)
        atomic_write(d / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))


def _context(home: Home, name: str, protocol: int) -> ssl.SSLContext:
    """TLS 1.3 with ``name``'s certificate, trusting only this home's CA."""
    d = home.pki_dir
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(d / f"{name}.pem", d / f"{name}.key")
    ctx.load_verify_locations(d / "ca.pem")
    return ctx


def server_context(home: Home, name: str) -> ssl.SSLContext:
    ctx = _context(home, name, ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED  # clients must present a certificate from this home's CA
    return ctx


def client_context(home: Home, name: str) -> ssl.SSLContext:
    ctx = _context(home, name, ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # peers are addressed by IP; the CA is private to this home
    return ctx
