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
      when there are any, and RUNDIR/qos/runs.tsv with each QoS accuracy
      run's fio per-second log, NAME_iops.1.log or NAME_bw.1.log), writes
      RUNDIR/results.json, RUNDIR/results.md and the charts (when matplotlib
      is there), prints the Markdown.

  perf.py baseline RUNDIR BASELINE.json
      Writes the run's median ratios to tgt, settings and machine: the figures
      the gate's host report prints beside its own.

  perf.py gate RUNDIR BASELINE.json TOL_IOPS TOL_CPU
      The perf gate (Perf/check): for each target X with a ref-X (the same target
      from the reference build) and each job, the per-round ratios X/ref-X of IOPS
      and of CPU per I/O; exits 1 naming each job whose median IOPS ratio is below
      1 - TOL_IOPS or whose median CPU ratio is above 1 + TOL_CPU.  Prints the
      baseline's ratios to tgt beside this run's as a host report (no verdict),
      and RUNDIR/timings.tsv; writes RUNDIR/gate.json (both commits, the host,
      the per-round ratios, the verdict).
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
            "commit": commit, "pin_cpu": pin_cpu, "host": machine(),
            "ref_commit": os.environ.get("REF_COMMIT") or None}
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


def base_kind(target):
    """A target's kind: ref-X (X started from the reference build) is an X."""
    return target[len("ref-"):] if target.startswith("ref-") else target


def ab_pairs(targets):
    """(X, ref-X): the working tree's target and the reference build's same target."""
    return [(t, "ref-" + t) for t in targets if not t.startswith("ref-") and "ref-" + t in targets]


def ratio_pairs(targets):
    """(a, b) pairs to report a/b for: the working tree over the reference build
    (X over ref-X), every target against the last, and each replicated cairn
    and the QoS one against the --file one."""
    if not targets:  # a run of the QoS accuracy part alone
        return []
    ref = targets[-1]
    pairs = ab_pairs(targets) + [(t, ref) for t in targets[:-1]]
    if "cairn" in targets:
        pairs += [(t, "cairn") for t in targets if t.startswith("cairn-r")]
        if "cairn-qos" in targets[:-1] and ref != "cairn":
            pairs.append(("cairn-qos", "cairn"))
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


def qos_cost(runs, summary, jobs):
    """cairn-qos (every limit on, none reached) against cairn, job by job: the IOPS and CPU
    per I/O ratios round by round, and each one's CPU per I/O; {} unless both ran."""
    out = {}
    for j in jobs:
        if "cairn" not in runs[j] or "cairn-qos" not in runs[j]:
            continue
        a, b = runs[j]["cairn-qos"], runs[j]["cairn"]
        iops, cpu = round_ratios(a, b), round_ratios(a, b, "cpu_s_per_mio")
        out[j] = {"iops_ratio": {"per_round": iops, **(spread(iops) or {})},
                  "cpu_ratio": {"per_round": cpu, **(spread(cpu) or {})},
                  "cpu_s_per_mio": {t: (summary[j][t].get("cpu_s_per_mio") or {}).get("median")
                                    for t in ("cairn", "cairn-qos")}}
    return out


def qos_cost_section(cost, summary):
    if not cost:
        return []
    md = ["", "## QoS check cost", "",
          "cairn-qos is cairn with all six QoS limits on, each far above what this machine reaches: "
          "no command waits, so what differs is the check itself. Ratios round by round, cairn-qos "
          "over cairn: median (min–max); IOPS above 1 or CPU below 1: cairn-qos did better.", "",
          "| job | IOPS cairn | IOPS cairn-qos | IOPS cairn-qos/cairn | CPU s/1M IO cairn | "
          "CPU s/1M IO cairn-qos | CPU cairn-qos/cairn |", "|---|---:|---:|---:|---:|---:|---:|"]
    for j, c in cost.items():
        iops = [fmt_spread(summary[j][t].get("iops")) for t in ("cairn", "cairn-qos")]
        cpu = [fmt(c["cpu_s_per_mio"][t], 1) for t in ("cairn", "cairn-qos")]
        md.append(f"| {j} | {iops[0]} | {iops[1]} | {fmt_spread(c['iops_ratio'] if c['iops_ratio'].get('n') else None, 2)} "
                  f"| {cpu[0]} | {cpu[1]} | {fmt_spread(c['cpu_ratio'] if c['cpu_ratio'].get('n') else None, 2)} |")
    return md


