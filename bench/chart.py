"""bench/results.json as a PNG: the agent and the shell side by side."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
h, c = results["healthy"], results["critical_path"]
fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
colors = ["#2b7bba", "#c0504d"]


def bars(ax, title, unit, agent, shell, log=False):
    ax.bar(["agent", "shell"], [agent, shell], color=colors)
    ax.set_title(title)
    ax.set_ylabel(unit)
    if log:
        ax.set_yscale("log")
    for x, v in enumerate([agent, shell]):
        ax.annotate(f"{v:.0f}" if v >= 10 else f"{v:.1f}", (x, v), ha="center", va="bottom")


bars(axes[0], "healthy path: wall", "ms (log)", h["agent"]["wall_ms"], h["shell"]["wall_ms"], log=True)
bars(axes[1], "healthy path: CPU", "ms (log)", h["agent"]["cpu_ms"], h["shell"]["cpu_ms"], log=True)
bars(axes[2], "peak RSS, largest process", "MiB", h["agent"]["peak_rss_mib"], h["shell"]["peak_rss_mib"])

ax = axes[3]
rows = results["outages"]
short = {"unreachable": "refused", "overloaded (503)": "503"}
labels = [f"{short.get(r['kind'], r['kind'])}\n{r['seconds']} s" for r in rows]
xs = range(len(rows))
ax.bar([x - 0.2 for x in xs], [r["agent"]["capture_after_recovery_ms"] / 1000 for r in rows], 0.4, color=colors[0], label="agent")
ax.bar([x + 0.2 for x in xs], [r["shell"]["capture_after_recovery_ms"] / 1000 for r in rows], 0.4, color=colors[1], label="shell")
ax.set_xticks(list(xs), labels, fontsize=8)
ax.set_title("catalyst-api outage: recovery → capture")
ax.set_ylabel("s")
ax.legend()
fig.suptitle(
    f"catalyst-bootstrap vs. the cloud-init shell — critical path (/readyz → captured): "
    f"agent {c['agent']['ms']:.0f} ms, shell {c['shell']['ms']:.0f} ms  "
    f"({results['date']}, {results['commit']}, {results['machine']['cores']} cores)",
    fontsize=10,
)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
