"""Field types of the spec model: quantities with bounds, Kubernetes and DNS names, cron, CIDRs.

Each type is an `Annotated[str, BeforeValidator(rule)]` whose rule is a small frozen object: it takes
what YAML gave (a string, a number, anything), returns the canonical string or raises ValueError with
a message naming the value, what is wrong in words and a corrected example. The docs generator
(erpops/specdocs.py) reads each rule's `form` to print the bounds, so a new field gets its docs by
using one of these types. No union types: pydantic would leak the branch names into key paths.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

from erpops.units import parse_cpu, parse_memory

# An image reference pinned by digest, or by a tag (any tag but `latest`): the spec's odoo.image and
# `erpops patch --image/--from-image` both read it here.
IMAGE_DIGEST_RE = re.compile(r"[a-z0-9][a-z0-9._/:-]*@sha256:[a-f0-9]{64}")
IMAGE_TAG_RE = re.compile(r"(?P<repo>[a-z0-9][a-z0-9._/-]*(?::\d+/[a-z0-9._/-]+)?):(?P<tag>[A-Za-z0-9_.-]{1,128})")


def image_pin(ref: str) -> str | None:
    """What pins the image: "digest", "tag", "latest" (a tag that pins nothing), or None (not an image ref)."""
    if IMAGE_DIGEST_RE.fullmatch(ref):
        return "digest"
    m = IMAGE_TAG_RE.fullmatch(ref)
    if not m:
        return None
    return "latest" if m["tag"] == "latest" else "tag"

# The largest nodes any cloud sells (AWS u7in-32tb.224xlarge: 896 vCPUs, 32 TiB): no pod can ask more
NODE_MAX_CORES = 896
NODE_MAX_MEMORY = "32Ti"
# The largest single volume of the common CSI drivers (EBS io2 Block Express, GCE PD, Azure Ultra Disk)
VOLUME_MAX = "64Ti"

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _kind(value: Any) -> str:
    return {bool: "a boolean", dict: "a mapping", list: "a list", type(None): "empty"}.get(
        type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------
# Quantities
# --------------------------------------------------------------------------------------------

def _number_text(value: Any, example: str) -> str:
    """YAML numbers and strings as the text of a quantity; anything else is refused in words."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is {_kind(value)}, not a quantity: write it like {example}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a quantity: write it like {example}")
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e15):
            raise ValueError(f"{value!r} is a number in exponent form: write it like {example}")
        text = f"{value:.3f}".rstrip("0").rstrip(".")
    else:
        text = str(value).strip()
    if text.startswith("-"):
        raise ValueError(f"{value!r} is negative: a quantity must be positive, e.g. {example}")
    return text


@dataclass(frozen=True)
class CpuRule:
    """Kubernetes CPU: cores (2, 1.5) or millicores (500m), at least `minimum`, at most a node's cores."""
    type_name = "CPU quantity"

    minimum: str = "1m"
    maximum: str = str(NODE_MAX_CORES)
    example: str = "500m"

    @property
    def form(self) -> str:
        return f"CPU quantity, {self.minimum} to {self.maximum} cores"

    def __call__(self, value: Any) -> str:
        text = _number_text(value, self.example)
        try:
            cores = parse_cpu(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a CPU quantity: write cores or millicores, e.g. 2, 1.5 or "
                             f"{self.example}") from None
        millis = cores * 1000
        if millis < parse_cpu(self.minimum) * 1000 or cores == 0:
            raise ValueError(f"{value!r} is below {self.minimum}: a pod needs CPU to run; set at least "
                             f"{self.minimum}, e.g. {self.example}")
        if abs(millis - round(millis)) > 1e-6:
            raise ValueError(f"{value!r} is finer than 1m, the smallest CPU unit Kubernetes takes: write it "
                             f"in whole millicores, e.g. {max(1, round(millis))}m")
        if cores > parse_cpu(self.maximum):
            raise ValueError(f"{value!r} is more CPU than any node has ({self.maximum} cores): set it to what "
                             f"one pod needs, e.g. {self.example}")
        return text if isinstance(value, str) else (str(int(cores)) if cores.is_integer() else f"{round(millis)}m")


