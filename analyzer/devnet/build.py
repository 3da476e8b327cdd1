"""Stand up a devnet: anvil, Multicall3, the scenario's tokens and price feeds, every protocol.

Deploying and seeding real protocols takes many transactions, so a finished devnet is cached as
an anvil state file keyed by everything that shapes it (npm lock file, our artifacts, the
scenario, the devnet code of the core and of each plugin). The next start with the same key
loads the state in seconds; any change of a key part rebuilds it.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.atomic import atomic_write_text
from analyzer.chain import Anvil
from analyzer.console import progress_bar
from analyzer.devnet.context import DevnetContext
from analyzer.devnet.feeds import deploy_feeds
from analyzer.devnet.scenario import DevnetScenario
from analyzer.devnet.solc import ARTIFACTS_DIR, fixture_artifact
from analyzer.errors import ContagionError
from analyzer.multicall import MULTICALL3_ADDRESS, ensure_multicall3
from analyzer.paths import cache_dir, node_modules, plugin_packages, source_digest
from protocols.base import Plugin

CACHE_DIR = cache_dir("devnet")
CHAIN_ID = 31337
# anvil needs more than EIP-170's 24 KiB for some protocol bytecode (Lyra's OptionMarket)
CODE_SIZE_LIMIT = 0x30000
TOKEN = ("tokens", "DevnetERC20")  # (fixture group, contract) of every devnet asset: mint(address,uint256) is open
KEEP_STATES = 12  # cached devnet states (tens of MB each) kept; the least recently used are removed


def prune_cache(keep: int) -> None:
    """Remove all but the ``keep`` most recently used devnet states (a load touches its state)."""
    states = sorted((p for p in CACHE_DIR.glob("*/state.json")), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in states[keep:]:
        shutil.rmtree(stale.parent, ignore_errors=True)
        (CACHE_DIR / f"{stale.parent.name}.lock").unlink(missing_ok=True)


def check_scenario_protocols(scenario: DevnetScenario, plugins: list[Plugin]) -> None:
    """Every ``[protocols.<name>]`` section of ``scenario`` names an installed plugin (or one of
    ``plugins``) that has a devnet part. A section no plugin reads would vanish from the devnet
    without a word (its pools, its positions), so it is bad input: ContagionError naming the
    section and the missing plugin. Sections of installed plugins left out of ``plugins`` (``devnet
    up --protocols``) are skipped on purpose and pass."""
    from protocols import plugins as installed

    known = {**installed(), **{plugin.name: plugin for plugin in plugins}}
    for name in scenario.protocols:
        plugin = known.get(name)
        if plugin is None:
            raise ContagionError(f"{scenario.path.name}: [protocols.{name}]: no installed protocol plugin named "
                                 f"{name!r} deploys it (installed: {', '.join(sorted(known))}); install the package "
                                 f"that provides {name!r} (an entry point in group defi_contagion.plugins) or remove "
                                 f"the section")
        if plugin.devnet is None:
            raise ContagionError(f"{scenario.path.name}: [protocols.{name}]: the {name} plugin has no devnet part, so "
                                 f"nothing would deploy this section; remove it")


def cache_key(scenario: DevnetScenario, plugins: list[Plugin]) -> str:
    """A digest of every input that shapes the devnet's state: the installed npm packages, our
    compiled fixtures, the scenario, the tool version and the source of the devnet core, of the
    pool maths venue devnets lay liquidity out with (:mod:`analyzer.amm`) and of every plugin's
    package."""
    lock = node_modules() / ".package-lock.json"
    artifacts = [artifact.name + artifact.read_text() for artifact in sorted(ARTIFACTS_DIR.glob("*.json"))]
    modules = [sys.modules[__name__], sys.modules["analyzer.devnet.context"], sys.modules["analyzer.devnet.feeds"],
               sys.modules["analyzer.devnet.scenario"], "analyzer.amm", *plugin_packages(plugins)]
    extra = [lock.read_text() if lock.is_file() else "no-lock", *artifacts, scenario.text,
             ",".join(plugin.name for plugin in plugins)]
    return source_digest(modules, extra=extra)[:16]


@dataclass
class RunningDevnet:
    """A devnet that is up: its anvil process and its address book."""

    anvil: Anvil
    book: dict[str, Any]
    scenario: DevnetScenario
    from_cache: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.anvil.url

    @property
    def w3(self):
        return self.anvil.w3

    def __enter__(self) -> RunningDevnet:
        return self

    def __exit__(self, *exc) -> None:
        self.anvil.stop()


def deploy_assets(ctx: DevnetContext) -> None:
    """One :data:`TOKEN` (our openly mintable ERC-20, ``fixtures/contracts/tokens``) per asset, and
    the scenario's price feeds (:mod:`analyzer.devnet.feeds`)."""
    token_artifact = fixture_artifact(*TOKEN)
    tokens = {symbol: ctx.deploy(token_artifact, f"{symbol} (devnet)", symbol, spec.decimals).address
              for symbol, spec in ctx.scenario.assets.items()}
    ctx.book.update(tokens=tokens, decimals={s: a.decimals for s, a in ctx.scenario.assets.items()})
    deploy_feeds(ctx)


