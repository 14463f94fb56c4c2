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
