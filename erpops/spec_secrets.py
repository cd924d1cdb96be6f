"""Pasted credentials anywhere in a spec: every string field is scanned, not only `secrets.*`.

A spec is rendered into ConfigMaps, Helm values, inventories and the `erpops render` output, so a
token pasted into any field (a context name, a host, a bucket) would leak there. Two detectors:
Yelp's detect-secrets (its shape plugins: AWS, GitHub, GitLab, Slack, Stripe, private keys, JWTs,
basic auth in URLs, ...; the entropy and keyword plugins are left out, they flag image digests and
`password_key: smtpPassword`), and the project's own shapes (a bare 40-character AWS secret key).
The messages never repeat the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# detect-secrets plugins that recognise a credential by its own shape, whatever the key around it
DETECT_SECRETS_PLUGINS = (
    "ArtifactoryDetector", "AWSKeyDetector", "AzureStorageKeyDetector", "BasicAuthDetector",
    "CloudantDetector", "DiscordBotTokenDetector", "GitHubTokenDetector", "GitLabTokenDetector",
    "IbmCloudIamDetector", "IbmCosHmacDetector", "JwtTokenDetector", "MailchimpDetector", "NpmDetector",
    "OpenAIDetector", "PrivateKeyDetector", "PypiTokenDetector", "SendGridDetector", "SlackDetector",
    "SoftlayerDetector", "SquareOAuthDetector", "StripeDetector", "TelegramBotTokenDetector",
    "TwilioKeyDetector",
)

# The project's shapes, for what detect-secrets only finds next to a keyword
PROJECT_SHAPES = (
    ("a token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20}"
                           r"|xox[abpr]-[A-Za-z0-9-]{10,}|sk_live_[A-Za-z0-9]{16,})")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY")),
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("an AWS secret access key", re.compile(r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[a-z])"
                                            r"(?=[A-Za-z0-9/+]*\d)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")),
)


def strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(key path, value) of every string in a raw spec, keys included (a pasted token can be a key)."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                yield child, key
            yield from strings(value, child)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def _detect_secrets(values: list[tuple[str, str]]) -> dict[str, str]:
    """key path -> detect-secrets' name of what it found there."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import transient_settings

    known = {cls.__name__ for cls in get_mapping_from_secret_type_to_class().values()}
    plugins = [{"name": name} for name in DETECT_SECRETS_PLUGINS if name in known]
    found: dict[str, str] = {}
    with transient_settings({"plugins_used": plugins, "filters_used": []}):
        for path, value in values:
            for line in value.splitlines() or [value]:
                for secret in scan_line(line):
                    found.setdefault(path, secret.type)
    return found


def pasted_credentials(raw: Any, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(key path, what it looks like) for every string of `raw` holding a credential."""
    values = [(p, v) for p, v in strings(raw) if v and not p.startswith(skip)]
    found: dict[str, str] = {}
    for path, value in values:
        for what, shape in PROJECT_SHAPES:
            if shape.search(value):
                found.setdefault(path, what)
                break
    for path, what in _detect_secrets([(p, v) for p, v in values if p not in found]).items():
        found.setdefault(path, f"a {what.lower()} (detect-secrets)")
    return sorted(found.items())
