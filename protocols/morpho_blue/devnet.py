"""Deploy Morpho Blue (compiled from its npm source) with our IRM, oracles and vaults, and seed it.

The scenario's ``[protocols.morpho-blue]`` table (see ``fixtures/scenarios/morpho.toml``) names the
markets ("COLLATERAL/LOAN" with an LLTV; a collateral ``vault:<name>`` is that vault's share), the
vaults (asset, caps in supply-queue order, depositors), direct suppliers, and how borrowers are
drawn: per market a utilisation, and per borrower a health ``h = collateral × price × LLTV /
borrowed`` (Morpho's ``_isHealthy``), denser near 1. Morpho has no LTV below the LLTV, so every
borrow opens at its own health directly. A scenario without the table deploys no Morpho.
"""

from __future__ import annotations

import random
from typing import Any

from analyzer.devnet.context import DevnetContext, npm_artifact
from analyzer.devnet.scenario import account_address
from analyzer.devnet.solc import fixture_artifact
from protocols.base import Devnet
from protocols.morpho_blue.contracts import ORACLE_PRICE_SCALE, PROTOCOL, WAD, market_id
from protocols.morpho_blue.scenario import MorphoConfig, parse_config

MAX_UINT = 2**256 - 1


def _raw(amount: float, decimals: int) -> int:
    return int(round(amount * 10**6)) * 10**decimals // 10**6


class MorphoBlueDevnet(Devnet):
    protocol = PROTOCOL

    def deploy(self, ctx: DevnetContext) -> dict[str, Any]:
        config = parse_config(ctx.scenario)
        start_block = ctx.w3.eth.block_number + 1
        morpho = ctx.deploy(fixture_artifact("morpho_blue", "Morpho"), ctx.deployer)
        irm = ctx.deploy(fixture_artifact("morpho", "AdaptiveCurveIrm"), morpho.address)
        ctx.transact(morpho.functions.enableIrm(irm.address), what="morpho enableIrm")
        for lltv in sorted({m.lltv_wad for m in config.markets.values()}):
            ctx.transact(morpho.functions.enableLltv(lltv), what=f"morpho enableLltv {lltv}")
        vaults = {}
        for name, vault in config.vaults.items():
            vaults[name] = ctx.deploy(fixture_artifact("morpho", "MetaMorphoVault"), ctx.deployer, morpho.address,
                                      ctx.book["tokens"][vault.asset], f"{name} (devnet MetaMorpho)", name).address
        oracle_artifact = fixture_artifact("morpho", "MorphoChainlinkOracle")
        markets = {}
        for name, market in config.markets.items():
            feeds, tokens, decimals = ctx.book["feeds"], ctx.book["tokens"], ctx.book["decimals"]
            if market.collateral_vault:
                vault = config.vaults[market.collateral_vault]
                collateral_token, base_symbol = vaults[market.collateral_vault], vault.asset
                sample = 10 ** (decimals[vault.asset] + max(0, 18 - decimals[vault.asset]))   # one whole share
                oracle = ctx.deploy(oracle_artifact, collateral_token, sample, feeds[base_symbol], feeds[market.loan],
                                    decimals[base_symbol], decimals[market.loan])
            else:
                collateral_token = tokens[market.collateral]
                oracle = ctx.deploy(oracle_artifact, "0x" + "00" * 20, 1, feeds[market.collateral],
                                    feeds[market.loan], decimals[market.collateral], decimals[market.loan])
            params = (tokens[market.loan], collateral_token, oracle.address, irm.address, market.lltv_wad)
            ctx.transact(morpho.functions.createMarket(params), what=f"morpho createMarket {name}")
            markets[name] = {"id": market_id(*params), "loan": params[0], "collateral": params[1],
                             "oracle": params[2], "irm": params[3], "lltv": str(market.lltv_wad)}
        usd_feeds = {ctx.book["tokens"][s]: ctx.book["feeds"][s] for s in ctx.book["tokens"]}
        return {"morpho": morpho.address, "irm": irm.address, "start_block": start_block, "owner": ctx.deployer,
                "markets": markets, "vaults": vaults, "usd_feeds": usd_feeds,
                "source": "devnet: Morpho.sol from @morpho-org/morpho-blue 1.0.0 (fixtures/artifacts/morpho_blue.json); "
                          "IRM, oracles and vaults from fixtures/contracts/morpho"}

    def seed(self, ctx: DevnetContext, deployment: dict[str, Any]) -> None:
        config = parse_config(ctx.scenario)
        seeder = _Seeder(ctx, deployment, config)
        seeder.curate_vaults()
        seeder.fund_markets()
        seeder.post_vault_collateral()
        seeder.draw_borrowers()
        seeder.open_vault_borrows()


