"""Cairn's CSI plugin, driven as a CO drives it.

One `cairn apiserver` (local orchestrator, three pools) and one `cairn csi --mode all
--attach userspace` on a unix socket, both on 127.0.0.1 in a scratch directory. The client is
generated here from Sources/CairnCSI/csi.proto with grpcio-tools. IdentityTests and
ControllerTests are the csi-sanity cases for those services; NodeTests stage, publish, write, kill
a replica, unstage, check, stage again, expand and read stats for real (root, /dev/fuse and loop
devices needed).
"""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CAIRN_BIN") or os.path.join(ROOT, ".build/debug/cairn")
MiB = 1 << 20

WORK = None
csi = None        # generated messages (csi_pb2)
rpc = None        # generated stubs (csi_pb2_grpc)
channel = None
apiserver = None  # (process, url, token)
plugin = None


def log(*args):
    print("[csi]", *args, file=sys.stderr, flush=True)


def generate_client(out):
    import grpc_tools
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    os.makedirs(out, exist_ok=True)
    rc = protoc.main(["protoc", "-I", os.path.join(ROOT, "Sources/CairnCSI"), "-I", include,
                      "--python_out=" + out, "--grpc_python_out=" + out, "csi.proto"])
    if rc != 0:
        raise RuntimeError("protoc failed on csi.proto")
    sys.path.insert(0, out)
    import csi_pb2
    import csi_pb2_grpc
    return csi_pb2, csi_pb2_grpc


def free_port_range(count):
    """A run of `count` ports none of which is bound now (checked, then picked at random)."""
    import random
    for _ in range(200):
        base = random.randrange(32000, 60000 - count)
        ok = True
        for p in range(base, base + count):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            return base, base + count - 1
    raise RuntimeError("no free port range")


def wait_for_line(path, prefix, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if os.path.exists(path):
            for line in open(path, errors="replace"):
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:2]} exited: {open(path).read()[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"no '{prefix}' in {path} after {seconds} s")


def api(method, path, body=None):
    _, url, token = apiserver
    req = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        data = r.read()
        return json.loads(data) if data else None


def setUpModule():
    global WORK, csi, rpc, channel, apiserver, plugin
    WORK = tempfile.mkdtemp(prefix="cairn-csi-")
    csi, rpc = generate_client(os.path.join(WORK, "client"))
    first, last = free_port_range(120)
    for p in ("p1", "p2", "p3"):
        os.makedirs(os.path.join(WORK, "pools", p))
    api_log = os.path.join(WORK, "apiserver.log")
    proc = subprocess.Popen([BIN, "apiserver", "--data", os.path.join(WORK, "state"), "--listen", "127.0.0.1:0",
                             "--ports", f"{first}-{last}", "--pool-root", os.path.join(WORK, "pools"),
                             "--stop-volumes-on-exit"],
                            stdin=subprocess.DEVNULL, stdout=open(api_log, "w"), stderr=subprocess.STDOUT)
    url = wait_for_line(api_log, "cairn: apiserver ", proc)
    token = open(os.path.join(WORK, "state", "token")).read().strip()
    apiserver = (proc, url, token)
    for p in ("p1", "p2", "p3"):
        api("POST", "/v1/pools", {"name": p, "path": os.path.join(WORK, "pools", p)})
    sock = os.path.join(WORK, "csi.sock")
    csi_log = os.path.join(WORK, "csi.log")
    plugin = subprocess.Popen([BIN, "csi", "--endpoint", "unix://" + sock, "--mode", "all", "--apiserver", url,
                               "--token-file", os.path.join(WORK, "state", "token"), "--node-id", "test-node",
                               "--attach", "userspace", "--state-dir", os.path.join(WORK, "csi-state")],
                              stdin=subprocess.DEVNULL, stdout=open(csi_log, "w"), stderr=subprocess.STDOUT)
    wait_for_line(csi_log, "cairn: csi ", plugin)
    channel = grpc.insecure_channel("unix://" + sock)
    log(f"apiserver {url}, plugin unix://{sock}, scratch {WORK}")


def tearDownModule():
    if channel:
        channel.close()
    # A failed test may leave mounts: undone while the volumes still serve (once their targets
    # are gone, an unmount would wait on I/O that never completes). Any of them fails the run.
    leftovers = mounts_under(WORK) + loops_under(WORK) + storage_daemons()
    for m in reversed(mounts_under(WORK + "/kubelet")):
        subprocess.run(["umount", m], check=False)
    for l in loops_under(WORK):
        subprocess.run(["losetup", "-d", l], check=False)
    for pid in storage_daemons():
        os.kill(pid, signal.SIGTERM)
    time.sleep(1)
    for m in reversed(mounts_under(WORK)):
        subprocess.run(["umount", "-l", m], check=False)
    for proc in (plugin, apiserver[0] if apiserver else None):
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    # Anything the apiserver recorded that still runs (it was told to stop them) is killed.
    db = os.path.join(WORK, "state", "state.db")
    if os.path.exists(db):
        for (pid,) in sqlite3.connect(db).execute("SELECT pid FROM process"):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass
    if os.environ.get("KEEP") == "1":
        log("kept", WORK)
    else:
        subprocess.run(["rm", "-rf", WORK], check=False)
    if leftovers:
        raise RuntimeError(f"left behind: {leftovers}")


def mounts_under(prefix):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].startswith(prefix):
                out.append(fields[4])
    return out


