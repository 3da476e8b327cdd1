"""Reads a Compound V2 (or fork) Comptroller: markets, risk parameters, prices and accounts.

Every read goes through Multicall3 at the context's block. Units (see analyzer/model.py):
positions are in UNDERLYING token units, ``raw`` keeps the exact integer the protocol stores
(collateral: cToken balance, 8 decimals; debt: ``borrowBalanceStored``); the exact mantissas
the rule needs to reproduce Compound's integer math (exchange rate, oracle price, factors) are in
``markets.params``; the account's entered markets (``getAssetsIn``, cTokens) in ``accounts.params``.
Markets and positions rows carry their cToken as ``reserve``: every listed cToken is its own
market, also where two share an underlying (legacy cWBTC and cWBTC2 on Ethereum).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eth_utils import keccak, to_checksum_address

from analyzer.discovery import checksum
from analyzer.errors import ContagionError
from analyzer.kept import Carried, KeptRows, KeptState, Refreshed
from analyzer.model import raw_to_amount
from analyzer.multicall import Call
from protocols.base import AccountEvents, EventField, Reader, Rows
from protocols.compound_v2 import carry, lens, refresh
from protocols.compound_v2.constants import MANTISSA, NATIVE_ASSET, PROTOCOL
from protocols.compound_v2.profiles import EventSpec, profile


def topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def _word_address(data: Any, index: int) -> str:
    raw = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
    return checksum(raw[32 * index + 12:32 * index + 32])


def _first_topic(log: dict) -> str:
    first = log["topics"][0]
    return (first if isinstance(first, str) else "0x" + bytes(first).hex()).lower()


def _topic_address(log: dict, index: int) -> str:
    word = log["topics"][index]
    return checksum((bytes.fromhex(word[2:]) if isinstance(word, str) else bytes(word))[12:])


def _named(log: dict, spec: EventSpec) -> str:
    """The account ``spec`` says ``log`` names."""
    if spec.topic_index is not None:
        return _topic_address(log, spec.topic_index)
    return _word_address(log["data"], spec.data_word)


TRANSFER = topic("Transfer(address,address,uint256)")
ZERO_ADDRESS = "0x" + "00" * 20


def _holdings(by_address: Mapping[str, str], borrows: Mapping[str, Sequence[EventSpec]],
              skipped: Callable[[str, str], bool]) -> Callable[[dict], list[tuple[str, str]]]:
    """An :class:`AccountEvents`' holdings: the cToken of a ``Transfer`` to its receiver (unless
    ``skipped(receiver, ctoken)``; a ``Transfer`` without one: the zero address) and of a borrow
    event (``borrows``: topic -> its specs) to each account it names. ``by_address``: lower-case
    address -> cToken."""

    def holdings(log: dict) -> list[tuple[str, str]]:
        ctoken = by_address.get(str(log["address"]).lower())
        if ctoken is None or not log["topics"]:
            return []
        first = _first_topic(log)
        if first == TRANSFER:
            receiver = _topic_address(log, 2) if len(log["topics"]) > 2 else ZERO_ADDRESS
            return [] if skipped(receiver, ctoken) else [(receiver, ctoken)]
        return [(_named(log, spec), ctoken) for spec in borrows.get(first, ())]

    return holdings


def cap_amount(raw: int | None, uncapped_raw: int | None, decimals: int) -> float:
    """A Comptroller cap as the snapshot's ``supply_cap`` / ``borrow_cap`` column (token units, 0 =
    none): none when not answered or at the profile's "no cap" value; a cap of 0 that bounds (no new
    supply or borrowing: Venus) as one raw unit, the smallest cap there is, so that it binds."""
    if raw is None or (uncapped_raw is not None and int(raw) == uncapped_raw):
        return 0.0
    return raw_to_amount(max(int(raw), 1), decimals)


class CompoundV2Reader(Reader):
    """Reader of one Comptroller (``deployment["comptroller"]``, ``deployment["profile"]``)."""

    protocol = PROTOCOL
    book_keys = ("comptroller",)

    def __init__(self, ctx, deployment: dict[str, Any]):
        super().__init__(ctx, deployment)
        if "comptroller" not in deployment:
            raise ContagionError("compound-v2 deployment: expected a comptroller address")
        self.comptroller = to_checksum_address(deployment["comptroller"])
        self.profile = profile(deployment.get("profile"))
        self._markets: list[dict[str, Any]] | None = None
        self.excluded: list[dict[str, str]] = []   # markets read but left out, with the reason

    def _read(self, calls: Sequence[Call]) -> list[Any]:
        return [r.value if r.success else None for r in self.ctx.multicall(list(calls))]

    # ---- markets ----
    PER_MARKET = ["underlying()(address)", "exchangeRateStored()(uint256)", "protocolSeizeShareMantissa()(uint256)",
                  "symbol()(string)", "decimals()(uint8)", "totalSupply()(uint256)", "totalBorrows()(uint256)",
                  "totalReserves()(uint256)", "getCash()(uint256)", "borrowRatePerBlock()(uint256)",
                  "supplyRatePerBlock()(uint256)", "reserveFactorMantissa()(uint256)",
                  "accrualBlockNumber()(uint256)", "borrowIndex()(uint256)"]

    def markets(self) -> list[dict[str, Any]]:
        """One dict per listed cToken with its exact mantissas (cached per reader)."""
        if self._markets is not None:
            return self._markets
        c = self.comptroller
        head = [Call(c, "getAllMarkets()(address[])"), Call(c, "oracle()(address)"),
                Call(c, "closeFactorMantissa()(uint256)"), Call(c, "liquidationIncentiveMantissa()(uint256)")]
        if self.profile.min_liquidatable_collateral_signature:
            head.append(Call(c, self.profile.min_liquidatable_collateral_signature))
        values = self._read(head)
        if values[0] is None or values[1] is None:
            raise ContagionError(f"compound-v2: {c} does not answer getAllMarkets()/oracle(): not a Comptroller?")
        ctokens, oracle = values[:2]
        comptroller = {"close_factor": values[2], "incentive": values[3],
                       "min_liquidatable_collateral_mantissa": None if len(values) < 5 or values[4] is None
                       else int(values[4])}
        calls = self._market_calls(ctokens, oracle)
        width = len(calls) // len(ctokens) if ctokens else 0
        answers = self._read(calls)
        rows, self.excluded = [], []
        for k, ctoken in enumerate(ctokens):
            row = self._market_row(ctoken, answers[k * width:(k + 1) * width], comptroller)
            if row is not None:
                rows.append(row)
        self._underlying_meta(rows)
        self._markets = rows
        return rows

    def _market_calls(self, ctokens: Sequence[str], oracle: str) -> list[Call]:
        """Per cToken, the same calls in the same order: its own views, then the Comptroller's and
        the oracle's about it (the profile's forced-liquidation and supply-cap views where it has them)."""
        c, profile = self.comptroller, self.profile
        calls = []
        for ctoken in ctokens:
            calls += [Call(ctoken, sig) for sig in self.PER_MARKET]
            calls += [Call(c, profile.markets_signature, (ctoken,)),
                      Call(oracle, "getUnderlyingPrice(address)(uint256)", (ctoken,)),
                      Call(c, "borrowGuardianPaused(address)(bool)", (ctoken,)),
                      Call(c, "borrowCaps(address)(uint256)", (ctoken,))]
            if profile.forced_liquidation_signature:
                calls.append(Call(c, profile.forced_liquidation_signature, (ctoken,)))
            if profile.supply_cap_signature:
                calls.append(Call(c, profile.supply_cap_signature, (ctoken,)))
        return calls

    def _market_row(self, ctoken: str, a: list[Any], comptroller: dict[str, Any]) -> dict[str, Any] | None:
        """One listed, priced cToken's row from its answers to :meth:`_market_calls`; None for a
        market not listed, or left out (and named in ``self.excluded``) for want of a price."""
        listing, price, paused, borrow_cap, *rest = a[len(self.PER_MARKET):]
        forced = rest[:1] if self.profile.forced_liquidation_signature else []
        supply_cap = rest[-1] if self.profile.supply_cap_signature else None
        if not listing or not listing[0]:
            return None
        if not price:
            # mainnet's PriceOracle reverts ConfigNotFound for the markets it dropped (legacy
            # WBTC, FEI, REP, SAI); a price of 0 is Compound's "unavailable". Never priced at 0:
            # the market is left out and named (the scan warns and records it in the meta)
            self.excluded.append({
                "protocol": PROTOCOL, "market": self.comptroller, "asset": checksum(ctoken),
                "reason": f"oracle getUnderlyingPrice({checksum(ctoken)}) "
                          + ("reverted" if price is None else "returned 0")})
            return None
        cf = int(listing[self.profile.collateral_factor_index])
        lt_index = self.profile.liquidation_threshold_index
        li_index = self.profile.liquidation_incentive_index
        market_incentive = comptroller["incentive"] if li_index is None else listing[li_index]
        if market_incentive is None:
            raise ContagionError(f"compound-v2: {self.comptroller} has no liquidation incentive for {ctoken} "
                                 f"(profile {self.profile.name})")
        return {
            # the profile's forced-liquidation view (Compound: isDeprecated): anyone may repay
            # up to all of a borrow in this market, healthy or not
            "deprecated": bool(forced and forced[0]),
            "borrow_paused": bool(paused), "reserve_factor_mantissa": int(a[11] or 0),
            # Comptroller.borrowCaps / supplyCaps (underlying's smallest units; None: not
            # answered, a comptroller without them; what "none" is: the profile's, cap_amount)
            "borrow_cap_raw": None if borrow_cap is None else int(borrow_cap),
            "supply_cap_raw": None if supply_cap is None else int(supply_cap),
            "ctoken": checksum(ctoken), "underlying": checksum(a[0] or NATIVE_ASSET),
            "exchange_rate_mantissa": int(a[1]), "protocol_seize_share_mantissa": int(a[2] or 0),
            "symbol": a[3] or "", "ctoken_decimals": int(a[4] if a[4] is not None else 8),
            "total_supply": int(a[5] or 0), "total_borrows": int(a[6] or 0), "total_reserves": int(a[7] or 0),
            "cash": int(a[8] or 0), "collateral_factor_mantissa": cf,
            "borrow_rate_per_block_mantissa": int(a[9] or 0), "supply_rate_per_block_mantissa": int(a[10] or 0),
            # blocks since the market last ran accrueInterest: interest its stored balances do
            # not show yet, which its next interaction adds (0 when not answered)
            "pending_blocks": max(int(self.ctx.block) - int(a[12]), 0) if a[12] is not None else 0,
            "liquidation_threshold_mantissa": cf if lt_index is None else int(listing[lt_index]),
            "price_mantissa": int(price),
            "close_factor_mantissa": int(comptroller["close_factor"]),
            "liquidation_incentive_mantissa": int(market_incentive),
            "min_liquidatable_collateral_mantissa": comptroller["min_liquidatable_collateral_mantissa"],
            # what the market's stored borrow balances are scaled by (incremental rescans: lens.py)
            "borrow_index": None if a[13] is None else int(a[13]),
        }

    def _underlying_meta(self, rows: list[dict[str, Any]]) -> None:
        tokens = [r["underlying"] for r in rows if r["underlying"] != NATIVE_ASSET]
        answers = self._read([Call(t, s) for t in tokens for s in ("symbol()(string)", "decimals()(uint8)")])
        meta = {t: (answers[2 * i], answers[2 * i + 1]) for i, t in enumerate(tokens)}
        for r in rows:
            symbol, decimals = meta.get(r["underlying"], ("ETH", 18))
            if decimals is None:
                raise ContagionError(f"compound-v2: underlying {r['underlying']} of {r['ctoken']} has no decimals()")
            r["underlying_symbol"] = symbol or ""
            r["underlying_decimals"] = int(decimals)
            # oracle price is USD mantissa per smallest unit × 1e18: 1e(36 - decimals) per whole token
            r["price_usd"] = r["price_mantissa"] / 10 ** (36 - r["underlying_decimals"])

    def read_markets(self) -> Rows:
        """One markets row per cToken, keyed by its ``reserve`` (the cToken): two markets of one
        underlying (mainnet's legacy cWBTC beside cWBTC2) are two rows, each read in full."""
        assets, markets = [], []
        listed: set[str] = set()
        for r in self.markets():
            dec = r["underlying_decimals"]
            if r["underlying"] not in listed:
                listed.add(r["underlying"])
                assets.append({"address": r["underlying"], "symbol": r["underlying_symbol"], "decimals": dec,
                               "price_usd": r["price_usd"], "receipt_of": ""})
            # one whole cToken = 1e8 cToken units × exchangeRate / 1e18 underlying units
            ctoken_price = r["price_usd"] * r["exchange_rate_mantissa"] * 10 ** r["ctoken_decimals"] / MANTISSA / 10**dec
            assets.append({"address": r["ctoken"], "symbol": r["symbol"], "decimals": r["ctoken_decimals"],
                           "price_usd": ctoken_price, "receipt_of": f"{PROTOCOL}:{self.comptroller}:{r['underlying']}"})
            params = {k: (str(v) if isinstance(v, int) else v) for k, v in r.items()
                      if k.endswith("_mantissa") or k in ("ctoken", "ctoken_decimals", "total_supply",
                                                          "total_borrows", "total_reserves", "cash",
                                                          "pending_blocks", "borrow_cap_raw",
                                                          "supply_cap_raw")}
            params["profile"] = self.profile.name
            params["deprecated"] = r["deprecated"]
            markets.append({
                "protocol": PROTOCOL, "market": self.comptroller, "asset": r["underlying"], "reserve": r["ctoken"],
                "oracle_price_usd": r["price_usd"], "ltv": r["collateral_factor_mantissa"] / MANTISSA,
                "liquidation_threshold": r["liquidation_threshold_mantissa"] / MANTISSA,
                "liquidation_bonus": r["liquidation_incentive_mantissa"] / MANTISSA - 1.0,
                "close_factor": r["close_factor_mantissa"] / MANTISSA,
                "protocol_fee": r["protocol_seize_share_mantissa"] / MANTISSA,
                "borrowable": not r["borrow_paused"], "collateral_enabled": r["collateral_factor_mantissa"] > 0,
                "borrow_cap": cap_amount(r["borrow_cap_raw"], self.profile.borrow_uncapped_raw, dec),
                "supply_cap": cap_amount(r["supply_cap_raw"], self.profile.supply_uncapped_raw, dec),
                "params": json.dumps(params, sort_keys=True),
            })
        return {"assets": assets, "markets": markets, "excluded": list(self.excluded)}

    # ---- accounts ----
    def account_events(self) -> AccountEvents:
        """Accounts named by the profile's ``Borrow`` on every cToken and the receiver of every
        cToken ``Transfer`` (a mint, a transfer, a seize: every way a cToken balance becomes
        non-zero); holdings: the cToken of every ``Borrow`` and of every ``Transfer`` to its
        receiver. Not asked: the profile's ``Mint`` / ``MintBehalf`` (a mint emits
        ``Transfer(cToken, receiver)`` beside them, ``CToken.mintFresh`` in every fork, so the
        minter is found there) and ``MarketEntered`` (an account with neither a cToken balance nor a
        borrow has no row, through the lens or Multicall3): leaving them out halves the logs read."""
        ctokens = tuple(r["ctoken"] for r in self.markets())
        by_address = {c.lower(): c for c in ctokens}
        specs = {(topic(spec.signature), spec.on): spec for spec in self.profile.account_events
                 if not spec.signature.startswith(("Mint(", "MintBehalf(", "MarketEntered("))}
        borrow = [key for key, spec in specs.items() if spec.signature.startswith("Borrow(")]

        def received(log: dict, ctoken: str) -> list[str]:
            if len(log["topics"]) < 3:
                return []
            receiver = _topic_address(log, 2)
            return [] if receiver in (ctoken, ZERO_ADDRESS) else [receiver]

        def accounts(log: dict) -> list[str]:
            if checksum(log["address"]) == self.comptroller:
                spec = specs.get((_first_topic(log), "comptroller"))
                return [] if spec is None else [_named(log, spec)]
            first, ctoken = _first_topic(log), by_address.get(str(log["address"]).lower())
            if first == TRANSFER and ctoken is not None:
                return received(log, ctoken)
            spec = specs.get((first, "ctoken"))
            return [] if spec is None else [_named(log, spec)]

        holdings = _holdings(by_address, {t: [specs[(t, on)]] for t, on in borrow if on == "ctoken"},
                             lambda receiver, ctoken: receiver in (ctoken, ZERO_ADDRESS))

        def declared(spec: EventSpec, **options) -> EventField:
            emitters = (self.comptroller,) if spec.on == "comptroller" else ctokens
            return EventField(topic(spec.signature), emitters, topic=spec.topic_index, word=spec.data_word, **options)

        received_field = EventField(TRANSFER, ctokens, topic=2, skip_zero=True, skip_emitter=True)
        return AccountEvents((*ctokens, self.comptroller), tuple(sorted({t for t, _ in specs} | {TRANSFER})),
                             accounts, holdings,
                             account_fields=(*(declared(spec) for spec in specs.values()), received_field),
                             holding_fields=(received_field, *(declared(specs[key]) for key in borrow)))

    def change_events(self) -> AccountEvents | None:
        """Incremental rescans: the profile's change events (every way a cToken balance, a borrow
        principal or a market membership changes) and both sides of every cToken ``Transfer``;
        None for a fork whose events are not declared. Holdings, as :meth:`account_events`': the
        cToken of a ``Transfer`` to its receiver and of a ``Borrow`` to its borrower (the accounts
        a rescan reads are read in those and the markets they held before: :meth:`kept_holdings`)."""
        if not self.profile.change_events:
            return None
        ctokens = tuple(r["ctoken"] for r in self.markets())
        by_address = {c.lower(): c for c in ctokens}
        skip = {c.lower() for c in ctokens} | {ZERO_ADDRESS}
        specs: dict[tuple[str, str], list[EventSpec]] = {}
        for spec in self.profile.change_events:
            specs.setdefault((topic(spec.signature), spec.on), []).append(spec)
        borrow = {key: [s for s in listed if s.signature.startswith("Borrow(")] for key, listed in specs.items()
                  if key[1] == "ctoken"}

        def accounts(log: dict) -> list[str]:
            if not log["topics"]:
                return []
            on = "comptroller" if checksum(log["address"]) == self.comptroller else "ctoken"
            first = _first_topic(log)
            if first == TRANSFER and on == "ctoken":
                named = [_topic_address(log, i) for i in (1, 2) if i < len(log["topics"])]
            else:
                named = [_named(log, spec) for spec in specs.get((first, on), ())]
            return [a for a in named if a.lower() not in skip]

        holdings = _holdings(by_address, {t: listed for (t, _), listed in borrow.items()},
                             lambda receiver, _: receiver.lower() in skip)

        return AccountEvents((*ctokens, self.comptroller), tuple(sorted({t for t, _ in specs} | {TRANSFER})),
                             accounts, holdings)

    def kept_holdings(self, kept: KeptState) -> dict[str, list[str]] | None:
        return lens.kept_holdings(self, kept)

    def refresh_accounts(self, previous: KeptState) -> Refreshed:
        return refresh.refresh_accounts(self, previous)

    def carry_accounts(self, kept: KeptState, rows: KeptRows) -> Carried:
        return carry.carry_accounts(self, kept, rows)

    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        through_lens = lens.read_accounts(self, accounts)   # one eth_call per hundreds of accounts
        if through_lens is not None:
            return through_lens
        markets = self.markets()
        accounts = [to_checksum_address(a) for a in accounts]
        calls = [Call(self.comptroller, "getAssetsIn(address)(address[])", (a,)) for a in accounts]
        calls += [Call(m["ctoken"], "getAccountSnapshot(address)(uint256,uint256,uint256,uint256)", (a,))
                  for a in accounts for m in markets]
        answers = self._read(calls)
        n, width = len(accounts), len(markets)
        by_ctoken = {m["ctoken"]: m for m in markets}
        positions, account_rows = [], []
        for i, account in enumerate(accounts):
            entered = [to_checksum_address(x) for x in (answers[i] or [])]
            opened = False
            for j, m in enumerate(markets):
                snap = answers[n + i * width + j]
                if snap is None or snap[0] != 0:
                    raise ContagionError(f"compound-v2: getAccountSnapshot({account}) failed on {m['ctoken']}")
                _, ctoken_balance, borrow_balance, exchange_rate = (int(x) for x in snap)
                scale = 10 ** m["underlying_decimals"]
                base = {"protocol": PROTOCOL, "market": self.comptroller, "account": account, "asset": m["underlying"],
                        "reserve": m["ctoken"]}
                if ctoken_balance:
                    positions.append({**base, "side": "collateral", "raw": str(ctoken_balance),
                                      "amount": ctoken_balance * exchange_rate / MANTISSA / scale})
                if borrow_balance:
                    positions.append({**base, "side": "debt", "raw": str(borrow_balance),
                                      "amount": borrow_balance / scale})
                opened = opened or bool(ctoken_balance or borrow_balance)
            if opened:   # entered markets by cToken (two may share an underlying)
                params = {"entered": [c for c in entered if c in by_ctoken]}
                account_rows.append({"protocol": PROTOCOL, "market": self.comptroller, "account": account,
                                     "category": 0, "params": json.dumps(params)})
        return {"positions": positions, "accounts": account_rows}


def read_snapshot(w3, deployment: dict[str, Any], block: int | None = None, accounts: Sequence[str] | None = None):
    """This protocol alone as a :class:`~analyzer.model.Snapshot` at ``block`` (latest when None).

    Accounts come from the events since ``deployment["start_block"]`` unless given. Used by the
    tests and by tools that check one protocol; the scan combines every protocol's rows.
    """
    from analyzer.model import Snapshot
    from analyzer.multicall import multicall
    from protocols.base import ReadContext

    block = w3.eth.block_number if block is None else int(block)

    def get_logs(address: str, topics: list, from_block: int, to_block: int) -> list[dict]:
        where = [to_checksum_address(a) for a in address] if isinstance(address, list) else to_checksum_address(address)
        return list(w3.eth.get_logs({"address": where, "topics": topics,
                                     "fromBlock": from_block, "toBlock": to_block}))

    ctx = ReadContext(w3, w3.eth.chain_id, block, lambda calls: multicall(w3, calls, block=block), get_logs)
    reader = CompoundV2Reader(ctx, deployment)
    rows = reader.read_markets()
    if accounts is None:
        accounts = reader.discover_accounts(int(deployment.get("start_block", 0)), block)
    rows.update(reader.read_accounts(accounts))
    meta = {"chain_id": ctx.chain_id, "block": block, "protocols": {PROTOCOL: {reader.comptroller: deployment}}}
    excluded = rows.pop("excluded", [])
    if excluded:
        meta["excluded_markets"] = excluded
    return Snapshot(meta=meta, **rows)
