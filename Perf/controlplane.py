#!/usr/bin/env python3
"""The control-plane run of `make perf`: one `cairn apiserver` on this machine creates VOLUMES
volumes of SIZE with REPLICAS replicas each (three pools under the scratch folder), and measures

  - the time from the first create until every volume is healthy (creates sent CONCURRENCY at a time),
  - the idle CPU of all the volumes' processes together over IDLE seconds (their threads'
    schedstat),
  - the memory of each controller and each replica (RSS, /proc/PID/status), median and max,
  - the latency of GET /v1/volumes (REQUESTS requests, one after another): median, p99, max.

Writes RUNDIR/controlplane.json; Perf/perf.py's report shows it. Everything runs on 127.0.0.1;
every process is stopped at the end (the apiserver with --stop-volumes-on-exit, then by pid).

Usage: controlplane.py RUNDIR --bin CAIRN [--scratch DIR] [--volumes 50] [--size-mib 64]
       [--replicas 3] [--idle 30] [--requests 500] [--concurrency 8]
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

def cpu_seconds(pid):
    """CPU time of all the process's threads, from /proc/PID/task/*/schedstat (nanoseconds, exact).
    /proc/PID/stat's utime and stime are sampled at the scheduler tick, and the volumes' timer
    wake-ups fall on ticks often enough to be counted high (4.7% there against 3.8% here, one run)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def pct(values, q):
    s = sorted(values)
    if not s:
        return None
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


class API:
    def __init__(self, url, token):
        self.url, self.token = url, token

    def call(self, method, path, body=None, timeout=120):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rundir")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--scratch", default=tempfile.gettempdir())
    ap.add_argument("--volumes", type=int, default=50)
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="cairn-controlplane-", dir=a.scratch)
    pools = [os.path.join(work, "pools", f"p{i}") for i in (1, 2, 3)]
    for p in pools:
        os.makedirs(p)
    log = open(os.path.join(a.rundir, "controlplane.apiserver.log"), "w")
    apiserver = subprocess.Popen([a.bin, "apiserver", "--data", os.path.join(work, "state"), "--listen", "127.0.0.1:0",
                                  "--ports", "24000-24999", "--stop-volumes-on-exit", "--log-level", "warning",
                                  "--process-log-level", "warning"], stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    pids = []
    result = {"volumes": a.volumes, "size_mib": a.size_mib, "replicas": a.replicas, "idle_seconds": a.idle}
    try:
        url = None
        for _ in range(600):
            with open(log.name) as f:
                m = re.search(r"cairn: apiserver (http://\S+)", f.read())
            if m:
                url = m.group(1)
                break
            if apiserver.poll() is not None:
                raise SystemExit("the apiserver exited; see " + log.name)
            time.sleep(0.05)
        if not url:
            raise SystemExit("the apiserver did not listen")
        with open(os.path.join(work, "state", "token")) as f:
            api = API(url, f.read().strip())
        for i, p in enumerate(pools, 1):
            api.call("POST", "/v1/pools", {"name": f"p{i}", "path": p})

        names = [f"cp{i:03d}" for i in range(a.volumes)]
        t0 = time.monotonic()

        def create(n):
            return api.call("POST", "/v1/volumes", {"name": n, "size": a.size_mib << 20, "replicas": a.replicas})[0]

        with concurrent.futures.ThreadPoolExecutor(a.concurrency) as ex:
            statuses = list(ex.map(create, names))
        result["create_seconds"] = time.monotonic() - t0
        result["create_statuses"] = {str(s): statuses.count(s) for s in set(statuses)}
        deadline = time.monotonic() + 600
        healthy = 0
        while time.monotonic() < deadline:
            _, vs = api.call("GET", "/v1/volumes")
            healthy = sum(1 for v in vs if v["status"]["state"] == "healthy"
                          and all(r.get("mode") == "RW" for r in v["status"]["replicas"]))
            if healthy == a.volumes:
                break
            time.sleep(0.1)
        result["healthy"] = healthy
        result["seconds_to_healthy"] = time.monotonic() - t0 if healthy == a.volumes else None
        print(f"[controlplane] {healthy}/{a.volumes} volumes healthy after {time.monotonic() - t0:.1f} s", file=sys.stderr)

        _, vs = api.call("GET", "/v1/volumes")
        controllers = [v["status"]["controllerPid"] for v in vs if v["status"].get("controllerPid")]
        replicas = [r["pid"] for v in vs for r in v["status"]["replicas"] if r.get("pid")]
        pids = controllers + replicas
        time.sleep(3)  # the creation's rebuild and settle work ends
        before = {p: cpu_seconds(p) for p in pids}
        t1 = time.monotonic()
        time.sleep(a.idle)
        elapsed = time.monotonic() - t1
        after = {p: cpu_seconds(p) for p in pids}
        used = sum(after[p] - before[p] for p in pids if after.get(p) is not None and before.get(p) is not None)
        result["idle_cpu_percent_of_one_cpu"] = 100 * used / elapsed
        result["processes"] = len(pids)
        rc = [rss_bytes(p) for p in controllers]
        rr = [rss_bytes(p) for p in replicas]
        rc, rr = [x for x in rc if x], [x for x in rr if x]
        result["rss_controller_mb"] = {"median": statistics.median(rc) / 1e6, "max": max(rc) / 1e6} if rc else None
        result["rss_replica_mb"] = {"median": statistics.median(rr) / 1e6, "max": max(rr) / 1e6} if rr else None
        apiserver_rss = rss_bytes(apiserver.pid)
        result["rss_apiserver_mb"] = apiserver_rss / 1e6 if apiserver_rss else None

        lat = []
        for _ in range(a.requests):
            s = time.monotonic()
            code, _ = api.call("GET", "/v1/volumes")
            lat.append((time.monotonic() - s) * 1000)
            if code != 200:
                raise SystemExit(f"GET /v1/volumes answered {code}")
        result["list_ms"] = {"median": statistics.median(lat), "p99": pct(lat, 99), "max": max(lat), "n": len(lat)}
        result["goals"] = {"idle_cpu_percent": 2.0, "list_p99_ms": 50.0}
        with open(os.path.join(a.rundir, "controlplane.json"), "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps(result, indent=1))
    finally:
        apiserver.send_signal(signal.SIGTERM)
        try:
            apiserver.wait(120)
        except subprocess.TimeoutExpired:
            apiserver.kill()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
