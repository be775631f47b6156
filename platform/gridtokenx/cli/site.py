"""A whole site: `gridtokenx certs` (its TLS material) and `gridtokenx up` (everything,
embedded)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gridtokenx.cli.common import fail


def certs(
    directory: Annotated[Path, typer.Argument(help="The site's certificate directory.")],
    site: Annotated[str, typer.Option(help="The site's name, in the certificates.")] = "site",
    broker_host: Annotated[
        list[str], typer.Option(help="A name or address meters and the hub reach Mosquitto at.")
    ] = ["127.0.0.1"],  # noqa: B006 (typer reads the default)
    server_host: Annotated[
        list[str] | None, typer.Option(help="A name of the HTTPS server (default: the broker's).")
    ] = None,
) -> None:
    """Make a site's CA (kept if it exists) and the broker's and an HTTPS server's
    certificates, for MQTT over TLS on 8883 with the CA pinned on meters."""
    from gridtokenx.hub.certs import CertError, make_site

    try:
        made = make_site(directory, site, broker_host, server_host or [])
    except CertError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {exc.filename or directory}: {exc.strerror}")
    typer.echo(
        f"{'made a new' if made.ca_created else 'kept the'} site CA {directory / 'ca.pem'};"
        f" issued broker.pem and server.pem (keys 0600)"
    )
    typer.echo(f'meters pin {made.ca_der}: "broker": {{"port": 8883, "ca": "ca.der"}}')


def up(
    meters: Annotated[int, typer.Option(min=1, help="Households with a meter.")] = 12,
    firmware_meters: Annotated[
        int,
        typer.Option(
            min=0,
            max=50,
            help="Of them, how many run the firmware (a process each); the others are "
            "in-process meters (same wire format, own keys).",
        ),
    ] = 50,
    grid: Annotated[
        str, typer.Option(help="SimBench grid code (the default has 41 households).")
    ] = "1-LV-semiurb4--0-sw",
    data: Annotated[Path, typer.Option(help="Where data and logs are kept.")] = Path("var/up"),
    mqtt_port: Annotated[int, typer.Option(help="Embedded broker port.")] = 1884,
    http_port: Annotated[int, typer.Option(help="Hub page port.")] = 8080,
    api_port: Annotated[int, typer.Option(help="Platform API port.")] = 8090,
    hub_epoch_s: Annotated[int, typer.Option(min=5, help="The hub's batch epoch (s).")] = 60,
    market_epoch_s: Annotated[float, typer.Option(min=2, help="The market's epoch (s).")] = 20,
    agents: Annotated[bool, typer.Option(help="Run the households' trading agents.")] = True,
    duration: Annotated[float, typer.Option(help="Stop after this many seconds (0: never).")] = 0,
) -> None:
    """Start the system with embedded defaults (what `make run` runs)."""
    from gridtokenx.sim.grid import GridError
    from gridtokenx.supervisor import ChildFailed
    from gridtokenx.up import SetupFailed
    from gridtokenx.up import up as start

    try:
        start(
            meters=meters,
            firmware_meters=firmware_meters,
            grid_code=grid,
            data=data,
            mqtt_port=mqtt_port,
            http_port=http_port,
            api_port=api_port,
            hub_epoch_s=hub_epoch_s,
            epoch_seconds=market_epoch_s,
            agents=agents,
            duration=duration,
        )
    except (ChildFailed, SetupFailed, GridError) as err:  # what failed, which log says why
        fail(str(err))
