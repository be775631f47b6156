"""The platform's pages: server-rendered (Jinja2), no CDN, no build step, work on a phone.

Households trade (order book, price chart, an order form that itemises energy, fee and
wheeling, their orders and trades with settlement links); operators run the market (halt,
resume, users, hubs and meters, the audit log); anyone traces a transaction in the ledger
explorer, from a mint back to the hub batch and its signed readings, or from a settlement
back to the cleared trades. The session is the API's own tokens in HttpOnly, SameSite=Strict
cookies, so a form cannot be posted from another site.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from solders.pubkey import Pubkey

from gridtokenx import auditlog, books
from gridtokenx.accounts import AuthError, Claims
from gridtokenx.adapters import queries
from gridtokenx.audit import BURN_CHECKED, MINT_TO_CHECKED, token_ops
from gridtokenx.ledger.oracle import BATCH, MINT, parse_ranges
from gridtokenx.ledger.settlement import SETTLE
from gridtokenx.market.errors import MarketError
from gridtokenx.units import UnitError, price_from_thb_per_kwh, receipt
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire.envelope import verify
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import READING_DOMAIN, decode

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
COOKIE = {"httponly": True, "samesite": "strict"}
ME_TRADES, ME_READINGS = 50, 20  # the account page's newest trades and readings


def thb(micro: int | None) -> str:
    return "-" if micro is None else f"{Decimal(micro) / 1_000_000:.6f}".rstrip("0").rstrip(".")


def chart(points: list[tuple[int, int, int]]) -> str:
    """An SVG of price (line) and volume (bars) per epoch, drawn on the server."""
    if not points:
        return '<p class="muted" id="chart">No cleared epochs yet.</p>'
    w, h, pad = 600, 200, 24
    top_p = max(p for _, p, _ in points) or 1
    top_v = max(v for _, _, v in points) or 1
    step = (w - 2 * pad) / max(1, len(points))
    bars, line = [], []
    for k, (_, price, volume) in enumerate(points):
        x = pad + k * step
        bh = (h - 2 * pad) * volume / top_v
        width = max(1, step - 2)
        bars.append(
            f'<rect x="{x:.1f}" y="{h - pad - bh:.1f}" width="{width:.1f}" '
            f'height="{bh:.1f}" fill="#9bd3ae"/>'
        )
        line.append(f"{x + step / 2:.1f},{h - pad - (h - 2 * pad) * price / top_p:.1f}")
    return (
        f'<svg id="chart" viewBox="0 0 {w} {h}" role="img" aria-label="price and volume">'
        + "".join(bars)
        + f'<polyline points="{" ".join(line)}" fill="none" stroke="#2c6fbb" stroke-width="2"/>'
        + f'<text x="{pad}" y="14" font-size="12">max {thb(top_p)} THB/kWh · {top_v} Wh'
        + "</text></svg>"
    )


def add_pages(app: FastAPI) -> None:
    api = app.state.api

    def me(request: Request) -> Claims | None:
        token = request.cookies.get("gtx_access")
        if not token or api.accounts is None:
            return None
        try:
            return api.accounts.verify(token)  # type: ignore[no-any-return]
        except AuthError:
            return None

    def page(request: Request, name: str, claims: Claims | None, **context: Any) -> HTMLResponse:
        user = None
        if claims is not None:
            user = {
                "email": (api.accounts.user(claims.user_id) or {}).get("email"),
                "role": claims.role,
            }
        context.setdefault("error", request.query_params.get("error"))
        context.setdefault("notice", request.query_params.get("notice"))
        return TEMPLATES.TemplateResponse(request, name, {"me": user, **context})

    def back(url: str, **query: str) -> RedirectResponse:
        from urllib.parse import urlencode

        return RedirectResponse(url + ("?" + urlencode(query) if query else ""), status_code=303)

    @app.get("/", response_class=HTMLResponse)
    def market_page(
        request: Request, side: str = "sell", quantity_wh: str = "1000", price_thb: str = ""
    ) -> HTMLResponse:
        t = api.trading
        claims = me(request)
        if t is None:
            return page(
                request,
                "market.html",
                claims,
                epoch={
                    "epoch": "-",
                    "mechanism": "-",
                    "seconds_left": 0,
                    "halted": "no market here",
                },
                depth={},
                epochs=[],
                chart="",
                form={},
                quote=None,
            )
        with t.lock:
            depth = t.market.depth()
            epoch = {
                "epoch": t.market.epoch,
                "mechanism": t.config.mechanism.value,
                "seconds_left": max(0, t.ends_at(t.market.epoch) - t.clock()),
                "halted": t.market.halted,
            }
        rows = {}
        for zone, sides in depth.items():
            bids, asks = sides["bids"], sides["asks"]
            rows[zone] = {
                "rows": [
                    (
                        thb(bids[k][0]) if k < len(bids) else "",
                        bids[k][1] if k < len(bids) else "",
                        thb(asks[k][0]) if k < len(asks) else "",
                        asks[k][1] if k < len(asks) else "",
                    )
                    for k in range(max(len(bids), len(asks)))
                ]
            }
        recent = t.recent_epochs(48)
        points = [
            (e["epoch"], e["clearing_price"], e["volume_wh"])
            for e in reversed(recent)
            if e["clearing_price"] is not None
        ]
        quote, error = None, None
        form = {
            "side": side if side in ("buy", "sell") else "sell",
            "quantity_wh": quantity_wh,
            "price_thb": price_thb,
        }
        if price_thb:
            try:
                q, p = int(quantity_wh), price_from_thb_per_kwh(price_thb)
                if q <= 0:
                    raise ValueError
                r = receipt(q, p, 0, t.config.fee_bps)
                wheel = max((rate for rate in _rates(t)), default=0)
                wheeling = q * wheel // 1000
                total = r.energy_value + wheeling if form["side"] == "buy" else r.net_to_seller
                quote = {
                    "energy": thb(r.energy_value),
                    "fee": thb(r.fee),
                    "fee_pct": t.config.fee_bps / 100,
                    "wheeling": thb(wheeling),
                    "total": thb(total if form["side"] == "sell" else q * p // 1000),
                }
            except (ValueError, UnitError):
                error = "Enter a whole number of Wh and a price in THB per kWh."
        return page(
            request,
            "market.html",
            claims,
            epoch=epoch,
            depth=rows,
            chart=chart(points),
            form=form,
            quote=quote,
            error=error or request.query_params.get("error"),
            epochs=[{**e, "price": thb(e["clearing_price"])} for e in recent[:12]],
        )

    @app.get("/signup", response_class=HTMLResponse)
    def signup_page(request: Request) -> HTMLResponse:
        return page(
            request, "form.html", me(request), heading="Sign up", action="/signup", signup=True
        )

    @app.post("/signup")
    def signup(
        request: Request,
        email: str = Form(max_length=254),
        password: str = Form(max_length=200),
        role: str = Form("consumer"),
    ) -> Response:
        if api.accounts is None:
            return back("/", error="accounts are not enabled")
        if role not in ("consumer", "prosumer") or len(password) < 10 or "@" not in email:
            return back(
                "/signup",
                error="Use a valid email, a password of 10 or more characters, a household role.",
            )
        user_id = str(uuid.uuid4())
        wallet = api.platform.keys.ensure(f"user/{user_id}").pubkey()
        try:
            api.accounts.register(email, password, role, wallet, True, user_id=user_id)
        except AuthError as err:
            return back("/signup", error=err.message)
        api.welcome(user_id, wallet)
        auditlog.append(api.platform.books, user_id, "auth.register", {"role": role, "via": "page"})
        return login(request, email, password)

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> HTMLResponse:
        return page(
            request, "form.html", me(request), heading="Log in", action="/login", signup=False
        )

    @app.post("/login")
    def login(
        request: Request, email: str = Form(max_length=254), password: str = Form(max_length=200)
    ) -> Response:
        if api.accounts is None:
            return back("/", error="accounts are not enabled")
        try:
            tokens = api.accounts.login(email, password)
        except AuthError as err:
            auditlog.append(api.platform.books, email[:64], "auth.login_failed", {"via": "page"})
            return back("/login", error=err.message)
        auditlog.append(api.platform.books, email[:64], "auth.login", {"via": "page"})
        response = back("/me")
        response.set_cookie("gtx_access", tokens.access_token, max_age=tokens.expires_in, **COOKIE)  # type: ignore[arg-type]
        return response

    @app.post("/logout")
    def logout() -> Response:
        response = back("/")
        response.delete_cookie("gtx_access")
        return response

    @app.post("/orders")
    def place(
        request: Request, side: str = Form(), quantity_wh: str = Form(), price_thb: str = Form()
    ) -> Response:
        claims = me(request)
        if claims is None:
            return back("/login", error="Log in to trade.")
        if api.trading is None:
            return back("/", error="no market here")
        try:
            row = api.trading.place(
                claims.user_id, side, int(quantity_wh), price_from_thb_per_kwh(price_thb)
            )
        except (MarketError, ValueError, UnitError) as err:
            return back("/", error=str(err))
        return back("/me", notice=f"Order {row['order_id']} placed.")

    @app.post("/orders/{order_id}/cancel")
    def cancel(request: Request, order_id: str) -> Response:
        claims = me(request)
        if claims is None or api.trading is None:
            return back("/login")
        try:
            api.trading.cancel(claims.user_id, order_id)
        except MarketError as err:
            return back("/me", error=str(err))
        return back("/me", notice=f"Order {order_id} cancelled; its escrow is back.")

    @app.get("/me", response_class=HTMLResponse)
    def me_page(request: Request) -> Response:
        claims = me(request)
        if claims is None:
            return back("/login")
        p, dep = api.platform, api.platform.dep
        owner = Pubkey.from_string(claims.wallet)
        keys = {str(dep.grx.account_of(owner)), str(dep.thb.account_of(owner)), str(owner)}
        txs = [
            {"signature": e.signature, "memos": list(e.memos)}
            for e in p.ledger.history()[-3000:]
            if keys & {str(k) for k in e.tx.message.account_keys}
        ][-30:]
        wallet = {
            "wallet": claims.wallet,
            "grx_wh": dep.grx.balance(owner),
            "thb_micro": dep.thb.balance(owner),
            "frozen": dep.grx.is_frozen(owner),
            "transactions": list(reversed(txs)),
        }
        orders = [
            {**o, "price_thb": thb(o["price"])}
            for o in (api.trading.orders_of(claims.user_id) if api.trading else [])
        ]
        trades = []
        newest = queries.trades_of_wallet(p.books, claims.wallet, ME_TRADES)
        epochs_tx = queries.settlement_transactions(p.books, {t["epoch"] for t in newest})
        for t in newest:
            buying = t["buyer"] == claims.wallet
            trades.append(
                {
                    "epoch": t["epoch"],
                    "side": "buy" if buying else "sell",
                    "wh": t["wh"],
                    "money": ("-" if buying else "+")
                    + thb(t["buyer_paid"] if buying else t["seller_net"]),
                    "transactions": epochs_tx.get(t["epoch"], []),
                }
            )
        mine = queries.meters_of_wallet(p.books, claims.wallet)
        readings = [
            {
                "meter_id": r["meter_id"],
                "seq": r["seq"],
                "import_wh": r["import_wh"],
                "export_wh": r["export_wh"],
                "batch": f"{r['hub_id']}/{r['epoch']}",
            }
            for r in queries.readings_of_meters(p.books, mine, ME_READINGS)
        ]
        return page(
            request,
            "me.html",
            claims,
            wallet=wallet,
            orders=orders,
            trades=trades,
            readings=readings,
        )

    @app.get("/certificates", response_class=HTMLResponse)
    def certificates_page(request: Request) -> Response:
        claims = me(request)
        if claims is None:
            return back("/login")
        mine = [
            {
                "mint": str(c.mint),
                "meter_id": c.meter_id,
                "period": c.period,
                "wh": c.wh,
                "status": c.status,
            }
            for c in api.platform.certificates.all()
            if str(c.holder) == claims.wallet
        ]
        return page(request, "certificates.html", claims, certificates=mine)

    @app.post("/certificates/{mint}/{action}")
    def certificate_action(
        request: Request,
        mint: str,
        action: str,
        beneficiary: str = Form(""),
        to_wallet: str = Form(""),
    ) -> Response:
        from gridtokenx.ledger.certificates import CertificateError

        claims = me(request)
        if claims is None:
            return back("/login")
        name = f"user/{claims.user_id}"
        if name not in api.platform.keys or action not in ("retire", "transfer"):
            return back("/certificates", error="Only custodial wallets retire or transfer here.")
        key = api.platform.keys.get(name)
        registry = api.platform.certificates
        try:
            address = Pubkey.from_string(mint)
            with api.platform.lock:
                if action == "retire":
                    registry.retire(address, key, beneficiary[:200] or "unnamed")
                else:
                    registry.transfer(address, key, Pubkey.from_string(to_wallet))
        except (CertificateError, ValueError) as err:
            return back("/certificates", error=str(err))
        return back("/certificates", notice=f"Certificate {action}d.")

    @app.get("/explorer", response_class=HTMLResponse)
    def explorer(request: Request, q: str | None = None) -> Response:
        if q:
            return back(f"/explorer/tx/{q.strip()}")
        latest = [
            {"signature": e.signature, "memos": list(e.memos)}
            for e in api.platform.ledger.history()[-30:]
        ]
        return page(
            request, "explorer.html", me(request), tx=None, q=None, latest=list(reversed(latest))
        )

    @app.get("/explorer/tx/{signature}", response_class=HTMLResponse)
    def explorer_tx(request: Request, signature: str) -> Response:
        p = api.platform
        entry = next((e for e in p.ledger.history() if e.signature == signature), None)
        latest = [
            {"signature": e.signature, "memos": list(e.memos)} for e in p.ledger.history()[-10:]
        ]
        if entry is None:
            return page(request, "explorer.html", me(request), tx=None, q=signature, latest=latest)
        units = {str(p.dep.grx.address): "Wh of GRX", str(p.dep.thb.address): "µTHB"}
        kinds = {MINT_TO_CHECKED: "mint", BURN_CHECKED: "burn"}
        ops = [
            {
                "kind": kinds.get(op.kind, "transfer"),
                "amount": op.amount,
                "unit": units.get(str(op.mint), "units"),
                "account": str(op.account),
            }
            for op in token_ops(entry)
        ]
        tx: dict[str, Any] = {
            "signature": signature,
            "memos": list(entry.memos),
            "ops": ops,
            "batch": None,
            "epoch": None,
        }
        for text in entry.memos:
            tag = None
            parsed = parse_ranges(text, MINT)
            if parsed is not None:
                tag = parsed[0]
            elif text.startswith(BATCH + " "):
                tag = text.split(" ")[2]
            if tag is not None:
                tx["batch"] = _batch(p, tag)
            if text.startswith(SETTLE + " "):
                epoch = int(text.split(" ")[2])
                tx["epoch"] = {
                    "epoch": epoch,
                    "trades": [
                        t
                        for t in books.rows(p.books, books.trades, ("trade_id",))
                        if t["epoch"] == epoch
                    ],
                }
        return page(request, "explorer.html", me(request), tx=tx, q=signature, latest=latest)

    def admin_claims(request: Request) -> Claims | None:
        claims = me(request)
        return claims if claims is not None and claims.role == "admin" else None

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request) -> Response:
        claims = admin_claims(request)
        if claims is None:
            return back("/login", error="Operators only.")
        p, t = api.platform, api.trading
        from gridtokenx.tables import users

        with p.books.connect() as c:
            all_users = [
                dict(r._mapping) for r in c.execute(users.select().order_by(users.c.created_at))
            ]
        config = t.config if t else None
        return page(
            request,
            "admin.html",
            claims,
            halted=t.market.halted if t else None,
            params={
                "mechanism": config.mechanism.value if config else "-",
                "fee_bps": config.fee_bps if config else 0,
                "min_price": config.min_price if config else 0,
                "max_price": config.max_price if config else 0,
                "max_quantity_wh": config.max_quantity_wh if config else 0,
            },
            users=all_users,
            audit=auditlog.entries(p.books, 50),
            broken=auditlog.verify(p.books),
            hubs=[
                {"hub_id": h["hub_id"], "key": bytes(h["public_key"]).hex()}
                for h in books.rows(p.books, books.hubs)
            ],
            meters=books.rows(p.books, books.meters),
            grid_map=t.grid.svg() if t and t.grid else None,
            grid_code=t.grid.grid.code if t and t.grid else None,
            curtailments=list(reversed(t.grid.curtailments[-20:])) if t and t.grid else [],
        )

    @app.post("/admin/halt")
    def halt(request: Request, reason: str = Form(max_length=200)) -> Response:
        claims = admin_claims(request)
        if claims is None or api.trading is None:
            return back("/login", error="Operators only.")
        api.trading.halt(claims.user_id, reason)
        return back("/admin", notice="The market is halted.")

    @app.post("/admin/resume")
    def resume(request: Request) -> Response:
        claims = admin_claims(request)
        if claims is None or api.trading is None:
            return back("/login", error="Operators only.")
        api.trading.resume(claims.user_id)
        return back("/admin", notice="The market is open again.")

    @app.post("/admin/users/{user_id}/{action}")
    def user_action(request: Request, user_id: str, action: str) -> Response:
        claims = admin_claims(request)
        if claims is None or api.accounts is None or action not in ("suspend", "approve"):
            return back("/login", error="Operators only.")
        try:
            api.set_user_status(user_id, action, claims.user_id)
        except AuthError as err:
            return back("/admin", error=err.message)
        return back("/admin", notice=f"User {action}d.")


def _rates(t: Any) -> list[int]:
    wheeling = t.config.wheeling
    zones = sorted(wheeling.zones) if hasattr(wheeling, "zones") else []
    rates = [wheeling.rate(a, b) for a in zones for b in zones]
    return [r for r in rates if r is not None]


def _batch(p: Any, tag: str) -> dict[str, Any] | None:
    hub_id, _, epoch = tag.rpartition("/")
    rows = [
        b
        for b in books.rows(p.books, books.batches)
        if b["hub_id"] == hub_id and str(b["epoch"]) == epoch
    ]
    if not rows:
        return None
    b = rows[0]
    header = bytes(b["header"])
    try:
        verify(header, bytes(b["hub_signature"]), wire_batch.BATCH_DOMAIN, bytes(b["hub_key"]))
        verified = True
    except WireError:
        verified = False
    keys = {m["meter_id"]: bytes(m["public_key"]) for m in books.rows(p.books, books.meters)}
    readings = []
    for r in books.rows(p.books, books.batch_readings, ("idx",)):
        if r["hub_id"] != hub_id or str(r["epoch"]) != epoch:
            continue
        reading = decode(bytes(r["raw"]))
        try:
            verify(
                bytes(r["raw"]),
                bytes(r["signature"]),
                READING_DOMAIN,
                keys.get(reading.meter_id, b"\0" * 32),
            )
            ok = True
        except WireError:
            ok = False
        readings.append(
            {
                "meter_id": reading.meter_id,
                "seq": reading.seq,
                "export_wh": reading.export_wh,
                "import_wh": reading.import_wh,
                "ok": ok,
            }
        )
    return {
        "hub_id": hub_id,
        "epoch": epoch,
        "root": bytes(b["root"]).hex(),
        "verified": verified,
        "readings": readings,
    }
