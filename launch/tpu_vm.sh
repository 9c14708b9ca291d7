#!/usr/bin/env bash
# Run paperjax on a Cloud TPU VM slice (single host or pod slice): create or reuse the slice, copy
# this checkout to every worker, install it, run the same command on all workers, stream worker 0.
#
# Assumes: gcloud is installed and authenticated, with a project and zone set (or pass ZONE/PROJECT);
#          the TPU runtime image has Python ≥3.11; the workdir is a gs:// path every worker can write
#          (orbax checkpoints and metrics go there), and the datasets are prepared in a GCS TFDS_DATA_DIR.
# Usage:   launch/tpu_vm.sh NAME ACCELERATOR_TYPE [paperjax.main flags ...]
# Example: TFDS_DATA_DIR=gs://my-bucket/tfds launch/tpu_vm.sh ul2-base v5litepod-8 \
#            --config=configs/ul2.py:base --workdir=gs://my-bucket/runs/ul2-base
# Env:     ZONE (default: gcloud's), PROJECT, VERSION (TPU runtime, default v2-alpha-tpuv5-lite),
#          SPOT=1 for spot capacity, KEEP=1 to leave the slice up afterwards (default: deleted on exit).
# Every worker runs `python -m paperjax.main ...`; jax.distributed.initialize() auto-detects the pod.
# Preemption: the workers receive SIGTERM, save a checkpoint and exit 0; re-running this script resumes.
set -euo pipefail
name=${1:?slice name}; accel=${2:?accelerator type, e.g. v5litepod-8}; shift 2
zone=${ZONE:+--zone=$ZONE}; project=${PROJECT:+--project=$PROJECT}
version=${VERSION:-v2-alpha-tpuv5-lite}
if ! gcloud compute tpus tpu-vm describe "$name" $zone $project >/dev/null 2>&1; then
  echo "creating $name ($accel)…"
  gcloud compute tpus tpu-vm create "$name" $zone $project --accelerator-type="$accel" --version="$version" ${SPOT:+--spot}
fi
[ "${KEEP:-0}" = 1 ] || trap 'gcloud compute tpus tpu-vm delete "$name" $zone $project --quiet' EXIT
tarball=$(mktemp /tmp/paperjax.XXXX.tgz)
git ls-files -z | tar --null -czf "$tarball" -T -
gcloud compute tpus tpu-vm scp "$tarball" "$name":~/paperjax.tgz --worker=all $zone $project
gcloud compute tpus tpu-vm ssh "$name" --worker=all $zone $project --command="
  set -e; mkdir -p ~/paperjax && tar -xzf ~/paperjax.tgz -C ~/paperjax && cd ~/paperjax &&
  python3 -m pip install -q -e '.[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
args=$(printf '%q ' "$@")
# Worker 0's output streams here; the others log to ~/paperjax/worker.log on their VM.
gcloud compute tpus tpu-vm ssh "$name" --worker=all $zone $project --command="
  cd ~/paperjax && export TFDS_DATA_DIR=${TFDS_DATA_DIR:-} &&
  if [ \"\$(curl -s -H Metadata-Flavor:Google http://metadata/computeMetadata/v1/instance/attributes/agent-worker-number)\" = 0 ];
  then python3 -m paperjax.main $args; else python3 -m paperjax.main $args >worker.log 2>&1; fi"
