"""Parse a Prometheus `/metrics` body into a `MetricsSnapshot`, and name aliases.

Names are discovered from the scrape (`snapshot.names("vllm:")`, `snapshot.names("lmcache:")`)
rather than hard-coded to one release; `METRIC_ALIASES` maps a logical metric to the
spellings different vLLM/LMCache releases use, newest first, and `snapshot.resolve(key)`
picks the one present.

Parsing: prometheus_client's `text_string_to_metric_families` is the reference parser, but
it costs ~40 ms for a 100 KB vLLM body (it scans label text a character at a time), too
slow for a 2 s poll of several instances on the UI's loop. `parse_metrics` therefore parses
the common, simple form itself (one regex per sample line) and hands the whole body to
prometheus_client whenever a line is anything else (escaped quotes, exotic syntax), so the
result is always the reference one. Tests check both paths agree on the recorded real
bodies. `*_created` samples are dropped: nothing here needs them.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import NamedTuple
from collections.abc import Iterable

__all__ = [
    "METRIC_ALIASES",
    "Histogram",
    "MetricFamily",
    "MetricsParseError",
    "MetricsSnapshot",
    "Sample",
    "parse_metrics",
]

Labels = tuple[tuple[str, str], ...]

# logical key -> family names (counters without `_total`), newest spelling first.
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "prompt_tokens": ("vllm:prompt_tokens",),
    "generation_tokens": ("vllm:generation_tokens",),
    "request_success": ("vllm:request_success",),
    "preemptions": ("vllm:num_preemptions",),
    "prefix_cache_queries": ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries"),
    "prefix_cache_hits": ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits"),
    "external_prefix_cache_queries": ("vllm:external_prefix_cache_queries",),
    "external_prefix_cache_hits": ("vllm:external_prefix_cache_hits",),
    "ttft": ("vllm:time_to_first_token_seconds",),
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "e2e": ("vllm:e2e_request_latency_seconds",),
    "queue_time": ("vllm:request_queue_time_seconds",),
    "lmcache_stored_tokens": ("lmcache:num_stored_tokens",),
    "lmcache_hit_tokens": ("lmcache:num_hit_tokens",),
    "lmcache_requested_tokens": ("lmcache:num_requested_tokens", "lmcache:num_retrieve_requested_tokens"),
    "lmcache_store_requests": ("lmcache:num_store_requests",),
    "lmcache_retrieve_requests": ("lmcache:num_retrieve_requests",),
    "lmcache_retrieve_hit_rate": ("lmcache:retrieve_hit_rate",),
    "lmcache_time_to_store": ("lmcache:time_to_store",),
    "lmcache_time_to_retrieve": ("lmcache:time_to_retrieve",),
    "lmcache_p2p_transfer_speed": ("lmcache:p2p_transfer_speed",),
}


class MetricsParseError(ValueError):
    """The body is not Prometheus text; the message says which line and why."""


class Sample(NamedTuple):
    """Immutable; a NamedTuple because a /metrics body has a thousand of them per scrape
    and a tuple is several times cheaper to build than a frozen dataclass."""

    name: str  # the sample name as exposed: vllm:prompt_tokens_total, ..._bucket
    labels: Labels
    value: float

    def label(self, key: str) -> str | None:
        for k, v in self.labels:
            if k == key:
                return v
        return None


@dataclass(slots=True)
class MetricFamily:
    name: str  # family name; counters without `_total` (prometheus_client's convention)
    type: str  # counter | gauge | histogram | summary | untyped | ...
    samples: list[Sample] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative buckets summed over every label set (except `le`), sorted by bound."""

    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), last is +Inf
    count: float
    sum: float


class MetricsSnapshot:
    """One scrape: families by name, with the time it was taken (unix seconds)."""

    __slots__ = ("families", "taken_at")

    def __init__(self, families: dict[str, MetricFamily], taken_at: float) -> None:
        self.families = families
        self.taken_at = taken_at

    def names(self, prefix: str = "") -> list[str]:
        return sorted(name for name in self.families if name.startswith(prefix))

    def resolve(self, key_or_name: str) -> str | None:
        """The family name present for a logical key of METRIC_ALIASES (or a plain name)."""
        for name in METRIC_ALIASES.get(key_or_name, (key_or_name,)):
            if name in self.families:
                return name
        return None

    def family(self, key_or_name: str) -> MetricFamily | None:
        name = self.resolve(key_or_name)
        return self.families.get(name) if name else None

    def value(self, key_or_name: str, **labels: str) -> float | None:
        """Sum of the counter/gauge samples matching `labels`; None if the family is absent."""
        fam = self.family(key_or_name)
        if fam is None or fam.type in ("histogram", "gaugehistogram", "summary"):
            return None
        wanted = tuple(labels.items())
        total, found = 0.0, False
        for sample in fam.samples:
            if sample.name.endswith("_created"):
                continue
            if wanted and not all(sample.label(k) == v for k, v in wanted):
                continue
            total += sample.value
            found = True
        return total if found else None

    def histogram(self, key_or_name: str, **labels: str) -> Histogram | None:
        fam = self.family(key_or_name)
        if fam is None or fam.type != "histogram":
            return None
        wanted = tuple(labels.items())
        buckets: dict[float, float] = {}
        count = total = 0.0
        for sample in fam.samples:
            if wanted and not all(sample.label(k) == v for k, v in wanted):
                continue
            if sample.name.endswith("_bucket"):
                le = sample.label("le")
                if le is None:
                    continue
                bound = math.inf if le in ("+Inf", "Inf", "inf") else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
            elif sample.name.endswith("_sum"):
                total += sample.value
        if not buckets:
            return None
        return Histogram(tuple(sorted(buckets.items())), count, total)


