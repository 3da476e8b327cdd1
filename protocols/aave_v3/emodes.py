"""Read a pool's e-mode categories in one shape for every version.

- 3.2+ (``EModeConfiguration``): a category exists when ``getEModeCategoryCollateralConfig(id)``
  has a non-zero liquidation threshold (``PoolConfigurator.setEModeCategory`` requires one); its
  assets are ``getEModeCategoryCollateralBitmap`` / ``getEModeCategoryBorrowableBitmap`` (bit i =
  reserve id i), 3.6 adds ``getEModeCategoryLtvzeroBitmap``; the label is
  ``getEModeCategoryLabel``. Ids 1..255 are probed in one batch (id 0 is "no e-mode").
- 3.0 / 3.1: a reserve names its one category in configuration bits 168-175 and
  ``getEModeCategoryData(id)`` gives (ltv, threshold, bonus, price source, label); the bitmaps are
  built from those bits (a reserve of the category is both collateral and borrowable in it).

Each category: ``{"ltv", "liquidation_threshold", "liquidation_bonus"}`` in bps (bonus 10100 =
+1%), ``label``, ``price_source`` (3.0/3.1 only; zero address otherwise), ``collateral_bitmap``,
``borrowable_bitmap``, ``ltvzero_bitmap`` as decimal strings (128-bit integers).
"""

from __future__ import annotations

from eth_utils import to_checksum_address

from analyzer.multicall import Call
from protocols.aave_v3 import abi
from protocols.aave_v3.versions import has_emode_bitmaps, has_ltvzero_bitmap

ZERO = "0x0000000000000000000000000000000000000000"
COLLATERAL_CONFIG = "getEModeCategoryCollateralConfig(uint8)((uint16,uint16,uint16))"


def read_emode_categories(multicall, pool: str, version: str, reserves: list[dict]) -> dict[int, dict]:
    if has_emode_bitmaps(version):
        return _read_bitmaps(multicall, pool, version)
    return _read_reserve_bits(multicall, pool, reserves)


def _read_bitmaps(multicall, pool: str, version: str) -> dict[int, dict]:
    configs = multicall([Call(pool, COLLATERAL_CONFIG, (i,)) for i in range(1, 256)])
    present = {i + 1: c.unwrap(f"Pool.getEModeCategoryCollateralConfig({i + 1})")
               for i, c in enumerate(configs)}
    present = {i: c for i, c in present.items() if c[1] != 0}
    getters = ["getEModeCategoryCollateralBitmap(uint8)(uint128)", "getEModeCategoryBorrowableBitmap(uint8)(uint128)",
               "getEModeCategoryLabel(uint8)(string)"]
    if has_ltvzero_bitmap(version):
        getters.append("getEModeCategoryLtvzeroBitmap(uint8)(uint128)")
    answers = multicall([Call(pool, g, (i,)) for i in present for g in getters])
    out = {}
    for k, (i, (ltv, lt, bonus)) in enumerate(present.items()):
        got = [answers[k * len(getters) + g].unwrap(f"Pool.{getters[g].split('(')[0]}({i})") for g in range(len(getters))]
        out[i] = {"ltv": ltv, "liquidation_threshold": lt, "liquidation_bonus": bonus, "label": got[2],
                  "price_source": ZERO, "collateral_bitmap": str(got[0]), "borrowable_bitmap": str(got[1]),
                  "ltvzero_bitmap": str(got[3] if len(got) > 3 else 0)}
    return out


def _read_reserve_bits(multicall, pool: str, reserves: list[dict]) -> dict[int, dict]:
    members: dict[int, int] = {}
    for r in reserves:
        category = r["config"]["emode_category"]
        if category:
            members[category] = members.get(category, 0) | (1 << r["id"])
    categories = sorted(members)
    answers = multicall([Call(pool, abi.GET_EMODE_CATEGORY_DATA, (c,)) for c in categories])
    out = {}
    for c, answer in zip(categories, answers, strict=True):
        e = answer.unwrap(f"Pool.getEModeCategoryData({c})")
        out[c] = {"ltv": e[0], "liquidation_threshold": e[1], "liquidation_bonus": e[2], "label": e[4],
                  "price_source": to_checksum_address(e[3]), "collateral_bitmap": str(members[c]),
                  "borrowable_bitmap": str(members[c]), "ltvzero_bitmap": "0"}
    return out


def in_bitmap(bitmap: str | int, reserve_id: int) -> bool:
    return bool(int(bitmap) >> reserve_id & 1)
