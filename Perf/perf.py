#!/usr/bin/env python3
"""Helpers for Perf/run (Python standard library only).

  perf.py job --pid PID[,PID...] --ramp SECONDS --out CPU.json -- FIO ARGS...
      Runs fio, and measures the target's processes (a controller and its
      replicas: all of them are the target's cost) while fio's measured
      window lasts: CPU time (utime + stime of /proc/PID/stat, all threads) and
      context switches (voluntary + nonvoluntary, summed over
      /proc/PID/task/*/status), summed over the PIDs.  The first sample is taken RAMP seconds after
      fio starts (fio's ramp_time: I/O then is not counted by fio either), the
      second when fio exits.  Writes {"cpu_s", "ctx_vol", "ctx_invol",
      "window_s", "fio_rc"} to CPU.json; exits with fio's status.

  perf.py meta RUNDIR "JOB JOB..." FIO_VERSION RUNTIME RAMP
      Writes RUNDIR/meta.json from those and RUNDIR/targets.tsv (label, description).

  perf.py report RUNDIR
      Reads RUNDIR/meta.json and RUNDIR/<target>/<job>.json (fio JSON) +
      <job>.cpu.json, writes RUNDIR/results.json and RUNDIR/results.md, prints
      the Markdown.
"""
import json
import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


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
    return time.monotonic(), cpu, vol, invol


def sample_all(pids):
    samples = [sample(p) for p in pids]
    return (samples[-1][0], sum(x[1] for x in samples), sum(x[2] for x in samples), sum(x[3] for x in samples))


def cmd_job(argv):
    sep = argv.index("--")
    opts = dict(zip(argv[:sep:2], argv[1:sep:2]))
    pids = [int(p) for p in opts["--pid"].split(",")]
    ramp, out = float(opts["--ramp"]), opts["--out"]
    fio = subprocess.Popen(argv[sep + 1:])
    first = last = None
    try:
        try:
            rc = fio.wait(timeout=ramp)
        except subprocess.TimeoutExpired:
            rc = None
        first = sample_all(pids)
        if rc is None:
            rc = fio.wait()
        last = sample_all(pids)
    except (OSError, IndexError, ValueError) as e:  # the target went away
        print(f"perf.py: cannot sample pids {pids}: {e}", file=sys.stderr)
        rc = fio.wait()
    if first and last:
        result = {"cpu_s": last[1] - first[1], "ctx_vol": last[2] - first[2],
                  "ctx_invol": last[3] - first[3], "window_s": last[0] - first[0], "fio_rc": rc}
    else:
        result = {"fio_rc": rc, "target_gone": True}
    with open(out, "w") as f:
        json.dump(result, f)
    return rc


def fio_numbers(path):
    with open(path) as f:
        text = f.read()
    job = json.loads(text[text.index("{"):])["jobs"][0]
    opts = job["job options"]
    # unified_rw_reporting=both: "mixed" sums reads and writes (randrw)
    s = job.get("mixed") or (job["write"] if job["write"]["total_ios"] else job["read"])
    lat = s["lat_ns"]
    return {"rw": opts.get("rw"), "bs": opts.get("bs"), "iodepth": int(opts.get("iodepth", 1)),
            "iops": s["iops"], "mib_s": s["bw"] / 1024.0, "total_ios": s["total_ios"],
            "lat_mean_us": lat["mean"] / 1000.0,
            "lat_p99_us": lat.get("percentile", {}).get("99.000000", 0) / 1000.0,
            "error": job.get("error", 0)}


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    return (a / b) if a and b else None


