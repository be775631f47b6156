"""Who can do what, read from the chain: each authority of the two mints, its threshold and
its signers, and the party whose keystore holds each signer.

The authorities and multisig accounts come from the chain (mint accounts, their Pausable
extension, SPL multisig accounts), never from configuration; only the naming of holders
uses what this site knows: the public half of the keystores in its data directory (no
secret is needed to read it) and the co-signers' public keys recorded at deployment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from solders.pubkey import Pubkey

from gridtokenx.ledger import tokens
from gridtokenx.ledger.backend import ChainView

UNKNOWN = "unknown"


def public_keys(path: Path) -> dict[str, str]:
    """name -> public key of a keystore file (its public half; no secret needed)."""
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    return {name: str(entry["public"]) for name, entry in doc.get("keys", {}).items()}


def holders(data: Path) -> dict[str, str]:
    """public key -> party, from the keystores in DATA and the deployment's parties.

    DATA/keys.json is the platform's; DATA/cosigners/PARTY.json a development co-signer's;
    the deployment records each co-signer's public keys (asked of it at deployment)."""
    out: dict[str, str] = {}
    deployment = data / "deployment.json"
    if deployment.exists():
        for party, ident in json.loads(deployment.read_text()).get("parties", {}).items():
            for key in ident.values():
                out[str(key)] = str(party)
    for key in public_keys(data / "keys.json").values():
        out.setdefault(key, "platform")
    for path in sorted((data / "cosigners").glob("*.json")):
        for key in public_keys(path).values():
            out[key] = path.stem
    return out


def _authority(
    name: str, chain: ChainView, address: Pubkey | None, holder: Mapping[str, str]
) -> dict[str, Any]:
    if address is None:  # dropped for good: nobody can do it
        return {"name": name, "address": None, "threshold": None, "signers": []}
    multisig = tokens.read_multisig(chain.account_data(address))
    if multisig is None:
        threshold, signers = 1, [address]
    else:
        threshold, signers = multisig
    return {
        "name": name,
        "address": str(address),
        "threshold": threshold,
        "signers": [{"pubkey": str(k), "holder": holder.get(str(k), UNKNOWN)} for k in signers],
    }


def _mint_authorities(data: bytes | None) -> tuple[Pubkey | None, Pubkey | None, Pubkey | None]:
    """(mint, freeze, pause) authorities of a Token-2022 mint account's data."""
    if data is None:
        return None, None, None
    mint = Pubkey.from_bytes(data[4:36]) if data[0] else None
    freeze = Pubkey.from_bytes(data[50:82]) if data[46] else None
    config = tokens.mint_extension(data, tokens.PAUSABLE_CONFIG) if len(data) > 82 else None
    pause = Pubkey.from_bytes(config[:32]) if config and config[:32] != bytes(32) else None
    return mint, freeze, pause


def read(chain: ChainView, mints: Mapping[str, Pubkey], holder: Mapping[str, str]) -> list[Any]:
    """Every authority of the named mints, as `gridtokenx ledger authorities` prints them.

    Each authority also signs its own rotation (SetAuthority), so the same threshold
    guards both."""
    out = []
    for symbol, address in mints.items():
        data = chain.account_data(address)
        mint, freeze, pause = _mint_authorities(data)
        out.append(_authority(f"{symbol} mint", chain, mint, holder))
        out.append(_authority(f"{symbol} freeze", chain, freeze, holder))
        if data is not None and tokens.mint_extension(data, tokens.PAUSABLE_CONFIG):
            out.append(_authority(f"{symbol} pause", chain, pause, holder))
    return out


def of_site(data: Path, chain: ChainView) -> dict[str, Any]:
    """The authorities of a site's deployment: `{"authorities": [...]}`."""
    doc = json.loads((data / "deployment.json").read_text())
    mints = {"GRX": Pubkey.from_string(doc["grx"]), "THB": Pubkey.from_string(doc["thb"])}
    return {"authorities": read(chain, mints, holders(data))}
