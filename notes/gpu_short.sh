#!/usr/bin/env bash
# Seventh run, second call: the grouped optimizer with the bf16 kernel copy (guarded packed path), and the trainer with both.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
export PYTHONPATH=$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/o}; C=/tmp/pjc
TB="--shape=t5_base_ul2 --dtype=bfloat16 --batch=256 --attention=cudnn --padding_lengths --loss_chunk=8192 --xla_flags=tuned --optimizer=adafactor --norm=auto --steps=20 --warmup=4"
for row in "t5_b256_packed_grouped_copy|--data=ul2_packed_resident --group_leaves --param_copy" "t5_b256_grouped_copy|--data=ul2_resident --group_leaves --param_copy"; do
  tag=${row%%|*}; a=${row#*|}
  echo "-- $tag t=$SECONDS"
  timeout -k 3 62 python3 -m paperjax.bench $TB $a --tag=$tag --json=$OUT/results.jsonl --compilation_cache=$C 2>&1 | grep -v "^[IW][0-9]" | tail -3
done
echo "-- trainer grouped+copy t=$SECONDS"
timeout -k 3 $(( 225 - SECONDS )) python3 -m paperjax.main --config=configs/ul2.py:base --config.data.source=builtin:pydoc+stdlib_code --config.data.tokenizer=byte \
 --config.data.max_chars=20000000 --config.data.batch_size=256 --config.train.stop_at=30 --config.train.log_every=10 --config.train.eval_every=0 --config.train.ckpt_every=0 \
 --config.train.ckpt_every_s=0 --xla_flags=tuned --config.optimizer.group_leaves=True --config.optimizer.param_copy=bfloat16 --workdir=/tmp/tr 2>&1 | grep -v "^[IW][0-9]" | tail -8
cp /tmp/tr/metrics.jsonl $OUT/trainer_metrics.jsonl 2>/dev/null
echo "== end t=$SECONDS"
