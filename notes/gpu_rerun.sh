#!/usr/bin/env bash
# Fourth run, second call (~5 minutes left of the budget): the rows the first call skipped or
# that its results made the priority. Fused projections measured slower on all three shapes, so
# the trainer row runs the unfused default of configs/ul2.py:base, then the pipeline-vs-synthetic
# T5 windows, unfused.
set -u -o pipefail
if ! python3 -c "import grain" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
OUT=${OUT:-/tmp/paperjax_gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
CACHE=/tmp/paperjax_jit_cache; mkdir -p $CACHE
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
TR="--config=configs/ul2.py:base --config.data.source=builtin:pydoc+stdlib_code --config.data.tokenizer=byte
 --config.data.max_chars=20000000 --config.data.batch_size=256
 --config.train.stop_at=30 --config.train.log_every=10 --config.train.eval_every=0 --config.train.ckpt_every=0
 --config.train.ckpt_every_s=0 --xla_flags=tuned"
TB="--shape=t5_base_ul2 --dtype=bfloat16 --batch=256 --attention=cudnn --padding_lengths --loss_chunk=8192 --xla_flags=tuned"
if [[ ${SMOKE:-0} == 1 ]]; then
  TR="$TR --config.data.batch_size=8 --config.train.stop_at=6 --config.train.log_every=2 --config.model.d_model=64
 --config.model.num_heads=2 --config.model.head_dim=32 --config.model.d_ff=128 --config.model.num_layers=1
 --config.model.num_encoder_layers=1"
  TB="--shape=tiny_encdec --batch=8 --attention=xla --padding_lengths --loss_chunk=96"
fi
rm -rf /tmp/trainer_ul2u; echo "-- trainer_ul2_base_unfused t=$(el)s"
timeout -k 5 ${TRAINER_LIMIT:-150} python3 -m paperjax.main $TR --workdir=/tmp/trainer_ul2u 2>&1 | grep -v "^[IW][0-9]" | tail -8
cp /tmp/trainer_ul2u/metrics.jsonl "$OUT/trainer_ul2_unfused_metrics.jsonl" 2>/dev/null
for row in "t5_b256_long|" "t5_b256_long_pipeline|--data=ul2_pipeline"; do
  tag=${row%%|*}; extra=${row#*|}
  left=$(( ${LIMIT:-280} - $(el) )); (( left < 20 )) && { echo "-- skip $tag"; continue; }
  echo "-- $tag (limit ${left}s, t=$(el)s)"
  timeout -k 5 $left python3 -m paperjax.bench $TB $extra --steps=20 --warmup=2 --compilation_cache=$CACHE \
    --tag=$tag --json=$OUT/results.jsonl 2>&1 | grep -v "^\s*$" | tail -4
done
echo "== end t=$(el)s"
