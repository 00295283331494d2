"""`pylon`: the face of the system (DESIGN §5). Every command takes --json."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import click

from pylon.cli.group import cli, json_option, relay_option
from pylon.cli.output import emit_json, fail, secs, short, stdout
from pylon.cli.rpc_call import call
from pylon.home import buyer_socket, node_socket, relay_dir
from pylon.logs import configure_logging
from pylon.schemas import rpc

# --- daemons in the foreground --------------------------------------------------------------


@cli.group()
def relay() -> None:
    """The embedded Nostr relay."""


@relay.command("up")
@click.option("--port", type=int, default=7777, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--memory", is_flag=True, help="keep events in memory only (no LMDB)")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    help="accept events only from these pubkeys (hex or npub; repeatable); reads stay open",
)
@json_option
def relay_up(port: int, host: str, memory: bool, allow: tuple[str, ...], as_json: bool) -> None:
    """Run the embedded relay (LMDB under PYLON_HOME/relay) until SIGTERM."""
    from pylon.relay.embedded import parse_pubkeys, run_relay_forever

    configure_logging()
    try:
        allowed = parse_pubkeys(allow)
    except ValueError as exc:
        fail(f"--allow: {exc}")
    data_dir = None if memory else relay_dir() / "lmdb"

    async def main() -> None:
        import signal

        async with anyio.create_task_group() as tg:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                tg.start_soon(
                    lambda: run_relay_forever(port=port, host=host, data_dir=data_dir, allow=allowed or None)
                )
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

    try:
        anyio.run(main)
    except Exception as exc:  # nostr-sdk reports a taken port as its own error, inside a group
        fail(f"cannot start the relay on {host}:{port}: {root_cause(exc)}")
    if as_json:
        emit_json({"stopped": True, "port": port})
    # The relay has stopped and LMDB has committed every write. Tearing the interpreter down
    # while nostr-sdk's runtime threads still hold Python callbacks can segfault, so leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@cli.group()
def node() -> None:
    """Provider nodes."""


@node.command("up")
@click.option("--name", default="node", show_default=True, help="tells several nodes on one machine apart")
@click.option(
    "--executor", type=click.Choice(["deterministic", "ollama"]), default="deterministic", show_default=True
)
@relay_option
@click.option("--concurrency", type=int, default=4, show_default=True)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=float,
    default=10.0,
    show_default=True,
    help="seconds between heartbeats",
)
@click.option("--price", "price_msats", type=int, default=0, show_default=True, help="price per job in msats")
@click.option(
    "--ollama-host", default=os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434"), show_default=True
)
@click.option("--model", default=os.environ.get("PYLON_MODEL", "qwen2.5-coder:1.5b"), show_default=True)
@click.option(
    "--mint",
    "mint_url",
    default=None,
    callback=lambda c, p, v: _mint_url(v),
    help="Cashu mint URL where this node accepts payment",
)
@click.option(
    "--allow-buyer", "allow_buyers", multiple=True, help="serve only these buyer pubkeys (repeatable)"
)
@click.option("--rate", "rate_per_s", type=float, default=0.0, help="per-buyer jobs/s limit (0 = none)")
@click.option(
    "--burst", "rate_burst", type=int, default=200, show_default=True, help="per-buyer burst with --rate"
)
@click.option(
    "--queue",
    "queue_size",
    type=int,
    default=4096,
    show_default=True,
    help="jobs waiting beyond the running ones",
)
@click.option("--payment-required", is_flag=True, help="ask for payment up front (locked, refundable)")
@click.option("--no-untargeted", is_flag=True, help="only take jobs assigned to this node")
@click.option("--exec-timeout", type=float, default=60.0, show_default=True)
@click.option(
    "--parse-timeout",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="the deterministic executor's limit per file, in seconds (a file over it fails `timeout`)",
)
@click.option(
    "--min-pow",
    type=click.IntRange(0, 32),
    default=0,
    show_default=True,
    help="drop requests with less NIP-13 proof of work (leading zero bits); buyers need --pow N",
)
def node_up(
    name: str,
    executor: str,
    relays: tuple[str, ...],
    concurrency: int,
    heartbeat_s: float,
    price_msats: int,
    ollama_host: str,
    model: str,
    mint_url: str | None,
    allow_buyers: tuple[str, ...],
    rate_per_s: float,
    payment_required: bool,
    no_untargeted: bool,
    exec_timeout: float,
    parse_timeout: float,
    min_pow: int,
    rate_burst: int,
    queue_size: int,
) -> None:
    """Run a provider node in the foreground until SIGTERM (then it drains)."""
    from pylon.daemon.config import NodeConfig, default_relays
    from pylon.daemon.provider import run_node

    configure_logging()
    cfg = NodeConfig(
        name=name,
        relays=list(relays) or default_relays(),
        executor=executor,
        max_concurrency=concurrency,
        heartbeat_s=heartbeat_s,
        price_msats=price_msats,
        ollama_host=ollama_host,
        model=model,
        mint_url=mint_url,
        allow_buyers=list(allow_buyers),
        rate_per_s=rate_per_s,
        payment_required=payment_required,
        accept_untargeted=not no_untargeted,
        exec_timeout_s=exec_timeout,
        parse_timeout_s=parse_timeout,
        min_pow=min_pow,
        rate_burst=rate_burst,
        queue_size=queue_size,
    )
    _run_daemon(lambda: run_node(cfg), f"node {name}")


@node.command("status")
@click.argument("name")
@json_option
def node_status(name: str, as_json: bool) -> None:
    """State, queue and counters of node NAME."""
    st = call(node_socket(name), rpc.StatusReq())
    if as_json:
        emit_json(
            {k: st[k] for k in ("name", "pubkey", "state", "running", "queued", "completed", "failed")}
            | {
                k: v
                for k, v in st.items()
                if k not in ("name", "pubkey", "state", "running", "queued", "completed", "failed")
            }
        )
        return
    stdout.print(
        f"[bold]{st['name']}[/] {short(st['pubkey'], 16)}  state=[bold]{st['state']}[/]  "
        f"running={st['running']} queued={st['queued']} completed={st['completed']} failed={st['failed']}"
    )


for _verb, _req, _help in (
    ("pause", rpc.PauseReq, "Stop taking new jobs."),
    ("resume", rpc.ResumeReq, "Take jobs again."),
    ("drain", rpc.DrainReq, "Finish what is queued, take nothing new."),
):

    def _make(req_cls: type, verb: str, help_text: str) -> click.Command:
        @click.argument("name")
        @json_option
        def _cmd(name: str, as_json: bool) -> None:
            st = call(node_socket(name), req_cls())
            if as_json:
                emit_json(st)
            else:
                stdout.print(f"{name}: {st['state']}")

        return node.command(verb, help=help_text)(_cmd)

    _make(_req, _verb, _help)


@cli.group()
def buyer() -> None:
    """The buyer daemon."""


@buyer.command("up")
@relay_option
@click.option("--pickup-timeout", type=float, default=10.0, show_default=True)
@click.option("--result-timeout", type=float, default=60.0, show_default=True)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=float,
    default=10.0,
    show_default=True,
    help="the heartbeat interval nodes use (online = 3 intervals)",
)
@click.option("--bid", "bid_msats", type=int, default=0, show_default=True)
@click.option(
    "--mint",
    "mint_url",
    default=None,
    callback=lambda c, p, v: _mint_url(v),
    help="Cashu mint URL to pay from",
)
@click.option("--pay", "pay_policy", type=click.Choice(["auto", "manual"]), default="auto", show_default=True)
@click.option(
    "--refund-locktime",
    "refund_locktime_s",
    type=click.IntRange(1, 30 * 86400),
    default=3600,
    show_default=True,
    help="seconds until an unredeemed payment may be refunded (pylon refund)",
)
@click.option("--max-outstanding", type=int, default=100_000, show_default=True)
@click.option("--allow-node", "allow_nodes", multiple=True, help="use only these node pubkeys (repeatable)")
@click.option(
    "--pow",
    "pow_bits",
    type=click.IntRange(0, 24),
    default=0,
    show_default=True,
    help="mine NIP-13 proof of work (leading zero bits) into each request, for nodes with --min-pow",
)
def buyer_up(
    relays: tuple[str, ...],
    pickup_timeout: float,
    result_timeout: float,
    heartbeat_s: float,
    bid_msats: int,
    mint_url: str | None,
    pay_policy: str,
    max_outstanding: int,
    allow_nodes: tuple[str, ...],
    pow_bits: int,
    refund_locktime_s: int,
) -> None:
    """Run the buyer daemon in the foreground until SIGTERM."""
    from pylon.daemon.buyer import run_buyer
    from pylon.daemon.config import BuyerConfig, default_relays

    configure_logging()
    cfg = BuyerConfig(
        relays=list(relays) or default_relays(),
        pickup_timeout_s=pickup_timeout,
        result_timeout_s=result_timeout,
        heartbeat_s=heartbeat_s,
        bid_msats=bid_msats,
        mint_url=mint_url,
        pay_policy=pay_policy,
        max_outstanding=max_outstanding,
        allow_nodes=list(allow_nodes),
        pow_bits=pow_bits,
        refund_locktime_s=refund_locktime_s,
    )
    _run_daemon(lambda: run_buyer(cfg, extra=_buyer_attachments(cfg)), "buyer")


def _buyer_attachments(cfg: object) -> list:
    out = []
    try:
        from pylon.daemon.coordinator import attach_coordinator
    except ImportError:
        pass
    else:
        out.append(attach_coordinator)
    try:
        from pylon.daemon.buyer_payments import attach_payments
    except ImportError:
        pass
    else:
        out.append(attach_payments)
    return out


def root_cause(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__


def _mint_url(value: str | None) -> str | None:
    """--mint: checked here, so a typo is a one-line error and not a daemon that dies starting."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"want a mint URL http(s)://host[:port], not {value!r}", param_hint="--mint")
    return value.strip().rstrip("/")