class _Seeder:
    """The seeding steps, sharing the contracts and the deployer's one-time token approvals."""

    def __init__(self, ctx: DevnetContext, deployment: dict[str, Any], config: MorphoConfig):
        self.ctx, self.deployment, self.config = ctx, deployment, config
        self.morpho = ctx.contract(deployment["morpho"], fixture_artifact("morpho_blue", "Morpho")["abi"])
        self.vault_abi = fixture_artifact("morpho", "MetaMorphoVault")["abi"]
        self.oracle_abi = fixture_artifact("morpho", "MorphoChainlinkOracle")["abi"]
        self.token_abi = npm_artifact("@aave/core-v3", "MintableERC20")["abi"]
        self.approved: set[tuple[str, str]] = set()

    def params(self, name: str) -> tuple:
        m = self.deployment["markets"][name]
        return (m["loan"], m["collateral"], m["oracle"], m["irm"], int(m["lltv"]))

    def token(self, address: str):
        return self.ctx.contract(address, self.token_abi)

    def mint_approved(self, token: str, raw: int, spender: str) -> None:
        """Mint ``raw`` of a devnet token to the deployer, approved (once, for all) to ``spender``."""
        contract = self.token(token)
        self.ctx.transact(contract.get_function_by_signature("mint(address,uint256)")(self.ctx.deployer, raw),
                          what="mint")
        if (token, spender) not in self.approved:
            self.ctx.transact(contract.functions.approve(spender, MAX_UINT), what="approve")
            self.approved.add((token, spender))

    def curate_vaults(self) -> None:
        ctx, decimals = self.ctx, self.ctx.book["decimals"]
        for name, vault in self.config.vaults.items():
            contract = ctx.contract(self.deployment["vaults"][name], self.vault_abi)
            for market, cap in vault.caps.items():
                ctx.transact(contract.functions.submitCap(self.params(market), _raw(cap, decimals[vault.asset])),
                             what=f"{name} submitCap {market}")
            ids = [bytes.fromhex(self.deployment["markets"][m]["id"][2:]) for m in vault.caps]
            ctx.transact(contract.functions.setSupplyQueue(ids), what=f"{name} setSupplyQueue")
            for label, amount in vault.deposits.items():
                self.deposit(name, _raw(amount, decimals[vault.asset]), account_address(label))

    def deposit(self, vault_name: str, raw: int, receiver: str) -> None:
        vault = self.ctx.contract(self.deployment["vaults"][vault_name], self.vault_abi)
        asset = self.ctx.book["tokens"][self.config.vaults[vault_name].asset]
        self.mint_approved(asset, raw, vault.address)
        self.ctx.transact(vault.functions.deposit(raw, receiver), what=f"{vault_name} deposit")

    def fund_markets(self) -> None:
        decimals = self.ctx.book["decimals"]
        for market, lenders in self.config.suppliers.items():
            loan = self.config.markets[market].loan
            for label, amount in lenders.items():
                raw = _raw(amount, decimals[loan])
                self.mint_approved(self.ctx.book["tokens"][loan], raw, self.morpho.address)
                self.ctx.transact(self.morpho.functions.supply(self.params(market), raw, 0, account_address(label), b""),
                                  what=f"morpho supply {market}")

    def post_vault_collateral(self) -> None:
        """Vault-share borrowers: deposit into the vault, post the shares as collateral."""
        for borrower in self.config.vault_borrowers:
            market = self.config.markets[borrower.market]
            vault_name = market.collateral_vault
            vault = self.ctx.contract(self.deployment["vaults"][vault_name], self.vault_abi)
            asset_decimals = self.ctx.book["decimals"][self.config.vaults[vault_name].asset]
            before = vault.functions.balanceOf(self.ctx.deployer).call()
            self.deposit(vault_name, _raw(borrower.deposit, asset_decimals), self.ctx.deployer)
            shares = vault.functions.balanceOf(self.ctx.deployer).call() - before
            self.supply_collateral(borrower.market, shares, account_address(borrower.label), vault.address)

    def supply_collateral(self, market: str, raw: int, account: str, token: str) -> None:
        if (token, self.morpho.address) not in self.approved:
            self.ctx.transact(self.token(token).functions.approve(self.morpho.address, MAX_UINT), what="approve")
            self.approved.add((token, self.morpho.address))
        self.ctx.transact(self.morpho.functions.supplyCollateral(self.params(market), raw, account, b""),
                          what=f"morpho supplyCollateral {market}")

    def borrow(self, market: str, raw: int, account: str, label: str) -> None:
        self.ctx.fund_eth(account, 10**19)
        self.ctx.impersonate(account)
        self.ctx.transact(self.morpho.functions.borrow(self.params(market), raw, 0, account, account), sender=account,
                          what=f"morpho borrow {market} for {label}")

    def price(self, market: str) -> int:
        return self.ctx.contract(self.deployment["markets"][market]["oracle"], self.oracle_abi).functions.price().call()

    def collateral_for(self, market: str, debt_raw: int, health: float) -> int:
        """Collateral (raw) whose max borrow is ``health`` × ``debt_raw`` (Morpho._isHealthy)."""
        lltv = int(self.deployment["markets"][market]["lltv"])
        scaled = int(debt_raw * round(health * 10**9))
        return -(-scaled * ORACLE_PRICE_SCALE * WAD // (self.price(market) * lltv * 10**9))

    def draw_borrowers(self) -> None:
        """Per plain market: borrowed = utilisation × supplied, split across the market's borrowers."""
        cfg = self.config
        for n, (name, market) in enumerate(cfg.markets.items()):
            if market.collateral_vault:
                continue
            rng = random.Random(f"{self.ctx.scenario.seed}/{name}")
            market_id_bytes = bytes.fromhex(self.deployment["markets"][name]["id"][2:])
            supplied = self.morpho.functions.market(market_id_bytes).call()[0]
            if supplied == 0:
                continue
            budget = int(supplied * rng.uniform(*cfg.utilization))
            weights = [rng.expovariate(1.0) for _ in range(cfg.borrowers_per_market)]
            for k, weight in enumerate(weights):
                debt = int(budget * weight / sum(weights))
                if debt == 0:
                    continue
                lo, hi = cfg.health
                health = lo + (hi - lo) * rng.random() ** cfg.hf_power
                label = f"morpho-{n}-{k}"
                account = account_address(label)
                collateral = self.collateral_for(name, debt, health)
                self.mint_approved(self.ctx.book["tokens"][market.collateral], collateral, self.morpho.address)
                self.supply_collateral(name, collateral, account, self.ctx.book["tokens"][market.collateral])
                self.borrow(name, debt, account, label)

    def open_vault_borrows(self) -> None:
        for borrower in self.config.vault_borrowers:
            account = account_address(borrower.label)
            market_id_bytes = bytes.fromhex(self.deployment["markets"][borrower.market]["id"][2:])
            collateral = self.morpho.functions.position(market_id_bytes, account).call()[2]
            lltv = int(self.deployment["markets"][borrower.market]["lltv"])
            max_borrow = collateral * self.price(borrower.market) // ORACLE_PRICE_SCALE * lltv // WAD
            self.borrow(borrower.market, int(max_borrow / borrower.health), account, borrower.label)
