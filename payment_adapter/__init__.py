"""One interface to payment providers: sandbox by default, idempotent, throttled."""
