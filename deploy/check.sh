#!/usr/bin/env bash
# Validates the deployment files as far as this machine can, without a container engine or
# a cluster:
#   * YAML syntax and basic structure of deploy/compose.yaml and deploy/k8s/*.yaml (PyYAML,
#     installed with pip if missing);
#   * their schemas: the Compose Specification (check-jsonschema) and the Kubernetes API
#     (kubernetes-validate), in a virtualenv under target/; skipped if it cannot be set up;
#   * `docker compose config -q`, if the docker CLI has the compose plugin (no engine needed);
#   * `kubectl kustomize deploy/k8s`, if kubectl is installed (no cluster needed);
#   * that deploy/Dockerfile builds the broker with --no-default-features (no demo);
#   * that the deployments keep durable records in PostgreSQL: compose has a postgres service
#     and a one-shot `migrate` service the brokers wait for, its broker.toml has
#     `[records] kind = "postgres"` with the password from the environment; the k8s
#     Deployment runs `broker migrate` in an init container with the broker's image and
#     mounts, and the ConfigMap reads the password from the mounted `broker-db` Secret;
#   * `broker check-config` of deploy/broker.compose.toml, of the ConfigMap's broker.toml and
#     of config/broker.example.toml, with keys made by `broker keygen` in a temporary folder
#     and exactly the environment variables (and the secret files) compose.yaml and the k8s
#     Secrets provide;
#   * `broker migrate` with deploy/broker.compose.toml's `[records]` against a temporary
#     database of a local PostgreSQL (127.0.0.1:5432, trust authentication), twice (the
#     second run must find the schema current); skipped when none answers.
# Exits non-zero if any check fails; skipped checks are named.
#
# Usage: deploy/check.sh            (BROKER_BIN=path to use a built broker binary)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)

failures=0
skips=0
ok() { printf 'ok    %s\n' "$1"; }
fail() { printf 'FAIL  %s\n' "$1"; failures=$((failures + 1)); }
skip() { printf 'skip  %s\n' "$1"; skips=$((skips + 1)); }

# run NAME COMMAND...: one check; its output is shown only when it fails.
run() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$name"
    else
        fail "$name"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# ---- PyYAML ------------------------------------------------------------------------------
PY=python3
if ! command -v "$PY" >/dev/null; then
    fail "python3 is needed for the YAML checks"
    PY=""
elif ! "$PY" -c 'import yaml' 2>/dev/null; then
    echo "PyYAML missing: installing it with pip"
    "$PY" -m pip install --quiet --user pyyaml >/dev/null 2>&1 ||
        "$PY" -m pip install --quiet --user --break-system-packages pyyaml >/dev/null 2>&1 ||
        "$PY" -m pip install --quiet pyyaml >/dev/null 2>&1
    if ! "$PY" -c 'import yaml' 2>/dev/null; then
        fail "PyYAML could not be installed (python3 -m pip install pyyaml)"
        PY=""
    fi
fi

