"""Read an Aave V3 market at one block: reserves, risk parameters, oracle prices, positions.

Every read goes through the context's Multicall3 at its block. Risk parameters are decoded from
the reserve configuration bitmap (``ReserveConfiguration.sol``) and checked against
``AaveProtocolDataProvider``; a disagreement is an error, not a warning: it means the bitmap
layout of the deployed version is not the one this reader knows.

Versions: built and checked on v3.0 (the devnet). On 3.2+ (Aave V3 Ethereum today) stable debt
tokens are gone (skipped) and e-mode moved from the per-reserve category bits to per-category
collateral/borrowable bitmaps, which this reader does not read yet: e-mode users there get the
reserves' own thresholds, so their health factors come out low. Not checked against a real fork.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from eth_utils import event_abi_to_log_topic, to_checksum_address

from analyzer.errors import ContagionError
from analyzer.model import raw_to_amount
from analyzer.multicall import Call
from protocols.aave_v3 import abi, lens
from protocols.base import AccountEvents, Reader, Rows

PROTOCOL = "aave-v3"
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

    def __init__(self, ctx, deployment: dict[str, Any]):
        super().__init__(ctx, deployment)
        self.pool = to_checksum_address(deployment["pool"])
        self._reserves: list[dict] | None = None

    # ---- markets ----------------------------------------------------------------------------
    def reserves(self) -> list[dict]:
        """Every reserve of the pool with its token addresses, bitmap, indices and oracle price."""
        if self._reserves is not None:
            return self._reserves
        pool, mc = self.pool, self.ctx.multicall
        provider = to_checksum_address(self.deployment["pool_addresses_provider"])
        oracle_addr, provider_dp, assets = [r.unwrap("PoolAddressesProvider / Pool") for r in mc([
            Call(provider, "getPriceOracle()(address)"), Call(provider, "getPoolDataProvider()(address)"),
            Call(pool, "getReservesList()(address[])")])]
        data_provider = to_checksum_address(provider_dp)  # the provider's, at this block
        assets = [to_checksum_address(a) for a in assets]
        calls = [Call(oracle_addr, "BASE_CURRENCY_UNIT()(uint256)")]
        for asset in assets:
            calls += [Call(pool, abi.GET_RESERVE_DATA, (asset,)), Call(oracle_addr, "getAssetPrice(address)(uint256)", (asset,)),
                      Call(asset, "symbol()(string)"),
                      Call(data_provider, abi.RESERVE_CONFIGURATION_DATA, (asset,)),
                      Call(data_provider, "getReserveCaps(address)(uint256,uint256)", (asset,)),
                      Call(data_provider, "getLiquidationProtocolFee(address)(uint256)", (asset,)),
                      Call(data_provider, "getReserveEModeCategory(address)(uint256)", (asset,)),
                      Call(data_provider, "getDebtCeiling(address)(uint256)", (asset,))]
        results = mc(calls)
        base_unit = results[0].unwrap("AaveOracle.BASE_CURRENCY_UNIT")
        reserves = []
        for k, asset in enumerate(assets):
            chunk = results[1 + 8 * k: 9 + 8 * k]
            data = chunk[0].unwrap(f"Pool.getReserveData({asset})")
            symbol = chunk[2].value if chunk[2].success else asset[:10]
            config = decode_configuration(data[0][0])
            self._check_against_data_provider(asset, config, [c.value if c.success else None for c in chunk[3:]])
            reserves.append({
                "asset": asset, "symbol": symbol, "id": data[7], "configuration": data[0][0], "config": config,
                "liquidity_index": data[1], "variable_borrow_index": data[3], "aToken": to_checksum_address(data[8]),
                "liquidity_rate": data[2], "variable_borrow_rate": data[4],     # ray a year
                "stableDebtToken": to_checksum_address(data[9]), "variableDebtToken": to_checksum_address(data[10]),
                "price_raw": chunk[1].unwrap(f"AaveOracle.getAssetPrice({asset})"), "base_unit": base_unit,
            })
        categories = sorted({r["config"]["emode_category"] for r in reserves} - {0})
        emode = mc([Call(pool, abi.GET_EMODE_CATEGORY_DATA, (c,)) for c in categories])
        self.emode_categories = {
            c: {"ltv": e[0], "liquidation_threshold": e[1], "liquidation_bonus": e[2],
                "price_source": to_checksum_address(e[3]), "label": e[4]}
            for c, e in zip(categories, (r.unwrap("Pool.getEModeCategoryData") for r in emode), strict=True)}
        self._reserves = sorted(reserves, key=lambda r: r["id"])
        return self._reserves

    @staticmethod
    def _check_against_data_provider(asset: str, config: dict[str, int], answers: list) -> None:
        """Every field the data provider answers must equal the decoded bitmap (a getter a later
        version dropped, e.g. ``getReserveEModeCategory`` in 3.2, is skipped, not failed)."""
        conf, caps, fee, category, ceiling = answers
        if conf is None:
            raise ContagionError(f"aave-v3 reserve {asset}: AaveProtocolDataProvider.getReserveConfigurationData reverted")
        expected = {
            "decimals": conf[0], "ltv": conf[1], "liquidation_threshold": conf[2], "liquidation_bonus": conf[3],
            "reserve_factor": conf[4], "borrowing_enabled": int(conf[6]), "stable_borrowing_enabled": int(conf[7]),
            "active": int(conf[8]), "frozen": int(conf[9]),
        }
        if caps is not None:
            expected.update(borrow_cap=caps[0], supply_cap=caps[1])
        optional = {"liquidation_protocol_fee": fee, "emode_category": category, "debt_ceiling": ceiling}
        expected.update({k: v for k, v in optional.items() if v is not None})
        for name, value in expected.items():
            if config[name] != value:
                raise ContagionError(f"aave-v3 reserve {asset}: configuration bitmap gives {name}={config[name]}, "
                                     f"AaveProtocolDataProvider says {value} (unknown bitmap layout?)")

    def read_markets(self) -> Rows:
        assets, markets = [], []
        for r in self.reserves():
            c = r["config"]
            price = r["price_raw"] / r["base_unit"]
            assets.append({"address": r["asset"], "symbol": r["symbol"], "decimals": c["decimals"],
                           "price_usd": price, "receipt_of": ""})
            assets.append({"address": r["aToken"], "symbol": f"a{r['symbol']}", "decimals": c["decimals"],
                           "price_usd": price, "receipt_of": f"{PROTOCOL}:{r['asset']}"})
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
                      "version": self.deployment.get("version", "3.0"),
                      "emode_categories": {str(k): v for k, v in self.emode_categories.items()}}
            markets.append({
                "protocol": PROTOCOL, "market": self.pool, "asset": r["asset"], "oracle_price_usd": price,
                "ltv": c["ltv"] / 1e4, "liquidation_threshold": c["liquidation_threshold"] / 1e4,
                "liquidation_bonus": max(c["liquidation_bonus"] - 10_000, 0) / 1e4, "close_factor": CLOSE_FACTOR,
                "protocol_fee": c["liquidation_protocol_fee"] / 1e4, "supply_cap": float(c["supply_cap"]),
                "borrow_cap": float(c["borrow_cap"]), "category": c["emode_category"],
                "isolated": c["debt_ceiling"] > 0, "borrowable": bool(c["borrowing_enabled"]),
                "collateral_enabled": c["liquidation_threshold"] > 0, "params": json.dumps(params, sort_keys=True),
            })
        return {"assets": assets, "markets": markets}

    # ---- accounts ---------------------------------------------------------------------------
    def account_events(self) -> AccountEvents:
        """``onBehalfOf`` (topic 2) of every ``Supply`` and ``Borrow`` event of the pool."""
        topics = tuple("0x" + event_abi_to_log_topic(e).hex() for e in (abi.SUPPLY_EVENT, abi.BORROW_EVENT))

        def accounts(log: dict) -> list[str]:
            if len(log["topics"]) < 3 or _hex(log["topics"][0]) not in topics:
                return []
            return [to_checksum_address("0x" + _hex(log["topics"][2])[-40:])]

        return AccountEvents((self.pool,), topics, accounts)

    def change_events(self) -> AccountEvents:
        return lens.change_events(self)

    def refresh_accounts(self, previous: dict[str, Any]) -> tuple[Rows, list[str]]:
        return lens.refresh_accounts(self, previous)

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
        # stable debt is gone from 3.2 on (its token address reads as zero there)
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
        positions, rows, held, collateral_off = [], [], set(), {}
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
    meta = {"chain_id": ctx.chain_id, "block_number": block, "protocols": {PROTOCOL: deployment}}
    return Snapshot(meta=meta, **rows).validate()
