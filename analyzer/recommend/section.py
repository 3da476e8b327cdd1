"""The recommendations' report section: the trade-off figure (bad debt avoided against the
liquidations each change causes at today's prices) and a self-contained HTML table."""

from __future__ import annotations

import base64
import html
from typing import Any

from analyzer.recommend.caps import CAP_COLUMN
from analyzer.report.figures import _png, plt, usd_axis


def _value(parameter: str, value: float) -> str:
    return f"{value:,.0f}" if parameter in CAP_COLUMN else f"{value:.2%}"     # caps: whole tokens


def _worst_avoided(rec: dict[str, Any]) -> float:
    return max(rec["bad_debt_avoided_usd"].values(), default=0.0)


def tradeoff_figure(doc: dict[str, Any]) -> bytes | None:
    """One point per recommendation: x = debt USD it makes liquidatable at today's prices,
    y = the most bad debt it avoids in any scenario."""
    recs = doc.get("recommendations") or []
    if not recs:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    xs = [r["liquidatable_now_usd"] for r in recs]
    ys = [_worst_avoided(r) for r in recs]
    ax.scatter(xs, ys, s=60, color="#d95f02", zorder=3)
    for r, x, y in zip(recs, xs, ys, strict=True):
        ax.annotate(f"{r['protocol']} {r['symbol']} {r['parameter'].replace('_', ' ')} {_value(r['parameter'], r['old_value'])}→"
                    f"{_value(r['parameter'], r['new_value'])}",
                    (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlim(left=0, right=max(xs) * 1.3 + 1.0)
    ax.set_ylim(bottom=0, top=max(ys) * 1.2 + 1.0)
    ax.xaxis.set_major_formatter(usd_axis)
    ax.yaxis.set_major_formatter(usd_axis)
    ax.set_xlabel("debt made liquidatable at today's prices (USD)")
    ax.set_ylabel("bad debt avoided, worst scenario (USD)")
    ax.set_title(f"Recommended changes: budget ${doc['budget_usd']:,.0f} per scenario")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def section_html(doc: dict[str, Any], figure: bytes | None, proof: dict[str, Any] | None = None) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(r['protocol'])}</td><td>{e(r['symbol'])}</td><td>{e(r['parameter'])}</td>"
        f"<td>{_value(r['parameter'], r['old_value'])}</td><td>{_value(r['parameter'], r['new_value'])}</td>"
        f"<td>${_worst_avoided(r):,.0f}</td>"
        f"<td>{r['liquidatable_now_accounts']}</td><td>${r['liquidatable_now_usd']:,.0f}</td>"
        f"<td>{_pct(r['worst_scenario_fall'], 'no scenario falls it')}</td>"
        f"<td>{_pct(r['distance_to_budget_before'])}</td><td>{_pct(r['distance_to_budget_after'])}</td>"
        f"<td>{_pct(r['distance_to_first_bad_debt_before'])}</td><td>{_pct(r['distance_to_first_bad_debt_after'])}</td></tr>"
        for r in doc.get("recommendations") or [])
    scen = "".join(f"<tr><td>{e(name)}</td><td>${doc['bad_debt_before_usd'][name]:,.0f}</td>"
                   f"<td>${doc['bad_debt_after_usd'][name]:,.0f}</td></tr>" for name in doc["bad_debt_before_usd"])
    img = f'<img alt="trade-off" src="data:image/png;base64,{base64.b64encode(figure).decode()}">' if figure else ""
    verdict = "every scenario within the budget" if doc["feasible"] else "the budget is out of reach of the tunable parameters"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Risk-parameter recommendations</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style>
