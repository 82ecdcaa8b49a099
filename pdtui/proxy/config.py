"""The proxy's configuration: which backends, how to route, how long to wait.

Built from the command line (`pdtui proxy ...`, see docs/interfaces.md), which
accepts two spellings: pdtui's own (`--prefiller URL --decoder URL
--decoder-init-ports CSV ...`) and LMCache's example proxy
(`--prefiller-host/--prefiller-port/--num-prefillers ...`), expanded with the
same host/port pairing rules LMCache uses so existing scripts keep working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pdtui.constants as C

MODES = ("lmcache-pd", "nixl")
TOKENIZE_ON = ("pair", "prefiller")
ROUTING_POLICIES = ("round-robin", "least-outstanding")


class ConfigError(ValueError):
    """A proxy setting that cannot work; the message names the flag and the value."""


@dataclass(frozen=True)
class PrefillerSpec:
    url: str


@dataclass(frozen=True)
class DecoderSpec:
    url: str
    # One port per decoder TP rank; the proxy waits for len(init_ports) ProxyNotifs.
    init_ports: tuple[int, ...] = ()
    alloc_ports: tuple[int, ...] = ()

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def tp_ranks(self) -> int:
        return len(self.init_ports)


@dataclass(frozen=True)
class Timeouts:
    tokenize_s: float = C.PROXY_TIMEOUT_TOKENIZE_S
    prefill_s: float = C.PROXY_TIMEOUT_PREFILL_S
    kv_s: float = C.PROXY_TIMEOUT_KV_S
    # Until the decoder's first streamed event, and also the longest silence between
    # two events afterwards (a stalled decoder must not hold a client forever).
    decode_s: float = C.PROXY_TIMEOUT_DECODE_S


@dataclass(frozen=True)
class ClientLimits:
    """What one client connection may take from the proxy (none of this is a backend wait)."""

    # From a connection's first byte of a request to its complete header block.
    header_timeout_s: float = C.PROXY_CLIENT_HEADER_TIMEOUT_S
    # For the whole request body once the headers are in.
    body_timeout_s: float = C.PROXY_CLIENT_BODY_TIMEOUT_S
    # A kept-alive connection with no request in progress is closed after this.
    idle_timeout_s: float = C.PROXY_CLIENT_IDLE_TIMEOUT_S
    # Client connections open at once; at the limit the longest-idle one is closed to make
    # room, and when every one is mid-request a new one gets 503. Also capped by the
    # file-descriptor limit (server.fd_budget).
    max_connections: int = C.PROXY_MAX_CONNECTIONS
    max_body_bytes: int = C.PROXY_MAX_BODY_BYTES


@dataclass(frozen=True)
class ProxyConfig:
    mode: str = "lmcache-pd"
    host: str = "127.0.0.1"
    port: int = 9100
    zmq_host: str = "127.0.0.1"
    zmq_port: int = 7500
    prefillers: tuple[PrefillerSpec, ...] = ()
    decoders: tuple[DecoderSpec, ...] = ()
    routing: str = "round-robin"
    sticky_header: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    health_interval_s: float = C.PROXY_HEALTH_INTERVAL_S
    health_timeout_s: float = 2.0
    timeline_history: int = 200
    client: ClientLimits = field(default_factory=ClientLimits)
    # Stream the prefiller's first token to the client before the KV wait and the decode
    # (LMCache's first_token_from_prefiller variant); errors after it go in-band.
    first_token_from_prefiller: bool = C.PROXY_FIRST_TOKEN_FROM_PREFILLER
    # Who answers a request's /tokenize: "pair" alternates between the request's own
    # prefiller and decoder (backends.BackendPool.tokenizer says why), "prefiller" always
    # asks the prefiller.
    tokenize_on: str = "pair"
    # A prefiller whose KV-ready notifications time out this many requests in a row is
    # marked degraded (not routed to); a probe request every degraded_probe_s re-admits it.
    kv_timeouts_to_degrade: int = C.PROXY_KV_TIMEOUTS_TO_DEGRADE
    degraded_probe_s: float = C.PROXY_DEGRADED_PROBE_INTERVAL_S
    # Never from argv (it would show in `ps`); see from_environment().
    api_key: str | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode {self.mode!r}: must be one of {', '.join(MODES)}")
        if self.routing not in ROUTING_POLICIES:
            raise ConfigError(
                f"--routing {self.routing!r}: must be one of {', '.join(ROUTING_POLICIES)}"
            )
        if self.tokenize_on not in TOKENIZE_ON:
            raise ConfigError(
                f"--tokenize-on {self.tokenize_on!r}: must be one of {', '.join(TOKENIZE_ON)}"
            )
        if not self.prefillers:
            raise ConfigError("no prefiller: give at least one --prefiller URL")
        if not self.decoders:
            raise ConfigError("no decoder: give at least one --decoder URL")
        for flag, port in (("--port", self.port), ("--zmq-port", self.zmq_port)):
            _check_port(flag, port)
        for spec in self.prefillers:
            _check_url("--prefiller", spec.url)
        for i, dec in enumerate(self.decoders):
            _check_url("--decoder", dec.url)
            if self.mode == "lmcache-pd":
                if not dec.init_ports:
                    raise ConfigError(
                        f"decoder {dec.url}: no --decoder-init-ports; lmcache-pd mode needs one "
                        "init port per decoder TP rank (the decoder's pd_peer_init_port)"
                    )
                if len(dec.init_ports) != len(dec.alloc_ports):
                    raise ConfigError(
                        f"decoder {dec.url}: {len(dec.init_ports)} init ports "
                        f"{list(dec.init_ports)} but {len(dec.alloc_ports)} alloc ports "
                        f"{list(dec.alloc_ports)}; give one of each per TP rank"
                    )
                for port in (*dec.init_ports, *dec.alloc_ports):
                    _check_port(f"decoder {i + 1} side-channel port", port)
        t = self.timeouts
        for flag, value in (
            ("--timeout-tokenize", t.tokenize_s),
            ("--timeout-prefill", t.prefill_s),
            ("--timeout-kv", t.kv_s),
            ("--timeout-decode", t.decode_s),
        ):
            if not value > 0:
                raise ConfigError(f"{flag} {value!r}: must be a number of seconds > 0")
        c = self.client
        for flag, value in (
            ("--client-header-timeout", c.header_timeout_s),
            ("--client-body-timeout", c.body_timeout_s),
            ("--client-idle-timeout", c.idle_timeout_s),
            ("--degraded-probe-interval", self.degraded_probe_s),
        ):
            if not value > 0:
                raise ConfigError(f"{flag} {value!r}: must be a number of seconds > 0")
        for flag, count in (("--max-connections", c.max_connections),
                            ("--max-body-bytes", c.max_body_bytes),
                            ("--kv-timeouts-to-degrade", self.kv_timeouts_to_degrade)):
            if not count >= 1:
                raise ConfigError(f"{flag} {count!r}: must be an integer >= 1")


def _check_port(flag: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"{flag} {port}: a TCP port must be between 1 and 65535")


def _check_url(flag: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{flag} {url!r}: expected a URL like http://127.0.0.1:7100")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{flag} {url!r}: {exc}") from None


def parse_csv_ints(flag: str, text: str) -> tuple[int, ...]:
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated port numbers like 7300,7301")
    try:
        return tuple(int(item) for item in items)
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r}: expected comma-separated port numbers like 7300,7301"
        ) from None


def pair_hosts_and_ports(
    hosts: list[str], ports: list[int], count: int, what: str
) -> list[tuple[str, int]]:
    """LMCache's pairing rules, so its proxy flags mean the same here.

    one host + one port + count N -> consecutive ports; one host + several ports -> that
    host on each; several hosts + one port -> each host on that port; equal lists -> zip.
    """
    if len(hosts) == 1 and len(ports) == 1:
        return [(hosts[0], ports[0] + i) for i in range(max(count, 1))]
    if len(hosts) == 1:
        return [(hosts[0], p) for p in ports]
    if len(ports) == 1:
        return [(h, ports[0]) for h in hosts]
    if len(hosts) != len(ports):
        raise ConfigError(
            f"--{what}-host has {len(hosts)} hosts but --{what}-port has {len(ports)} ports; "
            "give one of them once, or both with the same length"
        )
    return list(zip(hosts, ports))


def _url(host: str, port: int) -> str:
    host = "127.0.0.1" if host == "localhost" else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    return f"http://{host}:{port}"


def from_args(args) -> ProxyConfig:
    """Build and validate a ProxyConfig from parsed `pdtui proxy` arguments."""
    mode = args.mode
    prefillers = [PrefillerSpec(url.rstrip("/")) for url in args.prefiller or []]
    init_lists = [parse_csv_ints("--decoder-init-ports", s) for s in args.decoder_init_ports or []]
    alloc_lists = [
        parse_csv_ints("--decoder-alloc-ports", s) for s in args.decoder_alloc_ports or []
    ]
    decoder_urls = [url.rstrip("/") for url in args.decoder or []]
    decoders: list[DecoderSpec] = []
    if decoder_urls:
        for flag, lists in (
            ("--decoder-init-ports", init_lists),
            ("--decoder-alloc-ports", alloc_lists),
        ):
            if lists and len(lists) not in (1, len(decoder_urls)):
                raise ConfigError(
                    f"{flag} given {len(lists)} times for {len(decoder_urls)} --decoder URLs; "
                    "give it once per --decoder, in the same order"
                )
        for i, url in enumerate(decoder_urls):
            init = init_lists[i if len(init_lists) > 1 else 0] if init_lists else ()
            alloc = alloc_lists[i if len(alloc_lists) > 1 else 0] if alloc_lists else ()
            decoders.append(DecoderSpec(url, init, alloc))

    # LMCache's spelling, merged after pdtui's own.
    if args.prefiller_host or args.prefiller_port:
        hosts = _csv_strs(args.prefiller_host or "localhost")
        ports = list(parse_csv_ints("--prefiller-port", args.prefiller_port or "8100"))
        for host, port in pair_hosts_and_ports(hosts, ports, args.num_prefillers, "prefiller"):
            prefillers.append(PrefillerSpec(_url(host, port)))
    if args.decoder_host or args.decoder_port:
        hosts = _csv_strs(args.decoder_host or "localhost")
        ports = list(parse_csv_ints("--decoder-port", args.decoder_port or "8200"))
        init = parse_csv_ints("--decoder-init-port", args.decoder_init_port or "8300")
        alloc = parse_csv_ints("--decoder-alloc-port", args.decoder_alloc_port or "8400")
        # As in LMCache: only the consecutive-port expansion shifts the side-channel ports.
        consecutive = len(hosts) == 1 and len(ports) == 1 and args.num_decoders > 1
        pairs = pair_hosts_and_ports(hosts, ports, args.num_decoders, "decoder")
        for i, (host, port) in enumerate(pairs):
            shift = i if consecutive else 0
            decoders.append(
                DecoderSpec(
                    _url(host, port),
                    tuple(p + shift for p in init),
                    tuple(p + shift for p in alloc),
                )
            )

    host = args.host
    port = args.port
    zmq_host = args.zmq_host
    zmq_port = args.zmq_port
    if args.proxy_host is not None:
        zmq_host = "127.0.0.1" if args.proxy_host == "localhost" else args.proxy_host
    if args.proxy_port is not None:
        zmq_port = args.proxy_port

    config = ProxyConfig(
        mode=mode,
        host=host,
        port=port,
        zmq_host=zmq_host,
        zmq_port=zmq_port,
        prefillers=tuple(prefillers),
        decoders=tuple(decoders),
        routing=args.routing,
        sticky_header=args.sticky_header or None,
        timeouts=Timeouts(
            tokenize_s=args.timeout_tokenize,
            prefill_s=args.timeout_prefill,
            kv_s=args.timeout_kv,
            decode_s=args.timeout_decode,
        ),
        health_interval_s=args.health_interval,
        timeline_history=args.timeline_history,
        client=ClientLimits(
            header_timeout_s=args.client_header_timeout,
            body_timeout_s=args.client_body_timeout,
            idle_timeout_s=args.client_idle_timeout,
            max_connections=args.max_connections,
            max_body_bytes=args.max_body_bytes,
        ),
        first_token_from_prefiller=args.first_token_from_prefiller,
        tokenize_on=args.tokenize_on,
        kv_timeouts_to_degrade=args.kv_timeouts_to_degrade,
        degraded_probe_s=args.degraded_probe_interval,
        # pdtui gives the proxy the engines' key as they get it (VLLM_API_KEY); OPENAI_API_KEY
        # is the name LMCache's example proxy reads.
        api_key=os.environ.get("VLLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or None,
    )
    config.validate()
    return config


def _csv_strs(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]