def loops_under(prefix):
    r = subprocess.run(["losetup", "--noheadings", "--output", "NAME,BACK-FILE", "--list"], capture_output=True, text=True)
    return [l.split()[0] for l in r.stdout.splitlines() if len(l.split()) == 2 and l.split()[1].startswith(prefix)]


def mount_cap(fs="ext4", mode=None):
    c = csi.VolumeCapability()
    c.mount.fs_type = fs
    c.access_mode.mode = mode or csi.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    return c


def block_cap():
    c = csi.VolumeCapability()
    c.block.SetInParent()
    c.access_mode.mode = csi.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    return c


class CSITestCase(unittest.TestCase):
    def controller(self):
        return rpc.ControllerStub(channel)

    def node(self):
        return rpc.NodeStub(channel)

    def assertCode(self, code, call, *args):
        with self.assertRaises(grpc.RpcError) as e:
            call(*args)
        self.assertEqual(e.exception.code(), code, e.exception.details())
        return e.exception

    def create(self, name, size=64 * MiB, params=None, cap=None, source=None, limit=0):
        req = csi.CreateVolumeRequest(name=name, volume_capabilities=[cap or mount_cap()], parameters=params or {})
        req.capacity_range.required_bytes = size
        req.capacity_range.limit_bytes = limit
        if source is not None:
            req.volume_content_source.CopyFrom(source)
        return self.controller().CreateVolume(req).volume

    def delete(self, volume_id):
        self.controller().DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume_id))

    def assertNothingLeft(self):
        """No mount, loop device or qemu-storage-daemon of this run is left (after unstaging all)."""
        self.assertEqual(mounts_under(WORK + "/kubelet"), [])
        self.assertEqual(mounts_under(WORK + "/csi-state"), [])
        self.assertEqual(loops_under(WORK), [])
        self.assertEqual(storage_daemons(), [])


class IdentityTests(CSITestCase):
    def test_plugin_info(self):
        info = rpc.IdentityStub(channel).GetPluginInfo(csi.GetPluginInfoRequest())
        self.assertEqual(info.name, "cairn.csi.io")
        self.assertTrue(info.vendor_version)

    def test_plugin_capabilities(self):
        caps = rpc.IdentityStub(channel).GetPluginCapabilities(csi.GetPluginCapabilitiesRequest()).capabilities
        services = {c.service.type for c in caps if c.HasField("service")}
        expansion = {c.volume_expansion.type for c in caps if c.HasField("volume_expansion")}
        S = csi.PluginCapability.Service
        self.assertEqual(services, {S.CONTROLLER_SERVICE, S.VOLUME_ACCESSIBILITY_CONSTRAINTS})
        self.assertEqual(expansion, {csi.PluginCapability.VolumeExpansion.ONLINE})

    def test_probe_ready(self):
        r = rpc.IdentityStub(channel).Probe(csi.ProbeRequest())
        self.assertTrue(r.ready.value)


