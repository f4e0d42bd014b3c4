"""Validates Kubernetes manifests offline, as the fnhost tests need it.

Usage: validate.py KEDA_MODELS_DIR [--dump OUT.json] FILE.yaml...

- Kubernetes kinds: against Kubernetes' own JSON schemas (kubernetes-validate,
  strict: unknown fields are errors), version 1.33.
- KEDA ScaledObject: against KEDA's schema (@kubernetes-models/keda, through
  node keda.mjs), plus each scaler's metadata: the keys KEDA's scaler reads,
  the ones it needs, string values.
- KEDA HTTP add-on HTTPScaledObject: against httpscaledobject.schema.json.
- Across objects: every reference (Secret, ConfigMap, ScaleTarget, Service
  selector) names an object of the set, with the same namespace; a file a container's
  arguments name in a mounted ConfigMap is one of its keys.

Prints one line per object; exits 1 when anything is invalid.
"""
import base64
import json
import os
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"
HERE = os.path.dirname(os.path.abspath(__file__))

# KEDA scaler metadata: (required, alternatives where one is required, allowed).
SCALERS = {
    "azure-queue": (["queueName"], [["connectionFromEnv", "connection", "accountName"]],
                    {"queueName", "queueLength", "activationQueueLength", "connectionFromEnv",
                     "connection", "accountName", "cloud", "endpointSuffix", "queueLengthStrategy"}),
    "azure-blob": (["blobContainerName"], [["connectionFromEnv", "connection", "accountName"]],
                   {"blobContainerName", "blobCount", "activationBlobCount", "connectionFromEnv",
                    "connection", "accountName", "blobDelimiter", "blobPrefix", "cloud",
                    "endpointSuffix", "recursive", "globPattern"}),
    "rabbitmq": (["queueName"], [["host", "hostFromEnv"], ["mode", "queueLength"]],
                 {"host", "hostFromEnv", "protocol", "mode", "value", "activationValue", "queueName",
                  "vhostName", "usernameFromEnv", "passwordFromEnv", "useRegex",
                  "excludeUnacknowledged", "pageSize", "operation", "timeout", "unsafeSsl", "queueLength"}),
    "azure-servicebus": ([], [["queueName", "topicName"], ["connectionFromEnv", "connection", "namespace"]],
                         {"queueName", "topicName", "subscriptionName", "messageCount",
                          "activationMessageCount", "connectionFromEnv", "connection", "namespace",
                          "cloud", "endpointSuffix", "useRegex", "operation"}),
    "azure-eventhub": ([], [["connectionFromEnv", "connection", "eventHubNamespace"],
                            ["storageConnectionFromEnv", "storageConnection", "storageAccountName"]],
                       {"connectionFromEnv", "connection", "storageConnectionFromEnv", "storageConnection",
                        "storageAccountName", "consumerGroup", "unprocessedEventThreshold",
                        "activationUnprocessedEventThreshold", "blobContainer", "checkpointStrategy",
                        "cloud", "endpointSuffix", "eventHubName", "eventHubNamespace",
                        "eventHubNameFromEnv", "eventHubNamespaceFromEnv"}),
    "kafka": (["bootstrapServers", "topic"], [],
              {"bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv",
               "topic", "topicFromEnv", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
               "allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag", "version",
               "partitionLimitation", "sasl", "tls"}),
    "cpu": ([], [["value"]], {"value"}),
}


def check_scalers(obj):
    errors = []
    for i, t in enumerate(obj["spec"].get("triggers", [])):
        kind, meta = t.get("type"), t.get("metadata", {})
        if kind not in SCALERS:
            errors.append(f"trigger {i}: no KEDA scaler {kind!r}")
            continue
        required, one_of, allowed = SCALERS[kind]
        for k in required:
            if k not in meta:
                errors.append(f"trigger {i} ({kind}): metadata lacks {k}")
        for group in one_of:
            if not any(k in meta for k in group):
                errors.append(f"trigger {i} ({kind}): metadata needs one of {group}")
        for k, v in meta.items():
            if k not in allowed:
                errors.append(f"trigger {i} ({kind}): {k} is not read by the scaler")
            if not isinstance(v, str):
                errors.append(f"trigger {i} ({kind}): {k} must be a string")
    return errors


