"""Charts for Perf/perf.py's report (matplotlib, installed by `make perf` into .venv).

draw_all(rundir, results, history_root) writes PNGs into rundir and returns
[(file name, title)] for the report to link.
"""
import glob
import json
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


def _grid(n):
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[n:]:
        a.set_visible(False)
    return fig, flat[:n]


def iops_chart(results, path):
    meta, summary = results["meta"], results["summary"]
    jobs, targets = meta["jobs"], meta["targets"]
    fig, axes = _grid(len(jobs))
    for ax, j in zip(axes, jobs):
        for i, t in enumerate(targets):
            s = summary[j][t].get("iops")
            if not s:
                continue
            ax.bar(i, s["median"], color=COLORS[i % len(COLORS)],
                   yerr=[[s["median"] - s["min"]], [s["max"] - s["median"]]], capsize=4)
        ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right", fontsize=8)
        ax.set_title(j, fontsize=10)
        ax.set_ylabel("IOPS", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(f"IOPS per job: median of {meta['rounds']} round(s), bars min–max", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def latency_chart(results, path):
    meta, summary = results["meta"], results["summary"]
    jobs, targets = meta["jobs"], meta["targets"]
    pcts = [("lat_p50_us", "p50"), ("lat_p99_us", "p99"), ("lat_p999_us", "p99.9")]
    fig, axes = _grid(len(jobs))
    width = 0.8 / len(targets)
    for ax, j in zip(axes, jobs):
        for i, t in enumerate(targets):
            vals = [(summary[j][t].get(k) or {}).get("median", 0) for k, _ in pcts]
            ax.bar([x + i * width for x in range(len(pcts))], vals, width, label=t, color=COLORS[i % len(COLORS)])
        ax.set_xticks([x + width * (len(targets) - 1) / 2 for x in range(len(pcts))], [n for _, n in pcts],
                      fontsize=8)
        ax.set_yscale("log")
        ax.set_title(j, fontsize=10)
        ax.set_ylabel("latency µs (log)", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle("Completion latency percentiles (median over rounds)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _history_points(history_root):
    """[(run name, {pair: {job: (median, min, max)}})] of every saved run, oldest first."""
    points = []
    for path in sorted(glob.glob(os.path.join(history_root, "*", "results.json"))):
        try:
            with open(path) as f:
                res = json.load(f)
        except (OSError, ValueError):
            continue
        name = os.path.basename(os.path.dirname(path))
        pairs = {}
        if "ratios" in res:
            for k, per in res["ratios"].items():
                pairs[k] = {j: (v["median"], v["min"], v["max"]) for j, v in per.items() if v.get("n")}
        elif "results" in res:  # the one-round format of earlier runs
            targets = res["meta"]["targets"]
            ref = targets[-1]
            for t in targets[:-1]:
                per = {}
                for j, by_t in res["results"].items():
                    a, b = by_t.get(t, {}), by_t.get(ref, {})
                    if a.get("ok") and b.get("ok") and b.get("iops"):
                        r = a["iops"] / b["iops"]
                        per[j] = (r, r, r)
                pairs[f"{t}/{ref}"] = per
        points.append((name, pairs))
    return points


def history_chart(history_root, path):
    points = _history_points(history_root)
    keys = sorted({k for _, pairs in points for k in pairs if k.endswith("/tgt")}) or \
        sorted({k for _, pairs in points for k in pairs})
    if not keys:
        return False
    fig, axes = plt.subplots(len(keys), 1, figsize=(11, 3.4 * len(keys)), squeeze=False)
    names = [n for n, _ in points]
    for ax, k in zip([a for row in axes for a in row], keys):
        jobs = sorted({j for _, pairs in points for j in pairs.get(k, {})})
        for c, j in enumerate(jobs):
            xs, ys, lo, hi = [], [], [], []
            for x, (_, pairs) in enumerate(points):
                v = pairs.get(k, {}).get(j)
                if v:
                    xs.append(x)
                    ys.append(v[0])
                    lo.append(v[0] - v[1])
                    hi.append(v[2] - v[0])
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", ms=3, capsize=2, label=j, color=COLORS[c % len(COLORS)])
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title(f"IOPS ratio {k} across saved runs (median, bars min–max)", fontsize=10)
        ax.set_xticks(range(len(names)), [n.replace("T", "\n", 1) for n in names], fontsize=6)
        ax.set_ylabel("ratio", fontsize=8)
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def scaling_chart(results, path):
    summary = results.get("scale_summary") or {}
    if not summary:
        return False
    sessions = sorted((int(j.rsplit("-", 1)[1]), j) for j in summary if j.startswith("scale-sessions"))
    volumes = sorted((int(j.rsplit("-", 1)[1]), j) for j in summary if j.startswith("scale-volumes"))
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), squeeze=False)
    for col, (series, what) in enumerate(((sessions, "sessions on one volume"), (volumes, "volumes (one controller each)"))):
        if not series:
            axes[0][col].set_visible(False)
            axes[1][col].set_visible(False)
            continue
        targets = sorted({t for _, j in series for t in summary[j]})
        for c, t in enumerate(targets):
            xs, ys, lo, hi, cpu = [], [], [], [], []
            for n, j in series:
                s = summary[j].get(t, {})
                if s.get("iops"):
                    xs.append(n)
                    ys.append(s["iops"]["median"])
                    lo.append(s["iops"]["median"] - s["iops"]["min"])
                    hi.append(s["iops"]["max"] - s["iops"]["median"])
                    cpu.append((s.get("cpu_s_per_mio") or {}).get("median"))
            label = "cairn controllers" if t == "volumes" else t
            axes[0][col].errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=label, color=COLORS[c])
            axes[1][col].plot(xs, cpu, marker="o", label=label, color=COLORS[c])
        for row, ylabel in ((0, "IOPS"), (1, "CPU s per 1M I/O")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_xticks([n for n, _ in series], [str(n) for n, _ in series])
            ax.set_xlabel(what, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.legend(fontsize=7)
        axes[0][col].set_title(f"4 KiB random reads, depth 4 each: {what}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def qos_chart(results, path):
    """Each limited QoS accuracy run's per-second rate over its limit against time."""
    qos = results.get("qos_accuracy") or {}
    runs = [r for r in qos.get("runs", []) if r.get("limit") and r.get("rates")]
    if not runs:
        return False
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for c, r in enumerate(runs):
        limit = f"{r['limit']:,} write IOPS" if r["metric"] == "iops" else f"{r['limit'] / 1048576:g} MiB/s written"
        note = " (not reached)" if r.get("verdict", "").startswith("not reached") else ""
        # markers and widths differ: runs that each hold their limit draw the same line
        ax.plot(r["seconds"], [v / r["limit"] for v in r["rates"]], marker="osD^v"[c % 5], ms=7 - c, lw=2.5 - 0.5 * c,
                label=f"{limit}, {r['job']}{note}", color=COLORS[c % len(COLORS)])
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("second of the run (each point: the mean over the second before it)", fontsize=8)
    ax.set_ylabel("rate / limit", fontsize=8)
    ax.set_title("QoS accuracy: per-second rate over the limit (the first second spends the 1 s burst)",
                 fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def draw_all(rundir, results, history_root):
    out = []
    if results["meta"]["jobs"]:  # none in a run of the QoS accuracy part alone
        iops_chart(results, os.path.join(rundir, "iops.png"))
        out.append(("iops.png", "IOPS per job and target, median with min–max"))
        latency_chart(results, os.path.join(rundir, "latency.png"))
        out.append(("latency.png", "latency percentiles p50, p99, p99.9"))
    if scaling_chart(results, os.path.join(rundir, "scaling.png")):
        out.append(("scaling.png", "IOPS and CPU per I/O against sessions and volumes"))
    if history_chart(history_root, os.path.join(rundir, "history.png")):
        out.append(("history.png", "ratios to tgt across the saved runs"))
    if qos_chart(results, os.path.join(rundir, "qos.png")):
        out.append(("qos.png", "QoS accuracy: per-second rate over the limit"))
    return out
