#!/usr/bin/env bash
# The whole system as separate processes on 127.0.0.1: etcd, RabbitMQ (with its own epmd), three
# coordinators, N workers and one ingress, sharing a filesystem blob store.
#   scripts/cluster.sh up [workers] [rabbitmq|azure|servicebus] [--autoscale MIN:MAX]
#                                     start everything (default 2 workers, RabbitMQ + filesystem blobs;
#                                     azure: Azurite's Queue + Blob instead; servicebus: the Service Bus
#                                     test endpoint of tests/ on Azure.Messaging.ServiceBus, filesystem
#                                     blobs); logs and PIDs in .cluster/.
#                                     --autoscale: no fixed workers; `queue autoscale` starts and stops
#                                     them from GET /scale as KEDA and the HPA would (poll, stabilization
#                                     window and cool-down in seconds from QUEUE_AUTOSCALE_POLL, _WINDOW,
#                                     _COOLDOWN; defaults 1, 30, 30)
#   scripts/cluster.sh status         what runs, who leads, queue and job counts
#   scripts/cluster.sh down           stop exactly what `up` started (by recorded PID)
# Ports: ingress 5000, coordinators 5101-5103, workers 5201.., etcd 23790/23800, RabbitMQ 25672,
# Azurite blob 21000 / queue 21001, Service Bus test endpoint 25671 (administration 25300).
set -euo pipefail
cd "$(dirname "$0")/.."
root="${QUEUE_CLUSTER_DIR:-$PWD/.cluster}"
pids="$root/pids"
bin="$PWD/artifacts/bin"
etcd_url="http://127.0.0.1:23790"
amqp_port=25672
epmd_port=24369

start() { # name, log, command...
  local name=$1; shift
  "$@" >"$root/logs/$name.log" 2>&1 &
  echo "$name $!" >>"$pids"
}

