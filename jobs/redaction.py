"""Credentials out of everything shown or logged (the report's settings, MLflow
params): values under secret-looking keys at any depth, the user:password part
of URLs, and any value of a secret-looking environment variable."""
from __future__ import annotations

import re
from typing import Mapping

REDACTED = "***"
# Setting names that hold credentials, matched on whole words of the key
# (`aws_secret_access_key`, `token`), so `hash_keywords` is not a secret.
SECRET_WORDS = {"key", "secret", "password", "passwd", "token", "credential", "credentials",
                "apikey", "sas", "signature", "auth", "authorization"}
# Environment variables whose values are secrets wherever they show up.
SECRET_ENV_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|KEY|CREDENTIAL)", re.IGNORECASE)
URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
MIN_SECRET_CHARS = 6  # shorter environment values would redact ordinary words


def redact(settings, environ: Mapping[str, str] | None = None):
    """A copy of the settings with credentials replaced: values under secret-looking
    keys, the user:password part of URLs, and any value of a secret-looking
    environment variable that appears inside a string."""
    secrets = sorted({v for k, v in (environ or {}).items()
                      if SECRET_ENV_NAME.search(k) and v and len(v) >= MIN_SECRET_CHARS},
                     key=len, reverse=True)

    def clean(value, key: str = ""):
        if key and _secret_key(key) and value not in (None, "", {}, []):
            return REDACTED
        if isinstance(value, Mapping):
            return {k: clean(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, str):
            value = URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", value)
            for secret in secrets:
                value = value.replace(secret, REDACTED)
        return value

    return clean(settings)


def _secret_key(key: str) -> bool:
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower())
    if words[-1] == "env":  # `privacy.secret_env` names a variable; its value is not shown anywhere
        return False
    return any(w in SECRET_WORDS for w in words)