@dataclass(frozen=True)
class MemoryRule:
    """Kubernetes memory or storage quantity (512Mi, 4Gi), from `minimum` to `maximum`."""
    @property
    def type_name(self) -> str:
        return f"{self.what} quantity"


    minimum: str = "1Mi"
    maximum: str = NODE_MAX_MEMORY
    example: str = "4Gi"
    what: str = "memory"

    @property
    def form(self) -> str:
        return f"{self.what} quantity, {self.minimum} to {self.maximum}"

    def __call__(self, value: Any) -> str:
        text = _number_text(value, self.example)
        huge = re.fullmatch(r"\d+(\.\d+)?(Pi|Ei|P|E)", text)
        if huge and float(text[: -len(huge[2])]) > 0:
            raise ValueError(f"{value!r} is more than {self._where} ({self.maximum}): set it to what is needed, "
                             f"e.g. {self.example}")
        try:
            size = parse_memory(int(text) if text.isdigit() else text)
        except ValueError:
            raise ValueError(f"{value!r} is not a {self.what} quantity: write it like 512Mi or 4Gi "
                             f"(Ki, Mi, Gi, Ti are powers of 1024), e.g. {self.example}") from None
        if size < parse_memory(self.minimum):
            raise ValueError(f"{value!r} is below the {self.minimum} this needs: set it to at least "
                             f"{self.minimum}, e.g. {self.example}")
        if size > parse_memory(self.maximum):
            raise ValueError(f"{value!r} is more than {self._where} ({self.maximum}): set it to what is needed, "
                             f"e.g. {self.example}")
        return text

    @property
    def _where(self) -> str:
        return "any node has" if self.what == "memory" else "one volume can hold"


def CpuOf(minimum: str = "1m", example: str = "500m") -> Any:
    return Annotated[str, BeforeValidator(CpuRule(minimum=minimum, example=example))]


def MemoryOf(minimum: str = "1Mi", example: str = "4Gi", maximum: str = NODE_MAX_MEMORY) -> Any:
    return Annotated[str, BeforeValidator(MemoryRule(minimum=minimum, maximum=maximum, example=example))]


def StorageOf(minimum: str = "1Gi", example: str = "50Gi") -> Any:
    return Annotated[str, BeforeValidator(MemoryRule(minimum=minimum, maximum=VOLUME_MAX, example=example,
                                                     what="storage"))]


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

def suggest_label(value: str, limit: int = 63, sep: str = "-") -> str:
    """A corrected name close to `value`: lowercase, other characters as '-', trimmed."""
    text = re.sub(r"[^a-z0-9]+", sep, value.lower()).strip("-_")[:limit].strip("-_")
    return text or "example"


def suggest_subdomain(value: str) -> str:
    labels = [suggest_label(p) for p in value.lower().split(".") if suggest_label(p, 63) != "example"]
    return ".".join(labels)[:253].strip(".-") or "example"


@dataclass(frozen=True)
class NameRule:
    """A Kubernetes name: `label` (RFC 1123 label: namespaces, label values) or `subdomain` (DNS subdomain:
    Secrets, StorageClasses, IngressClasses)."""
    type_name = "Kubernetes name"

    what: str
    kind: str = "subdomain"  # label | subdomain

    @property
    def form(self) -> str:
        if self.kind == "label":
            return "RFC 1123 label: lowercase letters, digits, '-', at most 63 characters"
        return "DNS subdomain: lowercase letters, digits, '-', '.', at most 253 characters"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is {_kind(value)}, not a {self.what}: write a name like "
                             f"{suggest_label(str(value))}")
        limit = 63 if self.kind == "label" else 253
        pattern = _LABEL if self.kind == "label" else _SUBDOMAIN
        if len(value) <= limit and pattern.fullmatch(value):
            return value
        fix = suggest_label(value) if self.kind == "label" else suggest_subdomain(value)
        if len(value) > limit:
            why = f"is {len(value)} characters, too long for a {self.what}: Kubernetes takes at most {limit}"
        elif self.kind == "label":
            why = (f"is not a valid {self.what}: Kubernetes takes lowercase letters, digits and '-', starting and "
                   "ending with a letter or digit (no '.', '_' or capitals)")
        else:
            why = (f"is not a valid {self.what}: Kubernetes takes lowercase letters, digits, '-' and '.', each part "
                   "starting and ending with a letter or digit (no '_' or capitals)")
        raise ValueError(f"{value!r} {why}; e.g. {fix}")