wait_http() { # url, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

up() {
  local workers=2 mode=rabbitmq autoscale=""
  while [ $# -gt 0 ]; do
    case $1 in
      --autoscale) autoscale=${2:?--autoscale needs MIN:MAX}; shift 2 ;;
      rabbitmq|azure|servicebus) mode=$1; shift ;;
      *) workers=$1; shift ;;
    esac
  done
  if [ -n "$autoscale" ]; then
    [[ $autoscale =~ ^[0-9]+:[0-9]+$ ]] || { echo "--autoscale takes MIN:MAX, e.g. 0:4" >&2; exit 2; }
    workers=0
    export Queue__Scale__MinWorkers=${autoscale%%:*} Queue__Scale__MaxWorkers=${autoscale##*:}
  fi
  if [ -s "$pids" ]; then echo "already up (scripts/cluster.sh down first)" >&2; exit 1; fi
  scripts/install-servers.sh
  dotnet build Queue.sln -c Release -nologo -v quiet -clp:ErrorsOnly
  mkdir -p "$root/logs" "$root/data/books" "$root/etcd" "$root/rabbit/home"
  : >"$pids"

  start etcd etcd --name n1 --data-dir "$root/etcd/n1" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster n1=http://127.0.0.1:23800

  export Queue__Adapters__Coordination=etcd Queue__Etcd__Endpoints="$etcd_url"
  export Queue__Adapters__DataPath="$root/data" Queue__Worker__TempPath="$root/tmp"
  if [ "$mode" = azure ]; then
    local azurite="$PWD/.tools/azurite/node_modules/.bin"
    start azurite-blob "$azurite/azurite-blob" --blobHost 127.0.0.1 --blobPort 21000 --inMemoryPersistence --skipApiVersionCheck --disableTelemetry --loose
    start azurite-queue "$azurite/azurite-queue" --queueHost 127.0.0.1 --queuePort 21001 --inMemoryPersistence --skipApiVersionCheck --disableTelemetry --loose
    wait_http "$etcd_url/health" 20
    for port in 21000 21001; do
      for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    done
    # Azurite's well-known development account (public, not a secret).
    export Queue__Adapters__WorkQueue=azurequeue Queue__Adapters__BlobStore=azureblob Queue__WorkQueue__LeaseDuration=00:00:10
    export Queue__Azure__ConnectionString="AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:21000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:21001/devstoreaccount1;"
  elif [ "$mode" = servicebus ]; then
    # A key made for this cluster (kept in .cluster/, never in the repository).
    local key; key=$(head -c 32 /dev/urandom | base64)
    (umask 077; printf '%s\n' "$key" >"$root/servicebus.key")
    start servicebus dotnet "$PWD/artifacts/bin/Queue.ServiceBusEndpoint/release/Queue.ServiceBusEndpoint.dll" \
      --port 25671 --admin-port 25300 --key "$key" --queue queue-tasks --queue queue-events --lock-seconds 10 --max-deliveries 100
    wait_http "$etcd_url/health" 20
    for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/25671") 2>/dev/null && break; sleep 0.1; done
    export Queue__Adapters__WorkQueue=servicebus Queue__WorkQueue__LeaseDuration=00:00:10
    export Queue__ServiceBus__ConnectionString="Endpoint=sb://127.0.0.1:25671;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=$key;UseDevelopmentEmulator=true"
    export Queue__ServiceBus__AdministrationConnectionString="Endpoint=sb://127.0.0.1:25300;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=$key;UseDevelopmentEmulator=true"
  else
    printf 'loopback_users = none\nlisteners.tcp.1 = 127.0.0.1:%s\n' "$amqp_port" >"$root/rabbit/rabbitmq.conf"
    echo '[].' >"$root/rabbit/enabled_plugins"
    start epmd epmd -port "$epmd_port" -address 127.0.0.1
    start rabbitmq env HOME="$root/rabbit/home" RABBITMQ_NODENAME="queue-cluster@localhost" \
      RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$amqp_port" RABBITMQ_DIST_PORT=25673 \
      RABBITMQ_MNESIA_BASE="$root/rabbit/mnesia" RABBITMQ_LOG_BASE="$root/rabbit/log" \
      RABBITMQ_CONFIG_FILE="$root/rabbit/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$root/rabbit/enabled_plugins" \
      ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$epmd_port" /usr/lib/rabbitmq/bin/rabbitmq-server
    wait_http "$etcd_url/health" 20
    for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$amqp_port") 2>/dev/null && break; sleep 0.1; done
    export Queue__Adapters__WorkQueue=rabbitmq Queue__RabbitMq__ConnectionString="amqp://guest:guest@127.0.0.1:$amqp_port/"
  fi

  for i in 1 2 3; do
    Queue__Coordinator__CandidateId="coordinator-$i" start "coordinator-$i" \
      dotnet "$bin/Queue.Coordinator/release/Queue.Coordinator.dll" --urls "http://127.0.0.1:510$i"
  done
  for i in $(seq 1 "$workers"); do
    Queue__Worker__WorkerId="worker-$i" start "worker-$i" \
      dotnet "$bin/Queue.Worker/release/Queue.Worker.dll" --urls "http://127.0.0.1:$((5200 + i))"
  done
  start ingress dotnet "$bin/Queue.Ingress/release/Queue.Ingress.dll" --urls http://127.0.0.1:5000
  wait_http http://127.0.0.1:5000/healthz 30
  if [ -n "$autoscale" ]; then
    start autoscaler dotnet "$bin/Queue.Cli/release/queue.dll" autoscale --url http://127.0.0.1:5000 \
      --min "${autoscale%%:*}" --max "${autoscale##*:}" --worker "dotnet $bin/Queue.Worker/release/Queue.Worker.dll" \
      --first-port 5201 --logs "$root/logs" --poll "${QUEUE_AUTOSCALE_POLL:-1}" \
      --stabilization "${QUEUE_AUTOSCALE_WINDOW:-30}" --cooldown "${QUEUE_AUTOSCALE_COOLDOWN:-30}"
    echo "autoscaling workers ${autoscale} (log: $root/logs/autoscaler.log)"
  fi
  if [ "$mode" = azure ]; then
    echo "up: ingress http://127.0.0.1:5000, blobs in Azurite (put input in with: dotnet artifacts/bin/Queue.Cli/release/queue.dll upload <folder> --container <container> --url http://127.0.0.1:5000), logs in $root/logs"
  else
    echo "up: ingress http://127.0.0.1:5000, data in $root/data (put input under $root/data/<container>/), logs in $root/logs"
  fi
}

status() {
  if [ ! -s "$pids" ]; then echo "down"; return 0; fi
  while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then state=running; else state=exited; fi
    extra=""
    case $name in
      coordinator-*) extra=$(curl -fsS "http://127.0.0.1:510${name#coordinator-}/coordinator" 2>/dev/null || true) ;;
    esac
    printf '%-14s %-8s %-8s %s\n' "$name" "$pid" "$state" "$extra"
  done <"$pids"
  curl -fsS http://127.0.0.1:5000/jobs 2>/dev/null | python3 -c 'import json,sys; j=json.load(sys.stdin); print(f"jobs: {len(j)}", {s: sum(1 for x in j if x["status"]["state"]==s) for s in {x["status"]["state"] for x in j}})' || true
}

down() {
  if [ ! -s "$pids" ]; then echo "nothing to stop"; return 0; fi
  # Reverse order: ingress and workers first (SIGTERM lets workers drain), servers last.
  tac "$pids" | while read -r name pid; do
    kill -TERM "$pid" 2>/dev/null || true
    # The autoscaler drains its workers before it exits (their drain time is 25 s).
    local waits=100; [ "$name" = autoscaler ] && waits=600
    for _ in $(seq 1 "$waits"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    echo "stopped $name ($pid)"
  done
  : >"$pids"
}

case "${1:-}" in
  up) up "${2:-2}" "${3:-rabbitmq}" ;;
  status) status ;;
  down) down ;;
  *) echo "usage: scripts/cluster.sh up [workers] [rabbitmq|azure|servicebus] | status | down" >&2; exit 2 ;;
esac
