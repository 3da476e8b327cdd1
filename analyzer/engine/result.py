"""CascadeResult: what a cascade did, and its files (``cascade.json`` + Parquet tables).

``cascade.json`` (schema ``defi-contagion/cascade`` version 1; sorted keys, no timestamps, so the
same snapshot and scenario give the same bytes; non-finite numbers are ``null``)::

    schema, schema_version
    scenario            the ShockScenario as given (its seed included)
    snapshot            chain_id, block_number, block_timestamp of the snapshot
    stop_reason         "fixed_point" (no liquidation, every price change below tolerance) | "round_limit"
    converged, rounds_run
    assets[]            address, symbol, price_before_usd, price_after_shock_usd, price_final_usd,
                        move (final/before − 1), shock (initial relative move or null),
                        amplification (move / shock, for shocked assets; null otherwise), iv_before, iv_final
    protocols{name}     liquidations (account-rounds), liquidated_usd (debt repaid, oracle USD), seized_usd,
                        bad_debt_usd (at the end), receipt_writedown (fraction), receipt_writedown_usd
                        (value lost by positions holding its receipt tokens), unliquidated_usd (debt of
                        accounts still liquidatable at the end that no keeper found profitable),
                        unrealised_supplier_loss_usd (its bad debt that no price shows: SupplierLoss)
    rounds[]            round, liquidations{protocol}, liquidated_usd{protocol}, bad_debt_usd{protocol},
                        price_usd{symbol} (after the round), iv{symbol}, net_flow{symbol} (units sold > 0),
                        flow_usd{source}, gamma_feedback (max over assets)
    contagion           sources[], protocols[], usd[source][protocol]: liquidated USD in a protocol by cause
    divergence          flag (linearised loop gain impact × dealer short gamma reached 1), max_gamma_feedback, asset
    supplier_loss       sources[], protocols[], usd[source][protocol], total_usd: the suppliers' unrealised
                        loss (bad debt no receipt price shows: :class:`SupplierLoss`) by cause; also per
                        protocol and per market as ``unrealised_supplier_loss_usd``
    totals              liquidated_usd, bad_debt_usd, liquidations, unrealised_supplier_loss_usd
    files[]             the Parquet tables beside it

Parquet: ``prices.parquet`` (round, asset, symbol, price_usd, oracle_usd, price_after_usd, iv_after,
net_flow), ``flows.parquet`` (round, symbol, source, amount, usd), ``liquidations.parquet`` (round,
protocol, liquidations, steps, liquidated_usd, seized_usd, bad_debt_usd, writedown),
``accounts.parquet`` (protocol, market, account, liquidated_usd, seized_usd, fee_usd, bad_debt_usd,
first_round, rounds, health_before, health_after, cause, cause:<source>…), ``contagion.parquet``
(source, protocol, usd).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analyzer.atomic import atomic_write_bytes, atomic_write_text
from analyzer.engine.prepare import sub_book

SCHEMA = "defi-contagion/cascade"
SCHEMA_VERSION = 1


def _num(value):
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class CascadeResult:
    """The outcome of :func:`analyzer.engine.simulate` (arrays indexed like its ``Prepared``)."""

    scenario: dict
    snapshot_meta: dict
    assets: np.ndarray
    symbols: np.ndarray
    protocols: list[str]
    sources: list[str]
    rounds: list                       # RoundRecord per round
    stop_reason: str
    price_before: np.ndarray
    price_after_shock: np.ndarray
    iv_before: np.ndarray
    shocks: dict                       # asset index -> initial relative move
    accounts: pd.DataFrame
    receipt_writedown_usd: np.ndarray  # (P,)
    unliquidated_usd: np.ndarray       # (P,) debt of accounts left liquidatable that no keeper took
    tables: dict = field(default_factory=dict)
    markets: list = field(default_factory=list)        # (K,) (protocol, market): where losses are kept
    receipt_protocol: np.ndarray | None = None         # (A,) issuing protocol index of each receipt, -1 when none
    supplier_loss: SupplierLoss | None = None          # bad debt no price shows yet (supplier_losses)

    @property
    def converged(self) -> bool:
        return self.stop_reason == "fixed_point"

    @property
    def price_final(self) -> np.ndarray:
        return self.rounds[-1].price_after if self.rounds else self.price_after_shock

    @property
    def iv_final(self) -> np.ndarray:
        return self.rounds[-1].iv_after if self.rounds else self.iv_before

    def _sum(self, name: str) -> np.ndarray:
        return np.sum([getattr(r, name) for r in self.rounds], axis=0)

    @property
    def liquidated_usd(self) -> dict[str, float]:
        return dict(zip(self.protocols, self._sum("liquidated_usd").tolist(), strict=True))

    @property
    def liquidations(self) -> dict[str, int]:
        return dict(zip(self.protocols, self._sum("liquidations").astype(int).tolist(), strict=True))

    @property
    def bad_debt_usd(self) -> dict[str, float]:
        return dict(zip(self.protocols, self.rounds[-1].bad_debt_usd.tolist(), strict=True))

    @property
    def bad_debt_by_market(self) -> dict[tuple[str, str], float]:
        """Bad debt (USD, at the end) of each (protocol, market): an isolated market's loss stays there."""
        return {key: float(v) for key, v in zip(self.markets, self.rounds[-1].market_bad_debt_usd, strict=True)}

    def _protocol_writedown(self, writedown: np.ndarray) -> np.ndarray:
        """(P,) the largest write-down fraction of a receipt each protocol issued."""
        out = np.zeros(len(self.protocols))
        issuer = self.receipt_protocol if self.receipt_protocol is not None else np.full(len(writedown), -1)
        ok = issuer >= 0
        np.maximum.at(out, issuer[ok], writedown[ok])
        return out

    @property
    def writedown(self) -> dict[str, float]:
        """Per protocol, the largest write-down fraction of its receipt tokens (by market: :attr:`receipt_writedown`)."""
        return dict(zip(self.protocols, self._protocol_writedown(self.rounds[-1].writedown).tolist(), strict=True))

    @property
    def receipt_writedown(self) -> dict[str, float]:
        """Write-down fraction of each receipt token that lost value, by symbol."""
        final = self.rounds[-1].writedown
        return {str(self.symbols[a]): float(final[a]) for a in np.flatnonzero(final > 0)}

    @property
    def total_liquidated_usd(self) -> float:
        return float(self._sum("liquidated_usd").sum())

    @property
    def contagion_matrix(self) -> pd.DataFrame:
        """Liquidated USD in each protocol (columns) by cause (rows: sources)."""
        return pd.DataFrame(self._sum("contagion"), index=self.sources, columns=self.protocols)

    def amplification(self) -> dict[str, float]:
        """Final relative price move over the initial shock, per shocked asset (by symbol)."""
        final = self.price_final
        return {str(self.symbols[a]): (final[a] / self.price_before[a] - 1.0) / move
                for a, move in self.shocks.items() if move != 0}

    @property
    def gamma_feedback(self) -> np.ndarray:
        return np.max([r.gamma_feedback for r in self.rounds], axis=0)

    @property
    def diverging(self) -> bool:
        return bool(np.any(self.gamma_feedback >= 1.0))

    # ---- files ----
    def to_json(self) -> dict:
        amp = self.amplification()
        final, iv_final = self.price_final, self.iv_final
        assets = [{"address": str(a), "symbol": str(s), "price_before_usd": _num(self.price_before[i]),
                   "price_after_shock_usd": _num(self.price_after_shock[i]), "price_final_usd": _num(final[i]),
                   "move": _num(final[i] / self.price_before[i] - 1.0) if self.price_before[i] > 0 else None,
                   "shock": _num(self.shocks[i]) if i in self.shocks else None, "amplification":
                   _num(amp[str(s)]) if str(s) in amp else None, "iv_before": _num(self.iv_before[i]),
                   "iv_final": _num(iv_final[i])} for i, (a, s) in enumerate(zip(self.assets, self.symbols, strict=True))]
        liq, count, bad, wd = self.liquidated_usd, self.liquidations, self.bad_debt_usd, self.writedown
        loss = self.supplier_loss or SupplierLoss(np.zeros(len(self.protocols)), np.zeros(len(self.markets)),
                                                  np.zeros((len(self.sources), len(self.protocols))))
        seized = dict(zip(self.protocols, self._sum("seized_usd").tolist(), strict=True))
        protocols = {p: {"liquidations": count[p], "liquidated_usd": _num(liq[p]), "seized_usd": _num(seized[p]),
                         "bad_debt_usd": _num(bad[p]), "receipt_writedown": _num(wd[p]),
                         "receipt_writedown_usd": _num(self.receipt_writedown_usd[i]),
                         "unliquidated_usd": _num(self.unliquidated_usd[i]),
                         "unrealised_supplier_loss_usd": _num(loss.by_protocol[i])}
                     for i, p in enumerate(self.protocols)}
        rounds = []
        for r in self.rounds:
            flow_usd = (r.flows * r.price[:, None]).sum(axis=0)
            rounds.append({
                "round": r.round,
                "liquidations": dict(zip(self.protocols, r.liquidations.astype(int).tolist(), strict=True)),
                "liquidated_usd": {p: _num(v) for p, v in zip(self.protocols, r.liquidated_usd, strict=True)},
                "bad_debt_usd": {p: _num(v) for p, v in zip(self.protocols, r.bad_debt_usd, strict=True)},
                "price_usd": {str(s): _num(v) for s, v in zip(self.symbols, r.price_after, strict=True)},
                "iv": {str(s): _num(v) for s, v in zip(self.symbols, r.iv_after, strict=True) if np.isfinite(v)},
                "net_flow": {str(s): _num(v) for s, v in zip(self.symbols, r.flows.sum(1), strict=True) if v != 0},
                "flow_usd": {s: _num(v) for s, v in zip(self.sources, flow_usd, strict=True) if v != 0},
                "gamma_feedback": _num(r.gamma_feedback.max()) if len(r.gamma_feedback) else 0.0})
        matrix = self._sum("contagion")
        feedback = self.gamma_feedback
        worst = int(np.argmax(feedback)) if len(feedback) else 0
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "scenario": self.scenario,
            "snapshot": {k: self.snapshot_meta.get(k) for k in ("chain_id", "block_number", "block_timestamp",
                                                                  "assumed_depth")}
            | ({"path": self.snapshot_meta["path"]} if "path" in self.snapshot_meta else {}),
            "stop_reason": self.stop_reason, "converged": self.converged, "rounds_run": len(self.rounds),
            "assets": assets, "protocols": protocols, "rounds": rounds,
            "markets": [{"protocol": p, "market": m, "bad_debt_usd": _num(v),
                         "unrealised_supplier_loss_usd": _num(loss.by_market[k])}
                        for k, ((p, m), v) in enumerate(self.bad_debt_by_market.items())],
            "supplier_loss": {"sources": self.sources, "protocols": self.protocols,
                              "usd": [[_num(v) for v in row] for row in loss.by_cause],
                              "total_usd": _num(loss.by_protocol.sum())},
            "receipt_writedown": {s: _num(v) for s, v in self.receipt_writedown.items()},
            "contagion": {"sources": self.sources, "protocols": self.protocols,
                          "usd": [[_num(v) for v in row] for row in matrix]},
            "divergence": {"flag": self.diverging, "max_gamma_feedback": _num(feedback[worst]) if len(feedback) else 0.0,
                           "asset": str(self.symbols[worst]) if len(feedback) else None},
            "totals": {"liquidated_usd": _num(self.total_liquidated_usd),
                       "bad_debt_usd": _num(sum(bad.values())), "liquidations": int(sum(count.values())),
                       "unrealised_supplier_loss_usd": _num(loss.by_protocol.sum())},
            "files": sorted(f"{name}.parquet" for name in self.frames()),
        }

    def frames(self) -> dict[str, pd.DataFrame]:
        n = len(self.assets)
        prices, flows, liqs = [], [], []
        for r in self.rounds:
            prices.append(pd.DataFrame({"round": r.round, "asset": self.assets, "symbol": self.symbols,
                                        "price_usd": r.price, "oracle_usd": r.oracle_source,
                                        "price_after_usd": r.price_after, "iv_after": r.iv_after,
                                        "net_flow": r.flows.sum(1)}))
            a, s = np.nonzero(r.flows)
            flows.append(pd.DataFrame({"round": r.round, "symbol": self.symbols[a], "source": np.array(self.sources)[s],
                                       "amount": r.flows[a, s], "usd": r.flows[a, s] * r.price[a]}))
            liqs.append(pd.DataFrame({"round": r.round, "protocol": self.protocols, "liquidations": r.liquidations,
                                      "steps": r.liquidation_steps, "liquidated_usd": r.liquidated_usd,
                                      "seized_usd": r.seized_usd, "bad_debt_usd": r.bad_debt_usd,
                                      "writedown": self._protocol_writedown(r.writedown)}))
        matrix = self._sum("contagion") if self.rounds else np.zeros((len(self.sources), len(self.protocols)))
        src, prot = np.meshgrid(np.arange(len(self.sources)), np.arange(len(self.protocols)), indexing="ij")
        contagion = pd.DataFrame({"source": np.array(self.sources)[src.ravel()],
                                  "protocol": np.array(self.protocols)[prot.ravel()], "usd": matrix.ravel()})
        del n
        return {"prices": pd.concat(prices, ignore_index=True), "flows": pd.concat(flows, ignore_index=True),
                "liquidations": pd.concat(liqs, ignore_index=True), "accounts": self.accounts,
                "contagion": contagion}

    def write(self, out_dir: str | Path) -> Path:
        """``cascade.json`` and the Parquet tables into ``out_dir``, each file written atomically."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames().items():
            buffer = io.BytesIO()
            pq.write_table(pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False), buffer)
            atomic_write_bytes(out_dir / f"{name}.parquet", buffer.getvalue())
        text = json.dumps(self.to_json(), indent=2, sort_keys=True, allow_nan=False)
        return atomic_write_text(out_dir / "cascade.json", text + "\n")


def left_liquidatable_usd(prep, state, oracle_source: np.ndarray) -> np.ndarray:
    """(P,) debt USD of accounts the rule would liquidate at the end but no keeper found profitable."""
    out = np.zeros(len(prep.protocols))
    for s, slot in enumerate(prep.slots):
        rows = np.flatnonzero(state.watch[s])
        if len(rows):
            oracle = oracle_source[slot.cols] * slot.oracle_scale
            out[prep.protocol_index[slot.protocol]] += (state.books.take(s, rows).debt @ oracle).sum()
    return out


@dataclass
class SupplierLoss:
    """The economic loss a cascade leaves with suppliers that no price reflects yet: bad debt that
    sits on accounts or in a reserve deficit while the issuer's receipt tokens redeem as before
    (:meth:`protocols.base.Rules.unrealised_loss_usd`). Not a price move, so it moves no receipt
    and liquidates no one; it is what lenders would lose if the protocol socialised it.

    ``by_protocol`` (P,) and ``by_market`` (K,) USD at the end; ``by_cause`` (S, P) USD: each
    account's loss split over the sources that pushed it under (attribution rule 3 on its
    pre-shock exposure and the final oracle changes; ``initial`` when it was liquidatable before)."""

    by_protocol: np.ndarray
    by_market: np.ndarray
    by_cause: np.ndarray


def supplier_losses(prep, state, oracle_source: np.ndarray, source_attr: np.ndarray) -> SupplierLoss:
    """:class:`SupplierLoss` of the cascade ``state`` at the final oracle prices ``oracle_source``
    (A,), whose change since before the shock is ``source_attr`` (A, S) by source."""
    from analyzer.engine import attribution as attr

    by_protocol, by_market = np.zeros(len(prep.protocols)), np.zeros(len(prep.markets))
    by_cause = np.zeros((len(prep.sources), len(prep.protocols)))
    initial = prep.source_index[attr.SOURCE_INITIAL]
    for s, slot in enumerate(prep.slots):
        rows = np.flatnonzero(state.bad_debt[s] > 0)
        if len(rows) == 0:
            continue
        scale = slot.oracle_scale
        loss = np.asarray(slot.rules.unrealised_loss_usd(state.books.take(s, rows),
                                                         oracle_source[slot.cols] * scale), dtype=float)
        before = sub_book(slot.book, rows)
        exposure = before.collateral * slot.threshold - before.debt
        causes = attr.account_causes(exposure, source_attr[slot.cols] * scale[:, None],
                                     slot.initially_liquidatable[rows], initial)
        p = prep.protocol_index[slot.protocol]
        by_protocol[p] += loss.sum()
        by_market[slot.market_index] += loss.sum()
        by_cause[:, p] += loss @ causes
    return SupplierLoss(by_protocol, by_market, by_cause)


def receipt_losses_usd(prep, state) -> np.ndarray:
    """(P,) USD lost by positions holding each protocol's receipt tokens through its write-down."""
    from analyzer.engine.cascade import redeemable_units as unit_value

    out = np.zeros(len(prep.protocols))
    lost_per_unit = prep.receipt_ratio - unit_value(prep, state.writedown, state.asset_writedown)
    for s, slot in enumerate(prep.slots):
        ok = np.flatnonzero(prep.receipt_protocol_index[slot.cols] >= 0)
        if len(ok) == 0:
            continue
        held, cols = state.books.column_sums(s, ok), slot.cols[ok]
        np.add.at(out, prep.receipt_protocol_index[cols],
                  held * lost_per_unit[cols] * state.price[prep.receipt_underlying[cols]])
    return out


