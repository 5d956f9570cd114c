"""A throwaway PKI for the local control plane, made with the openssl command line."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed to create the local control plane's certificates")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> KeyPair:
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    _openssl("genrsa", "-out", pair.key.name, "2048", cwd=folder)
    _openssl(
        "req", "-x509", "-new", "-nodes", "-key", pair.key.name, "-sha256", "-days", "30",
        "-subj", f"/CN={name}", "-out", pair.cert.name, cwd=folder,
    )  # fmt: skip
    return pair


def issue(
    folder: Path, ca: KeyPair, name: str, *, common_name: str, organization: str | None = None,
    dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), server: bool = False,
) -> KeyPair:  # fmt: skip
    """A certificate signed by `ca`: a client identity (CN user, O group) or a serving certificate."""
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    subject = f"/CN={common_name}" + (f"/O={organization}" if organization else "")
    _openssl("genrsa", "-out", pair.key.name, "2048", cwd=folder)
    _openssl("req", "-new", "-key", pair.key.name, "-subj", subject, "-out", f"{name}.csr", cwd=folder)
    usage = "serverAuth" if server else "clientAuth"
    extensions = [f"extendedKeyUsage={usage}", "keyUsage=critical,digitalSignature,keyEncipherment"]
    alt_names = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
    if alt_names:
        extensions.append("subjectAltName=" + ",".join(alt_names))
    (folder / f"{name}.ext").write_text("\n".join(extensions) + "\n")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", ca.cert.name, "-CAkey", ca.key.name, "-CAcreateserial",
        "-days", "30", "-sha256", "-extfile", f"{name}.ext", "-out", pair.cert.name, cwd=folder,
    )  # fmt: skip
    return pair


def make_service_account_key(folder: Path) -> Path:
    key = folder / "service-account.key"
    _openssl("genrsa", "-out", key.name, "2048", cwd=folder)
    return key
