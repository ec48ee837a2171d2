#!/usr/bin/env bash
# Checks the Kubernetes manifests of deploy/k8s/ without a cluster:
#
#  1. every manifest (kustomization.yaml aside), and what `kubectl kustomize` renders from
#     them when kubectl is on PATH, against the Kubernetes API schemas of the pinned
#     versions, strictly (an unknown field is an error), with kubernetes-validate; a kind it
#     has no schema for is an error too;
#  2. kustomization.yaml lists every manifest but secrets.example.yaml, and only files that
#     exist;
#  3. the ConfigMap's nachet.toml parses (tomllib), and every key it sets exists in
#     crates/settings/default.toml, in the same section: set there, or shown there
#     in a comment as `# key = ...`, or one of the few keys default.toml describes only in
#     prose (PROSE_KEYS below). A misspelt key fails here instead of at the pod's start;
#  4. the Deployment's NACHET__* variables name such keys too, NACHET_CONFIG is the path
#     where the ConfigMap is mounted, and each required secretKeyRef is a key of
#     secrets.example.yaml.
#
#   ./deploy/k8s-validate.sh
#
# kubernetes-validate (pinned, with its dependencies) is installed with pip in
# target/k8s-validate-venv on first use. Nothing is applied anywhere (kubectl only renders,
# offline); no image is built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

package_version=1.37.0
# The oldest and the newest Kubernetes the manifests are meant for (the package knows
# 1.25.0 to 1.37.0).
kubernetes_versions=(1.30.0 1.37.0)
requirements=(
    "kubernetes-validate==$package_version"
    attrs==26.1.0 importlib_resources==7.1.0 jsonschema==4.26.0
    jsonschema-specifications==2025.9.1 packaging==26.4 PyYAML==6.0.4 referencing==0.37.0
    rpds-py==2026.9.1 typing_extensions==4.16.0
)
venv=$root/target/k8s-validate-venv
dir=deploy/k8s

if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$package_version"; then
    echo "installing kubernetes-validate $package_version (pip, in $venv)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}"
fi

