"""Read an Aave V3 market at one block: reserves, risk parameters, oracle prices, positions.

Every read goes through the context's Multicall3 at its block. Risk parameters are decoded from
the reserve configuration bitmap (``ReserveConfiguration.sol``) and checked against
``AaveProtocolDataProvider``; a disagreement is an error, not a warning: it means the bitmap
layout of the deployed version is not the one this reader knows.

Versions 3.0 to 3.7: the version comes from ``Pool.POOL_REVISION`` at the scanned block
(:mod:`.versions`), never from the address book. From 3.2 stable debt is gone (the legacy field
of ``getReserveData`` is a mock token address, not read) and e-modes are per-category bitmaps
(:mod:`.emodes`). Checked against the devnet's v3.6 and v3.0 pools (tests/test_aave_v3_versions.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from eth_utils import event_abi_to_log_topic, to_checksum_address

from analyzer.discovery import checksum
from analyzer.errors import ContagionError
from analyzer.kept import Carried, KeptRows, KeptState, Refreshed
from analyzer.model import raw_to_amount
from analyzer.multicall import MULTICALL3_ADDRESS, Call
from protocols.aave_v3 import abi, carry, lens
from protocols.aave_v3.emodes import in_bitmap, read_emode_categories
from protocols.aave_v3.versions import (
    at_least,
    has_deficit,
    has_emode_bitmaps,
    has_grace_period,
    has_stable_debt,
    version_of_revision,
)
from protocols.base import AccountEvents, EventField, Reader, Rows

PROTOCOL = "aave-v3"
ZERO = "0x0000000000000000000000000000000000000000"
CLOSE_FACTOR = 0.5  # LiquidationLogic.DEFAULT_LIQUIDATION_CLOSE_FACTOR (100% at HF <= 0.95)

# (name, first bit, width) of ReserveConfiguration.sol, v3.0.x (@aave/core-v3 1.19.3)
CONFIG_FIELDS = (
    ("ltv", 0, 16), ("liquidation_threshold", 16, 16), ("liquidation_bonus", 32, 16), ("decimals", 48, 8),
    ("active", 56, 1), ("frozen", 57, 1), ("borrowing_enabled", 58, 1), ("stable_borrowing_enabled", 59, 1),
    ("paused", 60, 1), ("borrowable_in_isolation", 61, 1), ("siloed_borrowing", 62, 1),
    ("flash_loan_enabled", 63, 1), ("reserve_factor", 64, 16), ("borrow_cap", 80, 36),
    ("supply_cap", 116, 36), ("liquidation_protocol_fee", 152, 16), ("emode_category", 168, 8),
    ("unbacked_mint_cap", 176, 36), ("debt_ceiling", 212, 40),
)


def decode_configuration(data: int) -> dict[str, int]:
    """The reserve configuration bitmap as named integers (bps, whole tokens, 2-decimal USD)."""
    return {name: (data >> start) & ((1 << width) - 1) for name, start, width in CONFIG_FIELDS}


def user_flags(data: int, reserve_id: int) -> tuple[bool, bool]:
    """(borrowing, using as collateral) of ``UserConfiguration``: bits 2·id and 2·id + 1."""
    return bool(data >> (2 * reserve_id) & 1), bool(data >> (2 * reserve_id + 1) & 1)


def _hex(value) -> str:
    """A topic as 0x-prefixed lower-case hex, whether the log came as bytes or as text."""
    return "0x" + (bytes(value).hex() if isinstance(value, bytes | bytearray) else str(value).removeprefix("0x").lower())


class AaveV3Reader(Reader):
    protocol = PROTOCOL
    book_keys = ("pool", "pool_addresses_provider")

    def __init__(self, ctx, deployment: dict[str, Any]):
        super().__init__(ctx, deployment)
        self.pool = to_checksum_address(deployment["pool"])
        self._reserves: list[dict] | None = None

    # ---- markets ----------------------------------------------------------------------------
    def reserves(self) -> list[dict]:
        """Every reserve of the pool with its token addresses, bitmap, indices and oracle price;
        sets ``self.version`` (from ``POOL_REVISION``) and ``self.emode_categories``."""
        if self._reserves is not None:
            return self._reserves
        pool, mc = self.pool, self.ctx.multicall
        provider = to_checksum_address(self.deployment["pool_addresses_provider"])
        oracle_addr, provider_dp, assets, revision, now = [r.unwrap("PoolAddressesProvider / Pool") for r in mc([
            Call(provider, "getPriceOracle()(address)"), Call(provider, "getPoolDataProvider()(address)"),
            Call(pool, "getReservesList()(address[])"), Call(pool, "POOL_REVISION()(uint256)"),
            Call(MULTICALL3_ADDRESS, "getCurrentBlockTimestamp()(uint256)")])]
        self.version = version_of_revision(revision, pool)
        self.pool_revision, self.block_timestamp = revision, now
        data_provider = checksum(provider_dp)  # the provider's, at this block
        assets = [checksum(a) for a in assets]
        per_reserve = [
            lambda a: Call(pool, abi.GET_RESERVE_DATA, (a,)),
            lambda a: Call(oracle_addr, "getAssetPrice(address)(uint256)", (a,)),
            lambda a: Call(a, "symbol()(string)"),
            lambda a: Call(data_provider, abi.RESERVE_CONFIGURATION_DATA, (a,)),
            lambda a: Call(data_provider, "getReserveCaps(address)(uint256,uint256)", (a,)),
            lambda a: Call(data_provider, "getLiquidationProtocolFee(address)(uint256)", (a,)),
            lambda a: Call(data_provider, "getDebtCeiling(address)(uint256)", (a,)),
            lambda a: Call(pool, "getLiquidationGracePeriod(address)(uint40)", (a,)),
            lambda a: Call(pool, "getReserveDeficit(address)(uint256)", (a,)),
        ]
        calls = [Call(oracle_addr, "BASE_CURRENCY_UNIT()(uint256)")]
        calls += [make(asset) for asset in assets for make in per_reserve]
        results = mc(calls)
        base_unit = results[0].unwrap("AaveOracle.BASE_CURRENCY_UNIT")
        reserves, k_calls = [], len(per_reserve)
        for k, asset in enumerate(assets):
            chunk = results[1 + k_calls * k: 1 + k_calls * (k + 1)]
            data = chunk[0].unwrap(f"Pool.getReserveData({asset})")
            symbol = chunk[2].value if chunk[2].success else asset[:10]
            config = decode_configuration(data[0][0])
            self._check_against_data_provider(asset, config, [c.value if c.success else None for c in chunk[3:7]],
                                              self.version)
            grace = chunk[7].unwrap(f"Pool.getLiquidationGracePeriod({asset})") if has_grace_period(self.version) else 0
            deficit = chunk[8].unwrap(f"Pool.getReserveDeficit({asset})") if has_deficit(self.version) else 0
            reserves.append({
                "asset": asset, "symbol": symbol, "id": data[7], "configuration": data[0][0], "config": config,
                "liquidity_index": data[1], "variable_borrow_index": data[3], "aToken": checksum(data[8]),
                "liquidity_rate": data[2], "variable_borrow_rate": data[4],     # ray a year
                "stableDebtToken": checksum(data[9]) if has_stable_debt(self.version) else ZERO,
                "variableDebtToken": checksum(data[10]),
                "price_raw": chunk[1].unwrap(f"AaveOracle.getAssetPrice({asset})"), "base_unit": base_unit,
                "grace_period_until": grace, "deficit_raw": deficit,
            })
        self._reserves = sorted(reserves, key=lambda r: r["id"])
        self.emode_categories = read_emode_categories(mc, pool, self.version, self._reserves)
        return self._reserves

    @staticmethod
    def _check_against_data_provider(asset: str, config: dict[str, int], answers: list, version: str) -> None:
        """Every field the data provider answers must equal the decoded bitmap (a getter that
        reverts is skipped, not failed). Not compared: the e-mode bits (deprecated in 3.2, not read)
        and, from 3.7, the debt ceiling (``getDebtCeiling`` returns 0 while bits 212-251 keep
        their old value)."""
        conf, caps, fee, ceiling = answers
        if at_least(version, "3.7"):
            ceiling = None
        if conf is None:
            raise ContagionError(f"aave-v3 reserve {asset}: AaveProtocolDataProvider.getReserveConfigurationData reverted")
        expected = {
            "decimals": conf[0], "ltv": conf[1], "liquidation_threshold": conf[2], "liquidation_bonus": conf[3],
            "reserve_factor": conf[4], "borrowing_enabled": int(conf[6]), "stable_borrowing_enabled": int(conf[7]),
            "active": int(conf[8]), "frozen": int(conf[9]),
        }
        if caps is not None:
            expected.update(borrow_cap=caps[0], supply_cap=caps[1])
        optional = {"liquidation_protocol_fee": fee, "debt_ceiling": ceiling}
        expected.update({k: v for k, v in optional.items() if v is not None})
        for name, value in expected.items():
            if config[name] != value:
                raise ContagionError(f"aave-v3 reserve {asset}: configuration bitmap gives {name}={config[name]}, "
                                     f"AaveProtocolDataProvider says {value} (unknown bitmap layout?)")

    def read_markets(self) -> Rows:
        """``assets`` (each reserve and its aToken) and ``markets`` rows. ``category`` is the
        reserve's e-mode category on 3.0/3.1 and 0 from 3.2 (membership is per category then:
        the bitmaps in ``params.emode_categories``). ``collateral_enabled``: the reserve threshold
        is above 0, or (3.6) some category takes the reserve as collateral."""
        assets, markets = [], []
        reserves = self.reserves()
        in_emode = {r["id"]: any(in_bitmap(e["collateral_bitmap"], r["id"]) for e in self.emode_categories.values())
                    for r in reserves}
        emode_only_collateral = at_least(self.version, "3.6")
        for r in reserves:
            c = r["config"]
            price = r["price_raw"] / r["base_unit"]
            assets.append({"address": r["asset"], "symbol": r["symbol"], "decimals": c["decimals"],
                           "price_usd": price, "receipt_of": ""})
            assets.append({"address": r["aToken"], "symbol": f"a{r['symbol']}", "decimals": c["decimals"],
                           "price_usd": price, "receipt_of": f"{PROTOCOL}:{self.pool}:{r['asset']}"})
            params = {"reserve_id": r["id"], "configuration": str(r["configuration"]), "decimals": c["decimals"],
                      "price_raw": str(r["price_raw"]), "base_currency_unit": str(r["base_unit"]),
                      "aToken": r["aToken"], "variableDebtToken": r["variableDebtToken"],
                      "stableDebtToken": r["stableDebtToken"], "liquidity_index": str(r["liquidity_index"]),
                      "variable_borrow_index": str(r["variable_borrow_index"]),
                      "liquidity_rate_ray": str(r["liquidity_rate"]),
                      "variable_borrow_rate_ray": str(r["variable_borrow_rate"]),
                      "liquidation_protocol_fee_bps": c["liquidation_protocol_fee"],
                      "reserve_factor_bps": c["reserve_factor"], "debt_ceiling_usd": c["debt_ceiling"] / 100,
                      "borrowable_in_isolation": bool(c["borrowable_in_isolation"]), "active": bool(c["active"]),
                      "frozen": bool(c["frozen"]), "paused": bool(c["paused"]),
                      "version": self.version, "pool_revision": self.pool_revision,
                      "block_timestamp": self.block_timestamp, "grace_period_until": r["grace_period_until"],
                      "in_grace_period": r["grace_period_until"] >= self.block_timestamp,
                      "deficit_raw": str(r["deficit_raw"]),
                      "emode_categories": {str(k): v for k, v in self.emode_categories.items()}}
            category = 0 if has_emode_bitmaps(self.version) else c["emode_category"]
            markets.append({
                "protocol": PROTOCOL, "market": self.pool, "asset": r["asset"], "oracle_price_usd": price,
                "ltv": c["ltv"] / 1e4, "liquidation_threshold": c["liquidation_threshold"] / 1e4,
                "liquidation_bonus": max(c["liquidation_bonus"] - 10_000, 0) / 1e4, "close_factor": CLOSE_FACTOR,
                "protocol_fee": c["liquidation_protocol_fee"] / 1e4, "supply_cap": float(c["supply_cap"]),
                "borrow_cap": float(c["borrow_cap"]), "category": category,
                "isolated": c["debt_ceiling"] > 0, "borrowable": bool(c["borrowing_enabled"]),
                "collateral_enabled": c["liquidation_threshold"] > 0 or (emode_only_collateral and in_emode[r["id"]]),
                "params": json.dumps(params, sort_keys=True),
            })
        return {"assets": assets, "markets": markets}

    # ---- accounts ---------------------------------------------------------------------------
    def account_events(self) -> AccountEvents:
        """``onBehalfOf`` (topic 2) of every ``Borrow`` event of the pool and the receiver (topic 2)
        of every aToken ``Transfer`` (a mint, a transfer, a liquidation's receiveAToken: every way
        an aToken balance becomes non-zero); holdings: that receiver's aToken. A ``Supply`` is not
        asked: its aToken mints to ``onBehalfOf`` with a ``Transfer`` from the zero address
        (``ScaledBalanceTokenBase._mintScaled``, every 3.x version), so its account is found there,
        and leaving it out cuts the logs read by two fifths. ``Borrow`` names no account a
        ``Transfer`` has not named before (``named_before``): a borrow needs collateral
        (``ValidationLogic.validateBorrow``: ``COLLATERAL_BALANCE_IS_ZERO``), an aToken balance of
        ``onBehalfOf``, which only a ``Transfer`` to it gives; discovery from the deployment leaves
        it out (a seventh of mainnet-scale's log bytes), a later ``--from-block`` asks it."""
        borrow = "0x" + event_abi_to_log_topic(abi.BORROW_EVENT).hex()
        transfer = "0x" + event_abi_to_log_topic(abi.TRANSFER_EVENT).hex()
        a_tokens = {r["aToken"].lower(): r["aToken"] for r in self.reserves()}

        def holdings(log: dict) -> list[tuple[str, str]]:
            token = a_tokens.get(str(log["address"]).lower())
            if token is None or len(log["topics"]) < 3 or _hex(log["topics"][0]) != transfer:
                return []
            receiver = "0x" + _hex(log["topics"][2])[-40:]
            return [] if int(receiver, 16) == 0 else [(checksum(receiver), token)]

        def accounts(log: dict) -> list[str]:
            if len(log["topics"]) >= 3 and _hex(log["topics"][0]) == borrow:
                return [checksum("0x" + _hex(log["topics"][2])[-40:])]
            return [account for account, _ in holdings(log)]

        received = EventField(transfer, tuple(a_tokens.values()), topic=2, skip_zero=True)
        return AccountEvents((self.pool, *a_tokens.values()), (borrow, transfer), accounts, holdings,
                             account_fields=(EventField(borrow, (self.pool,), topic=2), received),
                             holding_fields=(received,), named_before=(borrow,))

    def change_events(self) -> AccountEvents:
        return lens.change_events(self)

    def refresh_accounts(self, previous: KeptState) -> Refreshed:
        return lens.refresh_accounts(self, previous)

    def carry_accounts(self, kept: KeptState, rows: KeptRows) -> Carried:
        return carry.carry_accounts(self, kept, rows)

    def kept_holdings(self, kept: KeptState) -> dict[str, list[str]] | None:
        return lens.kept_holdings(self, kept)

    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        """Per account: e-mode, user configuration, and aToken / debt-token ``balanceOf`` of every
        reserve the configuration flags (amounts in underlying units; raw = exact integers)."""
        through_lens = lens.read_accounts(self, accounts)   # one eth_call per hundreds of accounts
        if through_lens is not None:
            return through_lens
        reserves = self.reserves()
        accounts = [to_checksum_address(a) for a in accounts]
        mc = self.ctx.multicall
        heads = mc([c for a in accounts for c in (Call(self.pool, "getUserConfiguration(address)(uint256)", (a,)),
                                                   Call(self.pool, "getUserEMode(address)(uint256)", (a,)))])
        configs = [heads[2 * i].unwrap(f"Pool.getUserConfiguration({a})") for i, a in enumerate(accounts)]
        emodes = [heads[2 * i + 1].unwrap(f"Pool.getUserEMode({a})") for i, a in enumerate(accounts)]
        # aTokens of every reserve (a supply may have its collateral flag off, or come by transfer);
        # debt tokens only where the borrowing bit is set, which Aave keeps exactly for debt > 0
        # stable debt is gone from 3.2 on (getReserveData's field is then a mock: not read)
        debt_tokens = {r["id"]: [t for t in (r["variableDebtToken"], r["stableDebtToken"]) if int(t, 16)]
                       for r in reserves}
        calls, slots = [], []
        for i, account in enumerate(accounts):
            for r in reserves:
                borrowing, _using = user_flags(configs[i], r["id"])
                calls.append(Call(r["aToken"], "balanceOf(address)(uint256)", (account,)))
                if borrowing:
                    calls += [Call(token, "balanceOf(address)(uint256)", (account,)) for token in debt_tokens[r["id"]]]
                slots.append((i, r, borrowing))
        balances = iter(mc(calls))
        positions, rows, held = [], [], set()
        collateral_off: dict[str, list] = {}
        for i, r, borrowing in slots:
            account = accounts[i]
            what = f"balanceOf({account}) on {r['symbol']}"
            supplied = next(balances).unwrap(what)
            debt = sum(next(balances).unwrap(what) for _ in debt_tokens[r["id"]]) if borrowing else 0
            decimals = r["config"]["decimals"]
            if supplied:
                positions.append(self._position(account, r["asset"], "collateral", supplied, decimals))
                if not user_flags(configs[i], r["id"])[1]:
                    collateral_off.setdefault(account, []).append(r["asset"])
                held.add(i)
            if debt:
                positions.append(self._position(account, r["asset"], "debt", debt, decimals))
                held.add(i)
        for i in sorted(held):
            account = accounts[i]
            params = {"user_configuration": str(configs[i]), "collateral_off": collateral_off.get(account, [])}
            rows.append({"protocol": PROTOCOL, "market": self.pool, "account": account, "category": emodes[i],
                         "params": json.dumps(params, sort_keys=True)})
        return {"positions": positions, "accounts": rows}

    def _position(self, account: str, asset: str, side: str, raw: int, decimals: int) -> dict:
        return {"protocol": PROTOCOL, "market": self.pool, "account": account, "asset": asset, "side": side,
                "amount": raw_to_amount(raw, decimals), "raw": str(raw)}


def read_snapshot(w3, deployment: dict[str, Any], block: int, accounts: Sequence[str] | None = None):
    """A one-protocol Snapshot at ``block`` with plain multicall and ``eth_getLogs`` (tests, benchmarks;
    ``contagion scan`` adds chunking, retries and caching around the same reader)."""
    from functools import partial

    from analyzer.model import Snapshot
    from analyzer.multicall import multicall
    from protocols.base import ReadContext

    def get_logs(address, topics, from_block, to_block):
        return [dict(log) for log in w3.eth.get_logs({"address": address, "topics": topics,
                                                      "fromBlock": from_block, "toBlock": to_block})]

    ctx = ReadContext(w3, w3.eth.chain_id, block, partial(multicall, w3, block=block), get_logs)
    reader = AaveV3Reader(ctx, deployment)
    rows = reader.read_markets()
    if accounts is None:
        accounts = reader.discover_accounts(int(deployment.get("start_block", 0)), block)
    rows.update(reader.read_accounts(accounts))
    meta = {"chain_id": ctx.chain_id, "block_number": block, "protocols": {PROTOCOL: {reader.pool: deployment}}}
    return Snapshot(meta=meta, **rows).validate()