# ---- YAML syntax and structure -----------------------------------------------------------
yaml_checks() {
    "$PY" - <<'EOF'
import glob, sys, tomllib, yaml
sys.excepthook = lambda t, v, tb: print(f"{t.__name__}: {v}", file=sys.stderr)

problems = []

with open("deploy/compose.yaml") as f:
    compose = yaml.safe_load(f)
services = compose.get("services", {})
for name in ("broker1", "broker2", "migrate", "postgres", "redis", "nginx"):
    if name not in services:
        problems.append(f"compose.yaml: no service {name}")
b1, b2 = services.get("broker1", {}), services.get("broker2", {})
for key in ("image", "volumes", "environment", "command"):
    if b1.get(key) != b2.get(key):
        problems.append(f"compose.yaml: broker1 and broker2 differ in {key}")
for v in b1.get("volumes", []):
    if not v.endswith(":ro"):
        problems.append(f"compose.yaml: broker volume {v} is not read-only")
if "appendonly" not in " ".join(map(str, services.get("redis", {}).get("command", []))):
    problems.append("compose.yaml: redis runs without appendonly persistence")

# PostgreSQL: the brokers start after `broker migrate` succeeded, which runs once PostgreSQL
# is healthy, with the brokers' image, configuration, keys and environment.
mig, pg = services.get("migrate", {}), services.get("postgres", {})
for b in ("broker1", "broker2"):
    dep = services.get(b, {}).get("depends_on", {})
    if not isinstance(dep, dict) or dep.get("migrate", {}).get("condition") != "service_completed_successfully":
        problems.append(f"compose.yaml: {b} does not wait for migrate (condition: service_completed_successfully)")
if mig.get("command", [None])[0] != "migrate":
    problems.append("compose.yaml: the migrate service does not run `broker migrate`")
for key in ("image", "volumes", "environment", "user"):
    if mig.get(key) != b1.get(key):
        problems.append(f"compose.yaml: migrate and broker1 differ in {key}")
if mig.get("restart") != "no":
    problems.append("compose.yaml: the one-shot migrate service must have restart: \"no\"")
if mig.get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
    problems.append("compose.yaml: migrate does not wait for a healthy postgres")
if not pg.get("healthcheck"):
    problems.append("compose.yaml: postgres has no health check")
if not any(str(v).endswith(":/var/lib/postgresql/data") for v in pg.get("volumes", [])):
    problems.append("compose.yaml: postgres keeps its data in no volume")
if "BROKER_DB_PASSWORD" not in str(pg.get("environment", {}).get("POSTGRES_PASSWORD", "")):
    problems.append("compose.yaml: postgres's POSTGRES_PASSWORD is not BROKER_DB_PASSWORD")
with open("deploy/broker.compose.toml", "rb") as f:
    rec = tomllib.load(f).get("records", {})
if rec.get("kind") != "postgres":
    problems.append("broker.compose.toml: [records] kind is not \"postgres\" (each broker would keep persons of its own)")
elif not str(rec.get("url", "")).startswith("postgres://postgres:"):
    problems.append("broker.compose.toml: records.url is not the compose postgres service")
elif rec.get("password") != {"env": "BROKER_DB_PASSWORD"}:
    problems.append("broker.compose.toml: records.password is not { env = \"BROKER_DB_PASSWORD\" }")
if "BROKER_DB_PASSWORD" not in b1.get("environment", {}):
    problems.append("compose.yaml: the brokers do not get BROKER_DB_PASSWORD")
nginx = open("deploy/nginx.conf").read()
for upstream in ("broker1:8080", "broker2:8080"):
    if upstream not in nginx:
        problems.append(f"nginx.conf: {upstream} is not an upstream")
if nginx.count("{") != nginx.count("}"):
    problems.append("nginx.conf: unbalanced braces")

kinds = {}
for path in sorted(glob.glob("deploy/k8s/*.yaml")):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    if not docs:
        problems.append(f"{path}: no document")
    for d in docs:
        if path.endswith("kustomization.yaml"):
            for r in d.get("resources", []):
                if not glob.glob(f"deploy/k8s/{r}"):
                    problems.append(f"{path}: lists missing {r}")
            continue
        for key in ("apiVersion", "kind"):
            if key not in d:
                problems.append(f"{path}: a document has no {key}")
        if not d.get("metadata", {}).get("name"):
            problems.append(f"{path}: a {d.get('kind')} has no metadata.name")
        kinds[(d.get("kind"), d.get("metadata", {}).get("name"))] = d

dep = kinds.get(("Deployment", "broker"))
if dep is None:
    problems.append("k8s: no Deployment broker")
else:
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    if dep["spec"].get("replicas") != 3:
        problems.append("k8s: the broker Deployment should have 3 replicas")
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        problems.append("k8s: readiness probe is not /readyz")
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        problems.append("k8s: liveness probe is not /healthz")
    sc = c.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or spec.get("securityContext", {}).get("runAsNonRoot")):
        problems.append("k8s: runAsNonRoot is not set")
    if not sc.get("readOnlyRootFilesystem"):
        problems.append("k8s: readOnlyRootFilesystem is not set")
    res = c.get("resources", {})
    if not res.get("requests") or not res.get("limits"):
        problems.append("k8s: resources need requests and limits")
    # `broker migrate` before the broker, with the broker's image, secrets and mounts.
    inits = [i for i in spec.get("initContainers", []) if i.get("args", [None])[0] == "migrate"]
    if not inits:
        problems.append("k8s: no init container runs `broker migrate`")
    for i in inits:
        if i.get("image") != c.get("image"):
            problems.append("k8s: the migrate init container's image is not the broker's")
        if i.get("envFrom") != c.get("envFrom"):
            problems.append("k8s: the migrate init container's envFrom is not the broker's")
        if i.get("volumeMounts") != c.get("volumeMounts"):
            problems.append("k8s: the migrate init container's volumeMounts are not the broker's")
        if not i.get("securityContext", {}).get("readOnlyRootFilesystem"):
            problems.append("k8s: readOnlyRootFilesystem is not set on the migrate init container")
    db_volumes = [v["name"] for v in spec.get("volumes", [])
                  if v.get("secret", {}).get("secretName") == "broker-db"]
    db_mounts = [m["mountPath"] for m in c.get("volumeMounts", []) if m.get("name") in db_volumes]
    cm = kinds.get(("ConfigMap", "broker-config"))
    if cm is not None:
        rec = tomllib.loads(cm["data"]["broker.toml"]).get("records", {})
        pw = rec.get("password", {}).get("file", "") if isinstance(rec.get("password"), dict) else ""
        if rec.get("kind") != "postgres":
            problems.append("k8s: the ConfigMap's [records] kind is not \"postgres\" (each replica would keep persons of its own)")
        elif not any(pw.startswith(m.rstrip("/") + "/") for m in db_mounts):
            problems.append("k8s: records.password is not a file of the mounted broker-db Secret")