@dataclass(frozen=True)
class HostRule:
    """A DNS host name: labels of at most 63 characters, 253 in all; `fqdn` also wants a dotted domain."""
    type_name = "DNS name"

    what: str = "host name"
    fqdn: bool = True

    @property
    def form(self) -> str:
        return ("DNS name" + (" with a domain" if self.fqdn else "")
                + ": lowercase labels of letters, digits, '-', each at most 63 characters")

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is {_kind(value)}, not a {self.what}: write it like erp.example.com")
        labels = value.split(".")
        long = [p for p in labels if len(p) > 63]
        fix = suggest_subdomain(value) + ("" if "." in value or not self.fqdn else ".example.com")
        if long:
            raise ValueError(f"{value!r} has a {len(long[0])}-character part ({long[0][:20]}...): DNS takes at "
                             f"most 63 characters between dots; shorten it, e.g. {suggest_label(long[0], 40)}."
                             f"{'.'.join(labels[1:]) or 'example.com'}")
        bad = (len(value) > 253 or not _SUBDOMAIN.fullmatch(value)
               or (self.fqdn and (len(labels) < 2 or not re.fullmatch(r"[a-z]{2,63}", labels[-1]))))
        if bad:
            need = " with a domain (a.b)" if self.fqdn else ""
            raise ValueError(f"{value!r} has the wrong form for a {self.what}: write a DNS name{need} of "
                             f"lowercase letters, digits and '-' between dots, e.g. {fix}")
        return value


@dataclass(frozen=True)
class WordRule:
    """A plain identifier (Odoo module, database name, config key name) described in words."""
    type_name = "name"

    what: str
    pattern: str
    words: str
    example: str
    sep: str = "_"

    @property
    def form(self) -> str:
        return self.words

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is {_kind(value)}, not a {self.what}: write it like {self.example}")
        if re.fullmatch(self.pattern, value):
            return value
        fixed = suggest_label(value, sep=self.sep).replace("-", self.sep) if value else self.example
        if fixed[:1].isdigit() or fixed == "example":
            fixed = self.example
        raise ValueError(f"{value!r} is not a valid {self.what}: use {self.words}; e.g. {fixed}")


def Label(what: str) -> Any:
    return Annotated[str, BeforeValidator(NameRule(what, "label"))]


def Subdomain(what: str) -> Any:
    return Annotated[str, BeforeValidator(NameRule(what, "subdomain"))]


def Host(what: str = "host name", fqdn: bool = True) -> Any:
    return Annotated[str, BeforeValidator(HostRule(what, fqdn))]


def Word(what: str, pattern: str, words: str, example: str) -> Any:
    return Annotated[str, BeforeValidator(WordRule(what, pattern, words, example))]


ModuleName = Word("Odoo module name", r"[a-z0-9_]+", "lowercase letters, digits and '_'", "sale_management")


# --------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CidrRule:
    type_name = "IPv4 CIDR"
    form: str = "IPv4 network in CIDR form, e.g. 203.0.113.25/32"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is {_kind(value)}, not a network: write it like 203.0.113.25/32")
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            if "/" not in value:
                raise ValueError(f"{value!r} has no prefix length: write {value}/32 for one address") from None
            if "host bits set" in str(exc):
                fixed = ipaddress.IPv4Network(value, strict=False)
                raise ValueError(f"{value!r} has host bits set: write the network, {fixed}") from None
            raise ValueError(f"{value!r} is not an IPv4 network: write it like 203.0.113.25/32") from None
        return str(net)