def _option_accounts(prep, state) -> pd.DataFrame:
    """Accounts whose option shorts were liquidated: buy-back USD as ``liquidated_usd``, by owner."""
    rows = np.concatenate([e[0] for e in state.option_events])
    value = np.concatenate([e[2] for e in state.option_events])
    first = np.concatenate([np.full(len(e[0]), e[1]) for e in state.option_events])
    causes = np.concatenate([e[3] for e in state.option_events]) * value[:, None]
    frame = prep.options.frame.iloc[rows]
    events = pd.DataFrame({"protocol": frame["protocol"].to_numpy(object), "market": frame["market"].to_numpy(object),
                           "account": frame["account"].to_numpy(object), "liquidated_usd": value,
                           "first_round": first, **{f"cause:{n}": causes[:, j] for j, n in enumerate(prep.sources)}})
    out = events.groupby(["protocol", "market", "account"], as_index=False, sort=True).agg(
        {"liquidated_usd": "sum", "first_round": "min", **{f"cause:{n}": "sum" for n in prep.sources}})
    out["rounds"] = events.groupby(["protocol", "market", "account"], sort=True)["first_round"].nunique().to_numpy()
    shares = out[[f"cause:{n}" for n in prep.sources]].to_numpy()
    total = shares.sum(1, keepdims=True)
    shares = np.divide(shares, total, out=np.zeros_like(shares), where=total > 0)
    for j, name in enumerate(prep.sources):
        out[f"cause:{name}"] = shares[:, j]
    out["seized_usd"], out["fee_usd"], out["bad_debt_usd"] = 0.0, 0.0, 0.0
    out["health_before"], out["health_after"] = np.nan, np.nan
    out["cause"] = np.where(total[:, 0] > 0, np.array(prep.sources, dtype=object)[shares.argmax(1)], "")
    return out[["protocol", "market", "account", "liquidated_usd", "seized_usd", "fee_usd", "bad_debt_usd",
                "first_round", "rounds", "health_before", "health_after", "cause",
                *[f"cause:{n}" for n in prep.sources]]]