class ControllerTests(CSITestCase):
    def test_capabilities(self):
        caps = self.controller().ControllerGetCapabilities(csi.ControllerGetCapabilitiesRequest()).capabilities
        R = csi.ControllerServiceCapability.RPC
        self.assertEqual({c.rpc.type for c in caps},
                         {R.CREATE_DELETE_VOLUME, R.PUBLISH_UNPUBLISH_VOLUME, R.LIST_VOLUMES, R.GET_CAPACITY,
                          R.CREATE_DELETE_SNAPSHOT, R.LIST_SNAPSHOTS, R.CLONE_VOLUME, R.EXPAND_VOLUME})

    def test_create_needs_name_and_capabilities(self):
        c = self.controller()
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.CreateVolume,
                        csi.CreateVolumeRequest(volume_capabilities=[mount_cap()]))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.CreateVolume, csi.CreateVolumeRequest(name="sanity-no-caps"))
        no_mode = csi.VolumeCapability()
        no_mode.mount.SetInParent()
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.CreateVolume,
                        csi.CreateVolumeRequest(name="sanity-no-mode", volume_capabilities=[no_mode]))

    def test_create_is_idempotent_and_another_size_exists(self):
        v1 = self.create("sanity-idem")
        v2 = self.create("sanity-idem")
        self.assertEqual(v1.volume_id, v2.volume_id)
        self.assertEqual(v1.capacity_bytes, 64 * MiB)
        self.assertEqual(v2.capacity_bytes, 64 * MiB)
        self.assertIn("portal", v1.volume_context)
        self.assertIn("iqn", v1.volume_context)
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.create, "sanity-idem", 128 * MiB)
        self.delete(v1.volume_id)

    def test_create_names_kubernetes_cannot_use_map_stably(self):
        v1 = self.create("Sanity Volume / ünïcode", 8 * MiB)
        v2 = self.create("Sanity Volume / ünïcode", 8 * MiB)
        self.assertEqual(v1.volume_id, v2.volume_id)
        self.assertTrue(v1.volume_id.startswith("csi-"))
        self.delete(v1.volume_id)

    def test_capacity_range(self):
        self.assertCode(grpc.StatusCode.OUT_OF_RANGE, self.create, "sanity-range", 64 * MiB, None, None, None, 32 * MiB)
        v = self.create("sanity-odd", 10 * MiB + 1)
        self.assertGreaterEqual(v.capacity_bytes, 10 * MiB + 1)
        self.delete(v.volume_id)

    def test_parameters(self):
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.create, "sanity-bad-param", 8 * MiB, {"replicaz": "3"})
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.create, "sanity-bad-iops", 8 * MiB, {"iops": "many"})
        v = self.create("sanity-params", 8 * MiB, {"replicas": "1", "iops": "1000", "bandwidth": "50MiB",
                                                   "csi.storage.k8s.io/pvc/name": "data"})
        got = api("GET", "/v1/volumes/" + v.volume_id)
        self.assertEqual(got["replicaCount"], 1)
        self.assertEqual(got["qos"]["iops"], 1000)
        self.assertEqual(got["qos"]["bandwidth"], 50 * MiB)
        self.delete(v.volume_id)

    def test_delete(self):
        c = self.controller()
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.DeleteVolume, csi.DeleteVolumeRequest())
        c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="sanity-never-made"))
        c.DeleteVolume(csi.DeleteVolumeRequest(volume_id="Not A Cairn Id"))
        v = self.create("sanity-delete", 8 * MiB)
        self.delete(v.volume_id)
        self.delete(v.volume_id)
        vols = [e.volume.volume_id for e in c.ListVolumes(csi.ListVolumesRequest()).entries]
        self.assertNotIn(v.volume_id, vols)

    def test_validate_volume_capabilities(self):
        c = self.controller()
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.ValidateVolumeCapabilities,
                        csi.ValidateVolumeCapabilitiesRequest(volume_capabilities=[mount_cap()]))
        self.assertCode(grpc.StatusCode.NOT_FOUND, c.ValidateVolumeCapabilities,
                        csi.ValidateVolumeCapabilitiesRequest(volume_id="sanity-missing", volume_capabilities=[mount_cap()]))
        v = self.create("sanity-validate", 8 * MiB)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.ValidateVolumeCapabilities,
                        csi.ValidateVolumeCapabilitiesRequest(volume_id=v.volume_id))
        ok = c.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(volume_id=v.volume_id,
                                                                                volume_capabilities=[mount_cap(), block_cap()]))
        self.assertEqual(len(ok.confirmed.volume_capabilities), 2)
        shared = mount_cap(mode=csi.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER)
        no = c.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(volume_id=v.volume_id, volume_capabilities=[shared]))
        self.assertFalse(no.HasField("confirmed"))
        self.assertTrue(no.message)
        self.delete(v.volume_id)

    def test_list_volumes_pages(self):
        made = [self.create(f"sanity-list-{i}", 8 * MiB).volume_id for i in range(3)]
        c = self.controller()
        seen, token = [], ""
        while True:
            page = c.ListVolumes(csi.ListVolumesRequest(max_entries=1, starting_token=token))
            self.assertLessEqual(len(page.entries), 1)
            seen += [e.volume.volume_id for e in page.entries]
            token = page.next_token
            if not token:
                break
        for m in made:
            self.assertIn(m, seen)
        self.assertEqual(len(seen), len(set(seen)))
        self.assertCode(grpc.StatusCode.ABORTED, c.ListVolumes, csi.ListVolumesRequest(starting_token="no-such-token"))
        for m in made:
            self.delete(m)

    def test_get_capacity(self):
        c = self.controller()
        three = c.GetCapacity(csi.GetCapacityRequest(volume_capabilities=[mount_cap()], parameters={"replicas": "3"}))
        self.assertGreater(three.available_capacity, 0)
        none = c.GetCapacity(csi.GetCapacityRequest(parameters={"replicas": "3", "poolSelector": "tier=none"}))
        self.assertEqual(none.available_capacity, 0)

    def test_expand(self):
        c = self.controller()
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.ControllerExpandVolume, csi.ControllerExpandVolumeRequest(volume_id="x"))
        req = csi.ControllerExpandVolumeRequest(volume_id="sanity-missing")
        req.capacity_range.required_bytes = 128 * MiB
        self.assertCode(grpc.StatusCode.NOT_FOUND, c.ControllerExpandVolume, req)
        v = self.create("sanity-expand", 64 * MiB)
        req = csi.ControllerExpandVolumeRequest(volume_id=v.volume_id, volume_capability=mount_cap())
        req.capacity_range.required_bytes = 128 * MiB
        r = c.ControllerExpandVolume(req)
        self.assertEqual(r.capacity_bytes, 128 * MiB)
        self.assertTrue(r.node_expansion_required)
        self.assertEqual(api("GET", "/v1/volumes/" + v.volume_id)["size"], 128 * MiB)
        again = c.ControllerExpandVolume(req)
        self.assertEqual(again.capacity_bytes, 128 * MiB)
        self.delete(v.volume_id)

    def test_publish(self):
        c = self.controller()
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.ControllerPublishVolume,
                        csi.ControllerPublishVolumeRequest(volume_id="x", volume_capability=mount_cap()))
        self.assertCode(grpc.StatusCode.NOT_FOUND, c.ControllerPublishVolume,
                        csi.ControllerPublishVolumeRequest(volume_id="sanity-missing", node_id="n", volume_capability=mount_cap()))
        v = self.create("sanity-publish", 8 * MiB)
        r = c.ControllerPublishVolume(csi.ControllerPublishVolumeRequest(volume_id=v.volume_id, node_id="n",
                                                                         volume_capability=mount_cap()))
        self.assertEqual(r.publish_context["iqn"], v.volume_context["iqn"])
        c.ControllerUnpublishVolume(csi.ControllerUnpublishVolumeRequest(volume_id=v.volume_id, node_id="n"))
        self.delete(v.volume_id)

    def test_snapshots(self):
        c = self.controller()
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.CreateSnapshot, csi.CreateSnapshotRequest(source_volume_id="x"))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.CreateSnapshot, csi.CreateSnapshotRequest(name="s"))
        self.assertCode(grpc.StatusCode.NOT_FOUND, c.CreateSnapshot,
                        csi.CreateSnapshotRequest(name="sanity-snap-x", source_volume_id="sanity-missing"))
        v = self.create("sanity-snap-src", 16 * MiB)
        other = self.create("sanity-snap-other", 8 * MiB)
        s1 = c.CreateSnapshot(csi.CreateSnapshotRequest(name="sanity-snap", source_volume_id=v.volume_id)).snapshot
        s2 = c.CreateSnapshot(csi.CreateSnapshotRequest(name="sanity-snap", source_volume_id=v.volume_id)).snapshot
        self.assertEqual(s1.snapshot_id, s2.snapshot_id)
        self.assertEqual(s1.source_volume_id, v.volume_id)
        self.assertTrue(s1.ready_to_use)
        self.assertEqual(s1.size_bytes, 16 * MiB)
        self.assertGreater(s1.creation_time.seconds, 0)
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, c.CreateSnapshot,
                        csi.CreateSnapshotRequest(name="sanity-snap", source_volume_id=other.volume_id))
        by_id = c.ListSnapshots(csi.ListSnapshotsRequest(snapshot_id=s1.snapshot_id)).entries
        self.assertEqual([e.snapshot.snapshot_id for e in by_id], [s1.snapshot_id])
        by_source = c.ListSnapshots(csi.ListSnapshotsRequest(source_volume_id=v.volume_id)).entries
        self.assertIn(s1.snapshot_id, [e.snapshot.snapshot_id for e in by_source])
        everything = c.ListSnapshots(csi.ListSnapshotsRequest()).entries
        self.assertIn(s1.snapshot_id, [e.snapshot.snapshot_id for e in everything])
        self.assertEqual(len(c.ListSnapshots(csi.ListSnapshotsRequest(snapshot_id="sanity-missing/none")).entries), 0)
        self.assertEqual(len(c.ListSnapshots(csi.ListSnapshotsRequest(source_volume_id="sanity-missing")).entries), 0)

        # A volume from the snapshot, and its source cannot go while it has a snapshot.
        src = csi.VolumeContentSource()
        src.snapshot.snapshot_id = s1.snapshot_id
        clone = self.create("sanity-from-snap", 16 * MiB, source=src)
        self.assertEqual(clone.content_source.snapshot.snapshot_id, s1.snapshot_id)
        self.assertCode(grpc.StatusCode.OUT_OF_RANGE, self.create, "sanity-from-snap-small", 8 * MiB, None, None, src, 8 * MiB)
        missing = csi.VolumeContentSource()
        missing.snapshot.snapshot_id = v.volume_id + "/no-such-snapshot"
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.create, "sanity-from-missing", 16 * MiB, None, None, missing)
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, c.DeleteVolume, csi.DeleteVolumeRequest(volume_id=v.volume_id))
        wait_served(clone.volume_id)

        c.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id=s1.snapshot_id))
        c.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id=s1.snapshot_id))
        c.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id="not-an-id"))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, c.DeleteSnapshot, csi.DeleteSnapshotRequest())
        self.assertEqual(len(c.ListSnapshots(csi.ListSnapshotsRequest(snapshot_id=s1.snapshot_id)).entries), 0)
        for vol in (clone.volume_id, v.volume_id, other.volume_id):
            self.delete(vol)

    def test_clone_of_a_volume(self):
        v = self.create("sanity-clone-src", 16 * MiB)
        src = csi.VolumeContentSource()
        src.volume.volume_id = v.volume_id
        clone = self.create("sanity-clone", 16 * MiB, source=src)
        again = self.create("sanity-clone", 16 * MiB, source=src)
        self.assertEqual(clone.volume_id, again.volume_id)
        self.assertEqual(api("GET", "/v1/volumes/" + clone.volume_id)["source"].split("/")[0], v.volume_id)
        missing = csi.VolumeContentSource()
        missing.volume.volume_id = "sanity-missing"
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.create, "sanity-clone-missing", 16 * MiB, None, None, missing)
        wait_served(clone.volume_id)
        # The snapshot taken for the clone goes with the clone; the source can go then.
        self.delete(clone.volume_id)
        self.delete(v.volume_id)


