"""One typed, frozen settings object, built once from ``WAITROOM_*`` environment variables."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(SystemExit):
    """Start-up fails fast with a readable message instead of a traceback."""


def _b64_32(value: str, name: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{name} is not base64") from exc
    if len(raw) != 32:
        raise ValueError(f"{name} must decode to 32 bytes, got {len(raw)}")
    return raw


class Settings(BaseSettings):
    """Everything a waitroom process can be told. Business code receives this object."""

    model_config = SettingsConfigDict(env_prefix="WAITROOM_", frozen=True, extra="ignore")

    # Logs (waitroom/logs.py): the level, text or JSON lines, and the gateways' access log
    # (one line per request: off by default, the polls alone are thousands a second).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    # True: redis_url names a node of a Redis Cluster, and every process uses the cluster.
    redis_cluster: bool = False
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    # Connections the kernel queues for the public listener before the gateway accepts
    # them (capped by net.core.somaxconn). aiohttp's 128 overflowed in the 3 000-parent
    # fault drill (12 065 connections dropped on one gateway in a run): each one a parent
    # waiting a second or more, or the load balancer's health check failing and a
    # healthy gateway marked down (docs/operations.md).
    http_backlog: int = Field(2048, ge=16, le=65535)
    admin_token: SecretStr | None = None
    # The staff console's accounts (JSON, written by `waitroom staff add`); unset: the
    # console answers its login page only, with no account to log in with.
    staff_file: Path | None = None
    # The operator listener: the operator API (/admin/v1), the gateway's /metrics and
    # the staff pages, on their own port, loopback unless told otherwise.
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(8081, ge=0, le=65535)
    # True: /admin/v1 and /metrics are served on the public port too (the v1 layout),
    # for a deployment that cannot reach the operator port yet. Off: they answer 404 there.
    admin_on_public_port: bool = False
    # Secret that makes ticket ids unguessable (HMAC key); 32 bytes, base64url.
    ticket_secret: SecretStr | None = None
    # Admission-token signing: Ed25519 private key seed (32 bytes, base64url) and its key id.
    token_signing_key: SecretStr | None = None
    token_kid: str = Field("k1", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    # Keys that verifiers accept: "kid:base64url-public-key,kid2:...". The signing key's own
    # public key is always accepted, so a single-key setup needs nothing here.
    token_public_keys: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    grpc_host: str = "127.0.0.1"
    queue_grpc_port: int = Field(50051, ge=0, le=65535)
    # How often gateways refresh their in-memory view of every event, and flush heartbeats.
    refresh_interval_s: float = Field(0.25, gt=0, le=5)
    heartbeat_flush_s: float = Field(1.0, gt=0, le=30)
    # Polls are answered from memory; past this age the view is too old to trust: 503.
    stale_after_s: float = Field(3.0, gt=0)
    # New tickets one client (IP address) may create per window.
    join_limit: int = Field(20, ge=1)
    join_window_s: int = Field(10, ge=1)
    # Past join_limit, a join needs a proof of work of this many bits (about 2**bits
    # SHA-256 hashes: 16 is a second or two in a phone's browser); 0: plain 429 instead.
    join_proof_bits: int = Field(16, ge=0, le=26)
    # Behind a load balancer: read the client's address from X-Forwarded-For, from the
    # right, skipping the proxies of trusted_proxies (addresses or networks; empty:
    # loopback and the private networks). The leftmost entries are the client's to write.
    trust_forwarded_for: bool = False
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    # Served over HTTPS (by the gateway's load balancer): cookies get the Secure flag.
    secure_cookies: bool = False
    # Origins, besides the gateway's own, whose pages may POST/PUT/PATCH/DELETE to it
    # ("https://inscriptions.example.ca,..."); a state-changing call from any other
    # Origin is refused (403 cross_origin). Calls without an Origin (curl, tools) pass.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    poll_after_ms: int = Field(5000, ge=500)
    # Queue service: leader lease and tick.
    lease_ttl_ms: int = Field(3000, ge=500)
    tick_s: float = Field(0.1, gt=0, le=2)
    instance: str = ""
    # Prometheus /metrics of the gRPC services, on grpc_host (0: not served). Gateways
    # serve /metrics on their operator listener (admin_port).
    queue_metrics_port: int = Field(9101, ge=0, le=65535)
    cart_metrics_port: int = Field(9102, ge=0, le=65535)
    payment_metrics_port: int = Field(9103, ge=0, le=65535)
    # Registration (issue 3): the ledger, the cart service and the payment adapter.
    # SQLite file by default; e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test.
    database_url: str = "sqlite+aiosqlite:///waitroom-ledger.sqlite3"
    # The payment adapter's own database; empty: the same as database_url. With SQLite,
    # give it a file of its own: two processes writing one SQLite file wait on each other.
    payment_database_url: str = ""
    # PostgreSQL: the connections each cart-service process keeps open (up to 10 more are
    # opened for a burst and closed after it).
    database_pool_size: int = Field(5, ge=1, le=500)
    cart_grpc_port: int = Field(50052, ge=0, le=65535)
    # The cart service listens on this many ports, from cart_grpc_port up (cart_grpc_port,
    # +1, ...; all free ports when it is 0), and cart_target should list them all. gRPC's
    # asyncio server takes in one new call of a method per turn of its event loop: at the
    # peak of a night on one process (SQLite) the calls queued for that, not for the
    # ledger; each listener is one more way in (docs/operations.md).
    cart_grpc_listeners: int = Field(1, ge=1, le=16)
    payment_grpc_port: int = Field(50053, ge=0, le=65535)
    # Where the gateway finds the cart service, and the cart service the payment adapter.
    cart_target: str = "127.0.0.1:50052"
    payment_target: str = "127.0.0.1:50053"
    # Mutual TLS between the services (waitroom/tls.py): this process's certificate and
    # key, and the CA that signs every service's; all three or none (none: plaintext,
    # as make run on loopback). The name servers' certificates carry, when not the
    # dialled host (several addresses behind one certificate).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_server_name: str = ""
    # Bearer token for calls between services that no parent made (reconciliation).
    service_token: SecretStr | None = None
    # Deadline of every gRPC call between processes.
    grpc_deadline_s: float = Field(5.0, gt=0, le=120)
    # Confirmation emails: an SMTP server (a local one in dev and tests).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(8025, ge=0, le=65535)
    mail_from: str = "inscriptions@waitroom.invalid"
    # The public address of the pages, for links in emails (a freed place's notice).
    public_url: str = "http://127.0.0.1:8080"
    # Payment adapter: at most this many payments in flight toward the provider, each
    # given this long before its outcome is "unknown" and left to reconciliation.
    payment_provider: str = Field("sandbox", pattern=r"^sandbox$")
    provider_concurrency: int = Field(8, ge=1, le=1000)
    provider_timeout_s: float = Field(10.0, gt=0, le=300)
    # The provider's own deadline: a charge it has no record of this long after it was
    # sent will never be made. Until then, reconciliation keeps it unknown (the cart
    # stays "payment being confirmed"), never declined at once.
    provider_deadline_s: float = Field(300.0, gt=0, le=86_400)
    # The sandbox provider's hosted card fields (its own small page, as a real provider's
    # hosted fields): served by the payment adapter on this port (0: not served); the
    # gateway's pages frame it from payment_fields_url.
    sandbox_fields_host: str = "127.0.0.1"
    sandbox_fields_port: int = Field(8090, ge=0, le=65535)
    payment_fields_url: str = "http://127.0.0.1:8090"
    # Whether checkout still takes a card number itself: off, no card can reach our
    # services (PCI DSS SAQ A; the pages send the provider's token). On only for the
    # sandbox's load drills and API tests, which post test cards by the thousand.
    accept_card_numbers: bool = False
    # Simulated provider latency (sandbox only).
    sandbox_latency_ms: int = Field(150, ge=0, le=60_000)
    # How long a cart holds its seats after each change (Québec FAQ 8: 20 minutes).
    cart_hold_s: int = Field(1200, ge=1, le=86_400)
    # A freed seat offered to the next family on the waiting list is held for them this
    # long (the link in their email); then it passes to the next family (FAQ 6).
    waiting_offer_s: int = Field(24 * 3600, ge=60, le=14 * 86_400)
    # A cart stays locked this long after checkout starts (FAQ 11), then is settled.
    payment_lock_s: int = Field(120, ge=1, le=3600)
    # How often the cart service settles locked carts and sends queued emails.
    settle_interval_s: float = Field(5.0, gt=0, le=300)

    @model_validator(mode="after")
    def _tls_files(self) -> Settings:
        files = (self.tls_cert_file, self.tls_key_file, self.tls_ca_file)
        if any(files) and not all(files):
            raise ValueError("TLS needs its three files: TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE")
        for path in filter(None, files):
            if not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().rstrip("/") for item in value.split(",") if item.strip()]
        return value

    @field_validator("token_public_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if isinstance(value, str):
            keys: dict[str, str] = {}
            for item in filter(None, (part.strip() for part in value.split(","))):
                kid, sep, key = item.partition(":")
                if not sep or not kid:
                    raise ValueError("expected 'kid:base64url-key' items separated by commas")
                _b64_32(key, f"public key {kid!r}")
                keys[kid] = key
            return keys
        return value

    @field_validator("ticket_secret", "token_signing_key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _b64_32(value.get_secret_value(), "key")
        return value

    def ticket_secret_bytes(self) -> bytes:
        """The ticket-id HMAC key; required by any process that issues or reads tickets."""
        if self.ticket_secret is None:
            raise SettingsError("WAITROOM_TICKET_SECRET is required (32 bytes, base64url)")
        return _b64_32(self.ticket_secret.get_secret_value(), "WAITROOM_TICKET_SECRET")

    def service_token_value(self) -> str:
        """The bearer token services present to each other."""
        if self.service_token is None:
            raise SettingsError(
                "WAITROOM_SERVICE_TOKEN is required by the cart and payment services"
            )
        return self.service_token.get_secret_value()

    def signing_key_bytes(self) -> bytes:
        """The Ed25519 seed that signs admission tokens (the gateway needs it)."""
        if self.token_signing_key is None:
            raise SettingsError("WAITROOM_TOKEN_SIGNING_KEY is required (32 bytes, base64url)")
        return _b64_32(self.token_signing_key.get_secret_value(), "WAITROOM_TOKEN_SIGNING_KEY")


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (plus overrides), exiting with a clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [
            f"  WAITROOM_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SettingsError("invalid waitroom settings:\n" + "\n".join(lines)) from None
