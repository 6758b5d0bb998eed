"""Print a meta.k8s.io/v1 Table as kubectl does: pure, a Table in, text out.

`podnet get` asks the API server for a Table (podnet.apiserver.table builds
it) and prints it here, so its columns are the ones kubectl prints. This
follows kubectl's table printer (k8s.io/cli-runtime/pkg/printers,
tableprinter.go: decorateTable then printTable):

- headers are the column names upper-cased; no rows print nothing at all
  (kubectl then says "No resources found" on stderr: the caller's job);
- columns with priority > 0 only with `wide` (-o wide);
- NAMESPACE first with -A, from each row's object metadata, and LABELS last
  with --show-labels; a row without an object gets empty cells there;
- string cells stop at the first newline, CR or form feed, marked "...";
  ESC is shown as "^["; other cells print as Go's fmt.Sprint would;
- Go's text/tabwriter with kubectl's settings (minwidth 6, padding 3).

Two differences, both kept from podnet's earlier client-side tables so
existing scripts see the same text: a tab inside a cell becomes a space
(kubectl would split the cell), and trailing blanks are trimmed from lines
(kubectl pads a cell that precedes an empty last cell).
"""

from collections.abc import Mapping
from typing import Any

from podnet.apiserver.columns import format_labels
from podnet.cli.printers import tabwrite

__all__ = ["render_table", "format_cell"]


def _go_sprint(v: object) -> str:
    """fmt.Sprint of a JSON-decoded value: true/false, 3, 1.5, [a b], map[k:v].
    kubectl decodes integral numbers as int64; other floats print as Python's
    repr, which matches Go's shortest %v for the everyday ones."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    if isinstance(v, list):
        return "[" + " ".join(_go_sprint(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go_sprint(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def format_cell(cell: object) -> str:
    """One cell as kubectl's printTable writes it (None: an empty cell)."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        text, truncated = cell, False
        for i, ch in enumerate(cell):
            if ch in "\f\n\r":
                text, truncated = cell[:i], True
                break
        text = text.replace("\x1b", "^[")  # WriteEscaped: no terminal escape sequences from the server
        text += "..." if truncated else ""
    else:
        text = _go_sprint(cell).replace("\x1b", "^[").replace("\r", "\\r")
    return text.replace("\t", " ")


def _object_meta(row: Mapping[str, Any]) -> Mapping[str, Any] | None:
    obj = row.get("object")
    if not isinstance(obj, Mapping):
        return None
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else None


def render_table(
    table: Mapping[str, Any],
    wide: bool,
    all_namespaces: bool,
    show_labels: bool = False,
    no_headers: bool = False,
    *,
    namespaced: bool | None = None,
) -> str:
    """kubectl's text for `table` (a Table as the server sends it, JSON-decoded),
    without a trailing newline; "" when it has no rows.

    all_namespaces: -A. kubectl adds NAMESPACE only for namespaced
    resources, which it knows from discovery; pass `namespaced`, or leave it
    None to infer it from the rows (a namespaced object always carries
    metadata.namespace, a cluster-scoped one never does)."""
    columns = list(table.get("columnDefinitions") or [])
    rows = list(table.get("rows") or [])
    if not rows:
        return ""
    if namespaced is None:
        namespaced = any((_object_meta(r) or {}).get("namespace") for r in rows)
    with_ns = all_namespaces and namespaced
    shown = [i for i, c in enumerate(columns) if wide or not c.get("priority")]

    lines: list[list[str]] = []
    if not no_headers:
        header = [str(columns[i].get("name", "")).upper() for i in shown]
        lines.append((["NAMESPACE"] if with_ns else []) + header + (["LABELS"] if show_labels else []))
    for row in rows:
        cells = list(row.get("cells") or [])
        m = _object_meta(row)
        # kubectl ignores cells beyond the column definitions (issue 66379) and prints missing ones empty
        line = [format_cell(cells[i]) if i < len(cells) else "" for i in shown]
        if with_ns:
            line.insert(0, format_cell(m.get("namespace", "")) if m is not None else "")
        if show_labels:
            line.append(format_labels(dict(m.get("labels") or {})) if m is not None else "")
        lines.append(line)
    text = tabwrite(["\t".join(line) for line in lines], minwidth=6, padding=3)
    return "\n".join(line.rstrip() for line in text.split("\n"))
