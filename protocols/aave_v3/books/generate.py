"""Write the address book of every Aave V3 market on every chain from ``@aave-dao/aave-address-book``.

The package (npm, pinned in package.json) ships each market as a JS object ``AaveV3<Name>``
(``CHAIN_ID``, ``POOL_ADDRESSES_PROVIDER``, ``POOL``, ...). Node reads them; this script writes
one JSON book per chain, ``protocols/aave_v3/books/<chain>.json``::

    {"chain_id": 1, "chain": "ethereum", "source": "@aave-dao/aave-address-book 4.68.1",
     "protocols": {"aave-v3": {"AaveV3Ethereum": {"pool_addresses_provider": ..., "pool": ..., ...}}}}

The chain's name is that of its market without a suffix (AaveV3Ethereum -> "ethereum"; AaveV3EthereumLido
is a second market of chain 1). The book has no deployment blocks: ``start_block`` is 0 (account
discovery scans from genesis) except where :data:`KNOWN_START_BLOCKS` names one with its source.
The release a market runs is not in the book either: the reader reads ``POOL_REVISION`` on chain.

Run ``python -m protocols.aave_v3.books.generate`` after changing the pinned package version.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from analyzer.atomic import atomic_write_text
from analyzer.devnet.context import NODE_MODULES
from analyzer.errors import ContagionError

PACKAGE = "@aave-dao/aave-address-book"
BOOKS_DIR = Path(__file__).parent
# address-book constant -> our key
FIELDS = {"POOL_ADDRESSES_PROVIDER": "pool_addresses_provider", "POOL": "pool",
          "POOL_CONFIGURATOR": "pool_configurator", "ORACLE": "oracle",
          "AAVE_PROTOCOL_DATA_PROVIDER": "data_provider", "ACL_MANAGER": "acl_manager", "ACL_ADMIN": "acl_admin",
          "COLLECTOR": "treasury", "UI_POOL_DATA_PROVIDER": "ui_pool_data_provider"}
KNOWN_START_BLOCKS = {  # market -> (block, source)
    "AaveV3Ethereum": (16291127, "the Pool proxy's deployment block (carried over from our earlier hand-written book)"),
}
TESTNET = re.compile(r"Sepolia|Fuji")
_DUMP = """
const ab = require(process.argv[1]);
const out = {};
for (const [name, market] of Object.entries(ab)) {
  if (!/^AaveV3[A-Z]/.test(name) || typeof market !== 'object' || !market.POOL) continue;
  const keep = {};
  for (const [k, v] of Object.entries(market)) if (typeof v === 'string' || typeof v === 'number') keep[k] = v;
  keep.E_MODE_COUNT = Object.keys(market.E_MODES || {}).length;
  keep.ASSET_COUNT = Object.keys(market.ASSETS || {}).length;
  out[name] = keep;
}
process.stdout.write(JSON.stringify(out));
"""


def package_version() -> str:
    return json.loads((NODE_MODULES / PACKAGE / "package.json").read_text())["version"]


def read_markets() -> dict[str, dict]:
    """Every ``AaveV3*`` market of the installed package, by its constant name."""
    if not (NODE_MODULES / PACKAGE).is_dir():
        raise ContagionError(f"npm package {PACKAGE} is not installed: run `make setup`")
    proc = subprocess.run(["node", "-e", _DUMP, str(NODE_MODULES / PACKAGE)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise ContagionError(f"reading {PACKAGE} failed: {proc.stderr.strip()[:300]}")
    return json.loads(proc.stdout)


def _chain_name(name: str) -> str:
    """AaveV3Ethereum -> "ethereum", AaveV3ZkSync -> "zksync", AaveV3BaseSepolia -> "base-sepolia"."""
    return re.sub(r"(?<=.)sepolia$", "-sepolia", name.removeprefix("AaveV3").lower())


def books(markets: dict[str, dict], version: str) -> dict[int, dict]:
    """One book per chain id."""
    by_chain: dict[int, list[str]] = {}
    for name, market in markets.items():
        by_chain.setdefault(int(market["CHAIN_ID"]), []).append(name)
    out = {}
    for chain_id, names in sorted(by_chain.items()):
        chain = _chain_name(min(names, key=len))
        entries = {}
        for name in sorted(names):
            m = markets[name]
            start_block, start_source = KNOWN_START_BLOCKS.get(name, (0, "not in the address book: from genesis"))
            entry = {ours: m[theirs] for theirs, ours in FIELDS.items() if theirs in m}
            entry.update(market=name, source=f"{PACKAGE} {version} ({name})", start_block=start_block,
                         start_block_source=start_source, testnet=bool(TESTNET.search(name)),
                         listed_reserves=m["ASSET_COUNT"], listed_emode_categories=m["E_MODE_COUNT"])
            entries[name] = entry
        out[chain_id] = {"chain_id": chain_id, "chain": chain, "source": f"{PACKAGE} {version}",
                         "protocols": {"aave-v3": entries}}
    return out


def write() -> list[Path]:
    version = package_version()
    written = []
    for book in books(read_markets(), version).values():
        path = BOOKS_DIR / f"{book['chain']}.json"
        written.append(atomic_write_text(path, json.dumps(book, indent=1, sort_keys=True) + "\n"))
    return written


if __name__ == "__main__":
    for path in write():
        print(path, file=sys.stderr)
