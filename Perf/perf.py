#!/usr/bin/env python3
"""Helpers for Perf/run and Perf/check (Python standard library; the charts
need matplotlib, which `make perf` installs into .venv).

  perf.py job --pid PID[,PID...] --ramp SECONDS [--disk DEV] --out CPU.json -- FIO ARGS...
      Runs fio, and measures the target's processes (a controller and its
      replicas: all of them are the target's cost) while fio's measured window
      lasts: CPU time (utime + stime of /proc/PID/stat, all threads) and
      context switches (voluntary + nonvoluntary, summed over
      /proc/PID/task/*/status), for each PID.  The first sample is taken RAMP
      seconds after fio starts (fio's ramp_time: I/O then is not counted by
      fio either), the second when fio exits.  Writes {"cpu_s", "ctx_vol",
      "ctx_invol", "per_pid": [...], "window_s", "fio_rc"} to CPU.json; exits
      with fio's status.  With --disk DEV (a name in /proc/diskstats: the
      device under the scratch folder), the device's own counters over the
      same window go in as "disk": reads and writes completed per second, the
      mean time one took (ms, queueing in the device included) and the mean
      number in flight: whether the disk, not the target, was what held a run.

  perf.py meta RUNDIR "JOB..." FIO_VERSION RUNTIME RAMP ROUNDS SIZE_MIB SCRATCH
               "SCALE_JOB..." "SCALE_TARGET..." SCALE_SIZE_MIB COMMIT PIN_CPU
      Writes RUNDIR/meta.json from those and RUNDIR/targets.tsv (label, description).

  perf.py report RUNDIR
      Reads RUNDIR/meta.json and RUNDIR/<target>/<job>.r<N>.json (fio JSON) +
      .cpu.json (and RUNDIR/disk/ceiling-N.r<N>.json, the disk ceiling runs,
      when there are any), writes RUNDIR/results.json, RUNDIR/results.md and the charts
      (when matplotlib is there), prints the Markdown.

  perf.py check RUNDIR BASELINE.json
      Compares the run's median IOPS ratios with the baseline's; prints a
      table, exits 1 naming each job whose ratio fell more than the baseline's
      tolerance below it.

  perf.py baseline RUNDIR BASELINE.json TOLERANCE
      Writes the run's median ratios, settings and machine as a baseline.
"""
import glob
import json
import os
import statistics
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))


# ---- job: run fio, sample the target's processes ---------------------------

def sample(pid):
    with open(f"/proc/{pid}/stat") as f:
        # the command name (field 2) may contain spaces: split after ')'
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol += int(line.split()[1])
        except FileNotFoundError:  # thread exited meanwhile
            pass
    return cpu, vol, invol


def sample_all(pids):
    return time.monotonic(), [sample(p) for p in pids]


def disk_sample(dev):
    """(reads, read ms, writes, write ms, weighted ms in flight) of DEV from /proc/diskstats, or
    None when it is not there (the run's CPU figures do not depend on it)."""
    with open("/proc/diskstats") as f:
        for line in f:
            x = line.split()
            if x[2] == dev:
                return int(x[3]), int(x[6]), int(x[7]), int(x[10]), int(x[13])
    return None


def disk_delta(a, b, seconds):
    reads, rms, writes, wms, weighted = (y - x for x, y in zip(a, b))
    return {"reads_s": reads / seconds, "writes_s": writes / seconds,
            "read_ms": rms / reads if reads else None, "write_ms": wms / writes if writes else None,
            "in_flight": weighted / (seconds * 1000.0)}


def cmd_job(argv):
    sep = argv.index("--")
    opts = dict(zip(argv[:sep:2], argv[1:sep:2]))
    pids = [int(p) for p in opts["--pid"].split(",") if p]
    ramp, out = float(opts["--ramp"]), opts["--out"]
    dev = opts.get("--disk") or None
    fio = subprocess.Popen(argv[sep + 1:])
    first = last = disk0 = disk1 = None
    try:
        try:
            rc = fio.wait(timeout=ramp)
        except subprocess.TimeoutExpired:
            rc = None
        first = sample_all(pids)
        disk0 = disk_sample(dev) if dev else None
        if rc is None:
            rc = fio.wait()
        last = sample_all(pids)
        disk1 = disk_sample(dev) if dev else None
    except (OSError, IndexError, ValueError) as e:  # the target went away
        print(f"perf.py: cannot sample pids {pids}: {e}", file=sys.stderr)
        rc = fio.wait()
    if first and last:
        per_pid = [{"pid": p, "cpu_s": b[0] - a[0], "ctx": (b[1] - a[1]) + (b[2] - a[2])}
                   for p, a, b in zip(pids, first[1], last[1])]
        result = {"cpu_s": sum(x["cpu_s"] for x in per_pid),
                  "ctx_vol": sum(b[1] - a[1] for a, b in zip(first[1], last[1])),
                  "ctx_invol": sum(b[2] - a[2] for a, b in zip(first[1], last[1])),
                  "per_pid": per_pid, "window_s": last[0] - first[0], "fio_rc": rc}
        if disk0 and disk1 and result["window_s"] > 0:
            result["disk"] = {"device": dev, **disk_delta(disk0, disk1, result["window_s"])}
    else:
        result = {"fio_rc": rc, "target_gone": True}
    with open(out, "w") as f:
        json.dump(result, f)
    return rc


