#!/usr/bin/env bash
# Start distributed frameq without Docker, on one machine whose PostgreSQL and Redis are
# installed natively (Debian packages): an S3 endpoint (moto server, for trials), workers per
# task type, the reconciler and Flower.    infra/native.sh start | stop | status
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
export FRAMEQ_HOME=${FRAMEQ_HOME:-$HOME/.frameq-cluster}
export FRAMEQ_DATABASE_URL=${FRAMEQ_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/frameq}
export FRAMEQ_BROKER_URL=${FRAMEQ_BROKER_URL:-redis://127.0.0.1:6379/0}
export FRAMEQ_STORE_URL=${FRAMEQ_STORE_URL:-s3://frameq/jobs}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:5000}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-frameq} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-frameq}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
RUN="$FRAMEQ_HOME/run"
mkdir -p "$RUN"

launch() {  # name command...
  local name=$1; shift
  nohup "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  echo "started $name (pid $!, log $RUN/$name.log)"
}

start() {
  if ! pg_isready -h 127.0.0.1 -q; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  fi
  redis-cli -u "$FRAMEQ_BROKER_URL" ping >/dev/null 2>&1 ||
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'frameq'" | grep -q 1 ||
    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE frameq" >/dev/null
  if [[ $AWS_ENDPOINT_URL == http://127.0.0.1:5000 ]]; then
    launch s3 "$BIN/python" -m moto.server -H 127.0.0.1 -p 5000
    sleep 2
    "$BIN/python" -c "import boto3; boto3.client('s3').create_bucket(Bucket='${FRAMEQ_STORE_URL#s3://}'.split('/')[0])"
  fi
  "$BIN/frameq" db upgrade
  launch media-worker "$BIN/frameq" worker --queues media
  launch gpu-worker "$BIN/frameq" worker --queues matte,style,composite,image
  launch flower "$BIN/frameq" flower --port 5555
}

stop() {
  for pidfile in "$RUN"/*.pid; do
    [[ -e $pidfile ]] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

status() {
  for pidfile in "$RUN"/*.pid; do
    [[ -e $pidfile ]] || continue
    name=$(basename "$pidfile" .pid)
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "$name running"; else echo "$name stopped"; fi
  done
}

"${1:-start}"
