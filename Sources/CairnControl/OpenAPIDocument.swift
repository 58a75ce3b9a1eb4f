// The OpenAPI 3.1 document of the apiserver's REST API, served at `/openapi.json`. Written by hand
// to match APIRoutes.swift and CairnClient's Models.swift; schemathesis (`make test`) holds the
// server to it: no 5xx, every answer's status, content type and body as documented.
enum OpenAPIDocument {
    static let json = #"""
{
  "openapi": "3.1.0",
  "info": {
    "title": "Cairn apiserver",
    "version": "1",
    "description": "Pools, volumes and their replicas, events. Errors are RFC 9457 problem documents."
  },
  "servers": [
    {
      "url": "/"
    }
  ],
  "security": [
    {
      "bearerAuth": []
    }
  ],
  "paths": {
    "/v1/pools": {
      "get": {
        "operationId": "listPools",
        "summary": "List pools with their capacity",
        "responses": {
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "type": "array",
                  "items": {
                    "$ref": "#/components/schemas/Pool"
                  }
                }
              }
            }
          }
        }
      },
      "post": {
        "operationId": "addPool",
        "summary": "Add a pool (the same again: 200)",
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/PoolCreate"
              }
            }
          }
        },
        "responses": {
          "400": {
            "description": "Malformed body: not JSON, not an object, a wrong type, or an unknown field",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "409": {
            "description": "Conflicts with the state",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 1 MiB",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "422": {
            "description": "A value that is not allowed",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "It exists with this spec",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Pool"
                }
              }
            }
          },
          "201": {
            "description": "Added",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Pool"
                }
              }
            }
          }
        }
      }
    },
    "/v1/pools/{name}": {
      "parameters": [
        {
          "name": "name",
          "in": "path",
          "required": true,
          "schema": {
            "type": "string"
          }
        }
      ],
      "get": {
        "operationId": "getPool",
        "responses": {
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "404": {
            "description": "No such resource",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Pool"
                }
              }
            }
          }
        }
      },
      "patch": {
        "operationId": "patchPool",
        "summary": "Change a pool's state (cordon, drain) or labels",
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/PoolPatch"
              }
            }
          }
        },
        "responses": {
          "400": {
            "description": "Malformed body: not JSON, not an object, a wrong type, or an unknown field",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "404": {
            "description": "No such resource",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 1 MiB",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "422": {
            "description": "A value that is not allowed",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Pool"
                }
              }
            }
          }
        }
      },
      "delete": {
        "operationId": "removePool",
        "summary": "Forget a pool that holds no replica",
        "responses": {
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "404": {
            "description": "No such resource",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "409": {
            "description": "Conflicts with the state",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "204": {
            "description": "Removed"
          }
        }
      }
    },
    "/v1/volumes": {
      "get": {
        "operationId": "listVolumes",
        "responses": {
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "type": "array",
                  "items": {
                    "$ref": "#/components/schemas/Volume"
                  }
                }
              }
            }
          }
        }
      },
      "post": {
        "operationId": "createVolume",
        "summary": "Create a volume (the same spec again: 200; another spec under the name: 409)",
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/VolumeCreate"
              }
            }
          }
        },
        "responses": {
          "400": {
            "description": "Malformed body: not JSON, not an object, a wrong type, or an unknown field",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "409": {
            "description": "Conflicts with the state",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 1 MiB",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "422": {
            "description": "A value that is not allowed",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "It exists with this spec",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Volume"
                }
              }
            }
          },
          "201": {
            "description": "Created; its processes are starting",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Volume"
                }
              }
            }
          }
        }
      }
    },
    "/v1/volumes/{name}": {
      "parameters": [
        {
          "name": "name",
          "in": "path",
          "required": true,
          "schema": {
            "type": "string"
          }
        }
      ],
      "get": {
        "operationId": "getVolume",
        "responses": {
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "404": {
            "description": "No such resource",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Volume"
                }
              }
            }
          }
        }
      },
      "patch": {
        "operationId": "patchVolume",
        "summary": "Grow the volume or change its QoS, live",
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/VolumePatch"
              }
            }
          }
        },
        "responses": {
          "400": {
            "description": "Malformed body: not JSON, not an object, a wrong type, or an unknown field",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "404": {
            "description": "No such resource",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "409": {
            "description": "Conflicts with the state",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 1 MiB",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "422": {
            "description": "A value that is not allowed",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Volume"
                }
              }
            }
          }
        }
      },
      "delete": {
        "operationId": "deleteVolume",
        "summary": "Stop its processes and remove its replicas' data",
        "responses": {
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "404": {
            "description": "No such resource",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "204": {
            "description": "Deleted"
          },
          "202": {
            "description": "Still being deleted",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Volume"
                }
              }
            }
          }
        }
      }
    },
    "/v1/volumes/{name}/stats": {
      "parameters": [
        {
          "name": "name",
          "in": "path",
          "required": true,
          "schema": {
            "type": "string"
          }
        }
      ],
      "get": {
        "operationId": "volumeStats",
        "responses": {
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "404": {
            "description": "No such resource",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "503": {
            "description": "The volume's controller does not answer",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/VolumeStats"
                }
              }
            }
          }
        }
      }
    },
    "/v1/volumes/{name}/replicas": {
      "parameters": [
        {
          "name": "name",
          "in": "path",
          "required": true,
          "schema": {
            "type": "string"
          }
        }
      ],
      "get": {
        "operationId": "listReplicas",
        "responses": {
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "404": {
            "description": "No such resource",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "OK",
            "content": {
              "application/json": {
                "schema": {
                  "type": "array",
                  "items": {
                    "$ref": "#/components/schemas/Replica"
                  }
                }
              }
            }
          }
        }
      },
      "post": {
        "operationId": "addReplica",
        "summary": "Add a replica on another pool (rebuilt online)",
        "responses": {
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "404": {
            "description": "No such resource",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "409": {
            "description": "Conflicts with the state",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "422": {
            "description": "A value that is not allowed",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "201": {
            "description": "Placed",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Replica"
                }
              }
            }
          }
        }
      }
    },
    "/v1/volumes/{name}/replicas/{id}": {
      "parameters": [
        {
          "name": "name",
          "in": "path",
          "required": true,
          "schema": {
            "type": "string"
          }
        },
        {
          "name": "id",
          "in": "path",
          "required": true,
          "schema": {
            "type": "string"
          }
        }
      ],
      "delete": {
        "operationId": "replaceReplica",
        "summary": "Replace a replica: a new one on another pool is added and rebuilt first, then this one goes",
        "responses": {
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "404": {
            "description": "No such resource",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "202": {
            "description": "Being replaced",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Replica"
                }
              }
            }
          }
        }
      }
    },
    "/v1/events": {
      "get": {
        "operationId": "events",
        "summary": "Events, oldest first; with follow=1 a stream of one JSON object a line",
        "parameters": [
          {
            "name": "after",
            "in": "query",
            "schema": {
              "type": "integer",
              "minimum": 0
            },
            "description": "Only events with a larger id"
          },
          {
            "name": "limit",
            "in": "query",
            "schema": {
              "type": "integer",
              "minimum": 1,
              "maximum": 10000,
              "default": 1000
            }
          },
          {
            "name": "follow",
            "in": "query",
            "schema": {
              "type": "string",
              "enum": [
                "0",
                "1",
                "true",
                "false"
              ]
            }
          }
        ],
        "responses": {
          "400": {
            "description": "Malformed body: not JSON, not an object, a wrong type, or an unknown field",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or a wrong one",
            "content": {
              "application/problem+json": {
                "schema": {
                  "$ref": "#/components/schemas/Problem"
                }
              }
            }
          },
          "200": {
            "description": "The events",
            "content": {
              "application/json": {
                "schema": {
                  "type": "array",
                  "items": {
                    "$ref": "#/components/schemas/Event"
                  }
                }
              },
              "application/x-ndjson": {
                "schema": {
                  "$ref": "#/components/schemas/Event"
                }
              }
            }
          }
        }
      }
    },
    "/healthz": {
      "get": {
        "operationId": "healthz",
        "security": [],
        "responses": {
          "200": {
            "description": "Serving",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/readyz": {
      "get": {
        "operationId": "readyz",
        "security": [],
        "responses": {
          "200": {
            "description": "Processes adopted, the reconcile loop running",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          },
          "503": {
            "description": "Still starting",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/metrics": {
      "get": {
        "operationId": "metrics",
        "security": [],
        "responses": {
          "200": {
            "description": "Prometheus text format",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    }
  },
  "components": {
    "schemas": {
      "Problem": {
        "type": "object",
        "properties": {
          "type": {
            "type": "string",
            "format": "uri"
          },
          "title": {
            "type": "string"
          },
          "status": {
            "type": "integer"
          },
          "detail": {
            "type": "string"
          }
        },
        "required": [
          "type",
          "title",
          "status",
          "detail"
        ],
        "additionalProperties": false,
        "description": "RFC 9457 problem document; `type` is stable per error."
      },
      "PoolState": {
        "type": "string",
        "enum": [
          "ready",
          "cordoned",
          "draining"
        ]
      },
      "Pool": {
        "type": "object",
        "properties": {
          "name": {
            "type": "string"
          },
          "path": {
            "type": "string"
          },
          "labels": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          },
          "state": {
            "$ref": "#/components/schemas/PoolState"
          },
          "capacityBytes": {
            "type": "integer",
            "minimum": 0
          },
          "freeBytes": {
            "type": "integer",
            "minimum": 0
          },
          "provisionedBytes": {
            "type": "integer",
            "minimum": 0
          },
          "replicaCount": {
            "type": "integer",
            "minimum": 0
          }
        },
        "required": [
          "name",
          "path",
          "labels",
          "state",
          "capacityBytes",
          "freeBytes",
          "provisionedBytes",
          "replicaCount"
        ],
        "additionalProperties": false
      },
      "PoolCreate": {
        "type": "object",
        "properties": {
          "name": {
            "type": "string",
            "description": "DNS-1123 label"
          },
          "path": {
            "type": "string",
            "description": "An existing directory, absolute"
          },
          "labels": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          }
        },
        "required": [
          "name",
          "path"
        ],
        "additionalProperties": false
      },
      "PoolPatch": {
        "type": "object",
        "properties": {
          "state": {
            "$ref": "#/components/schemas/PoolState"
          },
          "labels": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          }
        },
        "required": [],
        "additionalProperties": false
      },
      "QoS": {
        "type": "object",
        "properties": {
          "iops": {
            "type": "integer",
            "minimum": 1
          },
          "readIops": {
            "type": "integer",
            "minimum": 1
          },
          "writeIops": {
            "type": "integer",
            "minimum": 1
          },
          "bandwidth": {
            "type": "integer",
            "minimum": 1,
            "description": "bytes per second"
          },
          "readBandwidth": {
            "type": "integer",
            "minimum": 1
          },
          "writeBandwidth": {
            "type": "integer",
            "minimum": 1
          },
          "burstSeconds": {
            "type": "number",
            "minimum": 0,
            "maximum": 3600
          }
        },
        "required": [],
        "additionalProperties": false,
        "description": "Limits; a field left out is no limit."
      },
      "VolumeCreate": {
        "type": "object",
        "properties": {
          "name": {
            "type": "string",
            "description": "DNS-1123 label"
          },
          "size": {
            "type": "integer",
            "minimum": 4096,
            "multipleOf": 4096,
            "description": "bytes"
          },
          "replicas": {
            "type": "integer",
            "minimum": 1,
            "maximum": 5,
            "default": 3
          },
          "minHealthy": {
            "type": "integer",
            "minimum": 1,
            "maximum": 5,
            "description": "default: a majority of replicas"
          },
          "qos": {
            "$ref": "#/components/schemas/QoS"
          },
          "poolSelector": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          }
        },
        "required": [
          "name",
          "size"
        ],
        "additionalProperties": false
      },
      "VolumePatch": {
        "type": "object",
        "properties": {
          "size": {
            "type": "integer",
            "minimum": 4096,
            "multipleOf": 4096,
            "description": "a larger size: grown online"
          },
          "qos": {
            "$ref": "#/components/schemas/QoS"
          }
        },
        "required": [],
        "additionalProperties": false
      },
      "RebuildStatus": {
        "type": "object",
        "properties": {
          "kind": {
            "type": "string",
            "enum": [
              "delta",
              "full"
            ]
          },
          "totalBytes": {
            "type": "integer",
            "minimum": 0
          },
          "copiedBytes": {
            "type": "integer",
            "minimum": 0
          },
          "percent": {
            "type": "number"
          },
          "finished": {
            "type": "boolean"
          }
        },
        "required": [
          "kind",
          "totalBytes",
          "copiedBytes",
          "percent",
          "finished"
        ],
        "additionalProperties": false
      },
      "Replica": {
        "type": "object",
        "properties": {
          "id": {
            "type": "string"
          },
          "volume": {
            "type": "string"
          },
          "pool": {
            "type": "string"
          },
          "address": {
            "type": "string"
          },
          "directory": {
            "type": "string"
          },
          "role": {
            "type": "string",
            "enum": [
              "active",
              "replacing",
              "replacement"
            ]
          },
          "mode": {
            "type": "string",
            "enum": [
              "RW",
              "WO",
              "ERR"
            ]
          },
          "pid": {
            "type": "integer"
          },
          "restarts": {
            "type": "integer",
            "minimum": 0
          },
          "rebuild": {
            "$ref": "#/components/schemas/RebuildStatus"
          }
        },
        "required": [
          "id",
          "volume",
          "pool",
          "address",
          "directory",
          "role",
          "restarts"
        ],
        "additionalProperties": false
      },
      "VolumeStatus": {
        "type": "object",
        "properties": {
          "state": {
            "type": "string",
            "enum": [
              "pending",
              "healthy",
              "degraded",
              "read-only",
              "offline",
              "unreachable",
              "deleting"
            ]
          },
          "epoch": {
            "type": "integer",
            "minimum": 0
          },
          "servedSize": {
            "type": "integer",
            "minimum": 0
          },
          "portal": {
            "type": "string"
          },
          "iqn": {
            "type": "string"
          },
          "url": {
            "type": "string"
          },
          "controllerAPI": {
            "type": "string"
          },
          "controllerPid": {
            "type": "integer"
          },
          "replicas": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Replica"
            }
          },
          "message": {
            "type": "string"
          }
        },
        "required": [
          "state",
          "portal",
          "iqn",
          "url",
          "controllerAPI",
          "replicas"
        ],
        "additionalProperties": false
      },
      "Volume": {
        "type": "object",
        "properties": {
          "name": {
            "type": "string"
          },
          "size": {
            "type": "integer",
            "minimum": 0
          },
          "replicaCount": {
            "type": "integer"
          },
          "minHealthy": {
            "type": "integer"
          },
          "qos": {
            "$ref": "#/components/schemas/QoS"
          },
          "poolSelector": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          },
          "createdAt": {
            "type": "string",
            "format": "date-time"
          },
          "status": {
            "$ref": "#/components/schemas/VolumeStatus"
          }
        },
        "required": [
          "name",
          "size",
          "replicaCount",
          "minHealthy",
          "qos",
          "poolSelector",
          "createdAt",
          "status"
        ],
        "additionalProperties": false
      },
      "VolumeStats": {
        "type": "object",
        "properties": {
          "name": {
            "type": "string"
          },
          "readOps": {
            "type": "integer",
            "minimum": 0
          },
          "writeOps": {
            "type": "integer",
            "minimum": 0
          },
          "readBytes": {
            "type": "integer",
            "minimum": 0
          },
          "writeBytes": {
            "type": "integer",
            "minimum": 0
          },
          "readLatencyMicros": {
            "type": "number"
          },
          "writeLatencyMicros": {
            "type": "number"
          },
          "usedBytes": {
            "type": "integer",
            "minimum": 0
          },
          "size": {
            "type": "integer",
            "minimum": 0
          },
          "sectorSize": {
            "type": "integer"
          },
          "uptimeSeconds": {
            "type": "number"
          },
          "replicaCount": {
            "type": "integer"
          },
          "status": {
            "type": "string",
            "enum": [
              "RW",
              "RO"
            ]
          }
        },
        "required": [
          "name",
          "readOps",
          "writeOps",
          "readBytes",
          "writeBytes",
          "readLatencyMicros",
          "writeLatencyMicros",
          "usedBytes",
          "size",
          "sectorSize",
          "uptimeSeconds",
          "replicaCount",
          "status"
        ],
        "additionalProperties": false
      },
      "Event": {
        "type": "object",
        "properties": {
          "id": {
            "type": "integer"
          },
          "time": {
            "type": "string",
            "format": "date-time"
          },
          "type": {
            "type": "string"
          },
          "volume": {
            "type": "string"
          },
          "replica": {
            "type": "string"
          },
          "message": {
            "type": "string"
          }
        },
        "required": [
          "id",
          "time",
          "type",
          "message"
        ],
        "additionalProperties": false
      }
    },
    "securitySchemes": {
      "bearerAuth": {
        "type": "http",
        "scheme": "bearer"
      }
    }
  }
}
"""#
}
