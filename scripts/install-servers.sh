#!/usr/bin/env bash
# Installs the servers the test suite starts on 127.0.0.1 (none runs as a service): etcd now;
# RabbitMQ, Azurite, Prometheus and Chromium join as their suites land. Idempotent and quiet.
set -euo pipefail

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server etcd-client)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
  echo "Installing ${need[*]} ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Azurite (Azure Blob + Queue emulator) from npm, into a tools folder of the repository.
azurite_dir="$(cd "$(dirname "$0")/.." && pwd)/.tools/azurite"
if [ ! -x "$azurite_dir/node_modules/.bin/azurite-blob" ]; then
  echo "Installing azurite ..."
  mkdir -p "$azurite_dir"
  npm install --prefix "$azurite_dir" --no-audit --no-fund --silent azurite@3.37.0 >/dev/null
fi
