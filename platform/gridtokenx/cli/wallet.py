"""`gridtokenx wallet ...`: a household that keeps its own wallet key.

The key lives in one encrypted file (the keystore format: sealed with XSalsa20-Poly1305
under an Argon2id key from GTX_WALLET_PASSPHRASE or a prompt; mode 0600). It never leaves
the file: the commands sign in by signing the platform's one-time nonce, and sign locally
what the platform prepares (an allowance, a certificate's transfer or retirement) after
checking it is what was asked. Everything else goes over the platform's HTTP API.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from spl.memo.constants import MEMO_PROGRAM_ID as MEMO
from spl.token.constants import ASSOCIATED_TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID

app = typer.Typer(help="A self-custody household wallet: its key stays in its own file.")

PASSPHRASE_ENV = "GTX_WALLET_PASSPHRASE"
KEY_NAME = "wallet"
TOKEN_2022, ASSOCIATED = TOKEN_2022_PROGRAM_ID, ASSOCIATED_TOKEN_PROGRAM_ID
APPROVE_CHECKED, BURN_CHECKED, TRANSFER_CHECKED, THAW = 13, 15, 12, 11

File = Annotated[
    Path, typer.Option("--file", envvar="GTX_WALLET_FILE", help="The encrypted key file.")
]
Api = Annotated[str, typer.Option(envvar="GTX_API", help="The platform's base URL.")]


@app.callback(no_args_is_help=True)
def _group() -> None:
    """A self-custody household wallet: its key stays in its own file."""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _passphrase(confirm: bool = False) -> str:
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given
    return str(typer.prompt("wallet passphrase", hide_input=True, confirmation_prompt=confirm))


def _key(path: Path) -> Keypair:
    from gridtokenx.ledger.keystore import Keystore, KeystoreError

    if not path.exists():
        _fail(f"no wallet file {path}: make one with `gridtokenx wallet new`")
    try:
        return Keystore(path, _passphrase()).get(KEY_NAME)
    except KeystoreError as err:
        _fail(str(err))
    raise AssertionError


def _address(path: Path) -> str:
    if not path.exists():
        _fail(f"no wallet file {path}")
    return str(json.loads(path.read_text())["keys"][KEY_NAME]["public"])


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
            _fail(f"{body.get('code')}: {body.get('message')}", 1)
        except ValueError:
            _fail(f"HTTP {response.status_code}", 1)
    return response.json()


class Session:
    """Signed in by signing the platform's nonce with the wallet key (nothing else sent)."""

    def __init__(self, api: str, key: Keypair) -> None:
        self.key, self.http = key, httpx.Client(base_url=api.rstrip("/"), timeout=60)
        wallet = str(key.pubkey())
        nonce = _answer(self.http.get("/api/v1/auth/nonce", params={"wallet": wallet}))
        signature = key.sign_message(nonce["message"].encode())
        tokens = _answer(
            self.http.post(
                "/api/v1/auth/wallet",
                json={"wallet": wallet, "nonce": nonce["nonce"], "signature": str(signature)},
            )
        )
        self.http.headers["Authorization"] = f"Bearer {tokens['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        return _answer(self.http.get(path, params=params))

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return _answer(self.http.post(path, json=body or {}))

    def sign(self, message_b64: str, check: Any) -> str:
        """Sign a prepared message after `check` (and the common rules) accept it."""
        message = Message.from_bytes(base64.b64decode(message_b64))
        me = self.key.pubkey()
        signers = message.account_keys[: message.header.num_required_signatures]
        if message.account_keys[0] == me or me not in signers:
            _fail("refused to sign: the platform pays the fee and the wallet only co-signs", 1)
        problem = check(message)
        if problem:
            _fail(f"refused to sign: {problem}", 1)
        return base64.b64encode(bytes(self.key.sign_message(bytes(message)))).decode()


