#!/usr/bin/env bash
# Starts the local AWS emulator (ministack) in the background and waits until it answers.
# Prints the endpoint. Usage: deploy/local-stack.sh [port]   (stop it with: kill $(cat .local-stack.pid))
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${1:-4566}
if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
  echo "http://127.0.0.1:$PORT"
  exit 0
fi
BIND_HOST=127.0.0.1 GATEWAY_PORT=$PORT SERVICES=sqs,sns,s3,kinesis,dynamodb,dynamodbstreams \
  LOG_LEVEL=WARNING nohup .emu-venv/bin/ministack > .local-stack.log 2>&1 &
echo $! > .local-stack.pid
for _ in $(seq 200); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" && { echo "http://127.0.0.1:$PORT"; exit 0; }
  sleep 0.1
done
echo "ministack did not start; see .local-stack.log" >&2
exit 1
