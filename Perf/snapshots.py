#!/usr/bin/env python3
"""The snapshot run of `make perf`: one volume of SIZE over three `cairn replica` processes on
this machine (their folders in the scratch folder), written end to end first, then

  - the pause of a snapshot under load: fio 4 KiB random writes at QD32 for PAUSE seconds while
    a snapshot is taken every half second; each create's answer says how long new writes were
    held (`pauseMicros`): median, p99, max over the snapshots, and the write IOPS meanwhile;
  - 4 KiB random read IOPS at QD32 (RUNTIME seconds, a ramp first) with 0 snapshots, then with
    each count of COUNTS: snapshots taken with 256 random 4 KiB writes before each, so the
    reads go through layers that interleave;
  - backups and restores (BACKUPS=1): a second volume of SIZE with its first half written
    (random bytes), backed up full to a directory and to moto's S3 on loopback, then 64 MiB
    rewritten and backed up again (incremental), each restored to a new volume: MiB/s of each
    (the volume's data over the job's time), and the bytes each backup stored.

Writes RUNDIR/snapshots.json; Perf/perf.py's report shows it. Everything runs on 127.0.0.1 with
ports the processes pick; every process is stopped at the end by pid.

Usage: snapshots.py RUNDIR --bin CAIRN --fio FIO [--scratch DIR] [--size-mib 1024]
       [--runtime 10] [--pause 20] [--counts 100,500]
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def start(cmd, log, pattern, timeout=60):
    """Starts cmd with its output in log; returns (process, match of pattern in the log)."""
    f = open(log, "w")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log) as g:
            m = re.search(pattern, g.read())
        if m:
            return p, m
        if p.poll() is not None:
            raise RuntimeError(f"{cmd[1]} exited: see {log}")
        time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"{cmd[1]} not ready in {timeout} s: see {log}")


def stop(p, grace=15):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def post(url, body=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else b"", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def fio(fio_bin, target, size_mib, rw, iodepth, runtime=None, ramp=0, number_ios=None, out=None):
    """One fio job (libiscsi engine) against target; returns its JSON."""
    esc = target.replace(":", "\\:")
    cmd = [fio_bin, "--name=j", "--ioengine=libiscsi", f"--filename={esc}", f"--size={size_mib}m",
           f"--rw={rw}", "--bs=4k", f"--iodepth={iodepth}", "--numjobs=1", "--output-format=json",
           "--randrepeat=0"]
    if runtime:
        cmd += ["--time_based=1", f"--runtime={runtime}", f"--ramp_time={ramp}"]
    if number_ios:
        cmd += [f"--number_ios={number_ios}"]
    if rw == "write":
        cmd[cmd.index("--bs=4k")] = "--bs=1m"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"fio {rw}: {r.stderr[-2000:]}")
    text = r.stdout[r.stdout.index("{"):]
    if out:
        with open(out, "w") as f:
            f.write(text)
    return json.loads(text)


def iops(j, kind):
    return j["jobs"][0][kind]["iops"]


def wait_json(url, pred, timeout, what):
    deadline = time.time() + timeout
    while True:
        j = json.loads(urllib.request.urlopen(url, timeout=30).read())
        if pred(j):
            return j
        if time.time() > deadline:
            raise RuntimeError(f"{what}: not within {timeout} s: {j}")
        time.sleep(0.2)


def backup_runs(a, work, out_dir, procs):
    """Backup and restore MiB/s of a volume half written, full and incremental, to a directory
    and to moto's S3 (each restore a new 1-replica volume)."""
    import random
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    moto_port = s.getsockname()[1]
    s.close()
    moto, _ = start([a.moto, "-H", "127.0.0.1", "-p", str(moto_port)], os.path.join(out_dir, "moto.log"), r"Running on")
    procs.append(moto)
    endpoint = f"http://127.0.0.1:{moto_port}"
    urllib.request.urlopen(urllib.request.Request(endpoint + "/perf", method="PUT"), timeout=30)
    creds = {"accessKeyID": "testing", "secretAccessKey": "testing"}
    targets = {"dir": {"url": "file://" + os.path.join(work, "backups")},
               "s3": {"url": "s3://perf/backups", "endpoint": endpoint, **creds}}

    def volume(name, replicas, extra=()):
        ports = []
        for i in range(replicas):
            p, m = start([a.bin, "replica", "--dir", os.path.join(work, f"{name}-r{i}"), "--listen", "127.0.0.1:0",
                          "--size", f"{a.size_mib}MiB", "--log-level", "warning"],
                         os.path.join(out_dir, f"{name}-replica{i}.log"), r"ready on 127\.0\.0\.1:(\d+)")
            procs.append(p)
            ports.append(m.group(1))
        cmd = [a.bin, "controller", "--name", name, "--size", f"{a.size_mib}MiB", "--portal", "127.0.0.1:0",
               "--api", "127.0.0.1:0", "--log-level", "warning", *extra]
        for port in ports:
            cmd += ["--replica", f"127.0.0.1:{port}"]
        c, m = start(cmd, os.path.join(out_dir, f"{name}-controller.log"), r"cairn: api (http://\S+)\n",
                     timeout=1800)
        procs.append(c)
        api = m.group(1)
        with open(os.path.join(out_dir, f"{name}-controller.log")) as g:
            url = re.search(r"cairn: ready (iscsi://\S+)", g.read()).group(1)
        return api, url

    api, url = volume("bkperf", 3)
    wait_json(api + "/v1/volume", lambda j: j["state"] == "healthy", 60, "bkperf healthy")
    half = a.size_mib // 2
    esc = url.replace(":", "\\:")
    subprocess.run([a.fio, "--name=fill", "--ioengine=libiscsi", f"--filename={esc}", f"--size={half}m", "--rw=write",
                    "--bs=1m", "--iodepth=8", "--refill_buffers=1", "--buffer_compress_percentage=0"],
                   check=True, capture_output=True, timeout=3600)
    runs = []

    def backup(kind, target, snapshot):
        t0 = time.time()
        j = post(api + "/v1/backups", {"snapshot": snapshot, "target": targets[target]})
        done = wait_json(api + f"/v1/backups/{j['id']}", lambda x: x["state"] != "running", 3600, "backup")
        if done["state"] != "done":
            raise RuntimeError(f"backup {kind} to {target}: {done}")
        secs = time.time() - t0
        runs.append({"what": f"backup {kind} to {target}", "bytes": done["readBytes"], "seconds": secs,
                     "mib_s": done["readBytes"] / 1048576 / secs, "stored": done["uploadedBytes"]})
        return done["id"]

    def restore(kind, target, backup_id):
        t = targets[target]
        extra = ["--restore-from", t["url"], "--restore-backup", backup_id]
        env_creds = []
        if target == "s3":
            cf = os.path.join(work, "s3-creds")
            with open(cf, "w") as f:
                f.write("AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n")
            extra += ["--restore-endpoint", t["endpoint"], "--restore-credentials-file", cf]
        t0 = time.time()
        name = f"rs{len(runs)}"
        rapi, _ = volume(name, 1, extra)
        done = wait_json(rapi + "/v1/volume", lambda j: j["state"] == "healthy" or j.get("populateError"), 3600, "restore")
        if done.get("populateError"):
            raise RuntimeError(f"restore {kind} from {target}: {done['populateError']}")
        secs = time.time() - t0
        copied = done["populate"]["copiedBytes"]
        runs.append({"what": f"restore {kind} from {target}", "bytes": copied, "seconds": secs,
                     "mib_s": copied / 1048576 / secs, "stored": 0})

    post(api + "/v1/snapshots", {"name": "b1"})
    ids = {t: backup("full", t, "b1") for t in targets}
    # 64 MiB rewritten in 4 MiB pieces across the written half: the incremental backup.
    rng = random.Random(19)
    for _ in range(16):
        off = rng.randrange(0, half - 4) 
        subprocess.run([a.fio, "--name=inc", "--ioengine=libiscsi", f"--filename={esc}", f"--offset={off}m", "--size=4m",
                        "--rw=write", "--bs=1m", "--iodepth=4", "--refill_buffers=1"], check=True, capture_output=True, timeout=600)
    post(api + "/v1/snapshots", {"name": "b2"})
    inc = {t: backup("incremental", t, "b2") for t in targets}
    for t in targets:
        restore("full", t, ids[t])
    restore("incremental", "dir", inc["dir"])
    return {"written_mib": half, "rewritten_mib": 64, "runs": runs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rundir")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fio", required=True)
    ap.add_argument("--scratch", default=tempfile.gettempdir())
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runtime", type=int, default=10)
    ap.add_argument("--pause", type=int, default=20)
    ap.add_argument("--counts", default="100,500")
    ap.add_argument("--backups", type=int, default=1)
    ap.add_argument("--moto", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv/bin/moto_server"))
    a = ap.parse_args()
    counts = [int(x) for x in a.counts.split(",") if x]
    work = tempfile.mkdtemp(prefix="cairn-perf-snap-", dir=a.scratch)
    out_dir = os.path.join(a.rundir, "snapshots")
    os.makedirs(out_dir, exist_ok=True)
    procs = []
    result = {"size_mib": a.size_mib, "runtime": a.runtime, "pause_seconds": a.pause, "replicas": 3}
    try:
        ports = []
        for i in range(3):
            p, m = start([a.bin, "replica", "--dir", os.path.join(work, f"r{i}"), "--listen", "127.0.0.1:0",
                          "--size", f"{a.size_mib}MiB", "--log-level", "warning"],
                         os.path.join(out_dir, f"replica{i}.log"), r"ready on 127\.0\.0\.1:(\d+)")
            procs.append(p)
            ports.append(m.group(1))
        cmd = [a.bin, "controller", "--name", "snapperf", "--size", f"{a.size_mib}MiB", "--portal", "127.0.0.1:0",
               "--api", "127.0.0.1:0", "--log-level", "warning"]
        for port in ports:
            cmd += ["--replica", f"127.0.0.1:{port}"]
        c, m = start(cmd, os.path.join(out_dir, "controller.log"), r"cairn: api (http://\S+)\n")
        procs.append(c)
        api = m.group(1)
        with open(os.path.join(out_dir, "controller.log")) as g:
            url = re.search(r"cairn: ready (iscsi://\S+)", g.read()).group(1)
        deadline = time.time() + 60
        while json.loads(urllib.request.urlopen(api + "/v1/volume", timeout=10).read())["state"] != "healthy":
            if time.time() > deadline:
                raise RuntimeError("the volume is not healthy after 60 s")
            time.sleep(0.2)
        fio(a.fio, url, a.size_mib, "write", 8)  # every block written once: no read of a hole

        # The pause under load.
        pauses = []
        stop_flag = threading.Event()

        def snapshots():
            i = 0
            while not stop_flag.is_set():
                time.sleep(0.5)
                if stop_flag.is_set():
                    break
                r = post(api + "/v1/snapshots", {"name": f"p{i}"})
                pauses.append(r["pauseMicros"] / 1000.0)
                i += 1

        t = threading.Thread(target=snapshots)
        t.start()
        try:
            j = fio(a.fio, url, a.size_mib, "randwrite", 32, runtime=a.pause, ramp=0,
                    out=os.path.join(out_dir, "pause-randwrite.json"))
        finally:
            stop_flag.set()
            t.join()
        pauses.sort()
        result["pause_ms"] = {"n": len(pauses), "median": statistics.median(pauses),
                              "p99": pauses[min(len(pauses) - 1, int(len(pauses) * 0.99))], "max": pauses[-1]}
        result["pause_write_iops"] = iops(j, "write")
        # Those go: the read runs count their own.
        existing = [s["name"] for s in json.loads(urllib.request.urlopen(api + "/v1/snapshots", timeout=30).read())["snapshots"]]
        for name in existing:
            urllib.request.urlopen(urllib.request.Request(api + f"/v1/snapshots/{name}", method="DELETE"), timeout=60)
        deadline = time.time() + 600
        while json.loads(urllib.request.urlopen(api + "/v1/snapshots", timeout=30).read())["snapshots"]:
            if time.time() > deadline:
                raise RuntimeError("the pause run's snapshots are not merged away after 600 s")
            time.sleep(1)

        # Reads with 0 snapshots; with the most of COUNTS taken with no write between (the data
        # all in one layer: what the index costs alone), those deleted again; then with COUNTS
        # taken after random writes (the layers interleave, and the disk holds every version).
        reads = []

        def read_run(n, empty):
            j = fio(a.fio, url, a.size_mib, "randread", 32, runtime=a.runtime, ramp=2,
                    out=os.path.join(out_dir, f"randread-{n}{'-empty' if empty else ''}.json"))
            reads.append({"snapshots": n, "empty": empty, "iops": iops(j, "read"),
                          "p99_us": j["jobs"][0]["read"]["clat_ns"]["percentile"].get("99.000000", 0) / 1000})

        read_run(0, False)
        most = max(counts) if counts else 0
        if most:
            for i in range(most):
                post(api + "/v1/snapshots", {"name": f"e{i}"})
            read_run(most, True)
            for i in range(most):
                urllib.request.urlopen(urllib.request.Request(api + f"/v1/snapshots/e{i}", method="DELETE"), timeout=60)
            deadline = time.time() + 600
            while json.loads(urllib.request.urlopen(api + "/v1/snapshots", timeout=30).read())["snapshots"]:
                if time.time() > deadline:
                    raise RuntimeError("the empty snapshots are not merged away after 600 s")
                time.sleep(1)
        taken = 0
        for n in counts:
            while taken < n:
                fio(a.fio, url, a.size_mib, "randwrite", 8, number_ios=256)
                post(api + "/v1/snapshots", {"name": f"s{taken}"})
                taken += 1
            read_run(n, False)
        result["reads"] = reads
        result["goals"] = {"pause_p99_ms": 10}
        if a.backups:
            result["backups"] = backup_runs(a, work, out_dir, procs)
    except Exception as e:  # the report says it failed; the log says why
        result["error"] = str(e)
        print(f"snapshot run failed: {e}", file=sys.stderr)
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(a.rundir, "snapshots.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