Cidr = Annotated[str, BeforeValidator(CidrRule())]


@dataclass(frozen=True)
class EndpointRule:
    type_name = "host:port"
    form: str = "host:port, port 1 to 65535"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or ":" not in value:
            raise ValueError(f"{value!r} is not host:port: write it like redis.example.com:6379")
        host, _, port = value.rpartition(":")
        HostRule("endpoint host", fqdn=False)(host)
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{value!r} has port {port!r}: a port is 1 to 65535, e.g. {host}:6379")
        return value


Endpoint = Annotated[str, BeforeValidator(EndpointRule())]


# --------------------------------------------------------------------------------------------
# Cron (CloudNativePG's ScheduledBackup: robfig/cron with a seconds field we add)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CronRule:
    type_name = "cron expression"
    form: str = "5-field cron (minute hour day-of-month month day-of-week), parsed by croniter"

    def __call__(self, value: Any) -> str:
        from croniter import croniter

        if not isinstance(value, str):
            raise ValueError(f"{value!r} is {_kind(value)}, not a cron expression: quote it, e.g. '0 2 * * *'")
        fields = value.split()
        if len(fields) != 5:
            raise ValueError(f"{value!r} is not a 5-field cron expression ({len(fields)} field"
                             f"{'s' if len(fields) != 1 else ''}; minute hour day month weekday): e.g. "
                             "'0 2 * * *' for 02:00 every day")
        names = re.sub(r"(?i)jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|sun|mon|tue|wed|thu|fri|sat", "", value)
        if re.search(r"[LlWw#Hh]", names):
            raise ValueError(f"{value!r} uses L, W, # or H, which CloudNativePG's cron parser does not "
                             "take: use numbers, ranges, lists and steps, e.g. '0 2 * * 1-5'")
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression (minute 0-59, hour 0-23, day 1-31, "
                             "month 1-12, weekday 0-6): e.g. '0 2 * * *' for 02:00 every day")
        return value


Cron = Annotated[str, BeforeValidator(CronRule())]


HORIZON_DAYS = 8 * 366  # two leap days from 2026: a schedule of 29 February shows its four-year gap


def _firings(expr: str, days: int = HORIZON_DAYS) -> tuple[list[date], list[int]]:
    """The days `expr` fires on over eight years and its minutes of such a day.

    From croniter's expansion of the five fields, with cron's rule that a restricted day-of-month and a
    restricted day-of-week match either (robfig/cron, which CloudNativePG uses, does the same).
    """
    from croniter import croniter

    minutes, hours, doms, months, dows = croniter(expr).expanded[:5]
    times = sorted(h * 60 + m for h in (range(24) if hours == ["*"] else hours)
                   for m in (range(60) if minutes == ["*"] else minutes))
    day_set = None if doms == ["*"] else set(doms)
    dow_set = None if dows == ["*"] else {d % 7 for d in dows}
    month_set = None if months == ["*"] else set(months)
    start = date(2026, 1, 1)
    fired = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        if month_set is not None and day.month not in month_set:
            continue
        by_dom = day_set is None or day.day in day_set
        by_dow = dow_set is None or (day.isoweekday() % 7) in dow_set
        if (by_dom or by_dow) if (day_set is not None and dow_set is not None) else (by_dom and by_dow):
            fired.append(day)
    return fired, times


def cron_gaps(expr: str) -> tuple[timedelta, timedelta] | None:
    """(shortest, longest) time between two runs of `expr`; None when it never fires."""
    days, times = _firings(expr)
    if not days or not times:
        return None
    within = [b - a for a, b in itertools.pairwise(times)]
    overnight = [(b - a).days * 1440 - times[-1] + times[0] for a, b in itertools.pairwise(days)]
    gaps = within + overnight or [HORIZON_DAYS * 1440]
    return timedelta(minutes=min(gaps)), timedelta(minutes=max(gaps))
