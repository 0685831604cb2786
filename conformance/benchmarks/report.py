"""The table, the tenure/peer ratios, the target check, the JSON file and the plot.

Tables are Markdown (readable in a terminal and pasted as-is into
``docs/performance.md``). Times are milliseconds; "n/a" and "failed" cells carry a
footnote with the reason. Ratios are tenure's median divided by the peer's, pair by
pair on the same store: below 1 means tenure is faster.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tenure.conformance.benchmarks import idle
from tenure.conformance.benchmarks.runner import Row
from tenure.conformance.benchmarks.scale import ScaleRow
from tenure.conformance.benchmarks.scale import verdicts as scale_verdicts

COLUMNS = (
    ("handover", "resign handover median / p90 / p99"),
    ("campaign", "uncontended campaign median"),
    ("failover", "crash failover median / p90 (TTL)"),
    ("detect-cut", "cut -> on_lost median"),
    ("detect-pause", "resume -> on_lost median"),
)
HANDOVER_TARGET = 0.005
FAILOVER_SLACK = 0.250
GATEWAY_OVERHEAD = 0.002


def _ms(value: float) -> str:
    return f"{value * 1e3:.2f}" if abs(value) < 0.1 else f"{value * 1e3:.0f}"


def _cell(row: Row, notes: list[str]) -> str:
    if row.status != "ok":
        notes.append(f"{row.store} / {row.system} / {row.measurement}: "
                     f"{row.status}: {row.reason}")
        word = {"unsupported": "n/a", "never": "never"}.get(row.status, "failed")
        return f"{word} [{len(notes)}]"
    summary = row.summary
    assert summary is not None
    if row.measurement == "handover":
        return f"{_ms(summary.median)} / {_ms(summary.p90)} / {_ms(summary.p99)}"
    if row.measurement == "failover":
        return f"{_ms(summary.median)} / {_ms(summary.p90)} ({row.ttl:g} s)"
    text = _ms(summary.median)
    if row.measurement.startswith("detect"):
        late = (row.extra.get("late") or []) if row.measurement == "detect-cut" else []
        if late:
            text += f" (deadline +{_ms(sorted(late)[len(late) // 2])})"
        if row.extra.get("never"):
            text += f", {row.extra['never']} never"
    return text


def table(rows: Sequence[Row]) -> str:
    """The main table: one line per store and system, one column per measurement."""
    notes: list[str] = []
    titles = " | ".join(title for _, title in COLUMNS)
    head = f"| store | system | n handover/failover | {titles} |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for (store, system), group in _grouped(rows).items():
        cells = []
        counts = [str(len(group[m].samples)) if m in group else "-"
                  for m in ("handover", "failover")]
        for measurement, _ in COLUMNS:
            row = group.get(measurement)
            cells.append("-" if row is None else _cell(row, notes))
        lines.append(f"| {store} | {system} | {'/'.join(counts)} | "
                     + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines.extend(f"[{i}] {note}" for i, note in enumerate(notes, 1))
    return "\n".join(lines)


def _grouped(rows: Sequence[Row]) -> dict[tuple[str, str], dict[str, Row]]:
    grouped: dict[tuple[str, str], dict[str, Row]] = {}
    for row in rows:
        grouped.setdefault((row.store, row.system), {})[row.measurement] = row
    return grouped


def ratios(rows: Sequence[Row]) -> str:
    """tenure's median / each peer's median, per store and measurement."""
    lines = ["| store | peer | measurement | tenure median | peer median | tenure/peer |",
             "|---|---|---|---|---|---|"]
    base = {(r.store, r.measurement): r for r in rows if r.baseline and r.samples}
    for row in rows:
        ours = base.get((row.store, row.measurement))
        if row.baseline or not row.samples or ours is None:
            continue
        if row.measurement not in ("handover", "campaign", "failover"):
            continue
        mine, theirs = ours.summary, row.summary
        assert mine is not None and theirs is not None
        ratio = f"{mine.median / theirs.median:.3g}" if theirs.median > 0 else \
            "n/a (peer median <= 0: its successor heard first)"
        lines.append(f"| {row.store} | {row.system} | {row.measurement} | "
                     f"{_ms(mine.median)} | {_ms(theirs.median)} | {ratio} |")
    return "\n".join(lines)


def targets(rows: Sequence[Row], scale: Sequence[ScaleRow]) -> str:
    """Issue 9's targets: met or missed, and by how much."""
    out: list[str] = []
    by = {(r.store, r.system, r.measurement): r for r in rows}
    for store in ("etcd", "zookeeper", "consul", "redis"):
        row = by.get((store, "tenure", "handover"))
        if row is None or row.summary is None:
            continue
        median = row.summary.median
        verdict = "met" if median <= HANDOVER_TARGET else \
            f"MISSED by {_ms(median - HANDOVER_TARGET)} ms"
        out.append(f"- {store}: resign handover median {_ms(median)} ms <= 5 ms: {verdict}")
        tooz = next((r for r in rows if r.store == store and r.system.startswith("tooz")
                     and r.measurement == "handover"), None)
        if tooz is not None and tooz.summary is not None and median > 0:
            factor = tooz.summary.median / median
            verdict = "met" if factor >= 10 else "MISSED"
            out.append(f"- {store}: {factor:.0f}x faster than {tooz.system} (>= 10x): "
                       f"{verdict}")
        elif tooz is not None:
            out.append(f"- {store}: vs {tooz.system}: not measurable ({tooz.reason})")
    for row in rows:
        if row.baseline and row.measurement == "failover" and row.summary is not None:
            bound = float(row.extra.get("bound", row.ttl or 0))
            p90 = row.summary.p90
            verdict = "met" if p90 <= bound + FAILOVER_SLACK else \
                f"MISSED by {_ms(p90 - bound - FAILOVER_SLACK)} ms"
            out.append(f"- {row.store}: crash failover p90 {_ms(p90)} ms <= expiry "
                       f"{bound:g} s + 250 ms: {verdict}")
    for store in sorted({r.store for r in rows}):
        ours = by.get((store, "tenure", "campaign"))
        served = by.get((store, "tenure via serve", "campaign"))
        if ours and served and ours.summary and served.summary:
            extra = served.summary.median - ours.summary.median
            verdict = "met" if extra <= GATEWAY_OVERHEAD else \
                f"MISSED by {_ms(extra - GATEWAY_OVERHEAD)} ms"
            out.append(f"- {store}: gateway adds {_ms(extra)} ms to a campaign "
                       f"(<= 2 ms): {verdict}")
    out.extend(scale_verdicts(list(scale)))
    return "\n".join(out)


