#!/usr/bin/env python3
"""Writes Sources/CairnControl/OpenAPIDocument.swift: the apiserver's OpenAPI 3.1 document.

Edit the schemas and paths here, run `python3 scripts/openapi-document.py`, and commit both files.
The shapes match CairnClient's Models.swift and CairnControl's APIRoutes.swift; schemathesis in
`make test` holds the running server to the document."""
import json
import os
def ref(n): return {"$ref": f"#/components/schemas/{n}"}
u64 = {"type": "integer", "minimum": 0}
labels = {"type": "object", "additionalProperties": {"type": "string"}}
dns = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "minLength": 1, "maxLength": 63, "description": "DNS-1123 label"}
def obj(props, required, closed=True, desc=None):
    o = {"type": "object", "properties": props, "required": required}
    if closed: o["additionalProperties"] = False
    if desc: o["description"] = desc
    return o
schemas = {
 "Problem": obj({"type": {"type": "string", "format": "uri"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}},
                ["type", "title", "status", "detail"], desc="RFC 9457 problem document; `type` is stable per error."),
 "PoolState": {"type": "string", "enum": ["ready", "cordoned", "draining"]},
 "Pool": obj({"name": {"type": "string"}, "path": {"type": "string"}, "labels": labels, "state": ref("PoolState"),
              "capacityBytes": u64, "freeBytes": u64, "provisionedBytes": u64, "replicaCount": {"type": "integer", "minimum": 0}},
             ["name", "path", "labels", "state", "capacityBytes", "freeBytes", "provisionedBytes", "replicaCount"]),
 "PoolCreate": obj({"name": dns, "path": {"type": "string", "description": "An existing directory, absolute"}, "labels": labels},
                   ["name", "path"]),
 "PoolPatch": obj({"state": ref("PoolState"), "labels": labels}, []),
 "QoS": obj({"iops": {"type": "integer", "minimum": 1}, "readIops": {"type": "integer", "minimum": 1}, "writeIops": {"type": "integer", "minimum": 1},
             "bandwidth": {"type": "integer", "minimum": 1, "description": "bytes per second"}, "readBandwidth": {"type": "integer", "minimum": 1},
             "writeBandwidth": {"type": "integer", "minimum": 1}, "burstSeconds": {"type": "number", "minimum": 0, "maximum": 3600}}, [],
            desc="Limits; a field left out is no limit."),
 "VolumeCreate": obj({"name": dns, "size": {"type": "integer", "minimum": 4096, "multipleOf": 4096, "description": "bytes"},
                      "replicas": {"type": "integer", "minimum": 1, "maximum": 5, "default": 3},
                      "minHealthy": {"type": "integer", "minimum": 1, "maximum": 5, "description": "default: a majority of replicas"},
                      "qos": ref("QoS"), "poolSelector": labels,
                      "fromSnapshot": {"type": "string", "description": "VOLUME/SNAPSHOT: a clone of that snapshot (size at least the snapshot's)"},
                      "fromBackup": {"type": "string", "description": "a backup's id on backupTarget: a restore (size at least the backup's)"},
                      "backupTarget": ref("TargetRef")},
                     ["name", "size"]),
 "VolumePatch": obj({"size": {"type": "integer", "minimum": 4096, "multipleOf": 4096, "description": "a larger size: grown online"}, "qos": ref("QoS")}, []),
 "RebuildStatus": obj({"kind": {"type": "string", "enum": ["delta", "full", "clone", "restore"]}, "totalBytes": u64, "copiedBytes": u64, "percent": {"type": "number"}, "finished": {"type": "boolean"}},
                      ["kind", "totalBytes", "copiedBytes", "percent", "finished"]),
 "Replica": obj({"id": {"type": "string"}, "volume": {"type": "string"}, "pool": {"type": "string"}, "address": {"type": "string"}, "directory": {"type": "string"},
                 "role": {"type": "string", "enum": ["active", "replacing", "replacement"]}, "mode": {"type": "string", "enum": ["RW", "WO", "ERR"]},
                 "pid": {"type": "integer"}, "restarts": {"type": "integer", "minimum": 0}, "rebuild": ref("RebuildStatus")},
                ["id", "volume", "pool", "address", "directory", "role", "restarts"]),
 "VolumeStatus": obj({"state": {"type": "string", "enum": ["pending", "cloning", "restoring", "healthy", "degraded", "read-only", "offline", "unreachable", "deleting"]},
                      "epoch": u64, "servedSize": u64, "portal": {"type": "string"}, "iqn": {"type": "string"}, "url": {"type": "string"},
                      "controllerAPI": {"type": "string"}, "controllerPid": {"type": "integer"}, "replicas": {"type": "array", "items": ref("Replica")},
                      "message": {"type": "string"}, "populate": ref("RebuildStatus")}, ["state", "portal", "iqn", "url", "controllerAPI", "replicas"]),
 "Snapshot": obj({"name": {"type": "string"}, "id": {"type": "string"}, "createdAt": {"type": "string", "format": "date-time"},
                  "parent": {"type": "string", "description": "the snapshot it sits on"}, "size": u64,
                  "bytes": {**u64, "description": "bytes this snapshot alone holds"},
                  "state": {"type": "string", "enum": ["ready", "deleting"]}},
                 ["name", "id", "createdAt", "size", "bytes", "state"]),
 "SnapshotRequest": obj({"name": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$"}}, ["name"]),
 "TargetRef": obj({"url": {"type": "string", "description": "file:///DIR or s3://BUCKET/PREFIX"}, "endpoint": {"type": "string"},
                   "region": {"type": "string"}, "accessKeyID": {"type": "string"}, "secretAccessKey": {"type": "string"}}, ["url"]),
 "BackupCreate": obj({"snapshot": {"type": "string", "description": "default: a snapshot taken now"}, "target": ref("TargetRef")}, ["target"]),
 "Backup": obj({"id": {"type": "string"}, "volume": {"type": "string"}, "snapshot": {"type": "string"}, "target": {"type": "string"},
                "createdAt": {"type": "string"}, "state": {"type": "string", "enum": ["running", "done", "failed"]},
                "totalBytes": u64, "readBytes": u64, "uploadedBytes": u64, "newBlocks": {"type": "integer", "minimum": 0},
                "mibPerSecond": {"type": "number"}, "previous": {"type": "string"}, "error": {"type": "string"}},
               ["id", "volume", "snapshot", "target", "createdAt", "state", "totalBytes", "readBytes", "uploadedBytes", "newBlocks", "mibPerSecond"]),
 "StoredBackup": obj({"id": {"type": "string"}, "volume": {"type": "string"}, "snapshot": {"type": "string"}, "createdAt": {"type": "string"},
                      "size": u64, "dataBytes": u64, "uploadedBytes": u64, "previous": {"type": "string"}, "blocks": {"type": "integer", "minimum": 0}},
                     ["id", "volume", "snapshot", "createdAt", "size", "dataBytes", "uploadedBytes", "blocks"]),
 "Volume": obj({"name": {"type": "string"}, "size": u64, "replicaCount": {"type": "integer"}, "minHealthy": {"type": "integer"}, "qos": ref("QoS"),
                "poolSelector": labels, "createdAt": {"type": "string", "format": "date-time"}, "status": ref("VolumeStatus"),
                "snapshots": {"type": "array", "items": ref("Snapshot")},
                "source": {"type": "string", "description": "a clone's VOLUME/SNAPSHOT, a restore's TARGET BACKUP"},
                "backups": {"type": "array", "items": ref("Backup")}},
               ["name", "size", "replicaCount", "minHealthy", "qos", "poolSelector", "createdAt", "status", "snapshots", "backups"]),
 "VolumeStats": obj({"name": {"type": "string"}, "readOps": u64, "writeOps": u64, "readBytes": u64, "writeBytes": u64,
                     "readLatencyMicros": {"type": "number"}, "writeLatencyMicros": {"type": "number"}, "usedBytes": u64, "size": u64,
                     "sectorSize": {"type": "integer"}, "uptimeSeconds": {"type": "number"}, "replicaCount": {"type": "integer"}, "status": {"type": "string", "enum": ["RW", "RO"]}},
                    ["name", "readOps", "writeOps", "readBytes", "writeBytes", "readLatencyMicros", "writeLatencyMicros", "usedBytes", "size", "sectorSize", "uptimeSeconds", "replicaCount", "status"]),
 "Event": obj({"id": {"type": "integer"}, "time": {"type": "string", "format": "date-time"}, "type": {"type": "string"}, "volume": {"type": "string"}, "replica": {"type": "string"}, "message": {"type": "string"}},
              ["id", "time", "type", "message"]),
}
def problem(desc): return {"description": desc, "content": {"application/problem+json": {"schema": ref("Problem")}}}
def body(schema, desc="OK"): return {"description": desc, "content": {"application/json": {"schema": schema}}}
P = {
 "400": problem("Malformed body: not JSON, not an object, a wrong type, or an unknown field"),
 "401": problem("No bearer token, or a wrong one"),
 "404": problem("No such resource"),
 "409": problem("Conflicts with the state"),
 "413": problem("Body larger than 1 MiB"),
 "422": problem("A value that is not allowed"),
 "503": problem("The volume's controller does not answer"),
}
def resp(*codes, **extra):
    r = {c: P[c] for c in codes}
    r.update(extra)
    return r
def req(schema): return {"required": True, "content": {"application/json": {"schema": schema}}}
name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
rid = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
snap = {"name": "snapshot", "in": "path", "required": True, "schema": {"type": "string"}}
target_params = [
    {"name": "target", "in": "query", "required": True, "schema": {"type": "string"}, "description": "file:///DIR or s3://BUCKET/PREFIX"},
    {"name": "endpoint", "in": "query", "schema": {"type": "string"}},
    {"name": "region", "in": "query", "schema": {"type": "string"}},
    {"name": "X-Cairn-Access-Key-Id", "in": "header", "schema": {"type": "string"}},
    {"name": "X-Cairn-Secret-Access-Key", "in": "header", "schema": {"type": "string"}},
]
paths = {
 "/v1/pools": {
   "get": {"operationId": "listPools", "summary": "List pools with their capacity", "responses": resp("401", **{"200": body({"type": "array", "items": ref("Pool")})})},
   "post": {"operationId": "addPool", "summary": "Add a pool (the same again: 200)", "requestBody": req(ref("PoolCreate")),
            "responses": resp("400", "401", "409", "413", "422", **{"200": body(ref("Pool"), "It exists with this spec"), "201": body(ref("Pool"), "Added")})}},
 "/v1/pools/{name}": {
   "parameters": [name],
   "get": {"operationId": "getPool", "responses": resp("401", "404", **{"200": body(ref("Pool"))})},
   "patch": {"operationId": "patchPool", "summary": "Change a pool's state (cordon, drain) or labels", "requestBody": req(ref("PoolPatch")),
             "responses": resp("400", "401", "404", "413", "422", **{"200": body(ref("Pool"))})},
   "delete": {"operationId": "removePool", "summary": "Forget a pool that holds no replica", "responses": resp("401", "404", "409", **{"204": {"description": "Removed"}})}},
 "/v1/volumes": {
   "get": {"operationId": "listVolumes", "responses": resp("401", **{"200": body({"type": "array", "items": ref("Volume")})})},
   "post": {"operationId": "createVolume", "summary": "Create a volume (the same spec again: 200; another spec under the name: 409)", "requestBody": req(ref("VolumeCreate")),
            "responses": resp("400", "401", "409", "413", "422", **{"200": body(ref("Volume"), "It exists with this spec"), "201": body(ref("Volume"), "Created; its processes are starting")})}},
 "/v1/volumes/{name}": {
   "parameters": [name],
   "get": {"operationId": "getVolume", "responses": resp("401", "404", **{"200": body(ref("Volume"))})},
   "patch": {"operationId": "patchVolume", "summary": "Grow the volume or change its QoS, live", "requestBody": req(ref("VolumePatch")),
             "responses": resp("400", "401", "404", "409", "413", "422", **{"200": body(ref("Volume"))})},
   "delete": {"operationId": "deleteVolume", "summary": "Stop its processes and remove its replicas' data",
              "responses": resp("401", "404", **{"204": {"description": "Deleted"}, "202": body(ref("Volume"), "Still being deleted")})}},
 "/v1/volumes/{name}/stats": {
   "parameters": [name],
   "get": {"operationId": "volumeStats", "responses": resp("401", "404", "503", **{"200": body(ref("VolumeStats"))})}},
 "/v1/volumes/{name}/replicas": {
   "parameters": [name],
   "get": {"operationId": "listReplicas", "responses": resp("401", "404", **{"200": body({"type": "array", "items": ref("Replica")})})},
   "post": {"operationId": "addReplica", "summary": "Add a replica on another pool (rebuilt online)", "responses": resp("401", "404", "409", "422", **{"201": body(ref("Replica"), "Placed")})}},
 "/v1/volumes/{name}/replicas/{id}": {
   "parameters": [name, rid],
   "delete": {"operationId": "replaceReplica", "summary": "Replace a replica: a new one on another pool is added and rebuilt first, then this one goes",
              "responses": resp("401", "404", **{"202": body(ref("Replica"), "Being replaced")})}},
 "/v1/volumes/{name}/snapshots": {
   "parameters": [name],
   "get": {"operationId": "listSnapshots", "summary": "The volume's snapshots, oldest first (the stored list when the controller does not answer)",
           "responses": resp("401", "404", **{"200": body({"type": "array", "items": ref("Snapshot")})})},
   "post": {"operationId": "createSnapshot", "summary": "Take a snapshot of the whole volume on every replica", "requestBody": req(ref("SnapshotRequest")),
            "responses": resp("400", "401", "404", "409", "413", "422", "503", **{"201": body(ref("Snapshot"), "Taken")})}},
 "/v1/volumes/{name}/snapshots/{snapshot}": {
   "parameters": [name, snap],
   "delete": {"operationId": "deleteSnapshot", "summary": "Delete a snapshot (its data is merged away in the background)",
              "responses": resp("401", "404", "409", "503", **{"204": {"description": "Deleted"}})}},
 "/v1/volumes/{name}/snapshots/{snapshot}/revert": {
   "parameters": [name, snap],
   "post": {"operationId": "revertVolume", "summary": "Make the volume read as the snapshot (refused while an initiator is logged in)",
            "responses": resp("401", "404", "409", "503", **{"200": body(ref("Volume"))})}},
 "/v1/volumes/{name}/backups": {
   "parameters": [name],
   "get": {"operationId": "listVolumeBackups", "summary": "The volume's backups made through the apiserver",
           "responses": resp("401", "404", **{"200": body({"type": "array", "items": ref("Backup")})})},
   "post": {"operationId": "createBackup", "summary": "Back a snapshot up (default: one taken now); incremental on the volume's last backup there",
            "requestBody": req(ref("BackupCreate")),
            "responses": resp("400", "401", "404", "409", "413", "422", "503", **{"202": body(ref("Backup"), "Started")})}},
 "/v1/backups": {
   "get": {"operationId": "listBackups", "summary": "The backups on a target, oldest first",
           "parameters": target_params,
           "responses": resp("400", "401", "422", "503", **{"200": body({"type": "array", "items": ref("StoredBackup")})})}},
 "/v1/backups/{id}": {
   "parameters": [rid] + target_params,
   "get": {"operationId": "getBackup", "responses": resp("400", "401", "404", "422", "503", **{"200": body(ref("StoredBackup"))})},
   "delete": {"operationId": "deleteBackup", "summary": "Delete a backup and the blocks no other backup on the target needs",
              "responses": resp("400", "401", "404", "422", "503", **{"204": {"description": "Deleted"}})}},
 "/v1/events": {
   "get": {"operationId": "events", "summary": "Events, oldest first; with follow=1 a stream of one JSON object a line",
           "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "Only events with a larger id"},
                          {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}},
                          {"name": "follow", "in": "query", "schema": {"type": "string", "enum": ["0", "1", "true", "false"]}}],
           "responses": resp("400", "401", **{"200": {"description": "The events", "content": {
               "application/json": {"schema": {"type": "array", "items": ref("Event")}},
               "application/x-ndjson": {"schema": ref("Event")}}}})}},
 "/healthz": {"get": {"operationId": "healthz", "security": [], "responses": {"200": {"description": "Serving", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
 "/readyz": {"get": {"operationId": "readyz", "security": [], "responses": {
     "200": {"description": "Processes adopted, the reconcile loop running", "content": {"text/plain": {"schema": {"type": "string"}}}},
     "503": {"description": "Still starting", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
 "/metrics": {"get": {"operationId": "metrics", "security": [], "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
}
# With the state in a cluster (--orchestrator kubernetes) every change is written to its custom
# resources before it is answered; when the Kubernetes API does not take it: 503 (cluster-write-pending).
PENDING = "the change is made but the Kubernetes API did not take it yet (state in a cluster): repeat the request"
for path, ops in paths.items():
    for method, op in ops.items():
        if path.startswith("/v1/") and method in ("post", "patch", "delete"):
            old = op["responses"].get("503")
            op["responses"]["503"] = problem(old["description"] + ", or " + PENDING if old else PENDING[0].upper() + PENDING[1:])
doc = {"openapi": "3.1.0",
       "info": {"title": "Cairn apiserver", "version": "1", "description": "Pools, volumes, their replicas and snapshots, events. Errors are RFC 9457 problem documents."},
       "servers": [{"url": "/"}],
       "security": [{"bearerAuth": []}],
       "paths": paths,
       "components": {"schemas": schemas, "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}}}
text = json.dumps(doc, indent=2)
swift = '''// The OpenAPI 3.1 document of the apiserver's REST API, served at `/openapi.json`.
// Generated by scripts/openapi-document.py: edit it there. schemathesis (`make test`) holds the
// server to it: no 5xx, every answer's status, content type and body as documented.
enum OpenAPIDocument {
    static let json = #"""
''' + text + '''
"""#
}
'''
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
open(os.path.join(root, 'Sources/CairnControl/OpenAPIDocument.swift'), 'w').write(swift)
