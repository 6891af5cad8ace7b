#!/usr/bin/env bash
# Checks deploy/k8s offline, as CI does (.ci/run):
# 1. every manifest against the Kubernetes JSON schemas bundled in the `kubernetes-validate`
#    package (strict: an unknown field or an unknown kind is an error), for the oldest Kubernetes
#    the manifests support (1.30: the preStop `sleep` action) and the newest the package knows;
#    kustomization.yaml must list every manifest;
# 2. each ConfigMap's edge.toml with `edge check`, laid out as the pods see it: the tier token
#    at secrets/tier-token next to it and the admin token in $EDGE_ADMIN_TOKEN, both from
#    secret.yaml.
#
# Usage: deploy/check.sh [EDGE_BINARY]    (default: the debug build under $CARGO_TARGET_DIR or target/)
# Needs python3 with kubernetes-validate (which brings PyYAML): pip install kubernetes-validate
set -euo pipefail
cd "$(dirname "$0")/.."
edge="${1:-${CARGO_TARGET_DIR:-target}/debug/edge}"
[ -x "$edge" ] || { echo "deploy/check.sh: no edge binary at $edge (build it first)" >&2; exit 1; }

python3 - "$edge" deploy/k8s <<'PY'
import os, pathlib, subprocess, sys, tempfile

import kubernetes_validate
import yaml

edge, root = sys.argv[1], pathlib.Path(sys.argv[2])
versions = ["1.30", kubernetes_validate.latest_version()]
failures = 0

kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
manifests = sorted(p for p in root.glob("*.yaml") if p.name != "kustomization.yaml")
listed = set(kustomization.get("resources", []))
for missing in sorted({p.name for p in manifests} - listed):
    print(f"FAIL kustomization.yaml does not list {missing}")
    failures += 1
for stale in sorted(listed - {p.name for p in manifests}):
    print(f"FAIL kustomization.yaml lists {stale}, which does not exist")
    failures += 1

documents = []
for path in manifests:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            documents.append((path, doc))

# --- 1. schemas ---
for path, doc in documents:
    name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except Exception as e:  # SchemaNotFoundError (unknown kind) included
            print(f"FAIL {name} against Kubernetes {version}: {e}")
            failures += 1
            break
    else:
        print(f"ok   {name} (Kubernetes {', '.join(versions)})")

# --- 2. each ConfigMap's edge.toml passes `edge check` ---
secrets = {}
for _, doc in documents:
    if doc.get("kind") == "Secret":
        secrets.update(doc.get("stringData", {}))
for path, doc in documents:
    config = doc.get("data", {}).get("edge.toml") if doc.get("kind") == "ConfigMap" else None
    if config is None:
        continue
    name = f"{path.name}: ConfigMap/{doc['metadata']['name']}"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "edge.toml").write_text(config)
        (tmp / "secrets").mkdir()
        (tmp / "secrets" / "tier-token").write_text(secrets.get("tier-token", ""))
        env = dict(os.environ, EDGE_ADMIN_TOKEN=secrets.get("admin-token", ""))
        checked = subprocess.run([edge, "check", "--config", str(tmp / "edge.toml")],
                                 env=env, capture_output=True, text=True)
    if checked.returncode == 0:
        print(f"ok   {name}: edge check")
    else:
        print(f"FAIL {name}: edge check: {checked.stderr.strip()}")
        failures += 1

sys.exit(1 if failures else 0)
PY
