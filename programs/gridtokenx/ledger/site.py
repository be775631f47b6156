"""Opening a site's ledger from its data directory: keystore, backend, deployment.

DATA/keys.json         the encrypted keystore (GTX_KEYSTORE_PASSPHRASE or GTX_KEYSTORE_KEY)
DATA/chain/chain.log   the embedded chain (unless SOLANA_RPC_URL names a cluster)
DATA/deployment.json   the addresses of the mints and multisigs
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gridtokenx.ledger.backend import Ledger
from gridtokenx.ledger.deployment import Deployment, Identity
from gridtokenx.ledger.embedded import EmbeddedLedger
from gridtokenx.ledger.keystore import Keystore, secret_from_env

RPC_ENV = "SOLANA_RPC_URL"


def open_keystore(data: Path) -> Keystore:
    return Keystore(data / "keys.json", secret_from_env())


def open_ledger(data: Path, keys: Keystore) -> Ledger:
    url = os.environ.get(RPC_ENV)
    payer = keys.ensure("payer")
    if url:
        from gridtokenx.ledger.rpc import RpcLedger

        return RpcLedger(url, payer)
    return EmbeddedLedger(data / "chain", payer)


def deployment(
    data: Path,
    ledger: Ledger,
    keys: Keystore,
    cosigners: Mapping[str, Keystore | Identity] | None = None,
    operator_keys: Keystore | None = None,
) -> Deployment:
    """The site's deployment: loaded, or created on first start (with development
    co-signers beside the keystore unless `cosigners` are given); `operator_keys`: the
    operator's own keystore, holding the approval key (else the platform's holds it)."""
    path = data / "deployment.json"
    if path.exists():
        dep = Deployment.load(ledger, keys, path)
        dep.operator_keys = operator_keys
        return dep
    dep = Deployment.create(ledger, keys, cosigners)
    dep.operator_keys = operator_keys
    dep.save(path)
    return dep