def scale_table(scale: Sequence[ScaleRow]) -> str:
    """Scale (a) and (b), one line per point."""
    lines = ["| store | kind | size | store req/s | renewals/s | client CPU | "
             "store req/change | notifications/change | setup s | counted | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    said: set[tuple[str, str, str]] = set()
    for s in scale:
        if s.status != "ok" and (s.store, s.kind, s.reason) in said:
            continue  # the same reason once per store and kind
        said.add((s.store, s.kind, s.reason))
        if s.status != "ok":
            lines.append(f"| {s.store} | {s.kind} | {s.size} | {s.status}: {s.reason} "
                         f"| | | | | | | {s.note} |")
            continue
        cpu = "-" if s.cpu_per_s is None else f"{s.cpu_per_s * 100:.2f} %"
        lines.append(f"| {s.store} | {s.kind} | {s.size} | {num(s.requests_per_s, '.2f')} | "
                     f"{num(s.renewals_per_s, '.2f')} | {cpu} | "
                     f"{num(s.requests_per_change, '.1f')} | "
                     f"{num(s.notifications_per_change, '.1f')} | "
                     f"{num(s.setup_s, '.1f')} | {s.counter} | {s.note} |")
    return "\n".join(lines)


def gateway_lines(rows: Sequence[Row]) -> list[str]:
    """Leader queries per second served by ``tenure serve``, against the 2,000/s target."""
    out = []
    for row in rows:
        if row.measurement == "leader-qps" and row.status == "ok":
            qps = float(row.extra["qps"])
            verdict = "met" if qps >= 2000 else f"MISSED by {2000 - qps:.0f}/s"
            out.append(f"- {row.store}: tenure serve answers {qps:.0f} leader queries/s "
                       f"(>= 2,000/s on 2 cores, callers included): {verdict}")
        elif row.measurement == "leader-qps":
            out.append(f"- {row.store}: leader queries: {row.status}: {row.reason}")
    return out


def idle_table(rows: Sequence[Row]) -> str:
    """Idle cost: CPU seconds per minute of 1 leader + N waiting candidates, per store
    and tool, and each over kazoo's Election on ZooKeeper (the reference; "-" when the
    run has no such row, or the figure is not read). The note names each row's TTL:
    keep-alive work per minute scales with 1/TTL, and the ratios do not correct for it
    (the bench runs every idle row at one TTL, ``IDLE_TTL``; a report read back from an
    older run may hold rows at different TTLs: :func:`idle_heading` says which)."""
    lines = ["| store | system | candidates | window s | client CPU s/min | store CPU s/min "
             "| store baseline s/min | client / kazoo-ZK | store / kazoo-ZK | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    chosen = [r for r in rows if r.measurement == "idle"]
    ref = next((r.extra for r in chosen if (r.store, r.system) == idle.REFERENCE
                and r.status == "ok"), {})

    def num(value: Any) -> str:
        return "-" if value is None else f"{float(value):.3f}"

    def ratio(row: Row, key: str) -> str:
        mine, theirs = row.extra.get(key), ref.get(key)
        if mine is None or not theirs or (key == "store_per_min" and row.store == "sqlite"):
            return "-"
        return f"{float(mine) / float(theirs):.3g}"

    for row in chosen:
        if row.status != "ok":
            lines.append(f"| {row.store} | {row.system} | {row.status}: {row.reason} "
                         f"| | | | | | | |")
            continue
        e = row.extra
        notes = [str(n) for n in (e.get("store_note"), e.get("client_note")) if n]
        if row.ttl:  # renewals (and pings) per minute scale with 1/TTL: say it
            notes.insert(0, f"TTL {row.ttl:g} s")
        if e.get("changes"):
            notes.append(f"{e['changes']} leadership change(s) in the window")
        lines.append(f"| {row.store} | {row.system} | {e['candidates']} | "
                     f"{float(e['window']):.0f} | {num(e.get('client_per_min'))} | "
                     f"{num(e.get('store_per_min'))} | {num(e.get('baseline_per_min'))} | "
                     f"{ratio(row, 'client_per_min')} | {ratio(row, 'store_per_min')} | "
                     f"{'; '.join(notes)} |")
    return "\n".join(lines)


def idle_heading(rows: Sequence[Row]) -> str:
    """The idle table's heading: the one TTL every row ran at, or that they differ."""
    ttls = sorted({float(r.ttl) for r in rows
                   if r.measurement == "idle" and r.status == "ok" and r.ttl})
    at = (f"every row at TTL {ttls[0]:g} s" if len(ttls) == 1 else
          "rows at different TTLs (see note): per-minute work scales with 1/TTL"
          if ttls else "TTL not recorded")
    return f"## Idle cost (CPU seconds per minute, 1 leader + waiting candidates, {at})"


def idle_lines(rows: Sequence[Row]) -> list[str]:
    """Issue 14's idle target per store: tenure's client and store CPU per minute at
    most kazoo's Election on ZooKeeper's."""
    chosen = {(r.store, r.system): r for r in rows if r.measurement == "idle"
              and r.status == "ok"}
    ref = chosen.get(idle.REFERENCE)
    out = []
    for (store, system), row in chosen.items():
        if system != "tenure":
            continue
        if ref is None:
            out.append(f"- {store}: idle cost: no kazoo Election on ZooKeeper row to "
                       "compare with (add --lab zookeeper)")
            continue
        for key, what in (("client_per_min", "client"), ("store_per_min", "store")):
            mine, theirs = row.extra.get(key), ref.extra.get(key)
            if mine is None or theirs is None:
                continue
            verdict = "met" if mine <= theirs else \
                f"MISSED by {mine - theirs:.3f} CPU s/min"
            out.append(f"- {store}: idle {what} CPU {mine:.3f} s/min <= kazoo Election on "
                       f"ZooKeeper {theirs:.3f}: {verdict}")
    return out


def render(rows: Sequence[Row], scale: Sequence[ScaleRow], command: str) -> str:
    """Everything for the terminal (and docs/performance.md)."""
    main = [r for r in rows if r.measurement not in ("leader-qps", "idle")]
    parts = [f"Command: `{command}`", "", "## Latency (ms)", "", table(main), "",
             "## tenure / peer (median ratio; < 1: tenure faster)", "", ratios(main)]
    if scale:
        parts += ["", "## Scale (tenure)", "", scale_table(scale)]
    if any(r.measurement == "idle" for r in rows):
        parts += ["", idle_heading(rows), "", idle_table(rows)]
    parts += ["", "## Targets (issue 9)", "", targets(main, scale),
              *gateway_lines(rows), *idle_lines(rows)]
    return "\n".join(parts)


def machine() -> dict[str, Any]:
    """Facts about the host the figures were taken on."""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), platform.processor())
    except OSError:
        model = platform.processor()
    return {"cpus": os.cpu_count(), "cpu": model, "python": sys.version.split()[0],
            "platform": platform.platform(), "load": os.getloadavg(),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


BEGIN, END = "<!-- tenure bench: begin -->", "<!-- tenure bench: end -->"


def update_markdown(path: Path, rendered: str, plot: Path | None,
                    facts: dict[str, Any] | None = None) -> None:
    """Writes ``rendered`` (with the machine facts, and the plot if any) between the
    markers of ``path``; the hand-written text around them is kept. A file without
    the markers gets them appended. ``facts``: the machine facts of the run (default:
    this machine, now)."""
    facts = facts or machine()
    when = str(facts.get("when") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    block = [BEGIN, "", f"Taken {when} on {facts['cpus']} x {facts['cpu']}, Python "
             f"{facts['python']}, {facts['platform']}; 1-min load average when the run ended "
             f"{facts['load'][0]:.2f}.", ""]
    if plot is not None:
        relative = os.path.relpath(plot, path.parent)
        block += [f"![tenure bench]({relative})", ""]
    block += [rendered.replace("\n## ", "\n### "), "", END]
    text = path.read_text() if path.exists() else "# Performance\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + "\n".join(block) + tail
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(block) + "\n"
    path.write_text(text)


def read_json(path: Path) -> tuple[list[Row], list[ScaleRow], str, dict[str, Any]]:
    """Rows, scale rows, command and machine facts of a file from :func:`write_json`."""
    data = json.loads(path.read_text())
    rows = [Row(**{k: v for k, v in r.items() if k != "summary"}) for r in data["rows"]]
    return (rows, [ScaleRow(**s) for s in data["scale"]], str(data["command"]),
            dict(data.get("machine") or {}))


def write_json(path: Path, rows: Sequence[Row], scale: Sequence[ScaleRow],
               command: str) -> None:
    """Everything measured, with the samples, as one JSON document."""
    path.write_text(json.dumps({
        "command": command, "machine": machine(),
        "rows": [r.as_dict() for r in rows], "scale": [s.as_dict() for s in scale],
    }, indent=1))


def plot(path: Path, rows: Sequence[Row], scale: Sequence[ScaleRow]) -> None:
    """A PNG: handover and failover per system (log scale; failover with its expiry
    bound) and the two scale curves (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(14, 10))
    _bars(axes[0][0], [r for r in rows if r.measurement == "handover" and r.summary],
          "resign handover, ms (bar: median; tick: p90)")
    _bars(axes[0][1], [r for r in rows if r.measurement == "failover" and r.summary],
          "crash failover, ms (bar: median; tick: p90; red: store expiry bound)")
    for ax, kind, label, xlabel, ylabel in (
        (axes[1][0], "elections", "(a) store requests/s (renewals/s) vs elections held",
         "elections held by one client (count, log scale)",
         "store requests (or renewals) per second (1/s, log scale)"),
        (axes[1][1], "waiters", "(b) notifications (requests) per change vs waiters",
         "candidates waiting in one election (count, log scale)",
         "notifications (or requests) per leadership change (count, log scale)"),
    ):
        for store in sorted({s.store for s in scale if s.kind == kind}):
            points = sorted((s.size, s.per_unit) for s in scale  # log axis: > 0 only
                            if (s.store, s.kind) == (store, kind)
                            and s.per_unit is not None and s.per_unit > 0)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                        label=store)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=7)
    figure.suptitle("tenure bench -- green: tenure, grey: peers, blue: tenure via tenure "
                    "serve, red: UNSAFE Bully reference", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=70)
    plt.close(figure)


def _bars(ax: Any, chosen: list[Row], title: str) -> None:
    labels, medians, p90s = [], [], []
    for row in chosen:
        summary = row.summary
        assert summary is not None
        note = " (<= 0: successor heard first)" if summary.median <= 0 else ""
        labels.append(f"{row.store} / {row.system}{note}")
        medians.append(max(summary.median * 1e3, 0.01))
        p90s.append(max(summary.p90 * 1e3, 0.01))
    colours = ["tab:green" if r.baseline else "tab:red" if r.unsafe else
               "tab:blue" if r.system == "tenure via serve" else "tab:grey" for r in chosen]
    positions = list(range(len(chosen)))
    ax.barh(positions, medians, color=colours)
    ax.plot(p90s, positions, "|", color="black", markersize=9)
    bounds = [(i, float(r.extra["bound"]) * 1e3) for i, r in enumerate(chosen)
              if "bound" in r.extra]
    if bounds:
        ax.plot([b for _, b in bounds], [i for i, _ in bounds], "|", color="red",
                markersize=12, markeredgewidth=2)
    ax.set_yticks(positions, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("time (ms, log scale)", fontsize=8)
    ax.set_ylabel("store / system", fontsize=8)
    ax.set_title(title, fontsize=9)