def _instructions(message: Message) -> list[tuple[Pubkey, bytes, list[Pubkey]]]:
    keys = message.account_keys
    return [
        (keys[ix.program_id_index], bytes(ix.data), [keys[a] for a in ix.accounts])
        for ix in message.instructions
    ]


# -- what the wallet agrees to sign (pure: tests/test_self_custody.py) -------------------------
def approval_problem(
    message: Message, me: Pubkey, delegate: Pubkey, grx_wh: int, thb_micro: int
) -> str | None:
    """None if the message only approves this wallet's accounts to the platform's delegate
    for the amounts asked."""
    found = _instructions(message)
    if len(found) != 2 or any(
        p != TOKEN_2022 or d[:1] != bytes([APPROVE_CHECKED]) for p, d, _ in found
    ):
        return "not two ApproveChecked instructions"
    if any(len(a) != 4 or a[2] != delegate or a[3] != me for _, _, a in found):
        return "not an approval of this wallet's accounts to the platform's delegate"
    if sorted(int.from_bytes(d[1:9], "little") for _, d, _ in found) != sorted([grx_wh, thb_micro]):
        return "not the amounts asked for"
    return None


def retire_problem(message: Message, me: Pubkey, mint: str) -> str | None:
    """None if the message only burns this wallet's certificate `mint`, with its memo."""
    found = _instructions(message)
    if [p for p, _, _ in found] != [TOKEN_2022, MEMO] or found[0][1][:1] != bytes([BURN_CHECKED]):
        return "not a burn of the certificate with its memo"
    if found[0][2][2:3] != [me] or str(found[0][2][1]) != mint:
        return "not this wallet's certificate"
    if not found[1][1].decode(errors="replace").startswith(f"gtx1 cert retire {mint} for="):
        return "not the retirement memo"
    return None


def transfer_problem(message: Message, me: Pubkey, mint: str, to: str) -> str | None:
    """None if the message only moves this wallet's certificate `mint` to `to`."""
    found = _instructions(message)
    if [p for p, _, _ in found] != [ASSOCIATED, TOKEN_2022, TOKEN_2022, MEMO]:
        return "not an account opening, thaw, transfer and memo"
    _, data, accounts = found[2]
    if data[:1] != bytes([TRANSFER_CHECKED]) or accounts[3:4] != [me] or str(accounts[1]) != mint:
        return "not a transfer of this wallet's certificate"
    if found[3][1].decode(errors="replace") != f"gtx1 cert transfer {mint} {to}":
        return "not the transfer memo"
    return None


def _out(doc: Any) -> None:
    typer.echo(json.dumps(doc))


@app.command("new")
def new(file: File = Path("wallet.json")) -> None:
    """Make a wallet key in a new encrypted file (0600); prints its address."""
    from gridtokenx.ledger.keystore import Keystore

    if file.exists():
        _fail(f"{file} exists: a wallet is never replaced")
    keys = Keystore(file, _passphrase(confirm=True))
    key = keys.put(KEY_NAME, Keypair())
    os.chmod(file, 0o600)
    _out({"address": str(key.pubkey()), "file": str(file)})


@app.command("address")
def address(file: File = Path("wallet.json")) -> None:
    """The wallet's public address (read without the passphrase)."""
    typer.echo(_address(file))


@app.command("register")
def register(
    email: Annotated[str, typer.Option()],
    api: Api = "http://127.0.0.1:8090",
    file: File = Path("wallet.json"),
    role: Annotated[str, typer.Option(help="consumer or prosumer")] = "prosumer",
) -> None:
    """Sign up with this wallet (the password comes from GTX_WALLET_PASSWORD or a prompt);
    the account trades once an operator approves it."""
    password = os.environ.get("GTX_WALLET_PASSWORD") or typer.prompt(
        "account password", hide_input=True, confirmation_prompt=True
    )
    body = {"email": email, "password": password, "role": role, "wallet": _address(file)}
    _out(_answer(httpx.post(f"{api.rstrip('/')}/api/v1/auth/register", json=body, timeout=60)))