def cmd_report(rundir):
    with open(os.path.join(rundir, "meta.json")) as f:
        meta = json.load(f)
    targets, jobs = meta["targets"], meta["jobs"]
    results = {"meta": meta, "results": {}}
    for t in targets:
        for j in jobs:
            base = os.path.join(rundir, t, j)
            r = {"ok": False}
            try:
                r.update(fio_numbers(base + ".json"))
                with open(base + ".cpu.json") as f:
                    cpu = json.load(f)
                r.update(cpu)
                if cpu.get("target_gone"):
                    raise ValueError("the target process was gone during the job")
                ios = r["total_ios"]
                r["cpu_us_per_io"] = cpu["cpu_s"] * 1e6 / ios if ios else None
                r["ctx_per_io"] = (cpu["ctx_vol"] + cpu["ctx_invol"]) / ios if ios else None
                r["ok"] = r["error"] == 0 and cpu["fio_rc"] == 0
            except (OSError, ValueError, KeyError) as e:
                r["problem"] = f"{type(e).__name__}: {e}"
            results["results"].setdefault(j, {})[t] = r
    with open(os.path.join(rundir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    b = targets[-1]  # the reference: tgt in the default set
    md = [f"# Cairn perf: {meta['date']}", "",
          f"- targets: " + "; ".join(f"**{t}**: {meta['describe'][t]}" for t in targets),
          f"- fio {meta['fio']} (libiscsi engine), numjobs=1, size {meta['size']}, "
          f"ramp {meta['ramp']} s then {meta['runtime']} s measured; targets alternate job by job",
          f"- host: {meta['host']}",
          "- CPU µs/IO: the target's processes' (controller and replicas) utime+stime over fio's "
          "measured window / I/Os; ctx/IO: their context switches (all threads) / I/Os", "",
          "| job | target | IOPS | MiB/s | mean lat µs | p99 lat µs | CPU µs/IO | ctx/IO |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for j in jobs:
        for t in targets:
            r = results["results"][j][t]
            if not r.get("ok"):
                md.append(f"| {j} | {t} | FAILED {r.get('problem', '')} | | | | | |")
                continue
            md.append(f"| {j} | {t} | {fmt(r['iops'])} | {fmt(r['mib_s'], 1)} | {fmt(r['lat_mean_us'], 1)} "
                      f"| {fmt(r['lat_p99_us'], 1)} | {fmt(r['cpu_us_per_io'], 1)} | {fmt(r['ctx_per_io'], 2)} |")
    pairs = [(t, b) for t in targets[:-1]]
    if "cairn" in targets:
        pairs += [(t, "cairn") for t in targets if t.startswith("cairn-r")]
    for a, b in pairs:
        md += ["", f"Ratios {a} / {b} (IOPS and MiB/s: higher is better for {a}; "
                   f"latency and CPU: lower is better for {a}):", "",
               "| job | IOPS | MiB/s | mean lat | p99 lat | CPU/IO |", "|---|---:|---:|---:|---:|---:|"]
        for j in jobs:
            ra, rb = results["results"][j][a], results["results"][j][b]
            if not (ra.get("ok") and rb.get("ok")):
                md.append(f"| {j} | - | - | - | - | - |")
                continue
            cells = [ratio(ra[k], rb[k]) for k in ("iops", "mib_s", "lat_mean_us", "lat_p99_us", "cpu_us_per_io")]
            md.append(f"| {j} | " + " | ".join(fmt(c, 2) for c in cells) + " |")
    text = "\n".join(md) + "\n"
    with open(os.path.join(rundir, "results.md"), "w") as f:
        f.write(text)
    print(text)
    bad = [f"{j}/{t}" for j in jobs for t in targets if not results["results"][j][t].get("ok")]
    if bad:
        print("failed jobs: " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


def cmd_meta(rundir, jobs, fio, runtime, ramp):
    targets, describe = [], {}
    with open(os.path.join(rundir, "targets.tsv")) as f:
        for line in f:
            label, desc = line.rstrip("\n").split("\t", 1)
            targets.append(label)
            describe[label] = desc
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "targets": targets, "describe": describe, "jobs": jobs.split(),
            "fio": fio, "runtime": float(runtime), "ramp": float(ramp), "size": "1 GiB",
            "host": f"{os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs, {cpu}"}
    with open(os.path.join(rundir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return 0


def main(argv):
    if len(argv) == 6 and argv[0] == "meta":
        return cmd_meta(*argv[1:])
    if len(argv) >= 2 and argv[0] == "job":
        return cmd_job(argv[1:])
    if len(argv) == 2 and argv[0] == "report":
        return cmd_report(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
