#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need on a fresh machine, builds once, runs xunit.
# Usage: scripts/test.sh [extra dotnet test arguments, e.g. --filter Name~Engine]
set -euo pipefail
cd "$(dirname "$0")/.."

# The servers later suites start (etcd, RabbitMQ, Azurite, Prometheus, Chromium) are installed here
# by scripts/install-servers.sh when it exists; the embedded engine needs nothing beyond the SDK.
if [ -x scripts/install-servers.sh ]; then
  scripts/install-servers.sh
fi

dotnet build Queue.sln -c Release -nologo -v quiet -clp:ErrorsOnly
dotnet test tests/Queue.Tests/Queue.Tests.csproj -c Release --no-build -nologo \
  --logger "console;verbosity=normal" --results-directory artifacts/test-results "$@" | tee artifacts/test-output.txt
status=${PIPESTATUS[0]}

# A closing line CI can read whatever the runner prints.
passed=$(grep -Eo 'Passed: +[0-9]+' artifacts/test-output.txt | tail -1 | grep -Eo '[0-9]+' || echo 0)
failed=$(grep -Eo 'Failed: +[0-9]+' artifacts/test-output.txt | tail -1 | grep -Eo '[0-9]+' || echo 0)
echo "${passed} passed, ${failed} failed"
exit "$status"
