"""summary.md: the headline numbers as Markdown, to paste into a forum post."""

from __future__ import annotations

from typing import Any

from analyzer.engine.centralised import describe as describe_depth
from analyzer.report.html import health_factor, pct, pct_fine, shock_text, usd

TOP_SYSTEMIC = 5


def sweep_lines(sweep: dict[str, Any] | None) -> list[str]:
    """The sweep's top systemic ranking and its distance-to-cascade table (nothing without a sweep)."""
    if not sweep:
        return []
    lines = ["", f"## Stress sweep ({sweep['name']}, {sweep['scenarios']} scenarios)"]
    if sweep["same_snapshot"] is False:
        lines += ["", "**Warning: this sweep ran on another snapshot than this run's.**"]
    if sweep["ranking"]:
        lines += ["", f"Systemic importance, top {min(TOP_SYSTEMIC, len(sweep['ranking']))} "
                  "(losses caused above the unshocked baseline):", "",
                  "| rank | kind | name | losses caused | liquidated | bad debt |", "|---:|---|---|---:|---:|---:|"]
        lines += [f"| {r['rank']} | {r['kind']} | {r['name']} | {usd(r['losses_usd'])} | {usd(r['liquidated_usd'])} | "
                  f"{usd(r['bad_debt_usd'])} |" for r in sweep["ranking"][:TOP_SYSTEMIC]]
    if sweep["distance"]:
        lines += ["", "Distance to cascade (smallest fall of each asset alone that leaves bad debt):", "",
                  "| asset | smallest shock | bracket | evaluations |", "|---|---:|---|---:|"]
        lines += [f"| {d['asset']} | {pct_fine(d['shock']) if d['found'] else 'none within bracket'} | "
                  f"{pct_fine(d['safe'])} to {pct_fine(d['failing'])} | {d['evaluations']} |" for d in sweep["distance"]]
    if sweep["montecarlo"]:
        mc = sweep["montecarlo"]
        lines += ["", f"Monte Carlo ({mc['paths']} paths): " + "; ".join(
            f"{r['metric']} mean {usd(r['mean'])}, p95 {usd(r['p95'])}, p99 {usd(r['p99'])}" for r in mc["rows"]) + "."]
    return lines


def render_summary(data: dict[str, Any], figure_names: list[str]) -> str:
    pv = data["provenance"]
    headline = next(s for s in data["scenarios"] if s["headline"])
    lines = [f"# {data['title']}", "",
             f"Chain {pv['chain_id']}, block {pv['block_number']}; protocols: "
             f"{', '.join(sorted(pv['protocols'])) or 'not recorded'}; defi-contagion {pv['report_tool_version']}.", "",
             *([describe_depth(pv["assumed_depth"]) + ".", ""] if pv.get("assumed_depth") else []),
             f"**Headline: {data['headline']}** ({shock_text(headline)}): {usd(data['totals']['liquidated_usd'])} "
             f"liquidated, {usd(data['totals']['bad_debt_usd'])} bad debt, "
             f"{usd(data['totals']['receipt_writedown_usd'])} receipt write-down, "
             f"{usd(data['totals']['unrealised_supplier_loss_usd'])} unrealised supplier loss "
             f"over {len(data['timeline']['rounds'])} rounds.",
             "", "## Scenarios", "", "| scenario | shock | liquidated | bad debt | rounds |", "|---|---|---:|---:|---:|"]
    lines += [f"| {s['name']} | {shock_text(s)} | {usd(s['liquidated_usd'])} | {usd(s['bad_debt_usd'])} | {s['rounds']} |"
              for s in data["scenarios"]]
    lines += ["", f"## Per protocol ({data['headline']})", "",
              "| protocol | liquidated | bad debt | receipt write-down | unrealised supplier loss |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {p['protocol']} | {usd(p['liquidated_usd'])} | {usd(p['bad_debt_usd'])} | "
              f"{usd(p['receipt_writedown_usd'])} | {usd(p['unrealised_supplier_loss_usd'])} |" for p in data["protocols"]]
    matrix = data["matrix_view"]
    if matrix and matrix["sources"]:
        lines += ["", "## Contagion matrix (USD liquidated in column caused by row; all-zero rows and columns left out)", "",
                  "| source \\ target | " + " | ".join(matrix["targets"]) + " |",
                  "|---|" + "---:|" * len(matrix["targets"])]
        lines += [f"| {s} | " + " | ".join(usd(v) for v in row) + " |"
                  for s, row in zip(matrix["sources"], matrix["usd"], strict=True)]
    if data["amplification"]:
        lines += ["", "Amplification (final move / shock): "
                  + ", ".join(f"{a} {v:.3f}" for a, v in sorted(data["amplification"].items())) + "."]
    if data["accounts"]:
        lines += ["", "## Top accounts at risk", "", "| protocol | account | debt | health factor | liquidated |",
                  "|---|---|---:|---:|---:|"]
        lines += [f"| {a['protocol']} | `{a['account']}` | {usd(a['debt_usd'])} | {health_factor(a['health_factor'])} | "
                  f"{usd(a['liquidated_usd'])} |" for a in data["accounts"][:10]]
    if data.get("vault_reach"):
        lines += ["", "## Losses through vaults (a market's bad debt lowers the share price of the vaults supplying it)",
                  "", "| market | vault | vault's supply there | markets taking the share | share collateral | holders |",
                  "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['market']} | {r['vault']} | {usd(r['vault_usd'])} | {r['consumer_markets']} | "
                  f"{usd(r['consumer_usd'])} | {r['holders']} |" for r in data["vault_reach"][:20]]
    if data["fidelity_rows"]:
        lines += ["", "## Fidelity (engine vs replay on an anvil fork)", "", "| metric | engine | replay | gap |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {r['metric']} | {r['engine']:,.6g} | {r['replay']:,.6g} | "
                  f"{pct(r['relative_gap']) if r['relative_gap'] is not None else '–'} |" for r in data["fidelity_rows"]]
    lines += sweep_lines(data["sweep"])
    lines += ["", "Figures: " + ", ".join(f"`figures/{n}`" for n in figure_names) + "; full report: `report.html`.", ""]
    return "\n".join(lines)
