#!/usr/bin/env python3
"""A stand-in for the Kubernetes API server, for Cairn's integration tests (there is no cluster).

It implements only the subset of the API that Cairn's apiserver uses (Sources/CairnControl/
KubernetesAPI.swift), over plain HTTP on 127.0.0.1 with a bearer token: namespaced pods, services,
secrets, events, deployments, jobs and the cairn.io/v1alpha1 kinds (all but secrets and events with
a status subresource, so a test can play kubelet); GET (object, list, watch), POST, PATCH
(server-side apply, JSON merge patch) and DELETE.

Simplified semantics (it is not a Kubernetes API server):
- Apply has no field ownership or managedFields: the body is deep-merged into the stored object
  (dicts merge, lists and scalars replace, null removes), so a field an earlier apply set and a later
  one leaves out stays. On /status the body's `status` replaces the stored one wholesale (as a single
  status manager's apply would) and the rest is ignored; on the main path (apply, merge patch, POST)
  a `status` is ignored for every kind. A write that changes nothing keeps the resourceVersion and
  sends no event.
- DELETE is immediate (no grace period); finalizers are honoured (deletionTimestamp, then removal once
  they are empty); dependents (ownerReference uid, same namespace) go synchronously and recursively,
  whatever the propagationPolicy.
- Watches with resourceVersion ""/"0" start from now (no initial ADDED); the label selector is applied
  to each event's object (no synthetic DELETED when an object stops matching); every event is kept
  until POST /standin/compact. Selectors: key=value, key==value, key!=value, key, !key only.
- Not supported: fieldSelector, generateName, PUT, dry-run, cluster-scoped resources, CEL rules.
- --validate: core/apps/batch objects with kubernetes-validate (strict, 1.34, status not checked),
  cairn.io objects (status included) against their CRD's openAPIV3Schema as Tests/deploy/validate.py
  converts it. The CRDs' `default`s are applied to cairn.io objects on every write, --validate or not.

Test hooks (bearer token needed): POST /standin/compact (forget every event, end open watches),
GET /standin/requests (the API requests seen: method, path, query as a dict, contentType; hooks not
included), POST /standin/reset-requests, POST /standin/fail-writes?resource=PLURAL&count=N (the next N
writes, anything but GET, to that resource answer 503, as when etcd does not answer).

Usage: standin_apiserver.py --port 0 --token-file FILE [--crds deploy/cairn-operator.yaml] [--validate]
"""
import argparse
import bisect
import copy
import datetime
import json
import pathlib
import signal
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import yaml

sys.dont_write_bytecode = True  # no __pycache__ left in Tests/deploy
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "deploy"))
import validate as deploy_validate  # noqa: E402  (Tests/deploy/validate.py: CRD schema to JSON Schema)
import kubernetes_validate  # noqa: E402

KUBERNETES_VERSION = "1.34.0"
SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "deletionTimestamp")
# (group, version, plural) -> (kind, has a status subresource)
RESOURCES = {
    ("", "v1", "pods"): ("Pod", True), ("", "v1", "services"): ("Service", True),
    ("", "v1", "secrets"): ("Secret", False), ("", "v1", "events"): ("Event", False),
    ("apps", "v1", "deployments"): ("Deployment", True), ("batch", "v1", "jobs"): ("Job", True),
    **{("cairn.io", "v1alpha1", "cairn" + p): ("Cairn" + k, True)
       for p, k in [("pools", "Pool"), ("volumes", "Volume"), ("replicas", "Replica"),
                    ("snapshots", "Snapshot"), ("backups", "Backup")]},
}


class ApiError(Exception):
    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Resource:
    def __init__(self, group, version, plural):
        self.group, self.version, self.plural = group, version, plural
        self.kind, self.has_status = RESOURCES[(group, version, plural)]
        self.api_version = f"{group}/{version}" if group else version