def _run_daemon(main, what: str) -> None:
    from pylon.daemon.rpc_server import ServerStartError

    try:
        anyio.run(main)
    except ServerStartError as exc:
        fail(f"{what}: {exc}")
    except KeyboardInterrupt:
        pass


# --- jobs -----------------------------------------------------------------------------------


MAX_FILE_BYTES = 1024 * 1024


def read_input_file(path: Path) -> str:
    """The CLI's own checks, so a bad file is a clear error before any daemon sees it."""
    if not path.exists():
        fail(f"{path}: no such file")
    if not path.is_file():
        fail(f"{path}: not a regular file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        fail(f"too_large: {path} is {size} bytes; files up to {MAX_FILE_BYTES} bytes (1 MiB) map")
    data = path.read_bytes()
    if b"\x00" in data:
        fail(f"bad_input: {path} is binary (NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(f"bad_input: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})")


@cli.group()
def job() -> None:
    """Submit jobs and look at them."""


@job.group("submit")
def job_submit() -> None:
    """Submit a job."""


@job_submit.command("repo-file")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path))
@click.option("--language", default=None, help="override language detection")
@json_option
def submit_repo_file(input_path: Path, language: str | None, as_json: bool) -> None:
    """Map one file: symbols, imports, summary."""
    text = read_input_file(input_path)
    res = call(buyer_socket(), rpc.SubmitReq(path=str(input_path), text=text, language=language), timeout=60)
    if as_json:
        emit_json(res)
    else:
        stdout.print(f"submitted [bold]{res['job_id']}[/]")