</head><body><section id="recommendations"><h2>Risk-parameter recommendations</h2>
<p>Budget ${doc['budget_usd']:,.0f} of bad debt per scenario: {verdict}. Each change is settled at today's prices
before the stress (its own liquidations first). Liquidatable now with all changes: {len(doc['liquidatable_now']['accounts'])}
accounts, ${doc['liquidatable_now']['debt_usd']:,.0f} of debt.</p>
<table><tr><th>protocol</th><th>asset</th><th>parameter</th><th>today</th><th>recommended</th><th>bad debt avoided (worst)</th>
<th>accounts liquidatable now</th><th>their debt</th><th>worst scenario fall</th>
<th>fall breaking the budget: today</th><th>with the changes</th><th>fall to the first bad debt: today</th>
<th>with the changes</th></tr>{rows}</table>
<p>Distances to cascade of each asset, alone, settled then shocked: the fall at which bad debt exceeds the budget,
and the fall at which the first bad debt appears (a change can keep the first where it is and still
move the budget's line beyond the scenarios' falls).</p>
<h3>Bad debt per scenario</h3><table><tr><th>scenario</th><th>today</th><th>with the changes</th></tr>{scen}</table>
{_caps_html(doc)}{img}{_margin_html(doc.get("dynamic_margin") or [])}{_proof_html(proof)}</section></body></html>
"""


def _caps_html(doc: dict[str, Any]) -> str:
    """With --caps: each recommended cap, and the worst scenario's bad debt at today's cap and at it."""
    if not doc.get("stress_at_caps"):
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(c['protocol'])}</td><td>{html.escape(c['symbol'])}</td><td>{html.escape(c['parameter'])}</td>"
        f"<td>{c['current_cap']:,.0f}</td><td>{c['recommended_cap']:,.0f}</td>"
        f"<td>${max(c['bad_debt_at_current_cap_usd'].values(), default=0.0):,.0f}</td>"
        f"<td>${max(c['bad_debt_at_recommended_cap_usd'].values(), default=0.0):,.0f}</td></tr>"
        for c in doc.get("caps") or [])
    return ("<h3>Caps</h3><p>Every scenario ran on the book grown to the supply and borrow caps (each account "
            "grown as a whole, as far as the tightest cap among its reserves allows).</p><table><tr><th>protocol</th>"
            "<th>asset</th><th>cap</th><th>today (tokens)</th><th>recommended</th><th>worst bad debt at today's cap</th>"
            f"<th>at the recommended cap</th></tr>{rows}</table>")


def _fall(value: float | None) -> str:
    return "none on the grid" if value is None else f"-{value:.0%}"


def _margin_html(schedules: list[dict[str, Any]]) -> str:
    """Per asset: the (concentration, threshold) table and the what-if of today's row."""
    e, out = html.escape, []
    for sch in schedules:
        rows = "".join(
            f"<tr><td>{r['gamma_scale']:g}×</td><td>{r['concentration']['gamma']:.3f}</td>"
            f"<td>{r['concentration']['leverage']:.3f}</td><td>{r['concentration']['combined']:.3f}</td>"
            f"<td>{_fall(r['ignition_fall_today'])}</td>"
            + ("<td colspan=3>no cut within the parameters' floors moves it</td>" if r["threshold_steps"] is None else
               f"<td>{r['threshold_steps']}</td><td>{'; '.join(e(t['protocol']) + ' ' + format(t['scheduled'], '.2%') for t in r['thresholds'])}</td>"
               f"<td>{_fall(r['ignition_fall_scheduled'])}</td>") + "</tr>"
            for r in sch["rows"])
        what = sch.get("what_if")
        verdict = "" if what is None else (
            f"<p>What-if (today's dealer book): ignition {_fall(what['ignition_fall_today'])} today, "
            f"{_fall(what['ignition_fall_scheduled'])} with the scheduled thresholds; the engine at a "
            f"-{sch['target_fall']:.0%} shock, settled then shocked: bad debt ${what['bad_debt_usd_today']:,.0f} → "
            f"${what['bad_debt_usd_scheduled']:,.0f}, final fall {what['final_fall_today']:.1%} → "
            f"{what['final_fall_scheduled']:.1%}.</p>")
        out.append(f"<h3>Dynamic margin: {e(sch['symbol'])}, ignition beyond -{sch['target_fall']:.0%}</h3>"
                   "<table><tr><th>dealer short gamma</th><th>gamma concentration</th><th>leverage concentration</th>"
                   "<th>combined</th><th>ignition today</th><th>cut (steps)</th><th>scheduled thresholds</th>"
                   f"<th>ignition after</th></tr>{rows}</table>{verdict}")
    return "".join(out)


def _pct(value: float | None, none: str = "none within -95%") -> str:
    return none if value is None else f"{value:.1%}"


def _proof_html(proof: dict[str, Any] | None) -> str:
    if proof is None:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(r['scenario'])}</td>" + (
            f"<td>${r['predicted_bad_debt_usd']:,.0f}</td><td>${r['replayed_bad_debt_usd']:,.0f}</td>"
            f"<td>{_verdict(r)}</td><td>{r['settle_liquidations']}</td></tr>"
            if r["replayed"] else f"<td colspan=4>{html.escape(r['reason'])}</td></tr>")
        for r in proof["scenarios"])
    alone = "".join(
        f"<tr><td>{html.escape(a['protocol'])}</td><td>{html.escape(a['parameter'])}</td><td>{a['value']:g}</td>"
        f"<td>{a['liquidatable_now_accounts']} / ${a['liquidatable_now_usd']:,.0f}</td>"
        f"<td>{a['liquidatable_now_accounts_fork']} / ${a['liquidatable_now_usd_fork']:,.0f}</td>"
        f"<td>{'yes' if a['ok'] else 'NO'}</td></tr>" for a in proof.get("recommendations_alone") or [])
    fork, predicted = proof["liquidatable_now_fork"], proof["liquidatable_now_predicted"]
    params = proof.get("parameters_on_fork") or []
    wrong = [p for p in params if not p["ok"]]
    stored = (f"Every changed value read back by a fresh scan of the fork ({len(params)} fields) equals the one evaluated. "
              if not wrong else "Read back differently on the fork: " + ", ".join(
                  f"{html.escape(p['protocol'])} {html.escape(p['field'])} {p['fork']} (evaluated {p['predicted']})"
                  for p in wrong) + ". ")
    return (f"<h3>Proof on a fork at block {proof['block']}</h3><p>Book replayed: {html.escape(proof.get('book', ''))}. "
            f"{stored}Liquidatable after the change, fresh scan of the "
            f"fork: {len(fork['accounts'])} accounts, ${fork['debt_usd']:,.0f} (predicted {len(predicted['accounts'])}, "
            f"${predicted['debt_usd']:,.0f}).</p><table><tr><th>protocol</th><th>parameter</th><th>value</th>"
            f"<th>liquidatable now, alone: predicted</th><th>fresh scan of the fork</th><th>equal</th></tr>{alone}</table>"
            f"<table><tr><th>scenario</th><th>engine</th><th>replayed bad debt</th>"
            f"<th>within budget</th><th>liquidations settling the change</th></tr>{rows}</table>")


def _verdict(row: dict[str, Any]) -> str:
    if row["within_budget"]:
        return "yes"
    return "within the engine's fidelity tolerance" if row.get("within_budget_to_model_error") else "NO"
