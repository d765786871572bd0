"""bench/results.json as a PNG: the agent and the shell side by side, each
panel on a linear scale with its values written on the bars, the ratio
where the target is one, and the target drawn as a dashed line."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
h, c = results["healthy"], results["critical_path"]
AGENT, SHELL, TARGET = "#2b7bba", "#c0504d", "#2e8b3a"
fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))


def fmt(v, unit):
    return f"{v:.0f} {unit}" if v >= 10 else f"{v:.1f} {unit}"


def pair(ax, title, unit, agent, shell, target, target_label, ratio=True):
    """Two horizontal bars (agent, shell), their values, shell ÷ agent and a target line."""
    ax.barh(["shell", "agent"], [shell, agent], color=[SHELL, AGENT])
    top = max(agent, shell, target)
    for y, v in enumerate([shell, agent]):
        ax.annotate(fmt(v, unit), (v, y), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=10, fontweight="bold")
    ax.axvline(target, color=TARGET, linestyle="--", linewidth=1.5)
    ax.annotate(target_label, (target, 1.42), xytext=(4, 0), textcoords="offset points",
                color=TARGET, fontsize=9, va="center")
    ax.set_xlim(0, top * 1.25)
    ax.set_ylim(-0.6, 1.7)
    ax.set_xlabel(unit)
    heading = f"{title}\nshell ÷ agent = {shell / agent:.1f}×" if ratio else title
    ax.set_title(heading, fontsize=11)


pair(axes[0][0], "healthy path: wall time", "ms", h["agent"]["wall_ms"], h["shell"]["wall_ms"],
     h["shell"]["wall_ms"] / 10, "target: agent ≤ shell ÷ 10")
pair(axes[0][1], "healthy path: CPU time", "ms", h["agent"]["cpu_ms"], h["shell"]["cpu_ms"],
     h["shell"]["cpu_ms"] / 10, "target: agent ≤ shell ÷ 10")
pair(axes[0][2], "healthy path: peak RSS (largest process)", "MiB", h["agent"]["peak_rss_mib"],
     h["shell"]["peak_rss_mib"], 15, "target: agent ≤ 15 MiB")
pair(axes[1][0], "critical path: /readyz ok → kubeconfig captured", "ms", c["agent"]["ms"],
     c["shell"]["ms"], 100, "target: agent < 100 ms")


def grouped(ax, rows, value, unit, title, worst=None, ticks=None):
    """Agent and shell bars per outage length, each labelled with its value;
    `worst` draws a whisker up to the worst run."""
    xs = range(len(rows))
    for side, dx, color in (("agent", -0.21, AGENT), ("shell", 0.21, SHELL)):
        vals = [value(r[side]) for r in rows]
        ax.bar([x + dx for x in xs], vals, 0.4, color=color, label=side)
        for x, r, v in zip(xs, rows, vals):
            top = v
            if worst:
                top = worst(r[side])
                ax.plot([x + dx] * 2, [v, top], color="black", linewidth=1)
                ax.plot([x + dx - 0.06, x + dx + 0.06], [top] * 2, color="black", linewidth=1)
            ax.annotate(f"{v:.2f}" if unit == "s" else f"{v:.0f}", (x + dx, top), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=9,
                        fontweight="bold")
    ax.set_xticks(list(xs), [ticks(r) if ticks else f"{r['seconds']} s outage" for r in rows],
                  fontsize=9)
    ax.set_title(title, fontsize=11)


outages = results["outages"]
refused = [r for r in outages if r["kind"] == "unreachable"]
overloaded = [r for r in outages if r["kind"] != "unreachable"]

ax = axes[1][1]
grouped(ax, refused, lambda s: s["capture_after_recovery_ms"] / 1000, "s",
        "catalyst-api unreachable (connection refused)\nrecovery → kubeconfig captured",
        worst=lambda s: s["capture_after_recovery_max_ms"] / 1000)
ax.set_ylabel("s (median; whisker: worst run)")
# A shell node at a random phase of its 10 s cadence: 5 s at the median,
# 10 s at worst.
ax.axhline(5, color=TARGET, linestyle="--", linewidth=1.5, label="target: agent's median ≤ 5 s")
ax.axhline(10, color=TARGET, linestyle=":", linewidth=1.5, label="target: agent's worst ≤ 10 s")
ax.set_ylim(0, max(12.5, max(r["agent"]["capture_after_recovery_max_ms"] for r in refused) / 1000 * 1.2,
                   max(r["shell"]["capture_after_recovery_max_ms"] for r in refused) / 1000 * 1.2))
ax.legend(fontsize=9, loc="upper right")

ax = axes[1][2]
grouped(ax, overloaded, lambda s: s["requests_during"], "requests",
        "catalyst-api overloaded (503, no Retry-After)\nrequests sent during the outage",
        ticks=lambda r: f"{r['seconds']} s outage\n"
        f"agent +{r['agent']['capture_after_recovery_ms'] / 1000:.1f} s\n"
        f"shell +{r['shell']['capture_after_recovery_ms'] / 1000:.1f} s")
ax.set_ylabel("requests (median)")
ax.set_xlabel("+ s: kubeconfig captured that long after recovery", fontsize=9)
ax.set_ylim(0, max(r["shell"]["requests_during"] for r in overloaded) * 1.6)
# The target is relative: the agent's bar at most 4/3 of the shell's (its
# cadence is three quarters of the shell's).
ax.plot([], [], color=TARGET, linestyle="--", label="target: agent ≤ 4/3 × shell")
for x, r in enumerate(overloaded):
    ax.plot([x - 0.41, x + 0.41], [r["shell"]["requests_during"] * 4 / 3] * 2, color=TARGET,
            linestyle="--", linewidth=1.5)
ax.legend(fontsize=9, loc="upper left")

fig.suptitle(
    "catalyst-bootstrap vs. the cloud-init shell it replaces (lower is better; dashed green = target)\n"
    f"{results['date']}, commit {results['commit']}, {results['machine']['cores']} cores; "
    f"medians of {len(h['agent']['samples']['wall_ms'])} runs, outages of {results['outage_runs']} "
    f"(each + a random phase); 1-min load average {results['load']['before']} before",
    fontsize=12,
)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
