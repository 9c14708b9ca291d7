#!/usr/bin/env bash
# Wheels the GPU image lacks, for notes/gpu_run.sh (the device has no network; the device call
# carries .whl/). Only the ul2_pipeline row (grain, and what grain needs beyond the image:
# array_record, portpicker, importlib_resources for etils.epath) and the trainer row (ml_collections)
# need them. Python 3.12, x86-64, the versions this repository tests with.
set -eu
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  "grain==$(python3 -c 'import importlib.metadata as m; print(m.version("grain"))')" \
  "array_record==$(python3 -c 'import importlib.metadata as m; print(m.version("array_record"))')" portpicker importlib_resources \
  "ml_collections==$(python3 -c 'import importlib.metadata as m; print(m.version("ml_collections"))')"
ls -la .whl
