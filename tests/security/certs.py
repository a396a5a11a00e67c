"""Throw-away certificates made with the ``openssl`` binary (the venv has no ``cryptography``).

One self-signed certificate for ``127.0.0.1`` and ``localhost`` is enough for every test here: it
is its own CA, so a client that trusts exactly this file verifies the server, hostname included.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def self_signed(directory: Path, name: str = "server") -> CertPair:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl binary is needed to make test certificates")
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return CertPair(cert, key)
