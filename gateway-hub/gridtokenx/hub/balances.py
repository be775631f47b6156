"""The feeder balance's adapter: the reference meter's configuration, one balance per
batched epoch (in the batch's own transaction), and the grid operator's review.

Windows chain: each starts where the previous one ended (`t1`), and ends at the newest
moment every metering meter has read up to, so every meter's registers at both ends lie
between two of its own readings (interpolated, hub/feeder.py). A meter that read nothing
since `t0` makes the window `incomplete`; the next window then spans both epochs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from gridtokenx.hub import feeder, schema
from gridtokenx.hub.feeder import Balance, Energy, LossModel, Sample, Verdict
from gridtokenx.hub.rules import MeterStatus
from gridtokenx.hub.store import HubStore

HISTORY = 96  # windows (a day of epochs) the suspects are named from


class FeederError(Exception):
    """A feeder configuration or review request that cannot be done (with a stable code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Feeder:
    meter_id: str
    model: LossModel


def set_feeder(store: HubStore, meter_id: str, model: LossModel) -> Feeder:
    """Make a registered meter the feeder reference meter, with the loss model."""
    values = (model.ppm_per_kw, model.fixed_w, model.tolerance_wh, model.tolerance_ppm)
    if any(v < 0 for v in values) or model.ppm_per_kw > 1_000_000:
        raise FeederError("invalid_loss_model", "loss model values must be 0 or more")
    with store.engine.begin() as c:
        if not c.execute(
            select(schema.meters.c.meter_id).where(schema.meters.c.meter_id == meter_id)
        ).first():
            raise FeederError("unknown_meter", f"meter {meter_id!r} is not registered")
        row = {
            "meter_id": meter_id,
            "ppm_per_kw": model.ppm_per_kw,
            "fixed_w": model.fixed_w,
            "tolerance_wh": model.tolerance_wh,
            "tolerance_ppm": model.tolerance_ppm,
            "set_at": int(time.time()),
        }
        if c.execute(select(schema.feeder.c.id)).first():
            c.execute(update(schema.feeder).where(schema.feeder.c.id == 1).values(**row))
        else:
            c.execute(insert(schema.feeder).values(id=1, **row))
    return Feeder(meter_id, model)


def get_feeder(c: Connection) -> Feeder | None:
    row = c.execute(select(schema.feeder)).first()
    if row is None:
        return None
    return Feeder(
        row.meter_id,
        LossModel(row.ppm_per_kw, row.fixed_w, row.tolerance_wh, row.tolerance_ppm),
    )


def _sample(row: object) -> Sample:
    return Sample(row.ts, row.import_wh, row.export_wh)  # type: ignore[attr-defined]


def _last_before(c: Connection, meter_id: str, t: int, inclusive: bool) -> object | None:
    r = schema.readings
    cond = r.c.ts <= t if inclusive else r.c.ts < t
    return c.execute(
        select(r.c.seq, r.c.ts, r.c.import_wh, r.c.export_wh)
        .where(r.c.meter_id == meter_id, cond)
        .order_by(r.c.seq.desc())
        .limit(1)
    ).first()


def _registers(c: Connection, meter_id: str, t: int) -> tuple[int, int]:
    """A meter's registers at t: interpolated between its readings around t (its first
    reading's, when it began reading after t)."""
    r = schema.readings
    before = _last_before(c, meter_id, t, inclusive=True)
    if before is None:
        first = c.execute(
            select(r.c.ts, r.c.import_wh, r.c.export_wh)
            .where(r.c.meter_id == meter_id)
            .order_by(r.c.seq)
            .limit(1)
        ).one()
        return first.import_wh, first.export_wh
    after = c.execute(
        select(r.c.ts, r.c.import_wh, r.c.export_wh)
        .where(r.c.meter_id == meter_id, r.c.seq > before.seq)  # type: ignore[attr-defined]
        .order_by(r.c.seq)
        .limit(1)
    ).first()
    return feeder.register_at(_sample(before), None if after is None else _sample(after), t)


def check(c: Connection, epoch: int, cutoff: int, batch_id: int | None) -> Balance | None:
    """Balance the window ending in this epoch and record it; None without a feeder."""
    configured = get_feeder(c)
    if configured is None:
        return None
    m, b, r = schema.meters, schema.balances, schema.readings
    approved = list(
        c.execute(select(m.c.meter_id).where(m.c.status == MeterStatus.APPROVED.value)).scalars()
    )
    previous = c.execute(
        select(b.c.t1, b.c.registers).where(b.c.epoch < epoch).order_by(b.c.epoch.desc())
    ).first()
    if previous is not None and previous.t1 == 0:
        previous = None  # only incomplete windows so far: the first window is still to come
    # the readings since the previous window's end, in one query (the ts index)
    recent: dict[str, list[Sample]] = {}
    if previous is not None:
        for row in c.execute(
            select(r.c.meter_id, r.c.ts, r.c.import_wh, r.c.export_wh)
            .where(r.c.ts >= previous.t1, r.c.ts < cutoff)
            .order_by(r.c.meter_id, r.c.seq)
        ):
            recent.setdefault(row.meter_id, []).append(_sample(row))
    newest: dict[str, int] = {}
    for meter_id in approved:
        if meter_id in recent:
            newest[meter_id] = recent[meter_id][-1].ts
        elif (last := _last_before(c, meter_id, cutoff, inclusive=False)) is not None:
            newest[meter_id] = last.ts  # type: ignore[attr-defined]
    t0 = previous.t1 if previous is not None else 0
    if configured.meter_id not in newest or len(newest) < 2:
        return _record(c, epoch, batch_id, feeder.incomplete(t0, t0), {}, previous)
    if previous is None:  # the first window: from the moment every meter had read once
        firsts = c.execute(
            select(func.min(r.c.ts)).where(r.c.meter_id.in_(newest)).group_by(r.c.meter_id)
        ).scalars()
        t0 = max(firsts)
    t1 = min(newest.values())
    if t1 <= t0:  # a meter read nothing since t0: the next window starts at the same t0
        return _record(c, epoch, batch_id, feeder.incomplete(t0, t0), {}, previous)
    known = json.loads(previous.registers) if previous is not None else {}
    at_t1 = {meter_id: _at(c, meter_id, t1, recent.get(meter_id, [])) for meter_id in newest}
    energies = {
        meter_id: feeder.window_energy(
            tuple(known[meter_id]) if meter_id in known else _registers(c, meter_id, t0),
            at_t1[meter_id],
        )
        for meter_id in sorted(newest)
    }
    feeder_energy = energies.pop(configured.meter_id)
    result = feeder.balance(t0, t1, energies, feeder_energy, configured.model)
    if not result.flagged:  # this window covers the incomplete ones before it: they balance
        c.execute(
            update(schema.batches)
            .where(
                schema.batches.c.state == "held",
                schema.batches.c.last_error == Verdict.INCOMPLETE.value,
                schema.batches.c.epoch < epoch,
            )
            .values(state="pending", last_error=None)
        )
    if result.flagged:
        history: list[tuple[int, dict[str, Energy]]] = [
            (row.gap_wh, {k: Energy(*v) for k, v in json.loads(row.energies).items()})
            for row in c.execute(
                select(b.c.gap_wh, b.c.energies)
                .where(b.c.epoch < epoch, b.c.verdict != Verdict.INCOMPLETE.value)
                .order_by(b.c.epoch.desc())
                .limit(HISTORY - 1)
            )
        ]
        history.append((result.gap_wh, energies))
        result = replace(result, named=feeder.suspects(history))
    return _record(c, epoch, batch_id, result, energies, None, at_t1)


def _at(c: Connection, meter_id: str, t: int, samples: list[Sample]) -> tuple[int, int]:
    """Registers at t from the samples fetched, or from the database."""
    for k, sample in enumerate(samples):
        if sample.ts <= t and (k + 1 == len(samples) or samples[k + 1].ts > t):
            return feeder.register_at(sample, samples[k + 1] if k + 1 < len(samples) else None, t)
    return _registers(c, meter_id, t)


def _record(
    c: Connection,
    epoch: int,
    batch_id: int | None,
    result: Balance,
    energies: dict[str, Energy],
    previous: object | None,
    registers: dict[str, tuple[int, int]] | None = None,
) -> Balance:
    """Store a balance; an incomplete one keeps the previous registers at its t0."""
    if registers is None:
        kept = previous.registers if previous is not None else "{}"  # type: ignore[attr-defined]
    else:
        kept = json.dumps({k: list(v) for k, v in registers.items()})
    c.execute(
        insert(schema.balances).values(
            epoch=epoch,
            batch_id=batch_id,
            t0=result.t0,
            t1=result.t1,
            households_wh=result.households_wh,
            gross_wh=result.gross_wh,
            feeder_wh=result.feeder_wh,
            losses_wh=result.losses_wh,
            gap_wh=result.gap_wh,
            tolerance_wh=result.tolerance_wh,
            verdict=result.verdict.value,
            named=json.dumps(list(result.named)),
            energies=json.dumps({k: [e.import_wh, e.export_wh] for k, e in energies.items()}),
            registers=kept,
        )
    )
    return result


def review(store: HubStore, epoch: int, release: bool) -> str:
    """The grid operator's decision on a held batch: release it to the outbox (e.g. the
    feeder meter was at fault) or reject it (refused, never submitted). Rejecting does
    not stop a lying meter: its cumulative registers carry the lie into its next batch,
    so suspend it (`gridtokenx hub meter suspend`) too. Returns the batch's new state."""
    b, bal = schema.batches, schema.balances
    with store.engine.begin() as c:
        row = c.execute(select(b.c.id, b.c.state).where(b.c.epoch == epoch)).first()
        if row is None:
            raise FeederError("unknown_epoch", f"no batch for epoch {epoch}")
        if row.state != "held":
            raise FeederError("not_held", f"the batch of epoch {epoch} is {row.state}, not held")
        state, error = ("pending", None) if release else ("refused", "operator_rejected")
        c.execute(update(b).where(b.c.id == row.id).values(state=state, last_error=error))
        c.execute(
            update(bal)
            .where(bal.c.epoch == epoch)
            .values(review="released" if release else "rejected", reviewed_at=int(time.time()))
        )
    return state


def recent(store: HubStore, limit: int = 20) -> list[dict[str, Any]]:
    """The newest balances, newest first (for the page and the API)."""
    b, bat = schema.balances, schema.batches
    with store.engine.connect() as c:
        rows = c.execute(
            select(b, bat.c.state)
            .select_from(b.outerjoin(bat, bat.c.epoch == b.c.epoch))
            .order_by(b.c.epoch.desc())
            .limit(limit)
        ).all()
    return [
        {
            "epoch": row.epoch,
            "t0": row.t0,
            "t1": row.t1,
            "verdict": row.verdict,
            "gap_wh": row.gap_wh,
            "tolerance_wh": row.tolerance_wh,
            "households_wh": row.households_wh,
            "feeder_wh": row.feeder_wh,
            "losses_wh": row.losses_wh,
            "named": json.loads(row.named),
            "batch_state": row.state,
            "review": row.review,
        }
        for row in rows
    ]


def counts(store: HubStore) -> dict[str, int]:
    """Balances per verdict and batches held, for /metrics."""
    b = schema.balances
    with store.engine.connect() as c:
        per: dict[str, int] = dict(
            c.execute(select(b.c.verdict, func.count()).group_by(b.c.verdict)).all()
        )
        held = c.execute(select(func.count()).where(schema.batches.c.state == "held")).scalar_one()
    return {**{v.value: int(per.get(v.value, 0)) for v in Verdict}, "held": int(held)}
