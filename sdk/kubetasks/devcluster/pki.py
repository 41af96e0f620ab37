"""A throwaway PKI for one local cluster: a CA, the API server's serving certificate, client
certificates for each component, the front-proxy pair and the service-account signing key."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name(attrs)


@dataclass(frozen=True)
class _Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _self_signed_ca(common_name: str) -> _Authority:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _Authority(cert, key)


def _issue(
    ca: _Authority,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
    client: bool = True,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    if server_names or server_ips:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server_names or server_ips:
        alt: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


@dataclass(frozen=True)
class ClientCredentials:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    directory: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    front_proxy_ca_cert: Path
    front_proxy_client: ClientCredentials
    service_account_key: Path
    service_account_pub: Path
    admin: ClientCredentials
    controller_manager: ClientCredentials
    scheduler: ClientCredentials

    def node(self, node_name: str) -> ClientCredentials:
        """Credentials for a node agent, as ``system:node:<name>`` in ``system:nodes``."""
        # Always issued anew: a file left from an earlier cluster in the same directory is
        # signed by another CA.
        cert_path = self.directory / f"node-{node_name}.crt"
        key_path = self.directory / f"node-{node_name}.key"
        ca = _load_authority(self.ca_cert, self.ca_key)
        cert, key = _issue(ca, f"system:node:{node_name}", organizations=("system:nodes",))
        _write_cert(cert_path, cert)
        _write_key(key_path, key)
        return ClientCredentials(cert_path, key_path)

    def user(self, name: str, groups: tuple[str, ...] = ()) -> ClientCredentials:
        """Client credentials for any user name (tests use this to act as a user)."""
        safe = name.replace(":", "_").replace("/", "_")
        cert_path = self.directory / f"user-{safe}.crt"
        key_path = self.directory / f"user-{safe}.key"
        ca = _load_authority(self.ca_cert, self.ca_key)
        cert, key = _issue(ca, name, organizations=groups)
        _write_cert(cert_path, cert)
        _write_key(key_path, key)
        return ClientCredentials(cert_path, key_path)


def _load_authority(cert_path: Path, key_path: Path) -> _Authority:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return _Authority(cert, key)


def generate_pki(directory: Path) -> ClusterPKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _self_signed_ca("kubetasks-local-ca")
    _write_cert(directory / "ca.crt", ca.cert)
    _write_key(directory / "ca.key", ca.key)

    serving, serving_key = _issue(
        ca,
        "kube-apiserver",
        server_names=(
            "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        server_ips=("127.0.0.1", "10.0.0.1"),
        client=False,
    )
    _write_cert(directory / "apiserver.crt", serving)
    _write_key(directory / "apiserver.key", serving_key)

    front = _self_signed_ca("kubetasks-front-proxy-ca")
    _write_cert(directory / "front-proxy-ca.crt", front.cert)
    fp_cert, fp_key = _issue(front, "front-proxy-client")
    _write_cert(directory / "front-proxy-client.crt", fp_cert)
    _write_key(directory / "front-proxy-client.key", fp_key)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(directory / "sa.key", sa_key)
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    def client(stem: str, cn: str, orgs: tuple[str, ...] = ()) -> ClientCredentials:
        cert, key = _issue(ca, cn, organizations=orgs)
        _write_cert(directory / f"{stem}.crt", cert)
        _write_key(directory / f"{stem}.key", key)
        return ClientCredentials(directory / f"{stem}.crt", directory / f"{stem}.key")

    return ClusterPKI(
        directory=directory,
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        front_proxy_ca_cert=directory / "front-proxy-ca.crt",
        front_proxy_client=ClientCredentials(
            directory / "front-proxy-client.crt", directory / "front-proxy-client.key"
        ),
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
        admin=client("admin", "kubetasks-admin", ("system:masters",)),
        controller_manager=client("controller-manager", "system:kube-controller-manager"),
        scheduler=client("scheduler", "system:kube-scheduler"),
    )
