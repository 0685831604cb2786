"""Draws the timelines of the docs: the validity deadline and the fencing story.

    .venv/bin/python docs/pictures/draw.py            # rewrites docs/pictures/*.png
    .venv/bin/python docs/pictures/draw.py --out DIR  # writes them to DIR instead

Needs matplotlib (in the ``bench`` extra). The PNGs are committed; run this after
changing it and look at the result. The numbers are illustrations of the rules in
docs/design.md ("Clock reasoning") and of one run of ``tenure demo`` (TTL 2 s); they
are not measurements of this machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT, DPI = 11.0, 4.6, 100   # inches, dots per inch: 1100 x 460 pixels

GREEN, RED, GREY, BLUE, ORANGE = "#2e7d32", "#c62828", "#757575", "#1565c0", "#ef6c00"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        sys.exit("draw.py: matplotlib is missing; install it with: pip install '.[bench]'")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "svg.hashsalt": "tenure"})
    return plt


def _lanes(ax: Any, names: list[str], xmax: float) -> dict[str, float]:
    """One horizontal lane per name, top to bottom; returns name -> y."""
    ys = {name: float(len(names) - i) for i, name in enumerate(names)}
    ax.set_ylim(0.3, len(names) + 0.9)
    ax.set_xlim(-0.3, xmax)
    ax.set_yticks(list(ys.values()), names)
    ax.tick_params(axis="y", length=0)
    for y in ys.values():
        ax.axhline(y, color="#dddddd", linewidth=0.8, zorder=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ys


def _bar(ax: Any, y: float, start: float, end: float, colour: str, label: str,
         hatch: str | None = None, text_colour: str = "white") -> None:
    ax.barh(y, end - start, left=start, height=0.36, color=colour, hatch=hatch,
            edgecolor="white" if hatch else colour, linewidth=0, zorder=2)
    box = {"facecolor": colour, "edgecolor": "none", "pad": 1} if hatch else None
    ax.text((start + end) / 2, y, label, ha="center", va="center", color=text_colour,
            fontsize=8, zorder=3, bbox=box)


def _arrow(ax: Any, x0: float, y0: float, x1: float, y1: float, colour: str,
           style: str = "-|>", dashed: bool = False, zorder: float = 4) -> None:
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=zorder, arrowprops={
        "arrowstyle": style, "color": colour, "linewidth": 1.2,
        "linestyle": "--" if dashed else "-", "shrinkA": 2, "shrinkB": 2})


def _mark(ax: Any, x: float, label: str, colour: str, y: float, align: str = "center"
          ) -> None:
    """A vertical dashed line across the lanes, labelled at height ``y``."""
    ax.axvline(x, color=colour, linestyle=":", linewidth=1.2, zorder=1)
    ax.text(x, y, label, ha=align, va="bottom", color=colour, fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})


def _span(ax: Any, x0: float, x1: float, y: float, label: str, colour: str) -> None:
    """A double-headed bracket from ``x0`` to ``x1`` with its label above."""
    _arrow(ax, x0, y, x1, y, colour, style="<|-|>")
    ax.text((x0 + x1) / 2, y + 0.07, label, ha="center", va="bottom", color=colour,
            fontsize=8)


def validity_deadline(path: Path) -> None:
    """Leader and store on one time axis: the renewals, the last one that succeeded, its
    TTL, the drift margin, the leader's validity deadline and the store's expiry."""
    plt = _pyplot()
    ttl, drift, renew = 10.0, 0.05, 10.0 / 3
    sends = [0.0, renew, 2 * renew]          # the third renewal never reaches the store
    t_sent = sends[1]                        # the last renewal that SUCCEEDED was sent here
    deadline = t_sent + ttl * (1 - drift)
    expiry = t_sent + ttl
    xmax = 19.5

    figure, ax = plt.subplots(figsize=(WIDTH, HEIGHT), dpi=DPI)
    ys = _lanes(ax, ["leader", "store"], xmax)
    leader, store = ys["leader"], ys["store"]

    _bar(ax, leader, 0, deadline, GREEN, "valid: ensure() passes, writes go ahead")
    _bar(ax, leader, deadline, xmax, RED, "lost: ensure() raises,\non_lost fires")
    _bar(ax, store, 0, expiry, BLUE, "the store keeps the session (at least until t_sent + "
         "TTL)")
    _bar(ax, store, expiry, xmax, GREY, "expired: a successor\nmay be elected")

    for i, sent in enumerate(sends):
        ok = i < 2
        reply = sent + 0.45
        _arrow(ax, sent, leader - 0.2, sent + 0.2, store + 0.2, BLUE if ok else RED)
        if ok:
            _arrow(ax, sent + 0.25, store + 0.2, reply, leader - 0.2, GREY, dashed=True)
    ax.text(sends[2] + 0.25, (leader + store) / 2, "no answer\n(store unreachable)",
            color=RED, fontsize=8, va="center")
    ax.text(t_sent + 0.5, (leader + store) / 2 + 0.05, "reply: NOT\nwhere validity\ncounts from",
            color=GREY, fontsize=7.5, va="center")

    top = leader + 0.45
    _mark(ax, t_sent, " t_sent: last successful\n renewal SENT", BLUE, top, align="left")
    _mark(ax, deadline, "deadline =\nt_sent + TTL x (1 - drift) ", RED, top, align="right")
    _mark(ax, expiry, " store expiry\n = t_sent + TTL", GREY, top, align="left")
    _span(ax, t_sent, expiry, store - 0.42, f"TTL = {ttl:.0f} s, counted from the send", BLUE)
    middle = (leader + store) / 2
    _arrow(ax, deadline, middle, expiry, middle, ORANGE, style="<|-|>")
    ax.text(expiry + 0.2, middle, f"drift margin: TTL x drift = {ttl * drift:.1f} s,\n"
            "nobody believes it leads", color=ORANGE, fontsize=8, va="center")
    _span(ax, 0, renew, leader + 0.3, "renew every TTL/3", GREY)

    ax.set_xlabel("time on the leader's host (s, time.monotonic(); drift = 0.05 here to be "
                  "visible, default 0.01)")
    ax.set_title("The validity deadline: the leader stops believing it leads before the "
                 "store can elect anyone else", fontsize=10)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.13)
    figure.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(figure)


def fencing_story(path: Path) -> None:
    """``tenure demo``'s story: a killed leader, a paused leader, and the stale write the
    fence refuses. Times from one demo run with TTL 2 s."""
    plt = _pyplot()
    ttl = 2.0
    killed, c4_wins, paused, c5_wins, resumed = 1.8, 3.45, 4.46, 6.14, 6.39
    xmax = 8.6
    names = ["candidate-1", "candidate-4", "candidate-5", "fenced resource\n(FencingGuard)"]

    figure, ax = plt.subplots(figsize=(WIDTH, HEIGHT), dpi=DPI)
    ys = _lanes(ax, names, xmax)
    c1, c4, c5, fence = (ys[n] for n in names)

    _bar(ax, c1, 0.1, killed, GREEN, "leads, token 1")
    ax.plot([killed], [c1], marker="X", color=RED, markersize=12, zorder=5)
    ax.text(killed + 0.08, c1 + 0.22, "SIGKILL", color=RED, fontsize=8)
    _bar(ax, c1, killed, killed + ttl * 0.82, "#bdbdbd", "dead; its session runs out",
         text_colour="black")

    _bar(ax, c4, 0.1, c4_wins, "#e0e0e0", "waits", text_colour="black")
    _bar(ax, c4, c4_wins, paused, GREEN, "leads, token 2")
    _bar(ax, c4, paused, resumed, ORANGE, "SIGSTOP: paused past its TTL", hatch="//",
         text_colour="black")
    ax.text(resumed + 0.05, c4 + 0.22, "SIGCONT: writes with token 2\nwithout checking",
            color=ORANGE, fontsize=8, va="bottom")
    _bar(ax, c4, resumed + 0.02, xmax, RED, "learns it lost; steps down")

    _bar(ax, c5, 0.1, c5_wins, "#e0e0e0", "waits", text_colour="black")
    _bar(ax, c5, c5_wins, xmax, GREEN, "leads, token 3")

    writes = [(0.5, c1, 1), (1.0, c1, 1), (1.5, c1, 1), (3.7, c4, 2), (4.2, c4, 2),
              (6.5, c5, 3), (7.0, c5, 3), (7.5, c5, 3)]
    for x, y, _token in writes:   # behind the bars they pass: only the writer's lane counts
        _arrow(ax, x, y - 0.2, x, fence + 0.1, GREEN, zorder=1)
        ax.plot([x], [fence], marker="o", color=GREEN, markersize=6, zorder=5)
    _arrow(ax, resumed + 0.02, c4 - 0.2, resumed + 0.02, fence + 0.1, RED, zorder=1)
    ax.plot([resumed + 0.02], [fence], marker="X", color=RED, markersize=12, zorder=5)
    ax.text(resumed + 0.02, fence - 0.36, "stale token 2 < 3: REJECTED", ha="center",
            color=RED, fontsize=8.5, fontweight="bold")

    for x, label in ((2.6, "highest token seen: 1"), (5.3, "highest: 2"), (7.95, "highest: 3")):
        ax.text(x, fence + 0.12, label, ha="center", color=GREY, fontsize=8)

    _mark(ax, killed + ttl * 0.82, "failover after\nthe TTL", BLUE, c1 + 0.3, align="left")
    ax.set_xlabel("time since the demo started (s); TTL 2 s; green dots: writes the fence "
                  "accepted")
    ax.set_title("Fencing: a killed leader is replaced after its TTL; a paused one wakes up "
                 "stale, and its write is refused", fontsize=10)
    figure.subplots_adjust(left=0.14, right=0.98, top=0.9, bottom=0.13)
    figure.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(figure)


PICTURES = {"validity-deadline.png": validity_deadline, "fencing.png": fencing_story}


def main(argv: list[str] | None = None) -> int:
    """Writes every picture of :data:`PICTURES` into ``--out`` (default: this folder)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write to")
    args = parser.parse_args(argv)
    if not args.out.is_dir():
        parser.error(f"--out {args.out}: not a folder; create it first")
    for name, draw in PICTURES.items():
        draw(args.out / name)
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
