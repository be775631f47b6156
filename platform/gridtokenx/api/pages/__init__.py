"""The platform's pages: server-rendered (Jinja2), no CDN, no build step, work on a phone.

Households trade (order book, price chart, an order form that itemises energy, fee and
wheeling, their orders and trades with settlement links); operators run the market (halt,
resume, users, hubs and meters, the audit log); anyone traces a transaction in the ledger
explorer, from a mint back to the hub batch and its signed readings, or from a settlement
back to the cleared trades. The session is the API's own tokens in HttpOnly, SameSite=Strict
cookies, so a form cannot be posted from another site. One module per page; `layout` holds
what they share, `svg` the drawings, `live` the script that keeps the market, account and
operator pages current without a reload. Pages are not part of the OpenAPI document.
"""

from __future__ import annotations

from fastapi import FastAPI

from gridtokenx.api.pages import (
    admin,
    certificates,
    explorer,
    live,
    login,
    market,
    me,
    orders,
    signup,
)

PAGES = (market, signup, login, orders, me, certificates, explorer, admin, live)


def install(app: FastAPI) -> None:
    for module in PAGES:
        app.include_router(module.router, include_in_schema=False)
