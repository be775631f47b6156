"""Check a household statement offline: every reading against its meter's key, every batch
against its hub's key, every inclusion proof against its root, every amount recomputed.

Pure: the statement (a dict, as parsed from its JSON file) in, the failures out. It uses
only PyNaCl, hashlib and the wire modules (strict CBOR decoding, the RFC 9162 tree), so a
household runs it without the platform: `gridtokenx verify FILE`. The format and the rules
are in docs/statement.md; `chain.py` adds the ledger checks when a ledger is at hand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from gridtokenx.units import receipt
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire import merkle
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import Reading, decode, signed_bytes

FORMAT = "gridtokenx-statement/1"

# One exit code per kind of failure (the first failure's is the verifier's exit code).
EXIT_CODES = {
    "malformed_statement": 2,
    "key_mismatch": 3,
    "bad_meter_signature": 4,
    "bad_hub_signature": 5,
    "bad_inclusion_proof": 6,
    "header_mismatch": 7,
    "amount_mismatch": 8,
    "ledger_missing": 9,
    "ledger_mismatch": 10,
    "period_mismatch": 11,
}


@dataclass(frozen=True)
class Failure:
    """One check that did not hold: its code, the item it concerns, and why."""

    code: str
    item: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.item}: {self.message}"


class Malformed(Exception):
    """The statement is not in the documented shape (raised inside, reported as a Failure)."""

    def __init__(self, item: str, message: str) -> None:
        super().__init__(message)
        self.item = item


def exit_code(failures: list[Failure]) -> int:
    return EXIT_CODES[failures[0].code] if failures else 0


# -- reading the shape ------------------------------------------------------------------------


def _field(obj: Any, name: str, kind: type | tuple[type, ...], item: str) -> Any:
    if not isinstance(obj, Mapping) or name not in obj:
        raise Malformed(item, f"missing {name!r}")
    value = obj[name]
    if kind is int and (type(value) is not int):
        raise Malformed(item, f"{name!r} must be an integer")
    if kind is not int and (not isinstance(value, kind) or type(value) is bool):
        raise Malformed(item, f"{name!r} must be a {kind}")
    return value


def _hex(obj: Any, name: str, item: str, size: int | None = None) -> bytes:
    text = _field(obj, name, str, item)
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise Malformed(item, f"{name!r} is not hex") from None
    if size is not None and len(data) != size:
        raise Malformed(item, f"{name!r} must have {size} bytes")
    return data


def _path(obj: Any, item: str) -> list[bytes]:
    path = _field(obj, "path", list, item)
    out = []
    for h in path:
        if not isinstance(h, str):
            raise Malformed(item, "'path' holds hex strings")
        try:
            out.append(bytes.fromhex(h))
        except ValueError:
            raise Malformed(item, "'path' holds hex strings") from None
    return out


# -- the checks -------------------------------------------------------------------------------


_Range = tuple[wire_batch.MeterRange, tuple[int, int], str]  # span, (import, export) base, tag


@dataclass
class _Batch:
    header: wire_batch.BatchHeader
    ok: bool  # the hub's signature verifies


class Verifier:
    def __init__(self, doc: Any, pinned_keys: Mapping[str, bytes]) -> None:
        self.doc = doc
        self.pinned = pinned_keys  # meter or hub id -> the key the household knows
        self.failures: list[Failure] = []
        self.batches: dict[str, _Batch] = {}
        self.meter_keys: dict[str, bytes] = {}
        self.used: set[str] = set()  # batches a proved reading is in

    def fail(self, code: str, item: str, message: str) -> None:
        self.failures.append(Failure(code, item, message))

    def run(self) -> list[Failure]:
        try:
            self._run()
        except Malformed as err:
            self.fail("malformed_statement", err.item, str(err))
        return self.failures

    def _run(self) -> None:
        doc = self.doc
        if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
            raise Malformed("statement", f"not a {FORMAT} document")
        wallet = _field(doc, "wallet", str, "statement")
        meters = _field(doc, "meters", dict, "statement")
        hubs = _field(doc, "hubs", dict, "statement")
        for meter_id, _ in meters.items():
            self.meter_keys[meter_id] = self._key(meters, meter_id, f"meter {meter_id}")
        hub_keys = {h: self._key(hubs, h, f"hub {h}") for h in hubs}
        for tag, b in _field(doc, "batches", dict, "statement").items():
            self._batch(tag, b, hub_keys)
        bases: dict[str, tuple[int, int]] = {}  # meter -> (import, export) before the epoch
        last_mint: dict[str, int] = {}
        for meter_id, r in _field(doc, "opening", dict, "statement").items():
            reading = self._reading(r, f"opening reading of {meter_id}")
            if reading is not None:
                if reading.meter_id != meter_id:
                    self.fail("header_mismatch", f"opening reading of {meter_id}", "other meter")
                bases[meter_id] = (reading.import_wh, reading.export_wh)
        lo, hi, epoch_s = self._period(_field(doc, "period", dict, "statement"))
        for e in _field(doc, "epochs", list, "statement"):
            epoch = _field(e, "epoch", int, "statement")
            if not lo <= epoch <= hi or _field(e, "starts_at", (int, float), "statement") != (
                epoch * epoch_s
            ):
                self.fail("period_mismatch", f"epoch {epoch}", "not an epoch of the period")
            self._epoch(e, wallet, bases, last_mint)
        for tag in sorted(set(self.batches) - self.used):
            self.fail("header_mismatch", f"batch {tag}", "none of its readings is in the statement")

    def _period(self, period: Any) -> tuple[int, int, float]:
        """The period's epochs, recomputed from its UTC days and epoch length."""
        epoch_s = _field(period, "epoch_s", (int, float), "period")
        first, last = _field(period, "from", str, "period"), _field(period, "to", str, "period")
        stated = _field(period, "epochs", list, "period")
        if not 1 <= epoch_s <= 86_400:
            raise Malformed("period", "epoch_s must be 1..86400 s")
        try:
            start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
            t0 = dt.datetime.combine(start, dt.time(), dt.UTC).timestamp()
            t1 = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
        except (ValueError, OverflowError):
            raise Malformed("period", "dates are YYYY-MM-DD") from None
        lo, hi = int(t0 // epoch_s), int(t1 // epoch_s) - 1
        if stated != [lo, hi]:
            self.fail("period_mismatch", "period", f"the days are epochs {lo}..{hi}")
        return lo, hi, float(epoch_s)

    def _key(self, keys: Mapping[str, Any], name: str, item: str) -> bytes:
        key = _hex(keys, name, item, 32)
        pinned = self.pinned.get(name)
        if pinned is not None and pinned != key:
            self.fail("key_mismatch", item, "the statement's key is not the one you gave")
            return pinned
        return key

    def _batch(self, tag: str, b: Any, hub_keys: Mapping[str, bytes]) -> None:
        item = f"batch {tag}"
        header_bytes = _hex(b, "header", item)
        signature = _hex(b, "hub_signature", item, 64)
        _field(b, "record", str, item)  # its ledger transaction (checked with a ledger)
        try:
            header = wire_batch.decode_header(header_bytes)
        except (WireError, ValueError) as err:
            raise Malformed(item, f"header: {err}") from None
        if f"{header.hub_id}/{header.epoch}" != tag:
            self.fail("header_mismatch", item, f"the header is of {header.hub_id}/{header.epoch}")
        key = hub_keys.get(header.hub_id)
        ok = False
        if key is None:
            self.fail("bad_hub_signature", item, f"no key for hub {header.hub_id}")
        else:
            try:
                VerifyKey(key).verify(wire_batch.BATCH_DOMAIN + header_bytes, signature)
                ok = True
            except (BadSignatureError, ValueError):
                self.fail("bad_hub_signature", item, "the hub's signature does not verify")
        self.batches[tag] = _Batch(header, ok)

    def _reading(self, r: Any, where: str) -> Reading | None:
        """A proved reading: signed by its meter, included in its batch; None if not."""
        raw = _hex(r, "raw", where)
        signature = _hex(r, "signature", where, 64)
        tag = _field(r, "batch", str, where)
        index = _field(r, "index", int, where)
        path = _path(r, where)
        try:
            reading = decode(raw)
        except WireError as err:
            raise Malformed(where, f"reading: {err}") from None
        item = f"reading {reading.meter_id}/{reading.seq}"
        key = self.meter_keys.get(reading.meter_id)
        if key is None:
            self.fail("bad_meter_signature", item, "not a meter of this statement")
            return None
        try:
            VerifyKey(key).verify(signed_bytes(raw), signature)
        except (BadSignatureError, ValueError):
            self.fail("bad_meter_signature", item, "the meter's signature does not verify")
            return None
        batch = self.batches.get(tag)
        if batch is None:
            raise Malformed(item, f"batch {tag} is not in the statement")
        if not merkle.verify_inclusion(
            signed_bytes(raw), index, batch.header.count, path, batch.header.root
        ):
            self.fail("bad_inclusion_proof", item, f"not in the root of batch {tag}")
            return None
        self.used.add(tag)
        return reading

    def _epoch(
        self,
        e: Any,
        wallet: str,
        bases: dict[str, tuple[int, int]],
        last_mint: dict[str, int],
    ) -> None:
        epoch = _field(e, "epoch", int, "statement")
        where = f"epoch {epoch}"
        got: dict[str, list[Reading]] = {}
        tags: dict[str, str] = {}
        for r in _field(e, "readings", list, where):
            reading = self._reading(r, where)
            if reading is not None:
                got.setdefault(reading.meter_id, []).append(reading)
                tags[reading.meter_id] = r["batch"]
        export = imported = 0
        ranges: dict[str, _Range] = {}
        for meter_id, readings in sorted(got.items()):
            tag = tags[meter_id]
            header = self.batches[tag].header
            span = next((x for x in header.ranges if x.meter_id == meter_id), None)
            readings.sort(key=lambda x: x.seq)
            item = f"readings of {meter_id} in batch {tag}"
            if header.epoch != epoch:
                self.fail("header_mismatch", item, f"the batch is of epoch {header.epoch}")
            if span is None or (
                span.count,
                span.first_seq,
                span.last_seq,
                span.import_first_wh,
                span.import_last_wh,
                span.export_first_wh,
                span.export_last_wh,
            ) != (
                len(readings),
                readings[0].seq,
                readings[-1].seq,
                readings[0].import_wh,
                readings[-1].import_wh,
                readings[0].export_wh,
                readings[-1].export_wh,
            ):
                self.fail("header_mismatch", item, "the readings are not the batch's range")
                continue
            base = bases.get(meter_id, (span.import_first_wh, span.export_first_wh))
            ranges[meter_id] = (span, base, tag)
            imported += span.import_last_wh - base[0]
            export += span.export_last_wh - base[1]
            bases[meter_id] = (span.import_last_wh, span.export_last_wh)
        if "settlement" in e:
            self._settled(e, where)
        minted = self._mints(e, where, ranges, last_mint)
        burned = self._burns(e, epoch, where, ranges)
        bought, sold, paid, received = self._trades(e, wallet, where)
        self._refunds(e, wallet, where)
        stated = {
            "export_wh": export,
            "import_wh": imported,
            "minted_wh": minted,
            "burned_wh": burned,
            "bought_wh": bought,
            "sold_wh": sold,
            "paid_uthb": paid,
            "received_uthb": received,
        }
        for name, value in stated.items():
            if _field(e, name, int, where) != value:
                self.fail("amount_mismatch", f"{where} {name}", f"recomputed {value}")

    def _ranged(
        self, e: Any, kind: str, where: str, ranges: Mapping[str, _Range]
    ) -> Iterator[tuple[Any, tuple[str, int, int], str, str, int, _Range]]:
        """An epoch's mints or burns (`kind`) in their shape, each with its meter's proved
        range; one of a meter without proved readings fails here and is skipped. A burn's
        `wh` is read up front (a mint's only once its range holds): (entry, (meter, from,
        to), item, memo, burnt Wh or 0, range)."""
        for x in _field(e, f"{kind}s", list, where):
            meter_id = _field(x, "meter_id", str, where)
            low, high = _field(x, "from_wh", int, where), _field(x, "to_wh", int, where)
            item = f"{where} {kind} {meter_id}:{low}-{high}"
            wh = _field(x, "wh", int, item) if kind == "burn" else 0
            memo = _field(x, "memo", str, item)
            _field(x, "transaction", str, item)
            if meter_id not in ranges:
                self.fail("amount_mismatch", item, "no proved readings of this meter")
                continue
            yield x, (meter_id, low, high), item, memo, wh, ranges[meter_id]

    def _mints(
        self,
        e: Any,
        where: str,
        ranges: Mapping[str, _Range],
        last_mint: dict[str, int],
    ) -> int:
        total = 0
        for m, (meter_id, low, high), item, memo, _, (span, base, tag) in self._ranged(
            e, "mint", where, ranges
        ):
            root = self.batches[tag].header.root.hex()
            start_ok = low in (base[1], span.export_first_wh) and (
                meter_id not in last_mint or low == last_mint[meter_id]
            )
            if high != span.export_last_wh or not start_ok or low > high:
                self.fail("amount_mismatch", item, "not the export since the last mint")
            elif _field(m, "wh", int, item) != high - low:
                self.fail("amount_mismatch", item, f"recomputed {high - low} Wh")
            elif not memo.startswith(f"gtx1 mint {tag} {root} ") or (
                f"{meter_id}:{low}-{high}" not in memo.split(" ", 4)[-1].split(",")
            ):
                self.fail("amount_mismatch", item, "the memo does not name this batch and range")
            last_mint[meter_id] = high
            total += high - low
        return total

    def _burns(
        self,
        e: Any,
        epoch: int,
        where: str,
        ranges: Mapping[str, _Range],
    ) -> int:
        total = 0
        for _, (meter_id, low, high), item, memo, wh, (span, base, _) in self._ranged(
            e, "burn", where, ranges
        ):
            if high != span.import_last_wh or low not in (base[0], span.import_first_wh):
                self.fail("amount_mismatch", item, "not the import since the last burn")
            elif not 0 <= wh <= high - low:
                self.fail("amount_mismatch", item, f"burns {wh} Wh of {high - low} imported")
            elif memo != f"gtx1 burn {epoch} - {meter_id}:{low}-{high}":
                self.fail("amount_mismatch", item, "the memo does not name this range")
            total += wh
        return total

    def _settled(self, e: Any, where: str) -> tuple[bytes, int]:
        s = _field(e, "settlement", dict, where)
        transactions = _field(s, "transactions", list, f"{where} settlement")
        if not all(isinstance(t, str) for t in transactions):
            raise Malformed(f"{where} settlement", "'transactions' holds signatures")
        return _hex(s, "root", f"{where} settlement", 32), _field(s, "size", int, where)

    def _trades(self, e: Any, wallet: str, where: str) -> tuple[int, int, int, int]:
        bought = sold = paid = received = 0
        trades = _field(e, "trades", list, where)
        if not trades:
            return 0, 0, 0, 0
        root, size = self._settled(e, where)
        for t in trades:
            trade_id = _field(t, "trade_id", str, where)
            item = f"{where} trade {trade_id}"
            v = {
                name: _field(t, name, int, item)
                for name in (
                    "wh",
                    "price",
                    "wheeling_rate",
                    "fee_bps",
                    "energy_value",
                    "fee",
                    "wheeling",
                    "buyer_paid",
                    "seller_net",
                )
            }
            buyer, seller = _field(t, "buyer", str, item), _field(t, "seller", str, item)
            side = _field(t, "side", str, item)
            if (side, wallet) not in (("buy", buyer), ("sell", seller)):
                self.fail("amount_mismatch", item, f"the wallet is not this trade's {side}er")
                continue
            r = receipt(v["wh"], v["price"], v["wheeling_rate"], v["fee_bps"])
            expected = {
                "energy_value": r.energy_value,
                "fee": r.fee,
                "wheeling": r.wheeling,
                "buyer_paid": r.buyer_paid,
                "seller_net": r.net_to_seller,
            }
            wrong = [k for k, x in expected.items() if v[k] != x]
            if wrong:
                self.fail("amount_mismatch", item, f"recomputed {wrong[0]} {expected[wrong[0]]}")
                continue
            leaf = (
                f"trade|{trade_id}|{buyer}|{seller}|{v['wh']}|{v['buyer_paid']}|"
                f"{v['seller_net']}|{v['fee']}|{v['wheeling']}"
            ).encode()
            index = _field(t, "index", int, item)
            if not merkle.verify_inclusion(leaf, index, size, _path(t, item), root):
                self.fail("bad_inclusion_proof", item, "not in the epoch's settlement root")
                continue
            if side == "buy":
                bought, paid = bought + v["wh"], paid + v["buyer_paid"]
            else:
                sold, received = sold + v["wh"], received + v["seller_net"]
        return bought, sold, paid, received

    def _refunds(self, e: Any, wallet: str, where: str) -> None:
        refunds = _field(e, "refunds", list, where)
        if not refunds:
            return
        root, size = self._settled(e, where)
        for r in refunds:
            order_id = _field(r, "order_id", str, where)
            item = f"{where} refund {order_id}"
            asset = _field(r, "asset", str, item)
            amount = _field(r, "amount", int, item)
            leaf = f"refund|{order_id}|{wallet}|{asset}|{amount}".encode()
            index = _field(r, "index", int, item)
            if not merkle.verify_inclusion(leaf, index, size, _path(r, item), root):
                self.fail("bad_inclusion_proof", item, "not in the epoch's settlement root")


def verify(doc: Any, pinned_keys: Mapping[str, bytes] | None = None) -> list[Failure]:
    """Every failure of the statement's offline checks, in document order ([] if it holds)."""
    return Verifier(doc, pinned_keys or {}).run()