# ---- meta --------------------------------------------------------------------

def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1048576:.0f} GiB"
    return f"{os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs, {cpu}, {mem}"


def cmd_meta(rundir, jobs, fio, runtime, ramp, rounds, size_mib, scratch, scale_jobs, scale_targets,
             scale_size_mib, commit, pin_cpu):
    targets, describe = [], {}
    with open(os.path.join(rundir, "targets.tsv")) as f:
        for line in f:
            label, desc = line.rstrip("\n").split("\t", 1)
            targets.append(label)
            describe[label] = desc
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "targets": targets, "describe": describe, "jobs": jobs.split(),
            "fio": fio, "runtime": float(runtime), "ramp": float(ramp), "rounds": int(rounds),
            "size_mib": int(size_mib), "scratch": scratch, "scale_jobs": scale_jobs.split(),
            "scale_targets": scale_targets.split(), "scale_size_mib": int(scale_size_mib),
            "commit": commit, "pin_cpu": pin_cpu, "host": machine()}
    with open(os.path.join(rundir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return 0


# ---- report ------------------------------------------------------------------

def fio_numbers(path):
    with open(path) as f:
        text = f.read()
    job = json.loads(text[text.index("{"):])["jobs"][0]  # with group_reporting: the group
    opts = job["job options"]
    # unified_rw_reporting=both: "mixed" sums reads and writes (randrw)
    s = job.get("mixed") or (job["write"] if job["write"]["total_ios"] else job["read"])
    lat = s["lat_ns"]
    pct = lat.get("percentile", {})
    return {"iops": s["iops"], "mib_s": s["bw"] / 1024.0, "total_ios": s["total_ios"],
            "lat_mean_us": lat["mean"] / 1000.0,
            "lat_p50_us": pct.get("50.000000", 0) / 1000.0,
            "lat_p99_us": pct.get("99.000000", 0) / 1000.0,
            "lat_p999_us": pct.get("99.900000", 0) / 1000.0,
            "error": job.get("error", 0)}


def one_run(base):
    """The figures of one fio run (BASE.json + BASE.cpu.json)."""
    r = {"ok": False}
    try:
        r.update(fio_numbers(base + ".json"))
        with open(base + ".cpu.json") as f:
            cpu = json.load(f)
        if cpu.get("target_gone"):
            raise ValueError("the target process was gone during the job")
        ios = r["total_ios"]
        # CPU seconds per million I/Os (numerically: CPU µs per I/O)
        r["cpu_s_per_mio"] = cpu["cpu_s"] * 1e6 / ios if ios else None
        r["cpu_s_per_mio_each"] = [p["cpu_s"] * 1e6 / ios if ios else None for p in cpu.get("per_pid", [])]
        r["ctx_per_io"] = (cpu["ctx_vol"] + cpu["ctx_invol"]) / ios if ios else None
        d = cpu.get("disk")
        if d:
            done = d["reads_s"] + d["writes_s"]
            r["disk_iops"] = done
            ms = [(d["reads_s"], d["read_ms"]), (d["writes_s"], d["write_ms"])]
            r["disk_ms"] = sum(n * m for n, m in ms if m is not None) / done if done else None
        r["ok"] = r["error"] == 0 and cpu["fio_rc"] == 0 and ios > 0
        if not r["ok"]:
            r["problem"] = f"fio error {r['error']}, exit {cpu['fio_rc']}, {ios} I/Os"
    except (OSError, ValueError, KeyError) as e:
        r["problem"] = f"{type(e).__name__}: {e}"
    return r


METRICS = ("iops", "mib_s", "lat_mean_us", "lat_p50_us", "lat_p99_us", "lat_p999_us", "cpu_s_per_mio",
           "ctx_per_io", "disk_iops", "disk_ms")


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs):
    ok = [r for r in runs if r.get("ok")]
    s = {m: spread([r.get(m) for r in ok]) for m in METRICS}
    each = [r["cpu_s_per_mio_each"] for r in ok if r.get("cpu_s_per_mio_each")]
    if each and all(len(e) == len(each[0]) for e in each):
        s["cpu_s_per_mio_each"] = [statistics.median(col) for col in zip(*each)]
    s["ok"], s["failed"] = len(ok), len(runs) - len(ok)
    return s


def ratio_pairs(targets):
    """(a, b) pairs to report a/b for: every target against the last, and
    each replicated cairn against the --file one."""
    ref = targets[-1]
    pairs = [(t, ref) for t in targets[:-1]]
    if "cairn" in targets:
        pairs += [(t, "cairn") for t in targets if t.startswith("cairn-r")]
    return pairs


def round_ratios(runs_a, runs_b, metric="iops"):
    """a/b for each round in which both ran fine."""
    by_round = {r["round"]: r for r in runs_b if r.get("ok")}
    out = []
    for ra in runs_a:
        rb = by_round.get(ra["round"])
        if ra.get("ok") and rb and ra.get(metric) and rb.get(metric):
            out.append(ra[metric] / rb[metric])
    return out


def collect(rundir, meta):
    runs = {}
    for j in meta["jobs"]:
        for t in meta["targets"]:
            runs.setdefault(j, {})[t] = load_rounds(rundir, t, j, meta["rounds"])
    scale = {}
    for j in meta.get("scale_jobs", []):
        labels = ["volumes"] if j.startswith("scale-volumes") else meta["scale_targets"]
        for t in labels:
            scale.setdefault(j, {})[t] = load_rounds(rundir, t, j, meta["rounds"])
    return runs, scale


def load_rounds(rundir, target, job, rounds):
    out = []
    for n in range(1, rounds + 1):
        base = os.path.join(rundir, target, f"{job}.r{n}")
        if not os.path.exists(base + ".cpu.json") and not os.path.exists(base + ".json"):
            continue
        r = one_run(base)
        r["round"] = n
        out.append(r)
    return out


def load_ceiling(rundir, rounds):
    """The disk ceiling runs (RUNDIR/disk/ceiling-N.rR.json, N files at once):
    {N: {"per_round": [IOPS or None, ...], median, min, max, n}}; {} when there are none."""
    out = {}
    for path in sorted(glob.glob(os.path.join(rundir, "disk", "ceiling-*.r1.json"))):
        n = os.path.basename(path).split(".")[0].split("-")[1]
        per_round = []
        for r in range(1, rounds + 1):
            try:
                f = fio_numbers(os.path.join(rundir, "disk", f"ceiling-{n}.r{r}.json"))
                per_round.append(f["iops"] if f["error"] == 0 and f["total_ios"] > 0 else None)
            except (OSError, ValueError, KeyError):
                per_round.append(None)
        out[n] = {"per_round": per_round, **(spread(per_round) or {})}
    return out


def ceiling_section(ceiling, summary):
    """Markdown lines for the disk ceiling, and how close cairn-rN's random writes come to it."""
    if not ceiling:
        return []
    md = ["", "## Disk ceiling", "",
          "fio straight on files in the scratch folder, no target in between (io_uring, O_DIRECT, "
          "4 KiB random writes, one job at queue depth 32 per file), at the start of each round. "
          "The disk of a shared VM moves from minute to minute; this says what it could do then.", "",
          "| files at once | IOPS (all files) | per round |", "|---|---:|---:|"]
    for n, c in sorted(ceiling.items(), key=lambda kv: int(kv[0])):
        md.append(f"| {n} | {fmt_spread(c if c.get('n') else None)} | "
                  + " / ".join(fmt(v) for v in c["per_round"]) + " |")
    for t, s in summary.get("randwrite-4k-qd32", {}).items():
        copies = t[len("cairn-r"):] if t.startswith("cairn-r") else None
        c = ceiling.get(copies) if copies else None
        if c and c.get("n") and s.get("ok") and int(copies) > 1:
            per_copy = c["median"] / int(copies)
            md.append("")
            md.append(f"{t} writes every I/O {copies} times to this one disk: its ceiling here is the "
                      f"{copies}-file figure / {copies} = {fmt(per_copy)} IOPS; its randwrite-4k-qd32 median "
                      f"is {fmt(s['iops']['median'])} ({s['iops']['median'] / per_copy:.0%} of it)."
                      + (f" The disk completed {fmt(s['disk_iops']['median'])} I/Os per second during its runs, "
                         f"{s['disk_iops']['median'] / c['median']:.0%} of the {copies}-file figure."
                         if s.get("disk_iops") else ""))
    return md


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def fmt_spread(s, digits=0, key=None):
    if not s:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"], digits)
    return f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}–{fmt(s['max'], digits)})"


