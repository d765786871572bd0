"""bench/fleet.json as a PNG: for a few cases, the agent and the shell per
fleet size; time to the last capture after recovery (bar: median, whisker:
max) and peak arrivals per 100 ms (median, whisker: max)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

data = json.load(open(sys.argv[1]))
AGENT, SHELL = "#2b7bba", "#c0504d"
PANELS = [
    ("spread over a minute, refused 120 s, C=100", dict(window_s=60, outage_s=120, refused=True, capacity=100, retry_after_s=None)),
    ("together, refused 120 s, C=100", dict(window_s=1, outage_s=120, refused=True, capacity=100, retry_after_s=None)),
    ("spread over a minute, 503 for 120 s, C=10", dict(window_s=60, outage_s=120, refused=False, capacity=10, retry_after_s=None)),
]


def pick(match):
    rows = [s for s in data["cases"] if all(s["case"][k] == v for k, v in match.items())]
    return sorted(rows, key=lambda s: s["case"]["nodes"])


def val(v):
    return float("nan") if v is None else v  # serde writes "never" (inf) as null


fig, axes = plt.subplots(2, len(PANELS), figsize=(5.5 * len(PANELS), 8.5))
for col, (title, match) in enumerate(PANELS):
    rows = pick(match)
    labels = [str(r["case"]["nodes"]) for r in rows]
    xs = range(len(rows))
    for row, (key, unit) in enumerate([("last_s", "s after recovery"), ("peak_per_100ms", "arrivals per 100 ms")]):
        ax = axes[row][col]
        for side, dx, color in (("agent", -0.21, AGENT), ("shell", 0.21, SHELL)):
            med = [val(r[side][key]["median"]) for r in rows]
            top = [val(r[side][key]["max"]) for r in rows]
            ax.bar([x + dx for x in xs], med, 0.4, color=color, label=side)
            for x, m, t in zip(xs, med, top):
                ax.plot([x + dx] * 2, [m, t], color="black", linewidth=1)
                txt = "never" if t != t else (f"{m:.0f}" if m >= 10 else f"{m:.1f}")
                ax.annotate(txt, (x + dx, m), xytext=(0, 2), textcoords="offset points",
                            ha="center", fontsize=8)
        ax.set_xticks(list(xs), labels)
        ax.set_xlabel("nodes")
        ax.set_ylabel(unit)
        ax.set_yscale("symlog", linthresh=10)
        ax.set_title(f"{'last capture' if row == 0 else 'peak arrivals'}: {title}", fontsize=10)
        ax.legend(fontsize=8)
fig.suptitle("Fleet simulation: the agent's retry policy against the shell's (bar: median, whisker: max)")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
