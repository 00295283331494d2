"""`pylon service install|uninstall|status node|buyer` and `pylon doctor` (DESIGN §5).

The service commands are a thin face over pylon.daemon.service: they write the launchd plist
or systemd --user unit that runs `pylon node up` / `pylon buyer up` in the foreground, and
`--print` shows that file without touching the service manager (any platform can print the
other's file). Arguments after `--` are passed to the daemon, e.g.

    pylon service install node --name alice -- --relay wss://relay.example --executor ollama

`pylon doctor` runs pylon.doctor's checks (relay, mint, Ollama, model, keys, sockets) and
exits non-zero when any failed.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import click
import platformdirs

from pylon.cli.group import cli, json_option, relay_option
from pylon.cli.output import emit_json, fail, stdout
from pylon.defaults import DEFAULT_OLLAMA_HOST
from pylon.home import pylon_home

_ROLE = click.Choice(["node", "buyer"])
_name_option = click.option("--name", default=None, help="the node's name (as in `pylon node up --name`)")


def _role_name(role: str, name: str | None) -> str | None:
    if role == "buyer" and name is not None:
        fail("the buyer takes no --name")
    return name


@cli.group()
def service() -> None:
    """Run a node or the buyer under launchd (macOS) or systemd --user (Linux)."""


@service.command("install", context_settings={"ignore_unknown_options": True})
@click.argument("role", type=_ROLE)
@_name_option
@click.option("--print", "print_only", is_flag=True, help="print the plist/unit instead of installing it")
@click.option(
    "--platform",
    "platform_name",
    type=click.Choice(["macos", "linux"]),
    default=None,
    help="with --print: render for this platform (default: this machine's)",
)
@click.option("--pylon-exe", default=None, help="the pylon executable the service runs (default: this one)")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@json_option
def service_install(
    role: str,
    name: str | None,
    print_only: bool,
    platform_name: str | None,
    pylon_exe: str | None,
    extra: tuple[str, ...],
    as_json: bool,
) -> None:
    """Install and start ROLE as a user service; arguments after `--` go to `pylon ROLE up`."""
    from pylon.daemon import service as svc

    name = _role_name(role, name)
    try:
        platform = platform_name or svc.current_platform()
        if platform_name and not print_only and platform_name != svc.current_platform():
            fail(f"cannot install a {platform_name} service on this machine; use --print to see the file")
        exe = pylon_exe or svc.find_pylon_exe()
        if print_only:
            filename, text = svc.render_unit(
                role, platform=platform, name=name, pylon_exe=exe, home=pylon_home(), extra_args=extra
            )
            if as_json:
                emit_json(
                    {
                        "role": role,
                        "name": name,
                        "platform": platform,
                        "filename": filename,
                        "path": str(svc.unit_dir(platform) / filename),
                        "text": text,
                    }
                )
            else:
                click.echo(text, nl=not text.endswith("\n"))
            return
        path = svc.install(role, name, platform=platform, pylon_exe=exe, home=pylon_home(), extra_args=extra)
    except (svc.ServiceError, ValueError) as exc:
        fail(str(exc))
    report = {
        "role": role,
        "name": name,
        "platform": platform,
        "path": path,
        "installed": True,
        "log": str(svc.log_path(role, name, pylon_home())),
    }
    if as_json:
        emit_json(report)
    else:
        stdout.print(f"installed and started [bold]{svc.service_id(role, name)}[/]: {path}")
        stdout.print(f"logs: {report['log']}")


@service.command("uninstall")
@click.argument("role", type=_ROLE)
@_name_option
@json_option
def service_uninstall(role: str, name: str | None, as_json: bool) -> None:
    """Stop ROLE's service and remove its file (fine when it is not installed)."""
    from pylon.daemon import service as svc

    name = _role_name(role, name)
    try:
        path = svc.uninstall(role, name)
    except (svc.ServiceError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        emit_json({"role": role, "name": name, "path": path, "installed": False})
    else:
        stdout.print(f"removed {svc.service_id(role, name)} ({path})")


@service.command("status")
@click.argument("role", type=_ROLE)
@_name_option
@json_option
def service_status(role: str, name: str | None, as_json: bool) -> None:
    """What the service manager says about ROLE's service."""
    from pylon.daemon import service as svc

    name = _role_name(role, name)
    try:
        report = svc.status(role, name)
    except (svc.ServiceError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        emit_json(report)
        return
    state = "running" if report["running"] else report["state"]
    pid = f" pid {report['pid']}" if report["pid"] else ""
    stdout.print(
        f"[bold]{report['unit']}[/]: {state}{pid}  installed={report['installed']}  {report['detail']}"
    )


@cli.command("doctor")
@relay_option
@click.option(
    "--mint",
    "mint_url",
    default=lambda: os.environ.get("PYLON_MINT_URL") or None,
    help="Cashu mint URL to check (default $PYLON_MINT_URL; unset = not checked)",
)
@click.option(
    "--ollama-host",
    default=lambda: os.environ.get("OLLAMA_HOST", DEFAULT_OLLAMA_HOST),
    show_default=f"$OLLAMA_HOST or {DEFAULT_OLLAMA_HOST}",
)
@click.option(
    "--model",
    default=lambda: os.environ.get("PYLON_MODEL", "qwen2.5-coder:1.5b"),
    show_default="$PYLON_MODEL or qwen2.5-coder:1.5b",
)
@click.option(
    "--no-ollama", is_flag=True, help="skip Ollama and the model (a deterministic-only node or a buyer)"
)
@click.option("--timeout", "timeout_s", type=float, default=3.0, show_default=True, help="seconds per check")
@json_option
def doctor(
    relays: tuple[str, ...],
    mint_url: str | None,
    ollama_host: str,
    model: str,
    no_ollama: bool,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Check relay, mint, Ollama, model, daemon sockets and keys; exit 1 if any check failed."""
    from pylon.cli.stack_state import discover
    from pylon.daemon.config import default_relays
    from pylon.doctor import all_ok, format_checks, run_checks

    # Not pylon_home(): that would create the directory the home check is about.
    raw = os.environ.get("PYLON_HOME")
    home = Path(raw).expanduser() if raw else Path(platformdirs.user_data_dir("pylon"))
    # What this home runs decides what is worth checking, unless the user named it.
    ctx = click.get_current_context()
    given = {
        name
        for name in ("relays", "mint_url", "ollama_host", "model")
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    }
    env = {k for k in ("PYLON_RELAYS", "PYLON_MINT_URL", "OLLAMA_HOST", "PYLON_MODEL") if os.environ.get(k)}
    running = discover(home, timeout_s=min(timeout_s, 2.0))
    urls = list(relays) or (running.relays if "PYLON_RELAYS" not in env else []) or default_relays()
    if "mint_url" not in given and "PYLON_MINT_URL" not in env and running.mint:
        mint_url = running.mint
    ollama_note = ""
    explicit_ollama = bool({"ollama_host", "model"} & given or {"OLLAMA_HOST", "PYLON_MODEL"} & env)
    if not no_ollama and not explicit_ollama and running.nodes:
        if running.uses_ollama():
            model = running.models()[0] if running.models() else model
        else:
            no_ollama = True
            ollama_note = (
                f"not needed: every running node ({', '.join(sorted(running.nodes))}) is deterministic "
                "(--ollama-host checks it anyway)"
            )
    checks = anyio.run(
        lambda: run_checks(
            relay_urls=urls,
            mint_url=mint_url,
            ollama_host=None if no_ollama else ollama_host,
            model=None if no_ollama else model,
            home=home,
            timeout_s=timeout_s,
        )
    )
    if ollama_note:
        checks = [type(c)(c.name, c.ok, ollama_note, c.fix) if c.name == "ollama" else c for c in checks]
    ok = all_ok(checks)
    if as_json:
        emit_json(checks)
    else:
        click.echo(format_checks(checks))
        failed = sum(1 for c in checks if not c.ok)
        click.echo("all checks passed" if ok else f"{failed} check(s) failed", err=True)
    if not ok:
        raise SystemExit(1)