def process_names(target, n):
    if target.startswith("cairn-r"):
        return ["ctrl"] + [f"r{i}" for i in range(1, n)]
    if target == "volumes":
        return [f"v{i}" for i in range(1, n + 1)]
    return [target]


def cpu_cell(s, target):
    total = fmt(s["cpu_s_per_mio"]["median"], 1) if s.get("cpu_s_per_mio") else "-"
    each = s.get("cpu_s_per_mio_each")
    if each and len(each) > 1 and target != "volumes":
        names = process_names(target, len(each))
        return total + " (" + " + ".join(f"{n} {v:.1f}" for n, v in zip(names, each)) + ")"
    return total


def disk_cell(s):
    """The device's I/Os per second (reads + writes) and the mean time of one, median over the rounds."""
    if not s.get("disk_iops"):
        return "-"
    ms = f" / {s['disk_ms']['median']:.2f} ms" if s.get("disk_ms") else ""
    return fmt(s["disk_iops"]["median"]) + ms


def cmd_report(rundir):
    with open(os.path.join(rundir, "meta.json")) as f:
        meta = json.load(f)
    targets, jobs = meta["targets"], meta["jobs"]
    runs, scale = collect(rundir, meta)
    summary = {j: {t: summarize(runs[j][t]) for t in targets} for j in jobs}
    ratios = {}
    for a, b in ratio_pairs(targets):
        key = f"{a}/{b}"
        for j in jobs:
            rr = round_ratios(runs[j][a], runs[j][b])
            ratios.setdefault(key, {})[j] = {"per_round": rr, **(spread(rr) or {})}
    cpu_ratios = {}  # CPU per I/O over the reference's, round by round (lower: cheaper)
    for t in targets[:-1]:
        for j in jobs:
            rr = round_ratios(runs[j][t], runs[j][targets[-1]], "cpu_s_per_mio")
            cpu_ratios.setdefault(f"{t}/{targets[-1]}", {})[j] = {"per_round": rr, **(spread(rr) or {})}
    scale_summary = {j: {t: summarize(v) for t, v in per.items()} for j, per in scale.items()}
    ceiling = load_ceiling(rundir, meta["rounds"])
    results = {"meta": meta, "runs": runs, "summary": summary, "ratios": ratios, "cpu_ratios": cpu_ratios,
               "scale_runs": scale, "scale_summary": scale_summary, "disk_ceiling": ceiling}
    with open(os.path.join(rundir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    charts, chart_note = [], ""
    try:
        import plots  # noqa: E402  (matplotlib: only the charts need it)
        charts = plots.draw_all(rundir, results, os.path.dirname(os.path.abspath(rundir)))
    except ImportError as e:
        chart_note = f"charts skipped: {e} (`make perf` installs matplotlib into .venv)"

    md = [f"# Cairn perf: {meta['date']}", "",
          "- targets: " + "; ".join(f"**{t}**: {meta['describe'][t]}" for t in targets),
          f"- fio {meta['fio']} (libiscsi engine), numjobs=1, volume {meta['size_mib']} MiB on "
          f"{meta['scratch']}; ramp {meta['ramp']:g} s then {meta['runtime']:g} s measured; "
          f"{meta['rounds']} round(s), in each every job against every target in turn (order flips)",
          f"- host: {meta['host']}; commit {meta.get('commit', '?')}"
          + (f"; every target process and fio pinned to CPU {meta['pin_cpu']}"
             if meta.get("pin_cpu", "none") != "none" else ""),
          "- each figure: the median over the rounds (min–max in brackets); latency in µs, "
          "p50 / p99 / p99.9 medians",
          "- CPU s/1M IO: CPU seconds (utime+stime) of the target's processes per million I/Os over "
          "fio's measured window, and each process's share (ctrl = controller, rN = replica N); "
          "ctx/IO: their context switches (all threads) per I/O",
          "- disk: the scratch folder's device over the same window (/proc/diskstats): I/Os it completed "
          "per second, all writers together (a 3-replica volume writes each I/O three times), and the "
          "mean time one took in it", "",
          "## Matrix", "",
          "| job | target | IOPS | MiB/s | lat p50 / p99 / p99.9 | CPU s/1M IO | ctx/IO | disk IO/s / ms |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for j in jobs:
        for t in targets:
            s = summary[j][t]
            if not s["ok"]:
                problems = "; ".join(sorted({r.get("problem", "?") for r in runs[j][t]})) or "no run"
                md.append(f"| {j} | {t} | FAILED: {problems} | | | | | |")
                continue
            lat = " / ".join(fmt(s[m]["median"], 0) for m in ("lat_p50_us", "lat_p99_us", "lat_p999_us"))
            failed = f" ({s['failed']} failed)" if s["failed"] else ""
            md.append(f"| {j} | {t} | {fmt_spread(s['iops'])}{failed} | {fmt(s['mib_s']['median'], 1)} | {lat} "
                      f"| {cpu_cell(s, t)} | {fmt(s['ctx_per_io']['median'], 2)} | {disk_cell(s)} |")
    if ratios:
        keys = list(ratios)
        md += ["", "## Ratios", "",
               "IOPS of one target over another's, round by round (the two runs of a round are "
               "adjacent in time): median (min–max). Above 1: the first is faster.", "",
               "| job | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        for j in jobs:
            md.append(f"| {j} | " + " | ".join(fmt_spread(ratios[k][j] if ratios[k][j].get("n") else None, 2)
                                               for k in keys) + " |")
        ckeys = list(cpu_ratios)
        md += ["", f"CPU per I/O over {targets[-1]}'s, round by round: median (min–max). Below 1: the first "
               "costs less CPU per I/O.", "",
               "| job | " + " | ".join(ckeys) + " |", "|---|" + "---:|" * len(ckeys)]
        for j in jobs:
            md.append(f"| {j} | " + " | ".join(fmt_spread(cpu_ratios[k][j] if cpu_ratios[k][j].get("n") else None, 2)
                                               for k in ckeys) + " |")
    md += ceiling_section(ceiling, summary)
    if scale_summary:
        md += ["", "## Scaling", "",
               "Sessions: 4 KiB random reads at depth 4 per session, N sessions on one volume. "
               f"Volumes: N cairn controllers (--file, {meta.get('scale_size_mib', '?')} MiB each), "
               "4 KiB random reads at depth 4 on each; CPU summed over the N controllers.", "",
               "| run | target | IOPS | lat p50 / p99 | CPU s/1M IO | ctx/IO | disk IO/s / ms |",
               "|---|---|---:|---:|---:|---:|---:|"]
        for j, per in scale_summary.items():
            for t, s in per.items():
                if not s["ok"]:
                    md.append(f"| {j} | {t} | FAILED | | | | |")
                    continue
                lat = " / ".join(fmt(s[m]["median"], 0) for m in ("lat_p50_us", "lat_p99_us"))
                md.append(f"| {j} | {t} | {fmt_spread(s['iops'])} | {lat} | {fmt(s['cpu_s_per_mio']['median'], 1)} "
                          f"| {fmt(s['ctx_per_io']['median'], 2)} | {disk_cell(s)} |")
    if charts:
        md += ["", "## Charts", ""] + [f"![{title}]({name})" for name, title in charts]
    elif chart_note:
        md += ["", chart_note]
    text = "\n".join(md) + "\n"
    with open(os.path.join(rundir, "results.md"), "w") as f:
        f.write(text)
    print(text)
    bad = [f"{j}/{t}" for j in jobs for t in targets if summary[j][t]["failed"] or not summary[j][t]["ok"]]
    bad += [f"{j}/{t}" for j, per in scale_summary.items() for t, s in per.items() if s["failed"] or not s["ok"]]
    if bad:
        print("failed runs: " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


# ---- baseline and check --------------------------------------------------------

SETTINGS = ("jobs", "targets", "rounds", "runtime", "ramp", "size_mib", "pin_cpu")
# A baseline is made with more rounds than a check on purpose (Perf/check).
COMPARED_SETTINGS = tuple(k for k in SETTINGS if k != "rounds")


def load_results(rundir):
    with open(os.path.join(rundir, "results.json")) as f:
        return json.load(f)


def cmd_baseline(rundir, path, tolerance):
    res = load_results(rundir)
    meta = res["meta"]
    ref = meta["targets"][-1]  # the gate compares each target with the reference (tgt)
    vs_ref = {k: per for k, per in res["ratios"].items() if k.endswith("/" + ref)}
    medians = {k: {j: v["median"] for j, v in per.items() if v.get("n")} for k, per in vs_ref.items()}
    base = {"created": meta["date"], "commit": meta.get("commit"), "machine": meta["host"],
            "scratch": meta["scratch"], "settings": {k: meta[k] for k in SETTINGS},
            "tolerance": float(tolerance), "ratios": medians,
            "cpu_ratios": {k: {j: v["median"] for j, v in per.items() if v.get("n")}
                           for k, per in res.get("cpu_ratios", {}).items()},
            "spread": {k: {j: [v["min"], v["max"]] for j, v in per.items() if v.get("n")}
                       for k, per in vs_ref.items()}}
    with open(path, "w") as f:
        json.dump(base, f, indent=1)
        f.write("\n")
    print(f"baseline written to {path}: machine {base['machine']}; tolerance {tolerance}")
    for k, per in medians.items():
        print(f"  {k}: " + ", ".join(f"{j} {v:.2f}" for j, v in per.items()))
    return 0


def gate(base_ratios, now_ratios, prefix, factor, tol, failures):
    """Prints one line per baseline ratio and appends to failures each that is
    past its limit (baseline × factor): below it when factor < 1, above it
    when factor > 1."""
    lower_is_bad = factor < 1
    for k, per in base_ratios.items():
        label = prefix + k
        for j, b in per.items():
            now = now_ratios.get(k, {}).get(j, {})
            limit = b * factor
            if not now.get("n"):
                failures.append(f"{j} ({label}): no ratio (a run failed)")
                print(f"{j:<22} {label:<16} {b:>8.2f} {'-':>6} {limit:>6.2f}  FAIL (no ratio)")
                continue
            m = now["median"]
            verdict = "ok"
            if (m < limit) if lower_is_bad else (m > limit):
                verdict = "FAIL"
                failures.append(f"{j} ({label}): {m:.2f}, {'below' if lower_is_bad else 'above'} {limit:.2f} "
                                f"(baseline {b:.2f} {'-' if lower_is_bad else '+'} {tol:.0%})")
            elif lower_is_bad and m > b * (1 + tol):
                verdict = "ok (faster than the baseline: `make perf-baseline` to raise it)"
            print(f"{j:<22} {label:<16} {b:>8.2f} {m:>6.2f} {limit:>6.2f}  {verdict}")


def cmd_check(rundir, path):
    res = load_results(rundir)
    with open(path) as f:
        base = json.load(f)
    meta, tol = res["meta"], base["tolerance"]
    notes = []
    for k in COMPARED_SETTINGS:
        if meta.get(k) != base["settings"].get(k):
            notes.append(f"setting {k}: this run {meta.get(k)}, baseline {base['settings'].get(k)}")
    if meta["host"] != base["machine"]:
        notes.append(f"machine differs: this run on {meta['host']}; the baseline was made on {base['machine']}")
    print(f"perf-check against {path} (made {base['created']}, commit {base.get('commit')})")
    print(f"IOPS ratios fail below baseline × {1 - tol:.2f}; CPU-per-I/O ratios fail above baseline × {1 + tol:.2f}")
    print(f"{'job':<22} {'ratio':<16} {'baseline':>8} {'now':>6} {'limit':>6}  result")
    failures = []
    # IOPS ratios must not fall below the floor; CPU per I/O relative to the
    # reference's (steadier than IOPS on a busy machine: it counts work, not
    # waiting, so it catches added work that the IOPS noise would hide) must not
    # rise above the ceiling.
    gate(base["ratios"], res["ratios"], "", 1 - tol, tol, failures)
    gate(base.get("cpu_ratios", {}), res.get("cpu_ratios", {}), "cpu ", 1 + tol, tol, failures)
    for n in notes:
        print("note: " + n)
    if failures:
        print("perf-check FAILED: " + "; ".join(failures))
        return 1
    print("perf-check OK")
    return 0


def main(argv):
    if len(argv) == 14 and argv[0] == "meta":
        return cmd_meta(*argv[1:])
    if len(argv) >= 2 and argv[0] == "job":
        return cmd_job(argv[1:])
    if len(argv) == 2 and argv[0] == "report":
        sys.path.insert(0, HERE)
        return cmd_report(argv[1])
    if len(argv) == 3 and argv[0] == "check":
        return cmd_check(argv[1], argv[2])
    if len(argv) == 4 and argv[0] == "baseline":
        return cmd_baseline(*argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
