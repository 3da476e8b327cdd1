"""report.html: one self-contained page (styles, scripts, figures and data inlined; no network)."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from analyzer.errors import ContagionError
from analyzer.paths import node_modules

TEMPLATES = Path(__file__).with_name("templates")
CYTOSCAPE_JS = node_modules() / "cytoscape" / "dist" / "cytoscape.min.js"
SECTIONS = (("graph", "Graph"), ("scenarios", "Scenarios"), ("curves", "Liquidation curves"),
            ("sweep", "Stress sweep"), ("timeline", "Timeline"), ("matrix", "Contagion matrix"), ("gamma", "Gamma by strike"),
            ("gamma-map", "Dealer gamma map"), ("feedback", "Where the loop ignites"),
            ("accounts", "Accounts at risk"), ("bad-debt", "Bad debt"), ("fidelity", "Fidelity"),
            ("provenance", "Provenance"))


def usd(value: Any) -> str:
    """USD to the cent with thousands separators: the visible form of every USD number."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    value = float(value)
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def expiry(value: Any) -> str:
    """A unix time as the UTC date and hour options venues list expiries by."""
    from datetime import UTC, datetime

    return "–" if value is None else datetime.fromtimestamp(int(value), UTC).strftime("%Y-%m-%d %H:%M")


def pct_fine(value: Any) -> str:
    """A relative move to a hundredth of a percent (a distance-to-cascade bracket is narrower than 0.1%)."""
    return "–" if value is None or not math.isfinite(float(value)) else f"{100 * float(value):.2f}%"


def price(value: Any) -> str:
    return "–" if value is None else f"{float(value):,.4f}".rstrip("0").rstrip(".")


def health_factor(value: Any) -> str:
    if value is None:
        return "–"
    return "∞" if math.isinf(value) else f"{value:.4f}"


def jsonnum(value: Any) -> str:
    """The exact float as JSON writes it (shortest repr that reads back to the same float)."""
    return json.dumps(float(value))


def embed_json(value: Any) -> Markup:
    """JSON safe inside <script>: no character of it can close the element or start a comment."""
    text = json.dumps(value, sort_keys=True, allow_nan=False, default=str)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def heat(value: float, top: float, rgb: str = "220, 38, 38") -> str:
    """A cell's background: transparent at zero (or unknown), deeper with ``value / top``."""
    if not value > 0:  # also NaN
        return "transparent"
    alpha = 0.0 if top <= 0 else min(1.0, max(0.0, value / top))
    return f"rgba({rgb}, {0.08 + 0.7 * alpha:.3f})"


def shock_text(scenario: dict[str, Any] | None) -> str:
    if not scenario:
        return ""
    parts = [f"{a} {100 * v:+.0f}%" for a, v in sorted(scenario["shocks"].items())]
    parts += [f"IV {a} {100 * v:+.0f} vol" for a, v in sorted(scenario["iv_shocks"].items())]
    parts += [f"forced sale of {a}" for a in scenario.get("forced_sales", [])]
    return ", ".join(parts) or "no price shock"


def cytoscape_source() -> str:
    if not CYTOSCAPE_JS.is_file():
        raise ContagionError(f"{CYTOSCAPE_JS}: missing (the npm package cytoscape; run `make setup`)")
    source = CYTOSCAPE_JS.read_text(encoding="utf-8")
    if "</script" in source.lower():
        raise ContagionError(f"{CYTOSCAPE_JS}: contains </script and cannot be inlined")
    return source


def _clean(value: Any) -> Any:
    """NaN and infinities as null (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def render_html(data: dict[str, Any], graph: dict[str, Any], figures: dict[str, bytes]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(usd=usd, pct=pct, expiry=expiry, pct_fine=pct_fine, price=price, hf=health_factor, jsonnum=jsonnum,
                       embedjson=lambda v: embed_json(_clean(v)))
    matrix = data.get("matrix_view") or {}
    top = max((v for row in matrix.get("usd", []) for v in row), default=0.0)

    def figure(name: str, caption: str) -> Markup:
        png = figures.get(name)
        if png is None:
            return Markup("")
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return Markup('<figure><img alt="{0}" src="{1}"><figcaption>{0} (figures/{2})</figcaption></figure>').format(
            caption, Markup(src), name)

    def source(name: str) -> str:
        return (TEMPLATES / name).read_text(encoding="utf-8")

    template = env.get_template("report.html.j2")
    return template.render(data=data, graph=graph, sections=SECTIONS, figure=figure, shock_text=shock_text,
                           heat=lambda v: heat(v, top), heat_scaled=heat, css=source("report.css.j2"), app_js=source("report.js.j2"),
                           cytoscape_js=cytoscape_source())