# --- parsing ----------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_NAME_RE = re.compile(_NAME)
# Only for error messages: what a plain sample line looks like.
_SAMPLE_LINE = re.compile(rf"({_NAME})(?:\{{[^{{}}]*\}})?[ \t]+\S+(?:[ \t]+-?\d+)?[ \t]*")
_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created", "_gcount", "_gsum", "_info")


def _family_of(sample_name: str, types: dict[str, str]) -> str:
    if sample_name in types:
        return sample_name
    for suffix in _SUFFIXES:
        if sample_name.endswith(suffix):
            base = sample_name[: -len(suffix)]
            if base in types:
                return base
    return sample_name


def _parse_value(text: str) -> float:
    if text in ("+Inf", "Inf", "inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    return float(text)  # also accepts NaN


def _fast_parse(text: str, keep: tuple[str, ...] | None) -> dict[str, MetricFamily] | None:
    """The simple common form with plain string operations; None when any line needs
    the full parser (escapes, quotes or braces inside label values, odd spacing)."""
    types: dict[str, str] = {}
    families: dict[str, MetricFamily] = {}
    last_name = ""
    last_family: MetricFamily | None = None
    valid_names: set[str] = set()
    for line in text.split("\n"):
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                name, kind = parts[2], parts[3].strip()
                # A counter declared as foo_total is the family foo (prometheus_client rule).
                if kind == "counter" and name.endswith("_total"):
                    name = name[:-6]
                types[name] = kind
            continue
        if keep is not None and not line.startswith(keep):
            continue
        brace = line.find("{")
        if brace >= 0:
            close = line.rfind("}")
            if close < brace:
                return None
            sample_name = line[:brace]
            label_text = line[brace + 1 : close]
            rest = line[close + 1 :].split()
        else:
            parts = line.split()
            sample_name, label_text, rest = parts[0], "", parts[1:]
        if not rest or len(rest) > 2:
            return None
        if sample_name not in valid_names:
            if not _NAME_RE.fullmatch(sample_name):
                return None
            valid_names.add(sample_name)
        if sample_name.endswith("_created"):
            continue
        labels: Labels = ()
        if label_text:
            parsed = _parse_labels(label_text)
            if parsed is None:
                return None
            labels = parsed
        try:
            value = _parse_value(rest[0])
        except ValueError:
            return None
        if sample_name == last_name and last_family is not None:
            fam = last_family
        else:
            fam_name = _family_of(sample_name, types)
            found = families.get(fam_name)
            if found is None:
                found = families[fam_name] = MetricFamily(fam_name, types.get(fam_name, "untyped"))
            fam = found
            last_name, last_family = sample_name, fam
        fam.samples.append(Sample(sample_name, labels, value))
    return families


def _parse_labels(text: str) -> Labels | None:
    """`a="x",b="y"` -> (("a", "x"), ("b", "y")); None for anything with escapes or
    quotes/braces inside values (the reference parser handles those)."""
    if "\\" in text or "{" in text or "}" in text:
        return None
    text = text.rstrip(",")  # a trailing comma is allowed
    pairs = []
    for part in text.split('",'):
        key, sep, value = part.partition('="')
        if not sep or '"' in key:
            return None
        key = key.strip()
        if value.endswith('"'):
            value = value[:-1]
        if '"' in value or not _NAME_RE.fullmatch(key):
            return None
        pairs.append((key, value))
    return tuple(pairs)


def _reference_parse(text: str, keep: tuple[str, ...] | None) -> dict[str, MetricFamily]:
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, MetricFamily] = {}
    try:
        for fam in text_string_to_metric_families(text):
            if keep is not None and not fam.name.startswith(keep):
                continue
            samples = [
                Sample(s.name, tuple(sorted(s.labels.items())), float(s.value))
                for s in fam.samples
                if not s.name.endswith("_created")
            ]
            if fam.name.endswith("_created") or not samples:
                continue
            families[fam.name] = MetricFamily(fam.name, fam.type, samples)
    except Exception as exc:  # prometheus_client raises ValueError/IndexError/... on junk
        first_bad = _first_bad_line(text)
        raise MetricsParseError(f"not Prometheus text format{first_bad}: {exc}") from exc
    return families


def _first_bad_line(text: str) -> str:
    for number, line in enumerate(text.split("\n"), start=1):
        if line and line[0] != "#" and not _SAMPLE_LINE.fullmatch(line):
            return f" (line {number}: {line[:80]!r})"
    return ""


def parse_metrics(
    text: str, taken_at: float | None = None, keep_prefixes: Iterable[str] | None = None
) -> MetricsSnapshot:
    """Parse a /metrics body. `keep_prefixes` (e.g. ("vllm:", "lmcache:")) drops the other
    families early, which is most of the cost saved. Raises MetricsParseError on junk."""
    keep = tuple(keep_prefixes) if keep_prefixes is not None else None
    families = _fast_parse(text, keep)
    if families is None:
        families = _reference_parse(text, keep)
    return MetricsSnapshot(families, time.time() if taken_at is None else taken_at)
