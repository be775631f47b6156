"""`gridtokenx wire ...`: the wire format's test vectors."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from gridtokenx.cli.common import REPO

app = typer.Typer(help="The wire format: readings, envelopes, batch proofs.", no_args_is_help=True)
VECTORS = REPO / "docs" / "vectors" / "wire-v1.json"
ACK_VECTORS = REPO / "docs" / "vectors" / "ack-v1.json"
UPDATE_VECTORS = REPO / "docs" / "vectors" / "update-v1.json"


@app.command("vectors")
def wire_vectors(
    write: Annotated[bool, typer.Option(help="Rewrite the files in docs/vectors/.")] = False,
    ack: Annotated[bool, typer.Option(help="Print the ack vectors instead.")] = False,
    update: Annotated[bool, typer.Option(help="Print the firmware update vectors.")] = False,
) -> None:
    """Print (or rewrite) the wire-format test vectors."""
    from gridtokenx.hub import updates
    from gridtokenx.wire import ack as ack_message
    from gridtokenx.wire.vectors import generate

    texts = {
        VECTORS: json.dumps(generate(), indent=2) + "\n",
        ACK_VECTORS: json.dumps(ack_message.vectors(), indent=2) + "\n",
        UPDATE_VECTORS: json.dumps(updates.vectors(), indent=2) + "\n",
    }
    if write:
        for path, text in texts.items():
            path.write_text(text)
            typer.echo(f"wrote {path}")
    else:
        sys.stdout.write(texts[UPDATE_VECTORS if update else ACK_VECTORS if ack else VECTORS])