manifests=()
for file in "$dir"/*.yaml; do
    [ "$(basename "$file")" = kustomization.yaml ] || manifests+=("$file")
done

# What kubectl apply -k would send, when kubectl (with its built-in kustomize) is here.
if command -v kubectl >/dev/null 2>&1; then
    rendered=$root/target/k8s-validate-rendered.yaml
    kubectl kustomize "$dir" >"$rendered"
    manifests+=("$rendered")
else
    echo "k8s-validate: no kubectl: the kustomize rendering is not checked" >&2
fi

failed=0
for version in "${kubernetes_versions[@]}"; do
    # --quiet prints only warnings and errors; a missing schema is only a warning there.
    rc=0
    out=$("$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}" 2>&1) || rc=$?
    [ -z "$out" ] || printf '%s\n' "$out" >&2
    if [ "$rc" -ne 0 ] || grep -q "Couldn't find schema" <<<"$out"; then
        failed=1
    else
        echo "k8s-validate: ${#manifests[@]} files valid against Kubernetes $version (strict)" >&2
    fi
done
[ "$failed" -eq 0 ] || { echo "k8s-validate: schema validation failed" >&2; exit 1; }

"$venv/bin/python" - "$dir" crates/settings/default.toml <<'PY'
import pathlib, re, sys, tomllib
import yaml

k8s, defaults_path = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
errors = []

# Keys default.toml describes only in prose, not as `key = ...` nor `# key = ...`.
PROSE_KEYS = {
    "blob.account", "blob.access_key", "blob.container", "blob.endpoint", "blob.prefix",
    "blob.root",                                      # the [blob] comment's kinds
    "identity.secret", "identity.cookie", "identity.header",  # the [identity] comment
    "series.access.hs256_secret",                     # "(or hs256_secret = ...)"
}
# The catalogue's contract variables (docs/catalogue.md) and the config file's name.
CONTRACT_VARIABLES = {
    "NACHET_BLOB_PIPELINE_NAME", "NACHET_BLOB_PIPELINE_VERSION",
    "NACHET_BLOB_PIPELINE_DECRYPTION_KEY", "NACHET_CONFIG",
}

def leaves(table, prefix=""):
    for key, value in table.items():
        path = prefix + key
        if isinstance(value, dict):
            yield from leaves(value, path + ".")
        else:
            yield path

defaults_text = defaults_path.read_text()
known = set(leaves(tomllib.loads(defaults_text)))
section = ""
for line in defaults_text.splitlines():
    if m := re.match(r"^\[([a-z_.]+)\]\s*$", line):
        section = m.group(1) + "."
    elif m := re.match(r"^#\s*([a-z_]+)\s*=\s*\S", line):
        known.add(section + m.group(1))
known |= PROSE_KEYS

def documents(name):
    with open(k8s / name) as f:
        return [d for d in yaml.safe_load_all(f) if d]

# kustomization.yaml: every manifest but the example Secret, and only existing files.
kustomization = documents("kustomization.yaml")[0]
listed = set(kustomization.get("resources", []))
on_disk = {p.name for p in k8s.glob("*.yaml")} - {"kustomization.yaml"}
for name in sorted(listed - on_disk):
    errors.append(f"kustomization.yaml lists {name}, which is not in {k8s}")
for name in sorted(on_disk - listed - {"secrets.example.yaml"}):
    errors.append(f"kustomization.yaml does not list {name}")
if "secrets.example.yaml" in listed:
    errors.append("kustomization.yaml must not apply secrets.example.yaml (an example)")

# The ConfigMap's TOML: it parses, and sets only keys default.toml knows.
configmap = documents("configmap.yaml")[0]
try:
    config = tomllib.loads(configmap["data"]["nachet.toml"])
except (KeyError, tomllib.TOMLDecodeError) as e:
    errors.append(f"configmap.yaml: data.nachet.toml does not parse: {e!r}")
    config = {}
keys = sorted(leaves(config))
for key in keys:
    if key not in known:
        errors.append(f"configmap.yaml: {key} is not a setting of {defaults_path}")

# The Deployment: its variables, the config file's path, the Secret's keys.
deployment = documents("deployment.yaml")[0]
pod = deployment["spec"]["template"]["spec"]
container = pod["containers"][0]
env = {e["name"]: e for e in container.get("env", [])}
for name in sorted(env):
    if name.startswith("NACHET__"):
        key = ".".join(name[len("NACHET__"):].lower().split("__"))
        if key not in known:
            errors.append(f"deployment.yaml: {name} names {key}, not a setting of {defaults_path}")
    elif name.startswith("NACHET") and name not in CONTRACT_VARIABLES:
        errors.append(f"deployment.yaml: {name} is neither NACHET__SECTION__KEY nor a contract variable")

volumes = {v["name"]: v for v in pod.get("volumes", [])}
config_paths = set()
for mount in container.get("volumeMounts", []):
    source = volumes.get(mount["name"], {}).get("configMap")
    if source and source.get("name") == configmap["metadata"]["name"]:
        for item in source.get("items", [{"path": k} for k in configmap["data"]]):
            config_paths.add(f"{mount['mountPath'].rstrip('/')}/{item['path']}")
config_file = env.get("NACHET_CONFIG", {}).get("value")
if config_file not in config_paths:
    errors.append(f"deployment.yaml: NACHET_CONFIG={config_file} is not where the ConfigMap is mounted {sorted(config_paths)}")

example = documents("secrets.example.yaml")[0]
example_keys = set(example.get("stringData", {})) | set(example.get("data", {}))
secret_refs = 0
for name, e in sorted(env.items()):
    ref = e.get("valueFrom", {}).get("secretKeyRef")
    if not ref:
        continue
    secret_refs += 1
    if ref["name"] != example["metadata"]["name"]:
        errors.append(f"deployment.yaml: {name} reads the Secret {ref['name']}, not {example['metadata']['name']}")
    if not ref.get("optional") and ref["key"] not in example_keys:
        errors.append(f"deployment.yaml: {name} needs the key {ref['key']}, missing from secrets.example.yaml")

if errors:
    print("\n".join(f"k8s-validate: {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"k8s-validate: nachet.toml sets {len(keys)} known keys; {len(env)} variables "
      f"({secret_refs} from the Secret) name known settings; kustomization.yaml lists "
      f"{len(listed)} manifests", file=sys.stderr)
PY
