"""`cairn apiserver --orchestrator kubernetes` against a stand-in of the Kubernetes API.

There is no cluster here and no kube-apiserver in Debian or PyPI, so standin_apiserver.py plays
the API server: objects in memory, list and watch with resource versions (and 410 Gone after a
compaction), server-side apply, merge patch, finalizers, owner-reference garbage collection, and
each object checked against Kubernetes' schemas (kubernetes-validate) or its CRD's. The test plays
kubectl (CairnPools and CairnVolumes written by hand) and kubelet (Deployments made ready, pods
with restart counts); nothing runs the volumes' pods. What it checks is what the apiserver asks
of the API: the objects it applies, what it reads back, and what it deletes.
"""
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CAIRN_BIN") or os.path.join(ROOT, ".build/debug/cairn")
NS = "cairn-system"
MiB = 1 << 20
CAIRN = "/apis/cairn.io/v1alpha1/namespaces/" + NS

WORK = None
KUBE = None     # (process, url, token)
CAIRN_API = None  # (process, url, token, log path)


def log(*args):
    print("[kubernetes]", *args, file=sys.stderr, flush=True)


def wait_for_line(path, prefix, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                for line in f:
                    if line.startswith(prefix):
                        return line[len(prefix):].strip()
        if proc.poll() is not None:
            with open(path, errors="replace") as f:
                raise RuntimeError(f"{proc.args[:2]} exited: {f.read()[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"no '{prefix}' in {path} after {seconds} s")


def request(base, token, method, path, body=None, content_type="application/json"):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(base + path, method=method, data=data,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def kube(method, path, body=None, content_type="application/json"):
    return request(KUBE[1], KUBE[2], method, path, body, content_type)


def cairn(method, path, body=None):
    return request(CAIRN_API[1], CAIRN_API[2], method, "/v1" + path, body)


def objects(path, selector=None):
    status, body = kube("GET", path + (f"?labelSelector={selector}" if selector else ""))
    assert status == 200, (status, body)
    return {o["metadata"]["name"]: o for o in body["items"]}


def eventually(what, check, seconds=30):
    """Polls `check` until it returns a truthy value; fails with `what` and the apiserver's log."""
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        try:
            value = check()
            if value:
                return value
        except (AssertionError, KeyError, TypeError) as e:
            last = e
        time.sleep(0.2)
    tail = ""
    if CAIRN_API:
        with open(CAIRN_API[3], errors="replace") as f:
            tail = f.read()[-4000:]
    raise AssertionError(f"not within {seconds} s: {what} ({last!r})\n--- apiserver log ---\n{tail}")


def start_apiserver(state):
    global CAIRN_API
    path = os.path.join(WORK, f"apiserver-{len(os.listdir(WORK))}.log")
    with open(path, "w") as out:
        proc = subprocess.Popen([BIN, "apiserver", "--data", state, "--listen", "127.0.0.1:0",
                                 "--orchestrator", "kubernetes", "--namespace", NS, "--image", "cairn:test",
                                 "--kubernetes-api", KUBE[1], "--kubernetes-token-file", os.path.join(WORK, "kube-token")],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    url = wait_for_line(path, "cairn: apiserver ", proc)
    with open(os.path.join(state, "token")) as f:
        CAIRN_API = (proc, url, f.read().strip(), path)


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def setUpModule():
    global WORK, KUBE
    WORK = tempfile.mkdtemp(prefix="cairn-k8s-")
    token = secrets.token_hex(16)
    with open(os.path.join(WORK, "kube-token"), "w") as f:
        f.write(token + "\n")
    path = os.path.join(WORK, "standin.log")
    with open(path, "w") as out, open(path + ".err", "w") as err:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "Tests/kubernetes/standin_apiserver.py"), "--port", "0",
                                 "--token-file", os.path.join(WORK, "kube-token"),
                                 "--crds", os.path.join(ROOT, "deploy/cairn-operator.yaml"), "--validate"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    KUBE = (proc, wait_for_line(path, "standin: listening on ", proc), token)
    start_apiserver(os.path.join(WORK, "state"))


def tearDownModule():
    stop(CAIRN_API and CAIRN_API[0])
    stop(KUBE and KUBE[0])
    if os.environ.get("KEEP") != "1":
        subprocess.run(["rm", "-rf", WORK])
    else:
        log("kept", WORK)


def owned_by(obj, owner):
    return any(r.get("uid") == owner["metadata"]["uid"] and r.get("kind") == "CairnVolume"
               for r in obj["metadata"].get("ownerReferences", []))


def node_of(deployment):
    terms = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return terms[0]["matchExpressions"][0]["values"][0]


def kubelet(deployment, ready=1, restarts=0, waiting=None):
    """Plays kubelet for one Deployment: its readyReplicas, and one pod with its restart count."""
    name = deployment["metadata"]["name"]
    status, body = kube("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}/status?fieldManager=kubelet&force=true",
                        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                         "status": {"replicas": 1, "readyReplicas": ready}}, "application/apply-patch+yaml")
    assert status in (200, 201), (status, body)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name + "-pod", "namespace": NS, "labels": labels},
           "spec": {"containers": [{"name": "c", "image": "cairn:test"}]},
           "status": {"containerStatuses": [{"name": "c", "image": "cairn:test", "imageID": "", "ready": ready == 1,
                                             "restartCount": restarts, "state": state}]}}
    status, body = kube("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}-pod?fieldManager=kubelet&force=true", pod,
                        "application/apply-patch+yaml")
    assert status in (200, 201), (status, body)
    status, body = kube("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}-pod/status?fieldManager=kubelet&force=true", pod,
                        "application/apply-patch+yaml")
    assert status in (200, 201), (status, body)