def start_devnet(
    scenario: DevnetScenario,
    plugins: list[Plugin],
    *,
    port: int | None = None,
    use_cache: bool = True,
    progress: Callable[[str], None] = lambda message: None,
) -> RunningDevnet:
    """Start a devnet with ``plugins`` deployed and ``scenario`` seeded (from cache when possible).

    Builds of one key are serialised by a lock file beside the cache, so two processes that start
    the same devnet at once (test workers, two terminals) build it once and both load it."""
    check_scenario_protocols(scenario, plugins)
    if not use_cache:
        return build_devnet(scenario, plugins, port=port, state_file=None, progress=progress)
    key = cache_key(scenario, plugins)
    state_file, book_file = CACHE_DIR / key / "state.json", CACHE_DIR / key / "book.json"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if state_file.is_file() and book_file.is_file():
            progress(f"devnet: loading cached state {key}")
            state_file.touch()
            anvil = Anvil(chain_id=CHAIN_ID, port=port, load_state=state_file,
                          code_size_limit=CODE_SIZE_LIMIT).start()
            return RunningDevnet(anvil, json.loads(book_file.read_text()), scenario, from_cache=True)
        return build_devnet(scenario, plugins, port=port, state_file=state_file, progress=progress)


def build_devnet(
    scenario: DevnetScenario,
    plugins: list[Plugin],
    *,
    port: int | None,
    state_file: Path | None,
    progress: Callable[[str], None],
) -> RunningDevnet:
    """Deploy and seed a devnet on a fresh anvil; save its state and book to ``state_file``'s folder."""
    check_scenario_protocols(scenario, plugins)
    anvil = Anvil(chain_id=CHAIN_ID, port=port, code_size_limit=CODE_SIZE_LIMIT).start()
    try:
        w3 = anvil.w3
        ctx = DevnetContext(w3=w3, deployer=w3.eth.accounts[0], scenario=scenario,
                            book={"chain_id": CHAIN_ID, "chain": "devnet", "scenario": scenario.name,
                                  "multicall3": MULTICALL3_ADDRESS, "protocols": {}})
        ensure_multicall3(w3)
        # a scenario deploys the protocols it configures
        deployed = [p for p in plugins if p.devnet is not None and p.name in scenario.protocols]
        with progress_bar("devnet: deploy and seed", 1 + 2 * len(deployed)) as bar:
            progress(f"devnet: deploying {len(scenario.assets)} assets and price feeds")
            deploy_assets(ctx)
            bar.advance()
            for plugin in deployed:
                progress(f"devnet: deploying {plugin.name}")
                assert plugin.devnet is not None
                part = plugin.devnet()
                markets = part.deploy(ctx)
                ctx.book["protocols"][plugin.name] = markets
                bar.advance()
                progress(f"devnet: seeding {plugin.name}")
                part.seed(ctx, markets)
                bar.advance()
        ctx.book["block"] = w3.eth.block_number
        if state_file is not None:
            anvil.save_state(state_file)
            atomic_write_text(state_file.parent / "book.json", json.dumps(ctx.book, indent=2, sort_keys=True) + "\n")
            prune_cache(keep=KEEP_STATES)
        return RunningDevnet(anvil, ctx.book, scenario)
    except BaseException:
        anvil.stop()
        raise


def write_address_book(book: dict[str, Any], path: str | Path) -> Path:
    """Write ``book`` in the one address-book shape (checked by the loader that reads it back)."""
    from analyzer.books import parse_book
    from protocols import plugins

    parse_book(book, "devnet address book", plugins())
    return atomic_write_text(path, json.dumps(book, indent=2, sort_keys=True) + "\n")