def parse_path(path):
    """(Resource, namespace, name or None, subresource or None) for an API path, or 404."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    if len(rest) < 3 or len(rest) > 5 or rest[0] != "namespaces" or (group, version, rest[2]) not in RESOURCES:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    res = Resource(group, version, rest[2])
    name = rest[3] if len(rest) > 3 else None
    sub = rest[4] if len(rest) > 4 else None
    if sub is not None and not (sub == "status" and res.has_status):
        raise ApiError(404, "NotFound", f"{res.plural} has no subresource {sub!r}")
    return res, rest[1], name, sub


def parse_selector(text):
    """A label selector as a list of (op, key, value); op is =, !=, exists or !exists."""
    terms = []
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        if " in " in term or " notin " in term or "(" in term:
            raise ApiError(400, "BadRequest", f"set-based label selectors are not supported: {term!r}")
        op = "!=" if "!=" in term else "=" if "=" in term else None
        if op:
            k, v = term.replace("==", "=", 1).split(op, 1)
            terms.append((op, k.strip(), v.strip()))
        else:
            terms.append(("!exists", term[1:].strip(), None) if term.startswith("!") else ("exists", term, None))
    return terms


def matches(terms, obj):
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for op, k, v in terms:
        if ((op == "=" and labels.get(k) != v) or (op == "!=" and labels.get(k) == v)
                or (op == "exists" and k not in labels) or (op == "!exists" and k in labels)):
            return False
    return True


def merge(target, patch):
    """RFC 7386 merge patch; also the stand-in's apply: dicts merge, the rest replaces, null removes."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def with_status(obj, source):
    """`obj` with the status of `source` (none if it has none)."""
    obj.pop("status", None)
    if source.get("status") is not None:
        obj["status"] = copy.deepcopy(source["status"])
    return obj