def metric(name):
    req = urllib.request.Request(CAIRN_API[1] + "/metrics")
    with urllib.request.urlopen(req, timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.split()[-1])
    return None


class OrchestratorTests(unittest.TestCase):
    """In order: each test builds on the state the previous ones left."""

    def test_01_pools(self):
        for i, node in enumerate(["node-a", "node-b", "node-c"], 1):
            status, body = kube("POST", CAIRN + "/cairnpools",
                                {"apiVersion": "cairn.io/v1alpha1", "kind": "CairnPool",
                                 "metadata": {"name": f"p{i}", "namespace": NS},
                                 "spec": {"node": node, "path": f"/var/lib/cairn/p{i}"}})
            self.assertEqual(status, 201, body)
        pools = eventually("the CairnPools become pools", lambda: (lambda p: p if len(p[1]) == 3 else None)(cairn("GET", "/pools")))[1]
        self.assertEqual(sorted(p["labels"]["kubernetes.io/hostname"] for p in pools), ["node-a", "node-b", "node-c"])
        # Through the REST API: a pool names its node, and its path is on that node, not here.
        status, body = cairn("POST", "/pools", {"name": "p4", "path": "/var/lib/cairn/p4"})
        self.assertEqual(status, 422, body)
        self.assertIn("kubernetes.io/hostname", body["detail"])
        status, body = cairn("POST", "/pools", {"name": "p4", "path": "/var/lib/cairn/p4", "labels": {"kubernetes.io/hostname": "node-d"}})
        self.assertEqual(status, 201, body)
        status, body = cairn("PATCH", "/pools/p4", {"state": "cordoned"})
        self.assertEqual(status, 200, body)

    def test_02_volume_objects(self):
        status, body = cairn("POST", "/volumes", {"name": "vol1", "size": 1 << 30, "replicas": 3})
        self.assertEqual(status, 201, body)
        replicas = [r["id"] for r in body["status"]["replicas"]]
        self.assertEqual(len(replicas), 3)
        # Written through before the answer: the cluster holds the new volume already.
        cr = objects(CAIRN + "/cairnvolumes")["vol1"]
        self.assertIn("cairn.io/record", cr["metadata"]["annotations"])
        self.assertEqual(len(objects(CAIRN + "/cairnreplicas", "cairn.io/volume=vol1")), 3)
        self.assertIn("cairn.io/volume", cr["metadata"]["finalizers"])
        self.assertEqual(cr["spec"]["size"], 1 << 30)
        names = [f"cairn-vol1-{r}" for r in replicas] + ["cairn-vol1-ctl"]
        deployments = eventually("four Deployments", lambda: (lambda d: d if all(n in d for n in names) else None)(
            objects(f"/apis/apps/v1/namespaces/{NS}/deployments", "cairn.io/volume=vol1")))
        services = eventually("four Services", lambda: (lambda s: s if sorted(s) == sorted(names) else None)(
            objects(f"/api/v1/namespaces/{NS}/services", "cairn.io/volume=vol1")))
        self.assertIn("cairn-vol1-secret", objects(f"/api/v1/namespaces/{NS}/secrets"))
        for n in names:
            self.assertTrue(owned_by(deployments[n], cr), n)
            self.assertTrue(owned_by(services[n], cr), n)
        nodes = sorted(node_of(deployments[f"cairn-vol1-{r}"]) for r in replicas)
        self.assertEqual(nodes, ["node-a", "node-b", "node-c"], "one replica per node, p4 cordoned")
        args = deployments["cairn-vol1-ctl"]["spec"]["template"]["spec"]["containers"][0]["args"]
        for r in replicas:
            self.assertIn(f"cairn-vol1-{r}.{NS}.svc:9700", args)

    def test_03_pods_read_back_by_watch(self):
        deployments = objects(f"/apis/apps/v1/namespaces/{NS}/deployments", "cairn.io/volume=vol1")
        kube("POST", "/standin/reset-requests")
        for name, d in sorted(deployments.items()):
            kubelet(d, restarts=3 if name != "cairn-vol1-ctl" else 0)
        eventually("four processes running", lambda: metric("cairn_apiserver_processes_running") == 4)
        view = eventually("restarts in the volume's view", lambda: (lambda v: v if all(r["restarts"] == 3 for r in v[1]["status"]["replicas"]) else None)(
            cairn("GET", "/volumes/vol1")))[1]
        self.assertEqual(len(view["status"]["replicas"]), 3)
        _, seen = kube("GET", "/standin/requests")
        lists = [r for r in seen if r["method"] == "GET" and r["path"].endswith("/deployments") and "watch" not in r["query"]]
        self.assertLessEqual(len(lists), 1, f"Deployments listed again and again instead of watched: {lists}")

    def test_04_status_subresource(self):
        def status():
            s = objects(CAIRN + "/cairnvolumes")["vol1"].get("status", {})
            return s if len(s.get("replicas", [])) == 3 else None
        s = eventually("the CairnVolume's status", status)
        self.assertIn(s["state"], ["pending", "unreachable"], "no controller answers: nothing runs the pods here")
        self.assertEqual(sorted(r["node"] for r in s["replicas"]), ["node-a", "node-b", "node-c"])
        self.assertEqual(s["url"], f"iscsi://cairn-vol1-ctl.{NS}.svc:3260/iqn.2026-11.io.cairn:vol1/0")
        ready = [c for c in s["conditions"] if c["type"] == "Ready"][0]
        self.assertEqual(ready["status"], "False")

    def test_05_hand_written_volume(self):
        status, body = kube("POST", CAIRN + "/cairnvolumes",
                            {"apiVersion": "cairn.io/v1alpha1", "kind": "CairnVolume", "metadata": {"name": "hand", "namespace": NS},
                             "spec": {"size": 64 * MiB, "replicas": 2}})
        self.assertEqual(status, 201, body)
        view = eventually("a volume from the CairnVolume", lambda: (lambda r: r[1] if r[0] == 200 else None)(cairn("GET", "/volumes/hand")))
        self.assertEqual((view["size"], view["replicaCount"]), (64 * MiB, 2))
        cr = eventually("the CairnVolume carries its record and the finalizer",
                        lambda: (lambda o: o if "cairn.io/record" in o["metadata"].get("annotations", {}) else None)(
                            objects(CAIRN + "/cairnvolumes")["hand"]))
        self.assertIn("cairn.io/volume", cr["metadata"]["finalizers"])
        deployments = eventually("its Deployments", lambda: (lambda d: d if len(d) == 3 else None)(
            objects(f"/apis/apps/v1/namespaces/{NS}/deployments", "cairn.io/volume=hand")))
        for d in deployments.values():
            kubelet(d)  # ready: the orchestrator leaves them (and the CairnVolume) alone from here

    def test_06_edit_size(self):
        status, body = kube("PATCH", CAIRN + "/cairnvolumes/hand", {"spec": {"size": 128 * MiB}}, "application/merge-patch+json")
        self.assertEqual(status, 200, body)
        generation = body["metadata"]["generation"]
        eventually("the volume grew", lambda: cairn("GET", "/volumes/hand")[1]["size"] == 128 * MiB)
        eventually("observedGeneration caught up",
                   lambda: objects(CAIRN + "/cairnvolumes")["hand"].get("status", {}).get("observedGeneration") == generation)
        status, body = kube("PATCH", CAIRN + "/cairnvolumes/hand", {"spec": {"replicas": 3}}, "application/merge-patch+json")
        self.assertEqual(status, 200, body)
        eventually("replicas written back as they were", lambda: objects(CAIRN + "/cairnvolumes")["hand"]["spec"]["replicas"] == 2)
        eventually("the refusal in the status", lambda: "only size and qos change" in objects(CAIRN + "/cairnvolumes")["hand"]["status"].get("message", ""))
        self.assertEqual(cairn("GET", "/volumes/hand")[1]["replicaCount"], 2)

    def test_07_refused(self):
        status, body = kube("POST", CAIRN + "/cairnvolumes",
                            {"apiVersion": "cairn.io/v1alpha1", "kind": "CairnVolume", "metadata": {"name": "toobig", "namespace": NS},
                             "spec": {"size": 64 * MiB, "replicas": 5}})
        self.assertEqual(status, 201, body)
        s = eventually("a refused status", lambda: (lambda s: s if s.get("state") == "refused" else None)(
            objects(CAIRN + "/cairnvolumes")["toobig"].get("status", {})))
        self.assertIn("pools", s["message"])
        self.assertEqual(cairn("GET", "/volumes/toobig")[0], 404)
        status, _ = kube("DELETE", CAIRN + "/cairnvolumes/toobig")
        self.assertEqual(status, 200)
        eventually("gone", lambda: "toobig" not in objects(CAIRN + "/cairnvolumes"))

    def test_08_watch_relists_after_410(self):
        kube("POST", "/standin/reset-requests")
        status, _ = kube("POST", "/standin/compact")
        self.assertEqual(status, 200)
        deployments = objects(f"/apis/apps/v1/namespaces/{NS}/deployments", "cairn.io/volume=hand")
        for d in deployments.values():
            kubelet(d, restarts=5)
        eventually("restarts seen after the watch expired", lambda: all(
            r["restarts"] == 5 for r in cairn("GET", "/volumes/hand")[1]["status"]["replicas"]))
        _, seen = kube("GET", "/standin/requests")
        lists = [r for r in seen if r["method"] == "GET" and r["path"].endswith("/pods") and "watch" not in r["query"]]
        self.assertGreaterEqual(len(lists), 1, "the pods were not listed again after 410 Gone")

    def test_09_kubectl_delete(self):
        replicas = cairn("GET", "/volumes/hand")[1]["status"]["replicas"]
        status, body = kube("DELETE", CAIRN + "/cairnvolumes/hand")
        self.assertEqual(status, 200, body)
        self.assertIn("deletionTimestamp", body["metadata"], "the finalizer holds it")
        eventually("the volume deleted", lambda: cairn("GET", "/volumes/hand")[0] == 404)
        eventually("the CairnVolume gone once the data is", lambda: "hand" not in objects(CAIRN + "/cairnvolumes"))
        eventually("its objects collected", lambda: not objects(f"/apis/apps/v1/namespaces/{NS}/deployments", "cairn.io/volume=hand")
                   and not objects(f"/api/v1/namespaces/{NS}/services", "cairn.io/volume=hand")
                   and "cairn-hand-secret" not in objects(f"/api/v1/namespaces/{NS}/secrets"))
        jobs = objects(f"/apis/batch/v1/namespaces/{NS}/jobs", "cairn.io/volume=hand")
        self.assertEqual(len(jobs), 2, "a wipe Job per replica")
        for r in replicas:
            job = jobs[f"cairn-hand-{r['id']}-wipe"]
            self.assertEqual(job["spec"]["template"]["spec"]["containers"][0]["args"],
                             ["replica", "wipe", "--dir", r["directory"], "--volume", "hand"])
            self.assertFalse(job["metadata"].get("ownerReferences"), "a wipe Job outlives its volume")

    def test_10_restore_from_cluster(self):
        status, body = cairn("POST", "/volumes", {"name": "vol2", "size": 64 * MiB, "replicas": 1})
        self.assertEqual(status, 201, body)
        before = sorted(r["id"] for r in cairn("GET", "/volumes")[1] for r in r["status"]["replicas"])
        self.assertIn("cairn.io/record", objects(CAIRN + "/cairnvolumes")["vol2"]["metadata"]["annotations"])
        stop(CAIRN_API[0])  # at once: what was answered is in the cluster
        kube("POST", "/standin/reset-requests")
        start_apiserver(os.path.join(WORK, "state-new"))  # its pod moved: an empty state
        volumes = eventually("the volumes back", lambda: (lambda v: v if len(v) == 2 else None)(cairn("GET", "/volumes")[1]))
        self.assertEqual(sorted(v["name"] for v in volumes), ["vol1", "vol2"])
        self.assertEqual(sorted(r["id"] for v in volumes for r in v["status"]["replicas"]), before)
        time.sleep(3)
        _, seen = kube("GET", "/standin/requests")
        deletes = [r for r in seen if r["method"] == "DELETE"]
        self.assertEqual(deletes, [], "a restarted apiserver deleted objects")

    def test_11_rest_delete(self):
        status, _ = cairn("DELETE", "/volumes/vol1")
        self.assertIn(status, (202, 204))
        eventually("vol1's CairnVolume and objects gone", lambda: "vol1" not in objects(CAIRN + "/cairnvolumes")
                   and not objects(f"/apis/apps/v1/namespaces/{NS}/deployments", "cairn.io/volume=vol1"))
        self.assertEqual(len(objects(f"/apis/batch/v1/namespaces/{NS}/jobs", "cairn.io/volume=vol1")), 3)
        self.assertFalse(objects(CAIRN + "/cairnreplicas", "cairn.io/volume=vol1"))

    def test_12_recreate_same_name(self):
        status, first = cairn("POST", "/volumes", {"name": "again", "size": 64 * MiB, "replicas": 1})
        self.assertEqual(status, 201, first)
        status, _ = cairn("DELETE", "/volumes/again")
        self.assertIn(status, (202, 204))
        status, second = cairn("POST", "/volumes", {"name": "again", "size": 128 * MiB, "replicas": 1})
        self.assertEqual(status, 201, second)
        time.sleep(5)  # a few mirror passes: the new volume must not be taken for the old one's deletion
        status, view = cairn("GET", "/volumes/again")
        self.assertEqual((status, view["size"], view["status"]["state"] != "deleting"), (200, 128 * MiB, True), view)
        cr = eventually("the new volume's CairnVolume", lambda: (lambda o: o if o and not o["metadata"].get("deletionTimestamp")
                                                                and json.loads(o["metadata"]["annotations"]["cairn.io/record"])["size"] == 128 * MiB
                                                                else None)(objects(CAIRN + "/cairnvolumes").get("again")))
        deployments = eventually("its Deployments owned by the new CairnVolume", lambda: (lambda d: d if d and all(
            owned_by(x, cr) for x in d.values()) else None)(objects(f"/apis/apps/v1/namespaces/{NS}/deployments", "cairn.io/volume=again")))
        self.assertEqual(len(deployments), 2)
        secret = objects(f"/api/v1/namespaces/{NS}/secrets")["cairn-again-secret"]
        self.assertTrue(owned_by(secret, cr), "the Secret of the earlier volume was kept")

    def test_13_create_not_taken_by_the_cluster(self):
        kube("POST", "/standin/fail-writes?resource=cairnvolumes&count=1000")
        try:
            status, body = cairn("POST", "/volumes", {"name": "pending", "size": 64 * MiB, "replicas": 1})
            self.assertEqual(status, 503, body)
            self.assertEqual(body["type"], "https://cairn.io/problems/cluster-write-pending", body)
            self.assertNotIn("pending", objects(CAIRN + "/cairnvolumes"))
        finally:
            kube("POST", "/standin/fail-writes?resource=cairnvolumes&count=0")
        eventually("the mirror writes it once the cluster takes writes again",
                   lambda: "pending" in objects(CAIRN + "/cairnvolumes"))
        status, body = cairn("POST", "/volumes", {"name": "pending", "size": 64 * MiB, "replicas": 1})
        self.assertEqual(status, 200, body)  # the repeat: it exists with this spec, and is kept


if __name__ == "__main__":
    unittest.main(verbosity=2)
