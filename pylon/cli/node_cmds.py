"""`pylon node up|status|pause|resume|drain|refund`: a provider node and its controls."""

from __future__ import annotations

import click

from pylon.cli.daemon_run import mint_url, run_daemon
from pylon.cli.group import cli, json_option, relay_option
from pylon.cli.output import emit_json, short, stdout
from pylon.cli.rpc_call import call
from pylon.daemon.config import NodeConfig
from pylon.defaults import default_mint
from pylon.home import node_socket
from pylon.logs import configure_logging
from pylon.schemas import rpc

_DEFAULT = NodeConfig()  # the defaults the flags show and use


@cli.group()
def node() -> None:
    """Provider nodes."""


def _check_executor(value: str) -> str:
    from pylon.executors.factory import is_plugin

    if value in ("deterministic", "ollama") or is_plugin(value):
        return value
    raise click.BadParameter(f"{value!r}: choose deterministic, ollama, or module:Class / file.py:Class")


@node.command("up")
@click.option(
    "--name", default=_DEFAULT.name, show_default=True, help="tells several nodes on one machine apart"
)
@click.option(
    "--executor",
    default=_DEFAULT.executor,
    show_default=True,
    help="deterministic, ollama, or your own: module:Class or file.py:Class",
    callback=lambda _ctx, _param, value: _check_executor(value),
)
@relay_option
@click.option("--concurrency", type=int, default=_DEFAULT.max_concurrency, show_default=True)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=float,
    default=_DEFAULT.heartbeat_s,
    show_default=True,
    help="seconds between heartbeats",
)
@click.option(
    "--price",
    "price_msats",
    type=int,
    default=_DEFAULT.price_msats,
    show_default=True,
    help="price per job in msats",
)
@click.option("--ollama-host", default=_DEFAULT.ollama_host, show_default=True)
@click.option("--model", default=_DEFAULT.model, show_default=True)
@click.option(
    "--mint",
    "mint_url",
    default=None,
    callback=lambda c, p, v: mint_url(v),
    help="Cashu mint URL where this node accepts payment",
)
@click.option(
    "--allow-buyer", "allow_buyers", multiple=True, help="serve only these buyer pubkeys (repeatable)"
)
@click.option(
    "--rate", "rate_per_s", type=float, default=_DEFAULT.rate_per_s, help="per-buyer jobs/s limit (0 = none)"
)
@click.option(
    "--burst",
    "rate_burst",
    type=int,
    default=_DEFAULT.rate_burst,
    show_default=True,
    help="per-buyer burst with --rate",
)
@click.option(
    "--queue",
    "queue_size",
    type=int,
    default=_DEFAULT.queue_size,
    show_default=True,
    help="jobs waiting beyond the running ones",
)
@click.option("--payment-required", is_flag=True, help="ask for payment up front (locked, refundable)")
@click.option(
    "--untargeted/--no-untargeted",
    default=_DEFAULT.accept_untargeted,
    show_default=True,
    help="also take requests assigned to no node (the relay then sends this node every request)",
)
@click.option("--exec-timeout", type=float, default=_DEFAULT.exec_timeout_s, show_default=True)
@click.option(
    "--parse-timeout",
    type=click.FloatRange(min=0),
    default=_DEFAULT.parse_timeout_s,
    show_default=True,
    help="the deterministic executor's limit per file, in seconds (a file over it fails `timeout`)",
)
@click.option(
    "--min-pow",
    type=click.IntRange(0, 32),
    default=_DEFAULT.min_pow,
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
    untargeted: bool,
    exec_timeout: float,
    parse_timeout: float,
    min_pow: int,
    rate_burst: int,
    queue_size: int,
) -> None:
    """Run a provider node in the foreground until SIGTERM (then it drains)."""
    from pylon.daemon.config import default_relays
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
        mint_url=mint_url or default_mint(),  # else PYLON_HOME/config.toml's
        allow_buyers=list(allow_buyers),
        rate_per_s=rate_per_s,
        payment_required=payment_required,
        accept_untargeted=untargeted,
        exec_timeout_s=exec_timeout,
        parse_timeout_s=parse_timeout,
        min_pow=min_pow,
        rate_burst=rate_burst,
        queue_size=queue_size,
    )
    run_daemon(lambda: run_node(cfg), f"node {name}")


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


@node.command("refund")
@click.argument("name")
@click.option("--job_id", "--job-id", "job_id", required=True)
@json_option
def node_refund(name: str, job_id: str, as_json: bool) -> None:
    """Give a job's payment back: node NAME sends what it redeemed to the buyer's refund key."""
    res = call(node_socket(name), rpc.RefundReq(job_id=job_id), timeout=60)
    if as_json:
        emit_json(res)
    else:
        stdout.print(
            f"{name}: refunded {res['amount_msats']} msats for {short(job_id)}: "
            f"nutzap {res['refund_event_id']}"
        )
