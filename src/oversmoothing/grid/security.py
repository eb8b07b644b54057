"""Transport security of a Dask cluster the grids join: TLS files, and a warning for plain TCP to another host.

``tls_files()`` reads ``$OVERSMOOTHING_TLS_CA``, ``$OVERSMOOTHING_TLS_CERT`` and ``$OVERSMOOTHING_TLS_KEY`` (set by
the runner's ``--tls-ca/--tls-cert/--tls-key``); :func:`security` turns them into a
``distributed.security.Security`` with ``require_encryption=True``.  Without them the client is made with
Dask's own configuration (``distributed.comm.tls.*``), which still applies.  Imports nothing heavy.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

__all__ = ["TLS_ENV", "tls_files", "check_tls", "security", "plain_tcp_warning"]

#: tls file role -> the environment variable carrying it to the kernels
TLS_ENV = {"ca": "OVERSMOOTHING_TLS_CA", "cert": "OVERSMOOTHING_TLS_CERT", "key": "OVERSMOOTHING_TLS_KEY"}


def tls_files(tls: dict | None = None) -> dict:
    """``tls`` (keys ca, cert, key), else the ones in the environment; only those given."""
    if tls is None:
        tls = {role: os.environ.get(var, "").strip() for role, var in TLS_ENV.items()}
    return {role: str(v) for role, v in (tls or {}).items() if v}


def check_tls(tls: dict, scheduler: str | None) -> dict:
    """The TLS files, checked: known roles, existing files, a CA with a certificate (the key may be in the
    certificate's file), and a ``tls://`` scheduler (or a scheduler file).  ValueError naming the problem."""
    tls = tls_files(tls)
    if not tls:
        return {}
    unknown = set(tls) - set(TLS_ENV)
    if unknown:
        raise ValueError(f"unknown TLS option(s) {sorted(unknown)}; accepted: ca, cert, key")
    for role, path in tls.items():
        if not Path(path).is_file():
            raise ValueError(f"--tls-{role} {path}: no such file")
    if "ca" not in tls or "cert" not in tls:
        raise ValueError("TLS needs --tls-ca (the CA that signed the scheduler's certificate) and --tls-cert (this "
                         "client's certificate; --tls-key if its key is in another file)")
    if not scheduler or (scheduler.startswith(("tcp://", "ucx://", "ws://", "inproc://"))):
        raise ValueError(f"--tls-ca/--tls-cert/--tls-key need a TLS scheduler address (tls://host:port), got "
                         f"{scheduler or 'no --scheduler'}")
    return tls


def security(tls: dict | None = None):
    """A ``distributed.security.Security`` requiring encryption with the TLS files, or None without any."""
    tls = tls_files(tls)
    if not tls:
        return None
    from distributed.security import Security

    return Security(tls_ca_file=tls.get("ca"), tls_client_cert=tls.get("cert"), tls_client_key=tls.get("key"),
                    require_encryption=True)


def _local(host: str) -> bool:
    host = host.strip("[]")
    if host in ("localhost", "", socket.gethostname()):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_tcp_warning(address: str | None) -> str | None:
    """A one-line warning for an unencrypted ``tcp://`` address of another host (None for anything else)."""
    if not address or not address.startswith("tcp://"):
        return None
    host = address[len("tcp://"):].rsplit(":", 1)[0] if address.count(":") > 1 else address[len("tcp://"):]
    host = host.split("/")[0]
    if _local(host):
        return None
    return (f"warning: the Dask scheduler {address} is joined over plain TCP: anyone on the network can read the "
            f"runs and send the workers code; use tls://{address[len('tcp://'):]} with --tls-ca/--tls-cert/--tls-key "
            f"(README, Scaling out)")
