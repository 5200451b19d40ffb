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


def checks(items) -> str:
    """The invariants a notebook ends on, as a table of ``(statement, holds)`` pairs.

    Raises ``AssertionError`` naming every statement that does not hold. A statement is a
    property of the code (a budget, a count, a bound that holds by construction), never a
    trained model's number, so the table is the same on every machine and nbval compares it.
    """
    items = [(str(s), bool(ok)) for s, ok in items]
    text = table([[s, "yes" if ok else "NO"] for s, ok in items], ["invariant", "holds"])
    bad = [s for s, ok in items if not ok]
    if bad:
        raise AssertionError("invariants that do not hold: " + "; ".join(bad) + "\n" + text)
    return text
