"""Plain-text tables: the same string prints in a terminal, a notebook and an HTML export."""
from __future__ import annotations


def pct(x: float, nd: int = 1) -> str:
    return f"{100 * x:.{nd}f}"


def ci(v: float, lo_hi, nd: int = 1) -> str:
    """'93.2 [91.0, 95.0]' in percent."""
    return f"{pct(v, nd)} [{pct(lo_hi[0], nd)}, {pct(lo_hi[1], nd)}]"


def table(rows: list[list], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))
    return "\n".join([line(cells[0]), "  ".join("-" * x for x in w)] + [line(r) for r in cells[1:]])
