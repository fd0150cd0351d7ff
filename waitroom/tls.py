"""Mutual TLS between the services (a setting; ``make run`` keeps plaintext on loopback).

Each process has one certificate and key (``WAITROOM_TLS_CERT_FILE``,
``WAITROOM_TLS_KEY_FILE``) and trusts one CA (``WAITROOM_TLS_CA_FILE``). As a server it
presents its certificate and requires the caller's, signed by that CA; as a client it
presents the same certificate and checks the server's against the CA and the name it
dialled (or ``WAITROOM_TLS_SERVER_NAME`` when several addresses share a certificate).
Certificates are read from the files at start-up; rotate by restarting the processes one
by one with new files signed by the same CA (or with a bundle of old and new CAs).
"""

from __future__ import annotations

from pathlib import Path

import grpc

from waitroom.settings import Settings


def _read(path: Path | None) -> bytes:
    assert path is not None  # the settings require all three files or none
    return path.read_bytes()


def enabled(settings: Settings) -> bool:
    return settings.tls_cert_file is not None


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The server's credentials, callers' certificates required; None: plaintext."""
    if not enabled(settings):
        return None
    return grpc.ssl_server_credentials(
        [(_read(settings.tls_key_file), _read(settings.tls_cert_file))],
        root_certificates=_read(settings.tls_ca_file),
        require_client_auth=True,
    )


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """A client's credentials (its certificate, the CA to check servers); None: plaintext."""
    if not enabled(settings):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file),
        private_key=_read(settings.tls_key_file),
        certificate_chain=_read(settings.tls_cert_file),
    )


def channel_options(settings: Settings) -> list[tuple[str, str]]:
    """The name the servers' certificate must carry, when not the dialled one."""
    if enabled(settings) and settings.tls_server_name:
        return [("grpc.ssl_target_name_override", settings.tls_server_name)]
    return []
