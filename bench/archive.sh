#!/usr/bin/env bash
# Archive throughput against a real S3-compatible server (moto, from the test venv) beside the
# raw multipart PUT bandwidth of the same server, plus the manifest at a million segments.
# Usage: bench/archive.sh            (moto on a free local port)
#        SILT_BENCH_ARCHIVE=s3://bucket/prefix bench/archive.sh   (your own store; AWS_* set)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs moto)"; exit 1; }

moto_pid=""
cleanup() { [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null && wait "$moto_pid" 2>/dev/null; true; }
trap cleanup EXIT

if [ -z "${SILT_BENCH_ARCHIVE:-}" ]; then
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  .venv/bin/moto_server -H 127.0.0.1 -p "$port" >target/moto-bench.log 2>&1 &
  moto_pid=$!
  export AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
         AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  .venv/bin/python - <<PY
import time, boto3, botocore
s3 = boto3.client("s3", endpoint_url="$AWS_ENDPOINT", region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
for _ in range(600):
    try:
        s3.create_bucket(Bucket="silt-bench"); break
    except botocore.exceptions.EndpointConnectionError:
        time.sleep(0.1)
else:
    raise SystemExit("moto_server did not come up")
PY
  export SILT_BENCH_ARCHIVE="s3://silt-bench/bench"
fi

cargo bench -p silt-archiver --bench archive
cargo bench -p silt-archiver --bench manifest