for needed in (("Service", "broker"), ("ConfigMap", "broker-config"),
               ("Secret", "broker-env"), ("Secret", "broker-keys"), ("Secret", "broker-db")):
    if needed not in kinds:
        problems.append(f"k8s: no {needed[0]} {needed[1]}")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
}

if [ -n "$PY" ]; then
    run "YAML syntax and structure (compose.yaml, nginx.conf, k8s/*.yaml)" yaml_checks
fi

# ---- Schemas (check-jsonschema, kubernetes-validate) -------------------------------------
VENV=${BROKER_CHECK_VENV:-$ROOT/target/deploy-check-venv}
schema_tools() {
    [ -x "$VENV/bin/check-jsonschema" ] && [ -x "$VENV/bin/kubernetes-validate" ] && return 0
    python3 -m venv "$VENV" >/dev/null 2>&1 &&
        "$VENV/bin/pip" install --quiet check-jsonschema kubernetes-validate >/dev/null 2>&1
}
if [ -n "$PY" ] && schema_tools; then
    run "compose.yaml against the Compose Specification" \
        "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml
    run "k8s/*.yaml against the Kubernetes API schemas" \
        "$VENV/bin/kubernetes-validate" --strict --quiet \
        deploy/k8s/configmap.yaml deploy/k8s/deployment.yaml deploy/k8s/service.yaml \
        deploy/k8s/secret.yaml deploy/k8s/redis.yaml
else
    skip "schema checks: no virtualenv with check-jsonschema and kubernetes-validate ($VENV)"
fi