def wait_served(volume, seconds=120):
    """Until the volume's controller serves (a clone has copied its data)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        status = api("GET", "/v1/volumes/" + volume)["status"]
        state = status["state"]
        if state in ("healthy", "degraded") and (status.get("epoch") or 0) > 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{volume} does not serve after {seconds} s (state {state})")


def retry_unavailable(call, *args, seconds=120):
    """Calls until it is not UNAVAILABLE, as kubelet retries a stage while a volume starts."""
    deadline = time.time() + seconds
    while True:
        try:
            return call(*args)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.time() > deadline:
                raise
            time.sleep(0.5)


@unittest.skipUnless(os.geteuid() == 0 and os.path.exists("/dev/fuse"), "the node service needs root and /dev/fuse")
class NodeTests(CSITestCase):
    def stage_req(self, vid, path, cap=None, ctx=None):
        return csi.NodeStageVolumeRequest(volume_id=vid, staging_target_path=path, volume_capability=cap or mount_cap(),
                                          volume_context=ctx or {})

    def publish_req(self, vid, staging, target, cap=None, readonly=False):
        return csi.NodePublishVolumeRequest(volume_id=vid, staging_target_path=staging, target_path=target,
                                            volume_capability=cap or mount_cap(), readonly=readonly)

    def test_info_and_capabilities(self):
        info = self.node().NodeGetInfo(csi.NodeGetInfoRequest())
        self.assertEqual(info.node_id, "test-node")
        self.assertEqual(info.accessible_topology.segments["topology.cairn.io/node"], "test-node")
        caps = self.node().NodeGetCapabilities(csi.NodeGetCapabilitiesRequest()).capabilities
        R = csi.NodeServiceCapability.RPC
        self.assertEqual({c.rpc.type for c in caps}, {R.STAGE_UNSTAGE_VOLUME, R.GET_VOLUME_STATS, R.EXPAND_VOLUME})

    def test_bad_requests(self):
        n = self.node()
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, n.NodeStageVolume, csi.NodeStageVolumeRequest(staging_target_path="/x",
                                                                                                       volume_capability=mount_cap()))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, n.NodeStageVolume, csi.NodeStageVolumeRequest(volume_id="v",
                                                                                                       volume_capability=mount_cap()))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, n.NodeStageVolume, csi.NodeStageVolumeRequest(volume_id="v",
                                                                                                       staging_target_path="/x"))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, n.NodePublishVolume, csi.NodePublishVolumeRequest(volume_id="v",
                                                                                                           staging_target_path="/x"))
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, n.NodePublishVolume,
                        self.publish_req("sanity-not-staged", os.path.join(WORK, "nowhere"), os.path.join(WORK, "t")))
        self.assertCode(grpc.StatusCode.NOT_FOUND, n.NodeGetVolumeStats,
                        csi.NodeGetVolumeStatsRequest(volume_id="v", volume_path=os.path.join(WORK, "no-such-path")))
        n.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id="v", target_path=os.path.join(WORK, "never-published")))
        n.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id="v", staging_target_path=os.path.join(WORK, "never-staged")))

    def test_filesystem_lifecycle(self):
        n = self.node()
        v = self.create("node-fs", 128 * MiB, {"replicas": "3"})
        vid, ctx = v.volume_id, dict(v.volume_context)
        staging = os.path.join(WORK, "kubelet", vid, "globalmount")
        target = os.path.join(WORK, "kubelet", "pods", "p1", vid, "mount")
        ro_target = os.path.join(WORK, "kubelet", "pods", "p2", vid, "mount")
        os.makedirs(staging)

        retry_unavailable(n.NodeStageVolume, self.stage_req(vid, staging, ctx=ctx))
        n.NodeStageVolume(self.stage_req(vid, staging, ctx=ctx))   # again: nothing more to do
        self.assertIn(staging, mounts_under(staging))
        n.NodePublishVolume(self.publish_req(vid, staging, target))
        n.NodePublishVolume(self.publish_req(vid, staging, target))
        self.assertIn(target, mounts_under(target))
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, n.NodePublishVolume, self.publish_req(vid, staging, target, readonly=True))

        payload = os.urandom(3 * MiB)
        write_synced(os.path.join(target, "before.bin"), payload)
        # A replica killed under the mounted filesystem: what is written next is kept by the rest.
        replica = next(r for r in api("GET", f"/v1/volumes/{vid}/replicas") if r.get("pid"))
        os.kill(replica["pid"], signal.SIGKILL)
        after = os.urandom(2 * MiB)
        write_synced(os.path.join(target, "after.bin"), after)

        # Read-only publish of the same staging: writes fail there.
        n.NodePublishVolume(self.publish_req(vid, staging, ro_target, readonly=True))
        with self.assertRaises(OSError):
            open(os.path.join(ro_target, "nope"), "w").close()
        n.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=ro_target))

        # Stats agree with df.
        stats = n.NodeGetVolumeStats(csi.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=target)).usage
        by_unit = {u.unit: u for u in stats}
        df = df_numbers(target)
        b = by_unit[csi.VolumeUsage.BYTES]
        self.assertEqual((b.total, b.used, b.available), (df["size"], df["used"], df["avail"]))
        i = by_unit[csi.VolumeUsage.INODES]
        self.assertEqual((i.total, i.used, i.available), (df["itotal"], df["iused"], df["iavail"]))

        # Unstage with a pod still on it is refused; then unpublish and unstage leave nothing behind.
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, n.NodeUnstageVolume,
                        csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
        n.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
        n.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
        self.assertFalse(os.path.exists(target))
        n.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
        n.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
        self.assertNothingLeft()

        # e2fsck on the unstaged volume, attached raw (volumeMode Block): clean.
        raw = os.path.join(WORK, "kubelet", vid, "rawcheck")
        n.NodeStageVolume(self.stage_req(vid, raw, cap=block_cap(), ctx=ctx))
        device = staged_device(vid)
        fsck = subprocess.run(["e2fsck", "-f", "-n", device], capture_output=True, text=True)
        self.assertEqual(fsck.returncode, 0, fsck.stdout + fsck.stderr)
        n.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=raw))

        # Staged again: both files read back.
        n.NodeStageVolume(self.stage_req(vid, staging, ctx=ctx))
        n.NodePublishVolume(self.publish_req(vid, staging, target))
        self.assertEqual(read(os.path.join(target, "before.bin")), payload)
        self.assertEqual(read(os.path.join(target, "after.bin")), after)

        # Expand: the controller grows the volume, the node the filesystem. Online (published)
        # when this process may resize a mounted ext4 (CAP_SYS_RESOURCE); without it, as in this
        # sandbox, the pod goes first and the node grows the staged filesystem unmounted.
        before = os.statvfs(target)
        grow = csi.ControllerExpandVolumeRequest(volume_id=vid, volume_capability=mount_cap())
        grow.capacity_range.required_bytes = 256 * MiB
        self.assertTrue(self.controller().ControllerExpandVolume(grow).node_expansion_required)
        online = has_capability(24)
        if not online:
            log("no CAP_SYS_RESOURCE here: NodeExpandVolume grows the staged filesystem offline")
            n.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
        expand = csi.NodeExpandVolumeRequest(volume_id=vid, volume_path=target if online else staging,
                                             staging_target_path=staging, volume_capability=mount_cap())
        expand.capacity_range.required_bytes = 256 * MiB
        r = n.NodeExpandVolume(expand)
        self.assertEqual(r.capacity_bytes, 256 * MiB)
        if not online:
            n.NodePublishVolume(self.publish_req(vid, staging, target))
        grown = os.statvfs(target)
        self.assertGreater(grown.f_blocks * grown.f_frsize, before.f_blocks * before.f_frsize + 100 * MiB)
        self.assertEqual(read(os.path.join(target, "before.bin")), payload)

        n.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
        n.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
        self.assertNothingLeft()
        self.delete(vid)

    def test_block_volume(self):
        n = self.node()
        v = self.create("node-block", 32 * MiB, {"replicas": "1"}, cap=block_cap())
        vid = v.volume_id
        staging = os.path.join(WORK, "kubelet", vid, "staging")
        target = os.path.join(WORK, "kubelet", "pods", "p3", vid, "dev")
        os.makedirs(staging)
        retry_unavailable(n.NodeStageVolume, self.stage_req(vid, staging, cap=block_cap(), ctx=dict(v.volume_context)))
        n.NodePublishVolume(self.publish_req(vid, staging, target, cap=block_cap()))
        self.assertIn(target, mounts_under(target))
        w = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0xa5 1M 64k", target], capture_output=True, text=True)
        self.assertEqual(w.returncode, 0, w.stdout + w.stderr)
        r = subprocess.run(["qemu-io", "-f", "raw", "-r", "-c", "read -P 0xa5 1M 64k", target], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("read 65536/65536 bytes", r.stdout)
        self.assertNotIn("Pattern verification failed", r.stdout)
        stats = n.NodeGetVolumeStats(csi.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=target)).usage
        self.assertEqual(stats[0].total, 32 * MiB)
        n.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
        n.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
        self.assertNothingLeft()
        self.delete(vid)


def write_synced(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read(path):
    with open(path, "rb") as f:
        return f.read()


def has_capability(bit):
    with open("/proc/self/status") as f:
        eff = next(int(l.split()[1], 16) for l in f if l.startswith("CapEff:"))
    return bool(eff >> bit & 1)


def df_numbers(path):
    b = subprocess.run(["df", "-B1", "--output=size,used,avail", path], capture_output=True, text=True, check=True)
    i = subprocess.run(["df", "--output=itotal,iused,iavail", path], capture_output=True, text=True, check=True)
    size, used, avail = map(int, b.stdout.splitlines()[1].split())
    itotal, iused, iavail = map(int, i.stdout.splitlines()[1].split())
    return dict(size=size, used=used, avail=avail, itotal=itotal, iused=iused, iavail=iavail)


def staged_device(vid):
    return json.load(open(os.path.join(WORK, "csi-state", "staged", vid + ".json")))["attachment"]["device"]


def storage_daemons():
    """qemu-storage-daemon processes serving this run's exports."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"qemu-storage-daemon") and any(WORK.encode() in a for a in cmd):
            out.append(int(pid))
    return out


if __name__ == "__main__":
    unittest.main(verbosity=2)