def accounts_frame(prep, state, oracle_source: np.ndarray) -> pd.DataFrame:
    """Per-account outcomes: every account liquidated or left with bad debt, with its causes."""
    frames = []
    n_sources = len(prep.sources)
    for s, slot in enumerate(prep.slots):
        events = [e for e in state.account_events if e[0] == s]
        n = len(slot.book.accounts)
        oracle = oracle_source[slot.cols] * slot.oracle_scale
        bad = state.bad_debt[s]
        rows = np.concatenate([e[1] for e in events] + [np.flatnonzero(bad > 0)]).astype(np.int64)
        if len(rows) == 0:
            continue
        keys, inverse = np.unique(rows, return_inverse=True)
        liquidated, seized, fee = (np.zeros(len(keys)) for _ in range(3))
        first = np.full(len(keys), np.iinfo(np.int64).max)
        count = np.zeros(len(keys), np.int64)
        causes = np.zeros((len(keys), n_sources))
        start = 0
        for _, ev_rows, t, repaid_usd, seized_usd, fee_usd, ev_causes in events:
            idx = inverse[start:start + len(ev_rows)]
            start += len(ev_rows)
            np.add.at(liquidated, idx, repaid_usd)
            np.add.at(seized, idx, seized_usd)
            np.add.at(fee, idx, fee_usd)
            np.minimum.at(first, idx, t)
            np.add.at(count, idx, 1)
            np.add.at(causes, idx, ev_causes * repaid_usd[:, None])
        total = causes.sum(1, keepdims=True)
        causes = np.divide(causes, total, out=np.zeros_like(causes), where=total > 0)
        frame = pd.DataFrame({
            "protocol": slot.protocol, "market": slot.book.market, "account": slot.book.accounts[keys],
            "liquidated_usd": liquidated, "seized_usd": seized, "fee_usd": fee, "bad_debt_usd": bad[keys],
            "first_round": np.where(count > 0, first, -1), "rounds": count,
            "health_before": slot.rules.health_factor(sub_book(slot.book, keys),
                                                      prep.price_pre[slot.cols] * slot.oracle_scale),
            "health_after": slot.rules.health_factor(state.books.take(s, keys), oracle),
            "cause": np.where(total[:, 0] > 0, np.array(prep.sources, dtype=object)[causes.argmax(1)], "")})
        for j, name in enumerate(prep.sources):
            frame[f"cause:{name}"] = causes[:, j]
        frames.append(frame)
        del n
    if state.option_events:
        frames.append(_option_accounts(prep, state))
    if not frames:
        columns = ["protocol", "market", "account", "liquidated_usd", "seized_usd", "fee_usd", "bad_debt_usd",
                   "first_round", "rounds", "health_before", "health_after", "cause"]
        return pd.DataFrame({c: [] for c in columns + [f"cause:{n}" for n in prep.sources]})
    return pd.concat(frames, ignore_index=True)