# ---- docker compose config ---------------------------------------------------------------
rand_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# Values for the variables compose.yaml requires (its ${VAR:?} references).
export BROKER_PAIRWISE_SECRET BROKER_REDIS_PASSWORD BROKER_CLIENT_SECRET_LOCAL_RP BROKER_DB_PASSWORD
BROKER_PAIRWISE_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
BROKER_REDIS_PASSWORD=$(rand_hex)
BROKER_CLIENT_SECRET_LOCAL_RP=$(rand_hex)
BROKER_DB_PASSWORD=$(rand_hex)

COMPOSE=()
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null && docker-compose version --short 2>/dev/null | grep -q '^v\?2'; then
    COMPOSE=(docker-compose)
fi
if [ ${#COMPOSE[@]} -gt 0 ]; then
    # --env-file /dev/null: validate with the variables above, not a local deploy/.env.
    run "${COMPOSE[*]} config -q" "${COMPOSE[@]}" --env-file /dev/null -f deploy/compose.yaml config -q
else
    skip "docker compose config: the docker CLI has no compose plugin here (docker compose version fails)"
fi

# ---- kubectl kustomize -------------------------------------------------------------------
if command -v kubectl >/dev/null; then
    run "kubectl kustomize deploy/k8s" kubectl kustomize deploy/k8s
else
    skip "kubectl kustomize: kubectl is not installed"
fi

# ---- Dockerfile --------------------------------------------------------------------------
# The image is a production build: without the `demo` feature (simulators, demo platform).
run "Dockerfile builds the broker without the demo feature" \
    grep -Eq '^[[:space:]]*cargo build --release --locked -p broker --no-default-features' deploy/Dockerfile

# ---- broker check-config -----------------------------------------------------------------
BROKER=${BROKER_BIN:-}
if [ -z "$BROKER" ]; then
    if cargo build --quiet -p broker; then
        BROKER=${CARGO_TARGET_DIR:-$ROOT/target}/debug/broker
    else
        fail "cargo build -p broker"
    fi
fi

# prepare DIR: keys made by `broker keygen` (and a client secret file) below DIR.
prepare() {
    mkdir -p "$1/keys" "$1/secrets" &&
        "$BROKER" keygen --alg RS256 --out "$1/keys/rs256.pem" &&
        "$BROKER" keygen --alg ES256 --out "$1/keys/es256.pem" &&
        "$BROKER" keygen --alg EdDSA --out "$1/keys/eddsa.pem" &&
        "$BROKER" keygen --alg ES256 --out "$1/keys/vneid-client.pem" &&
        rand_hex >"$1/secrets/tax-portal.secret"
}

# The environment a broker of compose.yaml gets: broker1's `environment`, interpolated.
compose_env() {
    "$PY" - <<'EOF'
import os, re, sys, yaml
sys.excepthook = lambda t, v, tb: print(f"{t.__name__}: {v}", file=sys.stderr)
env = yaml.safe_load(open("deploy/compose.yaml"))["services"]["broker1"]["environment"]
def sub(m):
    name = m.group(1)
    if name not in os.environ:
        sys.exit(f"compose.yaml uses ${{{name}}}, which check.sh does not provide")
    return os.environ[name]
for k, v in env.items():
    print(f"{k}={re.sub(r'[$][{]([A-Za-z_][A-Za-z0-9_]*)[^}]*[}]', sub, str(v))}")
EOF
}

# The k8s ConfigMap's broker.toml, and the variable names of the broker-env Secret.
k8s_config() {
    "$PY" - "$1" <<'EOF'
import sys, yaml
sys.excepthook = lambda t, v, tb: print(f"{t.__name__}: {v}", file=sys.stderr)
for d in yaml.safe_load_all(open("deploy/k8s/configmap.yaml")):
    if d and d.get("kind") == "ConfigMap":
        open(sys.argv[1], "w").write(d["data"]["broker.toml"])
EOF
}
k8s_env_names() {
    "$PY" - <<'EOF'
import sys, yaml
sys.excepthook = lambda t, v, tb: print(f"{t.__name__}: {v}", file=sys.stderr)
for d in yaml.safe_load_all(open("deploy/k8s/secret.yaml")):
    if d and d["metadata"]["name"] == "broker-env":
        print("\n".join(d["stringData"]))
EOF
}

# uncomment_sources DIR: DIR/broker.toml, the example with the TOML lines of its
# commented-out identity sources uncommented (prose comments stay) and keys below DIR.
uncomment_sources() {
    "$PY" - "$1" <<'EOF'
import re, sys
sys.excepthook = lambda t, v, tb: print(f"{t.__name__}: {v}", file=sys.stderr)
src = open("config/broker.example.toml").read()
start = src.index("# The identity sources below speak")
end = src.index("# ----", start)
toml_line = re.compile(r'^# (\[\[?[a-z_.]+\]\]?|[a-z_"][A-Za-z0-9_:."-]* = .*)$')
section = "\n".join(toml_line.sub(r"\1", l) for l in src[start:end].split("\n"))
if section.count("[[connectors]]") < 3:
    sys.exit("the example's commented-out identity sources were not found")
out = (src[:start] + section + src[end:]).replace("/etc/broker/", sys.argv[1] + "/")
open(sys.argv[1] + "/broker.toml", "w").write(out)
EOF
}

# check_config NAME CONFIG ENV_FILE: `broker check-config CONFIG` with exactly the variables
# of ENV_FILE (NAME=VALUE lines) besides PATH and HOME.
check_config() {
    local vars=()
    while IFS= read -r line; do [ -n "$line" ] && vars+=("$line"); done <"$3"
    run "$1" env -i PATH="$PATH" HOME="${HOME:-/}" "${vars[@]}" "$BROKER" check-config "$2"
}

if [ -n "$BROKER" ] && [ -x "$BROKER" ] && [ -n "$PY" ]; then
    # compose: the key paths of broker.compose.toml, moved to the temporary folder.
    if prepare "$TMP/compose" && compose_env >"$TMP/compose.env"; then
        sed "s#/etc/broker/keys/#$TMP/compose/keys/#g" deploy/broker.compose.toml >"$TMP/compose/broker.toml"
        check_config "broker check-config deploy/broker.compose.toml (compose environment)" \
            "$TMP/compose/broker.toml" "$TMP/compose.env"
    else
        fail "preparing keys and environment for deploy/broker.compose.toml"
    fi

    # k8s: the ConfigMap with the variables of the broker-env Secret.
    if prepare "$TMP/k8s" && k8s_config "$TMP/k8s/broker.toml" && k8s_env_names >"$TMP/k8s.names"; then
        sed -i "s#/etc/broker/#$TMP/k8s/#g" "$TMP/k8s/broker.toml"
        # The broker-db Secret, as its mount (/etc/broker/db) holds it.
        mkdir -p "$TMP/k8s/db" && rand_hex >"$TMP/k8s/db/password"
        while IFS= read -r name; do
            case $name in
            BROKER_REDIS_URL) echo "$name=redis://:$BROKER_REDIS_PASSWORD@redis:6379/0" ;;
            *) echo "$name=$(rand_hex)" ;;
            esac
        done <"$TMP/k8s.names" >"$TMP/k8s.env"
        check_config "broker check-config of the k8s ConfigMap (broker-env variables)" \
            "$TMP/k8s/broker.toml" "$TMP/k8s.env"
    else
        fail "preparing keys and environment for the k8s ConfigMap"
    fi

    # broker migrate with the compose configuration's [records], on a temporary database of
    # the local PostgreSQL (trust authentication: the password is not checked there).
    PGURL_HOST=${BROKER_CHECK_PG_HOST:-127.0.0.1:5432}
    if command -v psql >/dev/null &&
        psql -h "${PGURL_HOST%:*}" -p "${PGURL_HOST##*:}" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
        db="deploy_check_$(rand_hex | head -c 12)"
        psql -h "${PGURL_HOST%:*}" -p "${PGURL_HOST##*:}" -U postgres -d postgres -qc "CREATE DATABASE $db" >/dev/null
        sed -e "s#postgres://postgres:5432/broker#postgres://$PGURL_HOST/$db#" \
            -e 's#^user = "broker"#user = "postgres"#' \
            "$TMP/compose/broker.toml" >"$TMP/compose/migrate.toml"
        migrate_twice() {
            local vars=() first second
            while IFS= read -r line; do [ -n "$line" ] && vars+=("$line"); done <"$TMP/compose.env"
            first=$(env -i PATH="$PATH" HOME="${HOME:-/}" "${vars[@]}" "$BROKER" migrate --config "$TMP/compose/migrate.toml" 2>&1) ||
                { echo "first run: $first"; return 1; }
            grep -q "applied migration" <<<"$first" || { echo "first run applied nothing: $first"; return 1; }
            second=$(env -i PATH="$PATH" HOME="${HOME:-/}" "${vars[@]}" "$BROKER" migrate --config "$TMP/compose/migrate.toml" 2>&1) ||
                { echo "second run: $second"; return 1; }
            grep -q "already at version" <<<"$second" || { echo "second run: $second"; return 1; }
        }
        run "broker migrate with deploy/broker.compose.toml's [records] (local PostgreSQL, twice)" migrate_twice
        psql -h "${PGURL_HOST%:*}" -p "${PGURL_HOST##*:}" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null
    else
        skip "broker migrate: no PostgreSQL answers at $PGURL_HOST (user postgres, trust authentication)"
    fi

    # The annotated example, with the variables its header lists.
    if prepare "$TMP/example"; then
        sed "s#/etc/broker/#$TMP/example/#g" config/broker.example.toml >"$TMP/example/broker.toml"
        {
            echo "BROKER_REDIS_URL=redis://127.0.0.1:6379/0"
            echo "BROKER_PAIRWISE_SECRET=$BROKER_PAIRWISE_SECRET"
            echo "BROKER_SECRET_HANOI_PORTAL=$(rand_hex)"
        } >"$TMP/example.env"
        check_config "broker check-config config/broker.example.toml" \
            "$TMP/example/broker.toml" "$TMP/example.env"
    else
        fail "preparing keys for config/broker.example.toml"
    fi

    # The same example with its commented-out identity sources switched on, so the
    # documented settings of every real source stay valid.
    if prepare "$TMP/sources" &&
        cp -r config/logos "$TMP/sources/" && uncomment_sources "$TMP/sources"; then
        # An imported old-portal account (the Argon2id hash of a throwaway password).
        printf '%s\n' '{"username":"example","password_hash":"$argon2id$v=19$m=19456,t=2,p=1$bGVnYWN5LWRlbW8tc2FsdA$WkLm/PyvvHu3d9TDC4T6ekmYHmu2aD/E8UULmF4MVYU"}' \
            >"$TMP/sources/legacy-accounts.jsonl"
        {
            cat "$TMP/example.env"
            for name in BROKER_BANK_HASH_KEY BROKER_BANK_API_KEY BROKER_SMS_API_KEY \
                BROKER_CTID_API_KEY BROKER_LEGACY_HASH_KEY; do
                echo "$name=$(rand_hex)"
            done
        } >"$TMP/sources.env"
        check_config "broker check-config config/broker.example.toml, commented-out sources switched on" \
            "$TMP/sources/broker.toml" "$TMP/sources.env"
    else
        fail "preparing config/broker.example.toml with its identity sources switched on"
    fi
elif [ -z "$PY" ]; then
    fail "broker check-config: needs python3 with PyYAML"
fi

echo
if [ "$failures" -gt 0 ]; then
    echo "deploy/check.sh: $failures check(s) failed, $skips skipped"
    exit 1
fi
echo "deploy/check.sh: all checks passed, $skips skipped"