def apply_defaults(schema, obj):
    """Sets the structural schema's `default`s for absent properties, where the parent is present."""
    if isinstance(obj, dict):
        for k, sub in (schema.get("properties") or {}).items():
            if k not in obj and "default" in sub:
                obj[k] = copy.deepcopy(sub["default"])
            if k in obj:
                apply_defaults(sub, obj[k])
        if isinstance(schema.get("additionalProperties"), dict):
            for v in obj.values():
                apply_defaults(schema["additionalProperties"], v)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for v in obj:
            apply_defaults(schema["items"], v)


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Every object and every event, under one Condition (`cond`); methods named _x need it held."""

    def __init__(self, crd_objects, validating):
        self.cond = threading.Condition()
        self.objects = {}   # (group, plural, namespace, name) -> object
        self.events = []    # (rv, (group, plural), namespace, type, object), rv ascending
        self.rv = 0
        self.floor = 0      # a watch from a resourceVersion below this gets 410 Expired
        self.epoch = 0      # bumped by a compaction: open watches end
        self.validating = validating
        self.schemas = {}   # (group, version, kind) -> structural openAPIV3Schema
        for crd in crd_objects:
            if isinstance(crd, dict) and crd.get("kind") == "CustomResourceDefinition":
                for v in crd["spec"]["versions"]:
                    key = (crd["spec"]["group"], v["name"], crd["spec"]["names"]["kind"])
                    self.schemas[key] = v["schema"]["openAPIV3Schema"]
        self.validators = deploy_validate.crd_validators(crd_objects) if validating else {}

    # -- checks -------------------------------------------------------------------------------
    def _prepare(self, res, obj):
        """Defaults a cairn.io object; with --validate, refuses an invalid object (422)."""
        schema = self.schemas.get((res.group, res.version, res.kind))
        if schema is not None:
            apply_defaults(schema, obj)
        if not self.validating:
            return
        check = copy.deepcopy(obj)
        for k in SERVER_SET:
            check.get("metadata", {}).pop(k, None)
        what = f'{res.kind} "{obj["metadata"].get("name")}"'
        if res.group == "cairn.io":
            validator = self.validators.get((res.group, res.version, res.kind))
            problem = (deploy_validate.schema_errors(validator, check) if validator
                       else "no CRD for this kind in --crds")
        else:
            check.pop("status", None)
            try:
                kubernetes_validate.validate(check, KUBERNETES_VERSION, strict=True)
                problem = None
            except kubernetes_validate.ValidationError as e:
                problem = f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}"
            except Exception as e:  # SchemaNotFoundError and the like
                problem = getattr(e, "message", None) or str(e)
        if problem:
            raise ApiError(422, "Invalid", f"{what} is invalid: {problem}")

    # -- writes -------------------------------------------------------------------------------
    def _record(self, key, obj, kind):
        """Gives `obj` a new resourceVersion, stores or removes it, logs and announces the event."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.events.append((self.rv, key[:2], key[2], kind, copy.deepcopy(obj)))
        self.cond.notify_all()
        return copy.deepcopy(obj)

    def _create(self, res, ns, obj):
        obj = copy.deepcopy(obj)
        obj.pop("status", None)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        meta = obj.setdefault("metadata", {})
        for k in SERVER_SET:
            meta.pop(k, None)
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        self._prepare(res, obj)
        return self._record((res.group, res.plural, ns, meta["name"]), obj, "ADDED")

    def _update(self, res, key, old, new):
        """Stores `new` in place of `old` (server-set metadata kept); deletes it when it is being
        deleted and has no finalizers left. 200 with the object."""
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for k in SERVER_SET + ("name", "namespace"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        if new.get("spec") != old.get("spec"):
            meta["generation"] = old_meta.get("generation", 1) + 1
        self._prepare(res, new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(key, new)
        if new == old:
            return copy.deepcopy(old)
        return self._record(key, new, "MODIFIED")

    def _delete(self, key):
        obj = copy.deepcopy(self.objects[key])
        if obj["metadata"].get("finalizers"):
            if obj["metadata"].get("deletionTimestamp"):
                return obj
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            return self._record(key, obj, "MODIFIED")
        return self._remove(key, obj)

    def _remove(self, key, obj):
        """Removes the object for real, then (recursively) every object in its namespace it owns."""
        gone = self._record(key, obj, "DELETED")
        uid = obj["metadata"].get("uid")
        for k, o in list(self.objects.items()):
            refs = o["metadata"].get("ownerReferences") or []
            if k[2] == key[2] and k in self.objects and any(r.get("uid") == uid for r in refs):
                self._delete(k)
        return gone

    def _existing(self, res, key):
        if key not in self.objects:
            raise ApiError(404, "NotFound", f'{res.plural}.{res.group or "core"} "{key[3]}" not found')
        return self.objects[key]

    # -- verbs (take the lock) -----------------------------------------------------------------
    def get(self, res, ns, name):
        with self.cond:
            return copy.deepcopy(self._existing(res, (res.group, res.plural, ns, name)))

    def list(self, res, ns, terms):
        with self.cond:
            items = [copy.deepcopy(o) for (g, p, n, _), o in sorted(self.objects.items())
                     if (g, p, n) == (res.group, res.plural, ns) and matches(terms, o)]
            return {"kind": res.kind + "List", "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    def post(self, res, ns, body):
        name = (body.get("metadata") or {}).get("name")
        if not name:
            raise ApiError(400, "BadRequest", "metadata.name is required (generateName is not supported)")
        self._check_identity(res, ns, body, name)
        with self.cond:
            if (res.group, res.plural, ns, name) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{res.plural}.{res.group or "core"} "{name}" already exists')
            return 201, self._create(res, ns, body)

    def apply(self, res, ns, name, sub, body):
        self._check_identity(res, ns, body, name, required=True)
        key = (res.group, res.plural, ns, name)
        with self.cond:
            old = self.objects.get(key)
            if old is None:
                if sub:
                    self._existing(res, key)
                return 201, self._create(res, ns, body)
            self._check_version(old, body)
            # /status: the stored object with the body's status; else the merge with the old status
            new = with_status(copy.deepcopy(old), body) if sub else with_status(merge(old, body), old)
            return 200, self._update(res, key, old, new)

    def merge_patch(self, res, ns, name, sub, patch):
        key = (res.group, res.plural, ns, name)
        with self.cond:
            old = self._existing(res, key)
            self._check_version(old, patch)
            merged = merge(old, patch)
            new = with_status(copy.deepcopy(old), merged) if sub else with_status(merged, old)
            return 200, self._update(res, key, old, new)

    def delete(self, res, ns, name):
        with self.cond:
            key = (res.group, res.plural, ns, name)
            self._existing(res, key)
            return 200, self._delete(key)

    def compact(self):
        with self.cond:
            self.events.clear()
            self.floor = self.rv
            self.epoch += 1
            self.cond.notify_all()

    @staticmethod
    def _check_identity(res, ns, body, name, required=False):
        meta, default = body.get("metadata") or {}, (None, None) if required else (res.api_version, res.kind)
        if (body.get("apiVersion", default[0]), body.get("kind", default[1])) != (res.api_version, res.kind):
            raise ApiError(400, "BadRequest", f"apiVersion and kind must be {res.api_version} {res.kind}")
        if meta.get("name") != name:
            raise ApiError(400, "BadRequest", f"metadata.name must be {name!r} (the path's)")
        if meta.get("namespace", ns) != ns:
            raise ApiError(400, "BadRequest", f"metadata.namespace must be {ns!r} (the path's)")

    @staticmethod
    def _check_version(old, body):
        want = (body.get("metadata") or {}).get("resourceVersion")
        if want and want != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified; please apply your changes to the latest version")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store = None
    token = ""
    requests = []        # the request log (under requests_lock)
    requests_lock = threading.Lock()
    fail_writes = {}     # plural -> how many writes to it still fail (under requests_lock)

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away between requests

    def dispatch(self):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        ctype = self.headers.get("Content-Type")
        try:
            raw = self.read_body()
            if not url.path.startswith("/standin/"):
                with self.requests_lock:
                    self.requests.append({"method": self.command, "path": url.path, "query": query, "contentType": ctype})
            if self.headers.get("Authorization", "") != "Bearer " + self.token:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            answer = self.route(url.path, query, (ctype or "").split(";")[0].strip().lower(), raw)
            if answer is not None:
                self.send_json(*answer)
        except ApiError as e:
            self.send_json(e.code, status(e.code, e.reason, e.message))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:
            traceback.print_exc()
            self.send_json(500, status(500, "InternalError", f"stand-in failure: {e}"))

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = dispatch

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    @staticmethod
    def parse(raw, ctype):
        # kube-apiserver reads an apply body with go-yaml, which refuses the JSON escape "\/"
        # (PyYAML takes it): refuse it as the real one does.
        if ctype == "application/apply-patch+yaml" and b"\\/" in raw:
            raise ApiError(400, "BadRequest", "error decoding YAML: found unknown escape character while parsing a quoted scalar")
        try:
            body = yaml.safe_load(raw) if ctype == "application/apply-patch+yaml" else json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as e:
            raise ApiError(400, "BadRequest", f"the body cannot be read: {e}")
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be an object")
        return body

    def route(self, path, query, ctype, raw):
        if path == "/standin/compact" and self.command == "POST":
            self.store.compact()
            return 200, {}
        if path == "/standin/requests" and self.command == "GET":
            with self.requests_lock:
                return 200, list(self.requests)
        if path == "/standin/reset-requests" and self.command == "POST":
            with self.requests_lock:
                self.requests.clear()
            return 200, {}
        if path == "/standin/fail-writes" and self.command == "POST":
            with self.requests_lock:
                self.fail_writes[query["resource"]] = int(query.get("count", "1"))
            return 200, {}
        res, ns, name, sub = parse_path(path)
        method, store = self.command, self.store
        if method != "GET":
            with self.requests_lock:
                if self.fail_writes.get(res.plural, 0) > 0:
                    self.fail_writes[res.plural] -= 1
                    raise ApiError(503, "ServiceUnavailable", "the stand-in fails this write (fail-writes)")
        if method == "GET" and query.get("watch") in ("1", "true"):
            return self.watch(res, ns, name, query)
        if method == "GET":
            return (200, store.get(res, ns, name)) if name else (200, store.list(res, ns, parse_selector(query.get("labelSelector"))))
        if method == "POST" and name is None:
            if ctype not in ("application/json", ""):
                raise ApiError(415, "UnsupportedMediaType", f"the body of a create must be application/json, not {ctype}")
            return store.post(res, ns, self.parse(raw, ctype))
        if method == "PATCH" and name:
            if ctype == "application/apply-patch+yaml":
                if not query.get("fieldManager"):
                    raise ApiError(400, "BadRequest", "fieldManager is required for apply patch")
                return store.apply(res, ns, name, sub, self.parse(raw, ctype))
            if ctype == "application/merge-patch+json":
                return store.merge_patch(res, ns, name, sub, self.parse(raw, ctype))
            raise ApiError(415, "UnsupportedMediaType", f"the stand-in does not take PATCH {ctype or '(no type)'}")
        if method == "DELETE" and name and not sub:
            return store.delete(res, ns, name)  # DeleteOptions (propagationPolicy ...) ignored
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")

    def send_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, res, ns, name, query):
        store, terms = self.store, parse_selector(query.get("labelSelector"))
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        try:
            deadline = time.monotonic() + float(query.get("timeoutSeconds") or 60)
            since = int(query.get("resourceVersion") or "0")
        except ValueError:
            raise ApiError(400, "BadRequest", "timeoutSeconds and resourceVersion must be numbers")
        with store.cond:
            epoch, expired = store.epoch, since != 0 and since < store.floor
            cursor = len(store.events) if since == 0 else bisect.bisect_right(store.events, since, key=lambda e: e[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if expired:
                self.chunk(json.dumps({"type": "ERROR", "object": status(410, "Expired", "too old resource version")}).encode() + b"\n")
            last_sent = time.monotonic()
            while not expired:
                with store.cond:
                    while True:
                        if store.epoch != epoch:
                            batch = None
                            break
                        batch = [e for e in store.events[cursor:] if e[1] == (res.group, res.plural) and e[2] == ns
                                 and (name is None or e[4]["metadata"]["name"] == name) and matches(terms, e[4])]
                        cursor, now = len(store.events), time.monotonic()
                        if batch or now >= deadline or (bookmarks and now - last_sent >= 5):
                            break
                        store.cond.wait(min(deadline, last_sent + 5) - now if bookmarks else deadline - now)
                    current = str(store.rv)
                if batch is None or (not batch and now >= deadline):
                    break
                lines = [{"type": t, "object": o} for _, _, _, t, o in batch] or [
                    {"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version,
                                                     "metadata": {"resourceVersion": current}}}]
                self.chunk(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
                last_sent = time.monotonic()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token-file", required=True, type=pathlib.Path)
    ap.add_argument("--crds", type=pathlib.Path, default=deploy_validate.OPERATOR,
                    help="a multi-document YAML holding the cairn.io CRDs (default: %(default)s)")
    ap.add_argument("--validate", action="store_true", help="refuse invalid objects (422)")
    args = ap.parse_args()

    crds, why = deploy_validate.load(args.crds)
    if crds is None:
        ap.error(f"--crds {args.crds}: {why}")
    Handler.token = args.token_file.read_text().strip()
    Handler.store = Store(crds, args.validate)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"standin: listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
