"""Input refused field by field: the API returns ``code``, the page shows it beside ``field``."""

from __future__ import annotations


class FieldError(ValueError):
    """One input field is wrong: ``code`` says how, ``field`` says which."""

    def __init__(self, code: str, field: str) -> None:
        super().__init__(f"{field}: {code}")
        self.code = code
        self.field = field