@job.command("status")
@click.argument("job_id")
@json_option
def job_status(job_id: str, as_json: bool) -> None:
    """A job's state and telemetry."""
    t = call(buyer_socket(), rpc.JobStatusReq(job_id=job_id))
    if as_json:
        emit_json(t)
        return
    stdout.print(
        f"[bold]{t['job_id']}[/]  {t['path']}  state=[bold]{t['state']}[/]  "
        f"provider={short(t['provider_pubkey'])}"
        f"  attempts={t['attempts']}  paid={t['is_paid']}"
    )
    if t.get("error"):
        stdout.print(f"error: [red]{t['error']}[/]")
    stdout.print(
        f"queue_wait={secs(t['queue_wait'])} exec={secs(t['exec_time'])} publish={secs(t['publish_time'])} "
        f"end_to_end={secs(t['end_to_end'])}"
    )


@job.command("results")
@click.argument("job_id")
@json_option
def job_results(job_id: str, as_json: bool) -> None:
    """The result payload of a completed job."""
    r = call(buyer_socket(), rpc.JobResultsReq(job_id=job_id))
    if as_json:
        emit_json(r)
        return
    stdout.print(f"[bold]{r['path']}[/] ({r['language']}, {r['lines']} lines)")
    for s in r["symbols"]:
        stdout.print(f"  {s['line']:>5}  {s['kind']:<10} {s['name']}")
    if r["imports"]:
        stdout.print("imports: " + ", ".join(r["imports"]))
    stdout.print(r["summary"])


