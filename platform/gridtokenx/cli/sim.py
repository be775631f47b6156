"""`gridtokenx sim run`: the unchanged firmware against emulated chips on a grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gridtokenx.cli.common import fail

app = typer.Typer(help="The simulator: grids, physics and emulated meters.", no_args_is_help=True)


@app.command("run")
def sim_run(
    grid: Annotated[
        str, typer.Option(help="SimBench grid code, or a pandapower JSON file with --profiles.")
    ] = "1-LV-semiurb4--0-sw",
    profiles: Annotated[
        str | None, typer.Option(help="CSV profiles for a JSON grid (load_<i>, sgen_<i> in W).")
    ] = None,
    pv_share: Annotated[float, typer.Option(min=0, max=1, help="Households given pvlib PV.")] = 0.3,
    battery_share: Annotated[
        float, typer.Option(min=0, max=1, help="Of those with PV, the share with a battery.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for PV sizes, clouds and batteries.")] = 1,
    households: Annotated[int, typer.Option(min=1, help="Meters to run (247 with firmware).")] = 5,
    in_process: Annotated[
        bool, typer.Option(help="Lighter meters in this process (same wire format), for large N.")
    ] = False,
    speed: Annotated[float, typer.Option(min=0.1, help="Simulated seconds per second.")] = 60,
    mqtt: Annotated[
        str, typer.Option(help="Broker host:port; 'embedded' starts amqtt.")
    ] = "embedded",
    data: Annotated[Path, typer.Option(help="Meters' flash and logs.")] = Path("var/sim"),
    interval_s: Annotated[float, typer.Option(help="Firmware reading interval.")] = 10,
    start_step: Annotated[int, typer.Option(help="Quarter hour of the year to start at.")] = 15_404,
    duration: Annotated[float, typer.Option(help="Stop after this many seconds (0: never).")] = 0,
    ack: Annotated[
        bool, typer.Option(help="Meters keep readings until a hub acks them (--no-ack: no hub).")
    ] = True,
    serial: Annotated[
        bool,
        typer.Option(help="Each chip on a serial line (pty); the firmware as on a Raspberry Pi."),
    ] = False,
) -> None:
    """Run the unchanged firmware for a grid's households against emulated chips."""
    import signal
    import threading

    from gridtokenx.sim.grid import GridError
    from gridtokenx.sim.run import build_grid
    from gridtokenx.sim.run import run as run_sim

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    broker = None
    if mqtt == "embedded":
        from gridtokenx.hub.broker import EmbeddedBroker

        host, port = "127.0.0.1", 1884
        broker = EmbeddedBroker(port).start()
    else:
        host, _, port_text = mqtt.rpartition(":")
        if not host or not port_text.isdigit():
            fail("--mqtt must be host:port or 'embedded'")
        port = int(port_text)
    try:
        built = build_grid(grid, profiles, pv_share, battery_share, seed)
        if not in_process and households > 247:
            fail("firmware meters share one Modbus line: at most 247 (use --in-process)")
        run_sim(
            built,
            households,
            speed,
            host,
            port,
            data,
            interval_s,
            start_step,
            stop,
            duration,
            in_process=in_process,
            ack=ack,
            serial=serial,
        )
    except GridError as exc:
        fail(str(exc))
    finally:
        if broker is not None:
            broker.stop()
    typer.echo("simulation stopped")