@app.command("balance")
def balance(api: Api = "http://127.0.0.1:8090", file: File = Path("wallet.json")) -> None:
    """GRX, THB, frozen or not, and the allowance left to the platform's delegate."""
    doc = Session(api, _key(file)).get("/api/v1/wallet")
    _out({k: v for k, v in doc.items() if k != "transactions"})


@app.command("approve")
def approve(
    grx_wh: Annotated[int, typer.Option(min=0, help="GRX the platform may escrow or burn.")],
    thb_micro: Annotated[int, typer.Option(min=0, help="THB (micro) it may escrow.")],
    api: Api = "http://127.0.0.1:8090",
    file: File = Path("wallet.json"),
) -> None:
    """Grant the platform's delegate an allowance (SPL Approve), signed here: orders are
    escrowed and import burned within it, and nothing beyond it can move."""
    session = Session(api, _key(file))
    delegate = Pubkey.from_string(session.get("/api/v1/wallet")["delegate"])
    body = {"grx_wh": grx_wh, "thb_micro": thb_micro}
    prepared = session.post("/api/v1/wallet/allowance/prepare", body)
    me = session.key.pubkey()

    def check(message: Message) -> str | None:
        return approval_problem(message, me, delegate, grx_wh, thb_micro)

    signature = session.sign(prepared["message"], check)
    _out(
        session.post(
            "/api/v1/wallet/allowance",
            {**body, "message": prepared["message"], "signature": signature},
        )
    )


@app.command("order")
def order(
    side: Annotated[str, typer.Option(help="buy or sell")],
    quantity_wh: Annotated[int, typer.Option(min=1)],
    price: Annotated[int, typer.Option(min=1, help="micro-THB per kWh")],
    api: Api = "http://127.0.0.1:8090",
    file: File = Path("wallet.json"),
) -> None:
    """Place an order: its escrow moves within the allowance (no signature needed)."""
    body = {"side": side, "quantity_wh": quantity_wh, "price": price}
    _out(Session(api, _key(file)).post("/api/v1/orders", body))


@app.command("cancel")
def cancel(
    order_id: Annotated[str, typer.Argument()],
    api: Api = "http://127.0.0.1:8090",
    file: File = Path("wallet.json"),
) -> None:
    """Cancel an order; its escrow goes back to the wallet."""
    session = Session(api, _key(file))
    _out(_answer(session.http.delete(f"/api/v1/orders/{order_id}")))


@app.command("certificates")
def certificates(
    api: Api = "http://127.0.0.1:8090",
    file: File = Path("wallet.json"),
    retire: Annotated[str | None, typer.Option(help="Retire this certificate (mint).")] = None,
    beneficiary: Annotated[str, typer.Option(help="Who claims the energy.")] = "",
    transfer: Annotated[str | None, typer.Option(help="Transfer this certificate.")] = None,
    to: Annotated[str | None, typer.Option(help="The receiving wallet.")] = None,
) -> None:
    """The wallet's certificates; with --retire or --transfer, sign that here."""
    session = Session(api, _key(file))
    me = session.key.pubkey()
    if retire:
        if not beneficiary:
            _fail("--beneficiary is needed to retire")
        body = {"beneficiary": beneficiary}
        path = f"/api/v1/certificates/{retire}/retire"

        def check(message: Message) -> str | None:
            return retire_problem(message, me, str(retire))

    elif transfer:
        if not to:
            _fail("--to is needed to transfer")
        body = {"to_wallet": str(to)}
        path = f"/api/v1/certificates/{transfer}/transfer"

        def check(message: Message) -> str | None:
            return transfer_problem(message, me, str(transfer), str(to))

    else:
        _out(session.get("/api/v1/certificates"))
        return
    prepared = session.post(f"{path}/prepare", body)
    signature = session.sign(prepared["message"], check)
    _out(
        session.post(
            f"{path}/signed", {**body, "message": prepared["message"], "signature": signature}
        )
    )