@job.command("list")
@click.option("--run", "run_id", default=None)
@json_option
def job_list(run_id: str | None, as_json: bool) -> None:
    """Jobs, oldest first (optionally of one run)."""
    res = call(buyer_socket(), rpc.JobListReq(run_id=run_id))
    if as_json:
        emit_json(
            {
                "jobs": [
                    {k: j[k] for k in ("job_id", "run_id", "state", "provider_pubkey", "paid")} | j
                    for j in res["jobs"]
                ]
            }
        )
        return
    from rich.table import Table

    table = Table("job", "path", "state", "provider", "paid", "e2e")
    for j in res["jobs"]:
        table.add_row(
            short(j["job_id"]),
            j["path"],
            j["state"],
            short(j["provider_pubkey"]),
            "yes" if j["paid"] else "no",
            secs(j["end_to_end"]),
        )
    stdout.print(table)


# --- stats ----------------------------------------------------------------------------------


@cli.command()
@click.option("--provider", default=None, help="per-provider figures for this pubkey")
@click.option("--replay", is_flag=True, help="rebuild from the relay into a fresh database")
@relay_option
@json_option
def stats(provider: str | None, replay: bool, relays: tuple[str, ...], as_json: bool) -> None:
    """Global or per-provider swarm statistics."""
    if replay:
        from pylon.daemon.config import default_relays
        from pylon.provenance.fetch import RelayUnavailable
        from pylon.stats.replay import replay_stats

        configure_logging()  # logs to stderr: stdout carries only the JSON
        try:
            res = anyio.run(lambda: replay_stats(list(relays) or default_relays(), provider=provider))
        except RelayUnavailable as exc:
            fail(str(exc))
        import msgspec

        res = msgspec.to_builtins(res)
    else:
        res = call(buyer_socket(), rpc.StatsReq(provider=provider))
    if as_json:
        emit_json(res)
        return
    _print_stats(res, provider)


def _print_stats(res: dict, provider: str | None) -> None:
    if provider:
        stdout.print(
            f"[bold]{res.get('name') or short(res['pubkey'])}[/] online={res['online']} "
            f"completed={res['completed']} failed={res['failed']} "
            f"median_runtime={secs(res['median_runtime_s'])} uptime={res.get('uptime_s')}"
        )
        for reason, n in res["failure_reasons"].items():
            stdout.print(f"  {reason}: {n}")
        return
    stdout.print(
        f"online nodes {res['online_nodes']}  completed {res['jobs_completed']}  "
        f"failed {res['jobs_failed']}  "
        f"success {res['success_rate'] * 100:.1f}%  {res['jobs_per_min']:.1f} jobs/min  "
        f"p50 {secs(res['p50_e2e_s'])}  p95 {secs(res['p95_e2e_s'])}"
    )
    for p in res["top_providers"]:
        stdout.print(f"  {p.get('name') or short(p['pubkey'])}: {p['completed']}")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except BrokenPipeError:
        sys.exit(0)


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `cli`.
    from pylon.cli import audit_cmds, map_cmds, market_cmds, ops_cmds, pay_cmds  # noqa: F401


_register_commands()

if __name__ == "__main__":
    main()