# A limited run's per-second median within this fraction below the limit has reached it; a second
# more than this fraction above it is above the limit.
QOS_REACHED = 0.90
QOS_HELD = 1.10
# The burst Perf/run leaves the controllers (--qos-burst's default), in seconds at the limit: a
# limit holds when, at every second t of a run, at most limit × (t + burst) I/Os (or bytes) are done.
QOS_BURST_S = 1.0
# What may come on top of that: the commands in flight across a window's edge, fio's windows not
# quite on the bucket's clock.
QOS_SLACK_S = 0.10


def fio_log(path):
    """[(seconds, value)] of the writes in a fio log written with log_avg_msec=1000 (each value the
    mean over the second before), without a last window shorter than half a second (fio logs what it
    has when the run ends)."""
    points, last_ms = [], 0
    with open(path) as f:
        for line in f:
            x = [v.strip() for v in line.split(",")]
            if len(x) < 3 or x[2] != "1":
                continue
            ms = int(x[0])
            if ms - last_ms >= 500:
                points.append((ms / 1000.0, float(x[1])))
            last_ms = ms
    return points


def percentile(values, p):
    """Nearest rank: the smallest value with at least p of them at or below it."""
    v = sorted(values)
    return v[max(0, -(-len(v) * p // 100) - 1)] if v else None


def qos_run(rundir, name, shape, metric, limit, desc):
    r = {"name": name, "shape": shape, "metric": metric, "limit": limit, "job": desc, "ok": False}
    base = os.path.join(rundir, "qos", name)
    try:
        log = fio_log(f"{base}_{'iops' if metric == 'iops' else 'bw'}.1.log")
        # the bandwidth log is in KiB/s; limits are in bytes/s
        points = [(t, v * 1024.0 if metric == "bw" else v) for t, v in log]
        r["seconds"], r["rates"] = [t for t, _ in points], [v for _, v in points]
        run = one_run(base)
        r["cpu_s_per_mio"] = run.get("cpu_s_per_mio")
        if not run["ok"] or len(points) < 2:
            raise ValueError(run.get("problem") or f"{len(points)} per-second sample(s)")
        steady = r["rates"][1:]  # the first second spends the burst
        r.update(burst=r["rates"][0], median=statistics.median(steady), p99=percentile(steady, 99),
                 max=max(steady), n=len(steady), ok=True)
        if limit:
            r.update({f"{k}_ratio": r[k] / limit for k in ("burst", "median", "p99", "max")})
            r["ahead_s"] = ahead_of_limit(points, limit)
    except (OSError, ValueError, KeyError, IndexError) as e:
        r["problem"] = f"{type(e).__name__}: {e}"
    return r


def ahead_of_limit(points, limit):
    """How far the run got ahead of the limit at its most, in seconds at the limit: the largest
    (done by t − limit × t) / limit over the per-second points. The burst lets it reach QOS_BURST_S;
    unlike each second's rate, this does not count against the limit a burst that the first
    second could not spend all of and the next ones did."""
    done = ahead = prev = 0.0
    for t, v in points:
        done += v * (t - prev)  # each point: the mean over the window since the one before
        prev = t
        ahead = max(ahead, (done - limit * t) / limit)
    return ahead


def qos_verdict(r, free):
    """What a limited run shows, given the same shape's run with no limit (or None)."""
    if not r["ok"]:
        return "FAILED: " + r.get("problem", "?")
    if r["median_ratio"] >= QOS_REACHED:
        if r["ahead_s"] > QOS_BURST_S + QOS_SLACK_S:
            return (f"over the limit: {r['ahead_s']:.2f} s ahead of it at most, "
                    f"the burst allows {QOS_BURST_S:g} s")
        over = [i for i, v in enumerate(r["rates"][1:], 2) if v > r["limit"] * QOS_HELD]
        if not over:
            return "held"
        if over == list(range(2, len(over) + 2)):  # right after the first second, and only there
            spent = "–".join(str(x) for x in sorted({over[0], over[-1]}))
            return f"held (the first second could not spend all the burst; second {spent} spent the rest)"
        return f"held on the whole, but uneven: {len(over)} second(s) over {QOS_HELD:.0%} of the limit"
    if free is None:
        return "not reached (no run without a limit to tell why)"
    if free < r["limit"] * QOS_HELD:
        return f"not reached: with no limit the machine did {free / r['limit']:.2f}× the limit"
    return f"below the limit: QoS held it under (with no limit {free / r['limit']:.2f}× the limit)"


def load_qos(rundir):
    """The QoS accuracy runs (RUNDIR/qos/runs.tsv), each with its verdict; None when there were none."""
    path = os.path.join(rundir, "qos", "runs.tsv")
    if not os.path.exists(path):
        return None
    runs = []
    with open(path) as f:
        for line in f:
            name, shape, metric, limit, desc = line.rstrip("\n").split("\t")
            runs.append(qos_run(rundir, name, shape, metric, int(limit), desc))
    free = {r["shape"]: r["median"] for r in runs if not r["limit"] and r["ok"]}
    for r in runs:
        if r["limit"]:
            r["verdict"] = qos_verdict(r, free.get(r["shape"]))
    try:
        with open(os.path.join(rundir, "qos", "seconds")) as f:
            seconds = float(f.read())
    except (OSError, ValueError):
        seconds = None
    return {"seconds": seconds, "reached": QOS_REACHED, "held": QOS_HELD, "burst_s": QOS_BURST_S,
            "slack_s": QOS_SLACK_S, "runs": runs}


def qos_limit_text(metric, limit):
    if not limit:
        return "none"
    return f"{limit:,} write IOPS" if metric == "iops" else f"{limit / 1048576:g} MiB/s written"


def qos_rate(metric, v, limit, ratio=None):
    text = fmt(v) if metric == "iops" else f"{fmt(v / 1048576, 1)} MiB/s"
    return text + (f" ({ratio:.2f}×)" if limit and ratio is not None else "")


def qos_section(qos, size_mib):
    if not qos:
        return []
    secs = f"{qos['seconds']:g} s" if qos["seconds"] else "the set time"
    md = ["", "## QoS accuracy", "",
          f"One `cairn controller --file` volume ({size_mib} MiB, written with zeros first), restarted "
          f"for each limit with that limit alone and the default 1 s burst; fio for {secs} with its "
          "per-second logs (log_avg_msec=1000). The first second spends the burst an idle volume saves "
          "up (one second at the limit), so up to 2× the limit there is expected: it is reported apart and "
          "left out of the median, p99 and max, which are over the seconds after it (× the limit in "
          "brackets). Ahead: how far the run got ahead of the limit at its most, in seconds at the limit "
          f"(the burst allows {QOS_BURST_S:g} s; a burst the first second could not spend all of goes into "
          "the next ones, which then show above the limit, and that is no QoS error). Before each job's "
          "limits the same job ran with no limit: what the machine did then. CPU s/1M IO: the "
          "controller's CPU seconds per million I/Os over the whole run.", "",
          f"Verdicts: *held*: median at least {QOS_REACHED:.0%} of the limit, ahead at most "
          f"{QOS_BURST_S + QOS_SLACK_S:g} s and no second past {QOS_HELD:.0%} of the limit but those "
          f"spending the rest of the burst; *over the limit*: ahead more than that; *not reached*: a median "
          f"under {QOS_REACHED:.0%} of the limit while the machine with no limit did not get past "
          f"{QOS_HELD:.0%} of it (this machine's ceiling, not a QoS error); *below the limit*: a median under "
          f"{QOS_REACHED:.0%} of it although the machine with no limit did more (QoS held it too low).",
          "", "| limit | job | first second | median | p99 | max | ahead | CPU s/1M IO | verdict |",
          "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in qos["runs"]:
        lim, m = r["limit"], r["metric"]
        if not r["ok"]:
            md.append(f"| {qos_limit_text(m, lim)} | {r['job']} | FAILED: {r.get('problem', '?')} | | | | | | |")
            continue
        cells = [qos_rate(m, r[k], lim, r.get(f"{k}_ratio")) for k in ("burst", "median", "p99", "max")]
        verdict = r.get("verdict", "no limit: what the machine did")
        ahead = f"{r['ahead_s']:.2f} s" if "ahead_s" in r else "-"
        md.append(f"| {qos_limit_text(m, lim)} | {r['job']} | " + " | ".join(cells)
                  + f" | {ahead} | {fmt(r.get('cpu_s_per_mio'), 1)} | {verdict} |")
    return md


def ab_section(meta, jobs, ratios, cpu_ratios):
    """The working tree against the reference build, when the run had both (REF)."""
    pairs = ab_pairs(meta["targets"])
    if not pairs:
        return []
    md = ["", "## Working tree vs reference", "",
          f"The working tree ({meta.get('commit', '?')}) over the reference build ({meta.get('ref_commit', '?')}), "
          "target by target, round by round (the two runs of a round are adjacent in time): median (min–max). "
          "IOPS above 1: the working tree is faster; CPU per I/O below 1: it costs less.", "",
          "| job | " + " | ".join(f"{a} IOPS | {a} CPU/IO" for a, _ in pairs) + " |",
          "|---|" + "---:|---:|" * len(pairs)]
    for j in jobs:
        cells = []
        for a, b in pairs:
            for table in (ratios, cpu_ratios):
                v = table.get(f"{a}/{b}", {}).get(j)
                cells.append(fmt_spread(v if v and v.get("n") else None, 2))
        md.append(f"| {j} | " + " | ".join(cells) + " |")
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
    if base_kind(target).startswith("cairn-r"):
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


def load_control_plane(rundir):
    """Perf/controlplane.py's figures (RUNDIR/controlplane.json), or None when it did not run."""
    path = os.path.join(rundir, "controlplane.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def control_plane_section(c):
    if not c:
        return []
    goals = c.get("goals", {})

    def verdict(v, goal):
        return "" if v is None or goal is None else (" (goal < %g: %s)" % (goal, "met" if v < goal else "NOT met"))

    healthy = c.get("seconds_to_healthy")
    md = ["", "## Control plane", "",
          f"One `cairn apiserver` (local orchestrator) creates {c['volumes']} volumes of {c['size_mib']} MiB with "
          f"{c['replicas']} replicas each on three pools in the scratch folder (creates 8 at a time), then the "
          f"volumes idle for {c['idle_seconds']:g} s.", "",
          "| figure | value |", "|---|---:|",
          f"| volumes healthy | {c['healthy']}/{c['volumes']} |",
          f"| seconds from the first create until all are healthy | "
          f"{'%.1f' % healthy if healthy is not None else 'not all healthy'} |",
          f"| idle CPU of all {c.get('processes', '?')} volume processes together, % of one CPU | "
          f"{c['idle_cpu_percent_of_one_cpu']:.2f}{verdict(c['idle_cpu_percent_of_one_cpu'], goals.get('idle_cpu_percent'))} |"]
    for k, label in (("rss_controller_mb", "RSS per controller, MB (median / max)"),
                     ("rss_replica_mb", "RSS per replica, MB (median / max)")):
        if c.get(k):
            md.append(f"| {label} | {c[k]['median']:.1f} / {c[k]['max']:.1f} |")
    if c.get("rss_apiserver_mb"):
        md.append(f"| RSS of the apiserver, MB | {c['rss_apiserver_mb']:.1f} |")
    lm = c.get("list_ms")
    if lm:
        md.append(f"| GET /v1/volumes ms, median / p99 / max ({lm['n']} requests) | {lm['median']:.1f} / "
                  f"{lm['p99']:.1f}{verdict(lm['p99'], goals.get('list_p99_ms'))} / {lm['max']:.1f} |")
    return md


def load_snapshots(rundir):
    """Perf/snapshots.py's figures (RUNDIR/snapshots.json), or None when it did not run."""
    path = os.path.join(rundir, "snapshots.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def snapshots_section(s):
    if not s:
        return []
    md = ["", "## Snapshots", ""]
    if s.get("error"):
        return md + [f"The snapshot run failed: {s['error']}"]
    p = s["pause_ms"]
    goal = s.get("goals", {}).get("pause_p99_ms")
    verdict = "" if goal is None else " (goal < %g: %s)" % (goal, "met" if p["p99"] < goal else "NOT met")
    md += [f"One volume of {s['size_mib']} MiB over {s['replicas']} replicas on this machine, written end to end. "
           f"The pause: 4 KiB random writes at QD32 for {s['pause_seconds']} s with a snapshot taken every 0.5 s, "
           "each create's answer saying how long new writes were held (the drain of those in flight included). "
           f"The reads: 4 KiB random reads at QD32 for {s['runtime']} s, 256 random 4 KiB writes before each snapshot."
           + (f" Backups: a second volume with its first {s['backups']['written_mib']} MiB written (random bytes), backed up "
              f"to a directory and to moto's S3 on loopback, {s['backups']['rewritten_mib']} MiB rewritten and backed up again; "
              "each restored to a new 1-replica volume (the time includes starting it)." if s.get("backups") else ""),
           "", "| figure | value |", "|---|---:|",
           f"| snapshot pause ms, median / p99 / max ({p['n']} snapshots) | {p['median']:.2f} / {p['p99']:.2f}{verdict} / {p['max']:.2f} |",
           f"| write IOPS meanwhile | {fmt(s['pause_write_iops'])} |"]
    for r in (s.get("backups") or {}).get("runs", []):
        stored = f", {r['stored'] / 1048576:.1f} MiB stored" if r["what"].startswith("backup") else ""
        md.append(f"| {r['what']}: MiB/s ({r['bytes'] / 1048576:.0f} MiB in {r['seconds']:.1f} s{stored}) | {r['mib_s']:.1f} |")
    base = s["reads"][0]["iops"] if s.get("reads") else None
    for r in s.get("reads", []):
        rel = f" ({r['iops'] / base * 100:.0f}% of none)" if base and r["snapshots"] else ""
        how = " (no write between: the index alone)" if r.get("empty") else (", 256 writes before each" if r["snapshots"] else "")
        md.append(f"| randread 4 KiB QD32 IOPS with {r['snapshots']} snapshots{how}, p99 µs | {fmt(r['iops'])}{rel}, {r['p99_us']:.0f} |")
    return md


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
    cpu_ratios = {}  # CPU per I/O over the reference's (and X's over ref-X's), round by round (lower: cheaper)
    for a, b in ab_pairs(targets) + [(t, targets[-1]) for t in targets[:-1]]:
        for j in jobs:
            rr = round_ratios(runs[j][a], runs[j][b], "cpu_s_per_mio")
            cpu_ratios.setdefault(f"{a}/{b}", {})[j] = {"per_round": rr, **(spread(rr) or {})}
    scale_summary = {j: {t: summarize(v) for t, v in per.items()} for j, per in scale.items()}
    ceiling = load_ceiling(rundir, meta["rounds"])
    cost = qos_cost(runs, summary, jobs)
    qos = load_qos(rundir)
    results = {"meta": meta, "runs": runs, "summary": summary, "ratios": ratios, "cpu_ratios": cpu_ratios,
               "scale_runs": scale, "scale_summary": scale_summary, "disk_ceiling": ceiling,
               "qos_cost": cost, "qos_accuracy": qos}
    with open(os.path.join(rundir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    charts, chart_note = [], ""
    try:
        import plots  # noqa: E402  (matplotlib: only the charts need it)
        charts = plots.draw_all(rundir, results, os.path.dirname(os.path.abspath(rundir)))
    except ImportError as e:
        chart_note = f"charts skipped: {e} (`make perf` installs matplotlib into .venv)"

    host = (f"- host: {meta['host']}; commit {meta.get('commit', '?')}"
            + (f"; every target process and fio pinned to CPU {meta['pin_cpu']}"
               if meta.get("pin_cpu", "none") != "none" else ""))
    md = [f"# Cairn perf: {meta['date']}", ""]
    if not jobs:  # the QoS accuracy part alone (Perf/run --qos-only): no matrix settings to describe
        md += [f"- fio {meta['fio']} (libiscsi engine); no matrix: only the QoS accuracy or control-plane runs asked for", host]
    else:
        md += ["- targets: " + "; ".join(f"**{t}**: {meta['describe'][t]}" for t in targets),
               f"- fio {meta['fio']} (libiscsi engine), numjobs=1, volume {meta['size_mib']} MiB on "
               f"{meta['scratch']}; ramp {meta['ramp']:g} s then {meta['runtime']:g} s measured; "
               f"{meta['rounds']} round(s), in each every job against every target in turn (order flips)",
               host,
               "- each figure: the median over the rounds (min–max in brackets); latency in µs, "
               "p50 / p99 / p99.9 medians",
               "- CPU s/1M IO: CPU seconds (utime+stime) of the target's processes per million I/Os over "
               "fio's measured window, and each process's share (ctrl = controller, rN = replica N); "
               "ctx/IO: their context switches (all threads) per I/O",
               "- disk: the scratch folder's device over the same window (/proc/diskstats): I/Os it completed "
               "per second, all writers together (a 3-replica volume writes each I/O three times), and the "
               "mean time one took in it"]
    if jobs:
        md += ["", "## Matrix", "",
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
    md += ab_section(meta, jobs, ratios, cpu_ratios)
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
        md += ["", "CPU per I/O of one target over another's, round by round: median (min–max). Below 1: the first "
               "costs less CPU per I/O.", "",
               "| job | " + " | ".join(ckeys) + " |", "|---|" + "---:|" * len(ckeys)]
        for j in jobs:
            md.append(f"| {j} | " + " | ".join(fmt_spread(cpu_ratios[k][j] if cpu_ratios[k][j].get("n") else None, 2)
                                               for k in ckeys) + " |")
    md += qos_cost_section(cost, summary)
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
    md += qos_section(qos, meta["size_mib"])
    control = load_control_plane(rundir)
    md += control_plane_section(control)
    snaps = load_snapshots(rundir)
    md += snapshots_section(snaps)
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
    bad += [f"qos/{r['name']}" for r in (qos or {}).get("runs", []) if not r["ok"]]
    if os.path.exists(os.path.join(rundir, "controlplane.out")) and not control:
        bad.append("control-plane")
    if os.path.exists(os.path.join(rundir, "snapshots.out")) and (not snaps or snaps.get("error")):
        bad.append("snapshots")
    if bad:
        print("failed runs: " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


# ---- baseline and check --------------------------------------------------------

SETTINGS = ("jobs", "targets", "rounds", "runtime", "ramp", "size_mib", "pin_cpu")


def load_results(rundir):
    with open(os.path.join(rundir, "results.json")) as f:
        return json.load(f)


def cmd_baseline(rundir, path):
    res = load_results(rundir)
    meta = res["meta"]
    ref = meta["targets"][-1]  # the gate compares each target with the reference (tgt)
    vs_ref = {k: per for k, per in res["ratios"].items() if k.endswith("/" + ref)}
    medians = {k: {j: v["median"] for j, v in per.items() if v.get("n")} for k, per in vs_ref.items()}
    base = {"created": meta["date"], "commit": meta.get("commit"), "machine": meta["host"],
            "scratch": meta["scratch"], "settings": {k: meta[k] for k in SETTINGS},
            "ratios": medians,
            "cpu_ratios": {k: {j: v["median"] for j, v in per.items() if v.get("n")}
                           for k, per in res.get("cpu_ratios", {}).items()},
            "spread": {k: {j: [v["min"], v["max"]] for j, v in per.items() if v.get("n")}
                       for k, per in vs_ref.items()}}
    with open(path, "w") as f:
        json.dump(base, f, indent=1)
        f.write("\n")
    print(f"baseline written to {path}: machine {base['machine']}")
    for k, per in medians.items():
        print(f"  {k}: " + ", ".join(f"{j} {v:.2f}" for j, v in per.items()))
    return 0


def load_timings(rundir):
    """(phase, seconds) lines of RUNDIR/timings.tsv (Perf/check and Perf/run write them)."""
    out = []
    try:
        with open(os.path.join(rundir, "timings.tsv")) as f:
            for line in f:
                phase, secs = line.rstrip("\n").split("\t")
                out.append((phase, float(secs)))
    except (OSError, ValueError):
        pass
    return out


def host_report(res, baseline_path):
    """This host against the one that wrote the baseline: the stored ratios to tgt beside this
    run's (a report, not a verdict: another host's ratios do not carry over)."""
    try:
        with open(baseline_path) as f:
            base = json.load(f)
    except (OSError, ValueError):
        return [], {}
    lines = [f"host report (not pass/fail): ratios to tgt here vs on the baseline's host "
             f"({base['machine']}, commit {base.get('commit')}, {base['created']})"]
    report = {"baseline_host": base["machine"], "baseline_commit": base.get("commit"), "ratios": {}}
    for k, per in base["ratios"].items():
        now = res["ratios"].get(k, {})
        cells = []
        for j, b in per.items():
            m = now.get(j, {}).get("median")
            report["ratios"].setdefault(k, {})[j] = {"here": m, "baseline": b}
            cells.append(f"{j} {fmt(m, 2)}/{b:.2f}")
        lines.append(f"  {k}: " + ", ".join(cells))
    return lines, report


def cmd_gate(rundir, baseline_path, tol_iops, tol_cpu):
    """The gate: each working-tree target against the same target of the reference build."""
    res = load_results(rundir)
    meta = res["meta"]
    tol_iops, tol_cpu = float(tol_iops), float(tol_cpu)
    pairs = ab_pairs(meta["targets"])
    if not pairs:
        print("perf-check: the run has no reference targets (ref-...)")
        return 2
    print(f"perf-check: working tree {meta.get('commit')} vs reference {meta.get('ref_commit')}, {meta['rounds']} rounds, "
          f"on {meta['host']}")
    print(f"fails when, in the median of the per-round ratios, the working tree's IOPS is below the reference's "
          f"× {1 - tol_iops:.2f} or its CPU per I/O above × {1 + tol_cpu:.2f}")
    print(f"{'job':<20} {'target':<9} {'IOPS per round':<20} {'median':>6} {'CPU/IO per round':<20} {'median':>6}  result")
    failures, out = [], {}
    for a, b in pairs:
        for j in meta["jobs"]:
            io = res["ratios"].get(f"{a}/{b}", {}).get(j, {})
            cpu = res["cpu_ratios"].get(f"{a}/{b}", {}).get(j, {})
            entry = {"iops_per_round": io.get("per_round", []), "cpu_per_round": cpu.get("per_round", []),
                     "iops_median": io.get("median"), "cpu_median": cpu.get("median")}
            problems = []
            if not io.get("n") or not cpu.get("n"):
                problems.append("no ratio (a run failed)")
            else:
                if io["median"] < 1 - tol_iops:
                    problems.append(f"IOPS {io['median']:.2f} of the reference's (below {1 - tol_iops:.2f})")
                if cpu["median"] > 1 + tol_cpu:
                    problems.append(f"CPU per I/O {cpu['median']:.2f} of the reference's (above {1 + tol_cpu:.2f})")
            entry["ok"] = not problems
            out.setdefault(a, {})[j] = entry
            failures += [f"{j} on {a}: {p}" for p in problems]
            per = lambda v: " ".join(f"{x:.2f}" for x in v) or "-"
            print(f"{j:<20} {a:<9} {per(entry['iops_per_round']):<20} {fmt(entry['iops_median'], 2):>6} "
                  f"{per(entry['cpu_per_round']):<20} {fmt(entry['cpu_median'], 2):>6}  {'ok' if not problems else 'FAIL'}")
    lines, report = host_report(res, baseline_path)
    for line in lines:
        print(line)
    timings = load_timings(rundir)
    if timings:
        print("time: " + ", ".join(f"{p} {s:.0f} s" for p, s in timings) + f"; total {sum(s for _, s in timings):.0f} s")
    # Perf/check runs with the caller's environment: a slowed run says so in its result.
    hook = int(os.environ.get("CAIRN_TEST_WRITE_DELAY_US") or 0)
    if hook:
        print(f"test hook on: the working tree's replicated writes busy-wait {hook} µs each")
    result = {"date": meta["date"], "work_commit": meta.get("commit"), "ref_commit": meta.get("ref_commit"),
              "host": meta["host"], "settings": {k: meta[k] for k in SETTINGS} | {"test_hook_write_delay_us": hook},
              "tolerance": {"iops": tol_iops, "cpu": tol_cpu}, "pairs": out, "failures": failures,
              "ok": not failures, "host_report": report, "timings": dict(timings)}
    with open(os.path.join(rundir, "gate.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
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
    if len(argv) == 5 and argv[0] == "gate":
        return cmd_gate(*argv[1:])
    if len(argv) == 3 and argv[0] == "baseline":
        return cmd_baseline(*argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