def check_references(objects):
    errors = []
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    namespaces = {o["metadata"].get("namespace") for o in objects}
    if len(namespaces) != 1:
        errors.append(f"objects in several namespaces: {namespaces}")
    secrets = by_kind.get("Secret", {})
    config_maps = by_kind.get("ConfigMap", {})
    deployments = by_kind.get("Deployment", {})
    for name, d in deployments.items():
        pod = d["spec"]["template"]
        labels = pod["metadata"]["labels"]
        for k, v in d["spec"]["selector"]["matchLabels"].items():
            if labels.get(k) != v:
                errors.append(f"Deployment {name}: selector {k}={v} does not match its pods")
        spec = pod["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            for ef in c.get("envFrom", []):
                ref = ef.get("secretRef", {}).get("name")
                if ref and ref not in secrets:
                    errors.append(f"Deployment {name}: envFrom names no Secret {ref}")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    errors.append(f"Deployment {name}: mounts no volume {m['name']}")
                    continue
                cm = config_maps.get(volumes[m["name"]].get("configMap", {}).get("name"))
                if cm is None:
                    continue
                keys = set((cm.get("data") or {}).keys())
                prefix = m["mountPath"].rstrip("/") + "/"
                for a in c.get("args", []):
                    if a.startswith(prefix) and a[len(prefix):] not in keys:
                        errors.append(f"Deployment {name}: {c['name']} reads {a}, not a key of ConfigMap {cm['metadata']['name']}")
        for v in volumes.values():
            ref = v.get("secret", {}).get("secretName")
            if ref and ref not in secrets:
                errors.append(f"Deployment {name}: volume names no Secret {ref}")
            ref = v.get("configMap", {}).get("name")
            if ref and ref not in config_maps:
                errors.append(f"Deployment {name}: volume names no ConfigMap {ref}")
    for name, s in by_kind.get("Service", {}).items():
        sel = s["spec"]["selector"]
        if not any(all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
                   for d in deployments.values()):
            errors.append(f"Service {name}: selects no Deployment's pods")
    for kind in ("ScaledObject", "HorizontalPodAutoscaler", "HTTPScaledObject"):
        for name, o in by_kind.get(kind, {}).items():
            target = o["spec"]["scaleTargetRef"]["name"]
            if target not in deployments:
                errors.append(f"{kind} {name}: scales no Deployment {target}")
            svc = o["spec"]["scaleTargetRef"].get("service")
            if svc and svc not in by_kind.get("Service", {}):
                errors.append(f"{kind} {name}: routes to no Service {svc}")
    for name, s in secrets.items():
        for k, v in (s.get("data") or {}).items():
            try:
                base64.b64decode(v, validate=True)
            except Exception:
                errors.append(f"Secret {name}: {k} is not base64")
    return errors


def main():
    keda_dir, files = sys.argv[1], sys.argv[2:]
    dump = None
    if files[:1] == ["--dump"]:
        dump, files = files[1], files[2:]
    objects = []
    for f in files:
        with open(f) as fh:
            objects.extend(d for d in yaml.safe_load_all(fh) if d is not None)
    if dump:
        with open(dump, "w") as fh:
            json.dump(objects, fh)
    bad = 0
    with open(os.path.join(HERE, "httpscaledobject.schema.json")) as fh:
        http_schema = json.load(fh)
    scaled = []
    for o in objects:
        kind, name = o.get("kind"), o.get("metadata", {}).get("name")
        try:
            if kind == "ScaledObject":
                scaled.append(o)
                errs = check_scalers(o)
                if errs:
                    raise ValueError("; ".join(errs))
                continue
            if kind == "HTTPScaledObject":
                jsonschema.validate(o, http_schema)
            else:
                kubernetes_validate.validate(o, K8S_VERSION, strict=True)
            print(f"ok {kind} {name}")
        except Exception as e:  # every validator's error, reported the same way
            bad += 1
            msg = getattr(e, "message", None) or str(e)
            print(f"INVALID {kind} {name}: {msg}")
    if scaled:
        r = subprocess.run(["node", os.path.join(HERE, "keda.mjs"), keda_dir],
                           input=json.dumps(scaled), capture_output=True, text=True)
        sys.stdout.write(r.stdout + r.stderr)
        if r.returncode != 0:
            bad += 1
    for e in check_references(objects):
        bad += 1
        print(f"INVALID reference: {e}")
    print(f"{len(objects)} objects, {bad} invalid")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
