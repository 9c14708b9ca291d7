#!/usr/bin/env bash
# Every shape and variant of notes/perf.md on one GPU, in one call (the device budget is 15 min).
#
#   set -o pipefail; PYTHONUNBUFFERED=1 bash notes/gpu_run.sh 2>&1 | tee $OUT/log    (timeout_s=600,
#   carry [".whl"] after `bash notes/fetch_wheels.sh`; rows in priority order, then the trainer row,
#   then the extra rows while time is left)
#
# Phase 1 compiles the main rows' programs at once, in parallel processes, into a persistent
# compilation cache (XLA's autotuner then runs them on a shared GPU, so its picks may be a little
# noisier than alone). Phase 2 runs the variants one at a time, each its own process (XLA flags
# are per process), in priority order, loading its program from the cache; each has a timeout
# and the whole phase a deadline, so one hang costs one row. The table comes last; results.jsonl
# holds every number.
set -u -o pipefail
# grain is not in the GPU image: `bash notes/fetch_wheels.sh` here puts its wheels in .whl/ (ignored by
# git; name it in the device call's carry); the ul2_pipeline row needs them, every other row runs without.
if ! python3 -c "import grain" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || echo "!! wheel install failed: no ul2_pipeline row"
fi
OUT=${OUT:-/tmp/paperjax_gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PY:-python3}
CACHE=${CACHE:-/tmp/paperjax_jit_cache}
LOGS=/tmp/paperjax_logs
DEADLINE=${DEADLINE:-360}          # seconds from start after which no main row starts (the trainer row
                                   # then runs only if 150 s are left)
CALL_LIMIT=${CALL_LIMIT:-580}      # the script ends by then: device call timeout_s=600
COMPILE_TIMEOUT=${COMPILE_TIMEOUT:-150}   # run 5b, four in parallel: steps 12-36 s, init programs 5-16 s (before
                                   # step.threefry_kernels the init programs took 52-58 s, T5's > 117 s)
mkdir -p "$LOGS" "$CACHE"
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }

echo "== env ($(date -u +%FT%TZ))"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu --format=csv 2>&1 | head -3
$PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1 | tail -1

G="--shape=gpt2_124m --batch=32 --dtype=bfloat16"
GG="--shape=gpt2_124m_gelu --batch=32 --dtype=bfloat16"
T="--shape=t5_base_ul2 --dtype=bfloat16"
B1="--shape=decoder_1b --batch=16 --dtype=bfloat16"
B2="--shape=decoder_1b --batch=20 --dtype=bfloat16"
TB="$T --batch=256 --attention=cudnn --padding_lengths --loss_chunk=8192 --xla_flags=tuned"
# --check_mlp's tile settings of models/fused_mlp.py's kernels ("bm,bn,bk,warps,stages", "up|down"): the
# default first (the step rows' kernels), then Triton's other usual Hopper bf16 tiles, then each kernel alone
CHECK_B=256; CHECK_B_G=32   # --check_mlp's rows: the step's (T5's encoder: 131072; GPT-2: 32768)
# GPT-2's dense GELU kernels (a main row since the eleventh session without a device): the default, two other
# pairs, then each kernel alone — five settings, each a Triton compile of its own
MLP_TILES_G="128,128,64,8,3;128,64,64,4,4;128,128,64,8,4|256,128,64,8,3;xla|128,128,64,8,3;128,128,64,8,3|xla"
MLP_TILES="128,128,64,8,3;128,64,64,4,4;128,128,64,8,4|256,128,64,8,3;64,128,64,4,4|128,256,64,8,3;128,128,32,8,4;xla|128,128,64,8,3;128,128,64,8,3|xla"
# The same kernels for Pallas's Mosaic GPU backend, in a row (a process) of their own so that a kernel that
# faults on the card cannot take the Triton row's figures with it: three settings (the second small enough
# in shared memory, 112 and 104 KiB, for two blocks an SM: one's epilogue under the other's K loop, which
# at K = 768 is only 12 steps)
MLP_TILES_MGPU="mgpu:128,64,64,4|mgpu:128,128,64,4;mgpu:128,64,64,2|mgpu:128,64,64,3;mgpu:64,128,64,4|mgpu:64,256,64,4"
# --check_xent's settings of models/fused_xent.py's loss kernel ("tile,programs,warps"): the default first, then
# fewer and more rows in flight (132 … 1056 programs: does a row's second read hit L2?), then other tiles
XENT_TILES="8192,264,16;8192,132,16;8192,528,16;8192,1056,16;4096,264,8;16384,264,16"
XENT_CHUNK=8192
if [[ ${SMOKE:-0} == 1 ]]; then  # CPU rehearsal of this script: tiny shapes, XLA attention, 2 steps
  G="--shape=tiny --batch=8"; GG="$G"; T="--shape=tiny_encdec"; B1="--shape=tiny --batch=4"; B2="--shape=tiny --batch=6"
  TB="$T --batch=8 --attention=cudnn --padding_lengths --loss_chunk=96"
  MLP_TILES="16,16,16,4,2;32,32,16,4,2"; MLP_TILES_G="$MLP_TILES"; MLP_TILES_MGPU="mgpu:64,64,64,2"; CHECK_B=2; CHECK_B_G=2
  XENT_TILES="128,8,4;256,3,8"; XENT_CHUNK=64
fi
# tag|arguments, in the order phase 2 runs them (most important first). Eighth run's plan, as revised
# on 2026-11-28 (fourth session without a device; notes/perf.md, its last section): the MLP's element-wise
# work inside GEMM kernels of ours (`--mlp_impl=auto`, models/fused_mlp.py, Pallas on Triton) — never run
# on a GPU, so first `check_mlp_t5`: the kernels against XLA's GEMMs at T5's 131072 encoder rows, bf16,
# errors against float32 (must say WITHIN) and ms / TFLOP/s of forward + backward for five tile settings
# (the default first: the step rows' kernels). Then the step rows, each `_mlp` row next to its row without:
#      row                              H100 roofline xla → auto   predicted H100 (85% of cuBLAS's rate)   H200 roofline
#      t5_b256_packed_rows32[_mlp]          259.22 → 240.80        ~252 → ~238 ms, 44.9 → ~47.5%            225.09
#      gpt2_gelu[_mlp]                       54.89 → 52.45         ~60.5 → ~58.5 ms, 46.8 → ~48.4%          49.73
#      1b_b16_fusednorm_mlp                 413.81 → 393.80        428.9 (run 7) → ~419 ms, ~61.6%          381.40
#      t5_b256_grouped_mlp (padded)         248.50 → 230.07        246.8 (run 7) → ~233 ms, ~48.6%          215.01
#      gpt2_fusednorm[_mlp] (gated)          58.65 → 54.85         64.6 (run 7) → ~61.2 ms, ~46.3%          50.96
#  (on an H200 each row's figure is its H100 prediction × the H200/H100 roofline ratio). Revised 2026-11-29
#  on the rooflines of the card's own jax 0.11.2 (notes/perf.md, last section; kernels at cuBLAS's rate):
#  packed T5 rows32 _mlp ~239–252 ms, 45.0–47.3%; GPT-2-gelu _mlp ~58.4 ms, ~48.5%; the 1B _mlp ~407 ms, ~63.4%;
#  padded T5 _mlp ~228 ms, ~49.6%. Main rows: the two
#  T5 checks, the packed T5 pair, the GPT-2 (gelu) pair, the 1B with the kernels (phase 1 ≈ 100 s, these
#  ≈ 300 s); the padded T5, GPT-2's MLP check, gated GPT-2, learned-position and profiled rows lead the
#  extras (after the trainer row, while time is left).
#  `check_packing_t5_rows`
#  now runs the kernels too (the whole model with cuDNN, packed rows and our MLP against XLA's attention and
#  MLP one example per row: EQUAL). If `check_mlp_*` finds a faster tile setting than the default, a short
#  second call reruns the `_mlp` rows with `--mlp_tiles=<it>`; if it says ABOVE, the `_mlp` rows mean nothing.
#  Revised 2026-11-29 (seventh session without a device; notes/perf.md, last section): the roofline had
#  missed the GEMMs XLA puts inside its dynamic-slice fusions (the fused cross-entropy's logits and dW GEMMs,
#  read straight from the chunk loop's stacked input): every floor was low (GPT-2 by 4.0 ms, the 1B by 14.5,
#  T5 by 2.5). Corrected H100 rooflines xla → auto, and each row predicted as its roofline × run 7's ratio of
#  measured to corrected roofline for its kind (GPT-2 1.088, the 1B 1.037, padded T5 0.990, packed T5 1.042):
#      row                              H100 roofline xla → auto   predicted H100 (auto)        H200 roofline (auto)
#      t5_b256_packed_rows32[_mlp]          260.27 → 241.85        ~239–252 ms, 44.9–47.3%        225.82
#      gpt2_gelu[_mlp]                       56.48 → 54.04         ~61.5 → ~58.8 ms, 46.1 → 48.2%   50.84
#      gpt2_gelu_mlp_nomerge (NEW)                   52.41         ~57.0 ms, ~49.6%                 49.70
#      1b_b16_fusednorm_mlp                 413.71 → 393.71        ~408 ms, ~63.3%                 381.33
#      t5_b256_grouped_mlp (padded)         249.26 → 230.84        ~228.5 ms, ~49.6%               215.53
#      gpt2_fusednorm[_mlp] (gated)          59.39 → 55.60         64.61 (run 7) → ~60.5, ~46.8%    51.47
#  NEW (later the same session): `model.rope_impl` (models/fused_rope.py: rotary inside the q/k projections'
#  GEMM kernel, Triton) — main row `t5_b256_packed_rows32_mlp_rope` (the kernels, the merger off, rotary in the
#  projections: floor 240.77 → 236.33 ms; predicted ~234–246 ms, 46.0–48.4% on an H100, the packed row most
#  likely over 45%), and `check_packing_t5_rows` now runs it too (against XLA's rotary one example per row).
#  NEW extra row `gpt2_gelu_mlp_nomerge`, the first extra (and extra `t5_b256_packed_rows32_mlp_nomerge`, roofline 240.77;
#  `t5_b256_packed_rows32_learned_mlp` now runs `tuned_nomerge` too: 237.47 → 234.91, ~232.6–244.8 ms, 46.2–48.6%):
#  the `tuned_nomerge` flag set turns XLA's dot merger off; with learned positions it made q/k/v one GEMM
#  and then copied each out for cuDNN (33 copies, 1.6 ms of GPT-2's floor). The question for the card: do
#  the three narrower GEMMs cost less than the copies? Predicted −1.5 ms against `gpt2_gelu_mlp`, same machine.
#  GPT-2's 55% (51.5 ms) is under its own corrected floor on an H100 (54.04 ms with the kernels, 52.41 without
#  the merger): out of reach at the card's measured GEMM and attention rates (only GEMMs at the ~798 TFLOP/s
#  ceiling and no time between kernels would fit it).
#  NEW 2026-11-29 (eighth session without a device; notes/perf.md, last section): `model.xent_impl`
#  (models/fused_xent.py: the fused cross-entropy's log-sum-exp and logits gradient in one Triton kernel that
#  reads each row twice from one program, the second read meant to come from L2 — the design's bet). Main row
#  `gpt2_gelu_best` (the MLP kernels, the merger off, the loss kernel: H100 floor 52.41 → 51.30 ms, 55.2%;
#  H200 48.94; predicted ×1.088 ≈ 55.8 ms, ~50.7% on an H100 — still under 55%), placed before the 1B row.
#  The rotary row now also takes the loss kernel, `t5_b256_packed_rows32_mlp_rope_xent` (floor 236.33 → 235.60,
#  H200 221.44; predicted ~233–246 ms, 46.1–48.5% on an H100); the rotary row without it is an extra
#  (against it: the loss kernel's own effect, predicted −0.7 ms, and ~−1.1 ms on GPT-2 against the first
#  extra `gpt2_gelu_mlp_nomerge`). `check_packing_t5_rows` checks the loss kernel too (EQUAL). If the L2 bet
#  fails the kernel costs what XLA's two passes do (one more read per chunk) — the comparison says, and first
#  `check_xent_gpt2` (main, before `gpt2_gelu_best`): one GPT-2 loss chunk through XLA's passes and the kernel
#  at six settings — ms, and the rate of one read and one write over that time (near the card's ~3.0 TB/s
#  copy rate, 4.3 on an H200: the second read came from L2; ~2/3 of it: it did not). Predicted: XLA
#  ~0.83 ms a chunk (2.5 GB at ~3 TB/s), the default setting ~0.55–0.6 ms; if another setting is faster a
#  short second call reruns `gpt2_gelu_best` with ARGS_EXTRA="--xent_tiles=<it>".
#  Later the same session: rotary's backward through two GEMM kernels of ours (models/fused_rope.py
#  `rope_dgrad_gemm`, `rope_wgrad_gemm`: the cotangent un-rotated as loaded; part of `rope_impl`), so the
#  rotary T5 row's floor is 234.66 ms (H200 220.87; predicted ~232–245 ms, 46.4–48.8% on an H100), and the
#  1B's main row is now `1b_b16_best` (the MLP, rotary and loss kernels: floor 393.71 → 385.83 ms, H200
#  375.79; predicted ×1.037 ≈ 400 ms, ~64.5% on an H100); `1b_b16_fusednorm_mlp` moved to the extras. `gpt2_gelu` (no kernels of
#  ours) moved to the extras, after `gpt2_gelu_mlp_nomerge`, so that the main rows end by the deadline with
#  the 1B's (the MLP kernels' effect on GPT-2 is then an extra's question; `check_mlp_t5` prices them against
#  XLA's GEMMs first).
#  Added 2026-11-29 (sixth session without a device): `check_mlp_t5_mgpu`, the second row, times the same
#  two kernels written for Pallas's Mosaic GPU backend (wgmma fed by TMA; `mgpu:` tiles, models/fused_mlp.py)
#  in a process of its own; a setting that fails to build or run is printed FAILED and the others stand
#  (a fault that kills the process loses only that row). Predicted: within
#  XLA's bf16 error; 60–85% of cuBLAS's rate (one warpgroup a block, no warp specialisation, no persistent
#  grid) — about Triton's, so the check, not this guess, says which backend the `_mlp` rows should take.
#  NEW 2026-11-29 (ninth session without a device; notes/perf.md, last section): `model.cross_kv_chain` (pure JAX:
#  each decoder layer hands the encoder's output on to the next, so that its gradient is summed inside cuBLAS's
#  GEMMs as their C operand instead of in 11 passes of its own). The packed T5 main row is now
#  `t5_b256_packed_rows32_best` (MLP, rotary, loss kernels and the chain: floor 234.66 → 232.43 ms, H200 219.30;
#  predicted ~230–242 ms, 46.6–49.0% on an H100); `t5_b256_packed_rows32_mlp_rope_xent` is the first packed T5 extra
#  (the chain's own effect: predicted −1.5 to −2.2 ms); `check_packing_t5_rows` checks the chain (EQUAL); the
#  trainer row sets it. Later the same session: `model.residual_add="gemm"` (each residual add folded into the
#  GEMM before the norm as its C operand, the norm kernel reading the sum once): the three best rows and the
#  trainer take it — floors (H100 / H200) GPT-2-gelu best 50.42 / 48.32 ms (predicted ~54.9 ms, ~51.7% on an
#  H100), packed T5 rows32 best 227.93 / 216.15 (~226–238 ms, 47.7–50.2%), the 1B best 382.05 / 373.15 (~396 ms,
#  ~65%); the card pays part of it back in the GEMMs' epilogues. The old best rows are extras
#  (`gpt2_gelu_mlp_xent` first, `1b_b16_mlp_rope_xent`); `check_packing_t5_rows` checks it (--norm=auto). The second
#  extra, `t5_b256_packed_rows32_adds`, is the main row `t5_b256_packed_rows32` with only these two XLA-side changes
#  (no kernels of ours but the norm's): floor 260.27 → 253.55 ms, 44.7% — packed T5's 45% needs the MLP kernels.
#  NEW 2026-11-29 (tenth session without a device): `model.qkv_chain` (`--qkv_chain`: each self-attention's normed
#  input gets its gradient as one sum — cuBLAS's C operands, or one rotary dgrad kernel for q and k — so the norm's
#  backward reads one tensor less). The three best rows, `check_packing_t5_rows` and the trainer take it; floors
#  (H100 / H200): GPT-2-gelu best 50.22 / 48.18 ms (predicted ~54.6 ms, ~51.8% on an H100), packed T5 rows32 best
#  226.87 / 215.40 (~225–236 ms, 47.9–50.4%), the 1B best 381.12 / 372.49 (~395 ms, ~65.3%). The first extra,
#  `gpt2_gelu_adds`, is the GPT-2 best row without it (predicted −0.1 to −0.3 ms on the same machine).
#  Later the same session: `optim.global_norm` (the clip's and the grad_norm metric's norm in a few reductions:
#  GPT-2's program 206 → 43 reduction kernels) and `--param_copy` in the GPT-2 and 1B best rows (the optimizer
#  writes the bf16 kernels; run 7: the 1B −0.79 ms): floors GPT-2-gelu best 49.64 / 47.63 ms (predicted ~54.0 ms,
#  ~52.4% on an H100), the 1B best 380.39 / 371.93 (~394 ms, ~65.5%); packed T5 (Adafactor, no clip) unchanged.
#  The second extra, `gpt2_gelu_best_chunk32k`, is the GPT-2 best row with the whole batch as one loss chunk (bf16
#  logits [32768, 50304], no chunk loop): floor 49.64 → 49.45 ms, compiled memory 11.74 → 13.97 GiB.
#  The first extra is now `t5_b256_packed_rows32_learned_adds`: packed T5 with no GEMM kernels of ours (only the norm
#  kernel), learned positions (T5 itself has a relative position bias, neither learned nor rotary), the chains, the
#  gemm adds and the dot merger off — the packed target's fallback if the MLP kernels disappoint on the card: floor
#  244.81 ms, 46.3% (with rotary and `tuned`: 251.99, 44.9%); predicted ~242–255 ms, 44.4–46.8% on an H100.
#  NEW 2026-11-29 (eleventh session without a device): `gpt2_gelu_best` and `t5_b256_packed_rows32_best` are
#  profiled (3 steps after the timed windows, outside them): their summaries set every kernel against its floor
#  on the card (`profile_summary`'s "largest gap" rows) — the first measurement of our Triton kernels inside a
#  whole step, and where GPT-2's ~4 ms between floor and figure lie (GEMM rate, attention, or time between
#  kernels: `idle`). NOPROFILE=1 drops them in a short second call.
#  And every row on a card the roofline has rates for (H100, H200) now prices the program it timed (`bench`'s
#  `floor_ms`, `vs_floor`: the table's "floor … ×…"): the ratio each prediction here is built on, measured per row
#  on the card's own XLA, not taken from run 7's kinds.
#  And what the second call was for now runs in the first, right after the main rows (before the trainer row): if
#  `check_mlp_t5`/`_mgpu` found a setting ≥ 2% faster than the default (within the error bound), the packed T5 best
#  row again with it (`t5_b256_packed_rows32_best_mlptiles`), or without the MLP kernels if XLA's GEMMs beat every
#  setting (`_nomlp`); the same for GPT-2's best row from `check_xent_gpt2` (`gpt2_gelu_best_xenttiles`, `_noxent`)
#  and from `check_mlp_gpt2_gelu`, now the last main row (five settings; `gpt2_gelu_best_mlptiles`, `_nomlp`; last, so
#  that a late start drops it rather than the 1B row).
#  `gpt2_gelu_mlp` (the MLP kernels alone) moved to the extras to make room: the check and `_nomlp` answer its question.
#  The trainer row takes its MLP setting from the same rule (one reading of the checks, not two): XLA's GEMMs unless a
#  setting within the bound beat them, then the default or the ≥ 2% faster setting (`--config.model.mlp_tiles`).
#  Corrected floor: `global_norm` (the step's grad_norm metric) moved packed T5 too — `t5_b256_packed_rows32_best`
#  226.00 / 214.59 ms (H100 / H200; was 226.87 / 215.40), predicted ~224–236 ms, 48.0–50.5% on an H100.
#  Rehearsed both ways (SMOKE's interpreted kernels lose to XLA: the `_no…` rows ran; a results file with a faster
#  Mosaic setting: the `_mlptiles` row).
# The plan before that revision (run 7, notes/perf.md "Seventh H100 run": the 1B at 60.2%, padded T5
# grouped 45.9%, packed grouped 42.6%; the packed path without its selects NaN under command buffers):
#  - T5 UL2 at B=256, packed, with the optimizer grouped by shape (configs/ul2.py:base sets it now),
#    profiled, against the plain packed row: run 7 measured −1.02 ms packed against −4.00 ms padded for
#    the same optimizer change — the profile says where the packed step's other 3 ms went;
#  - GPT-2 with GPT-2's own MLP and positions (`gpt2_124m_gelu`: dense tanh-GELU d_ff 3072, a learned
#    position table, no rotary; the same weights and FLOPs) against `gpt2_fusednorm`, same machine. The
#    deviceless H100 roofline: 58.65 → 54.89 ms (−3.76: rotary's passes −1.69, the gate's −2.07; the
#    up-projection's GELU is a cuBLASLt GELU_AUX epilogue in both). Predicted −3.5 to −4 ms measured
#    (run 7's GPT-2 ran 1.10× its roofline): ~60.8 ms, ~46.5% — still 9 ms from 55%;
#  - GPT-2 with and without donating the state (`--no_donate`, the cheap program): every row's host call
#    takes most of its step (T5 216-239 of 247-268 ms, GPT-2 46 of 65), and for the same question GPT-2
#    with XLA's command buffers off (`tuned_ops`) and with 30% of the card for JAX's allocator
#    (`--mem_fraction=0.3`): ~20 s each (the last is the first's program); predictions below;
#  - padded T5 grouped with and without the bf16 kernel copy, one machine (run 7 compared them across
#    machines: +1.33 ms, inconclusive; roofline −0.5 ms);
#  - the packed, grouped, copied step; then the trainer row (the base preset, now grouped), then extras:
#    first packed T5 grouped with learned positions instead of rotary (`--positions=learned`; T5.1.1 itself
#    has neither — a relative position bias, which cuDNN's flash path would have to read as a bias): the
#    deviceless roofline 254.32 → 247.12 ms (rotary's passes over 131K encoder rows are 7.2 ms); predicted
#    −6.5 to −7.5 ms against `t5_b256_packed_grouped` (run 7 ran 1.045× its roofline): ~258.5 ms, ~43.8% —
#    packed stays under 45% even so; then the 1B with and without the copy again (run 7: −0.79 ms).
#  The step call, read by position (every row now logs `call_ms_by_position`; windows start with the
#  device idle): run 7's averages fit "the host runs a fixed number of steps ahead, then each call waits
#  about a step": (n − k)/n of the step for n calls per window gives k ≈ 1.2 (T5, n=10), 1.4 (1B, 15),
#  4.4 (GPT-2, 15). XLA's source (2026 head) rules out the usual suspects for this: the GPU client frees a
#  step's temporaries as soon as its last kernel is enqueued (kComputeSynchronized), waits on the host
#  for donated inputs only until their events are recorded, and allows 32 executions in flight (more than
#  a window holds), so the previous plan's guess (donation) is unlikely. Predicted: position 0 short (< 5 ms) and the rest ≈ the step in every row, k set by
#  the row (GPT-2 larger); if `gpt2_mem30` has a smaller k the depth is memory (allocation waits for the
#  previous step's buffers despite the above), if `gpt2_nocb` has a larger one it is the command buffers'
#  update of a graph still running, if `gpt2_nodonate` has a larger one it is donation. None of these
#  costs throughput (the pipeline rows are within 0.6%); the question is only what bounds the lead.
#  The card: the only kind lent since 2026-11-28 is `nvidia-h200` — the H100's processor (the same
#  matrix rates) with 141 GB of HBM3e at 4.8 TB/s (4.3 TB/s copy measured there). The script runs
#  unchanged on it; its figures are H200 figures, and the issue's bars are an H100's. Predictions per
#  card (deviceless rooflines `bench --target=h100|h200` of each row, jax 0.10.2; an H200 row predicted as
#  run 7's H100 figure × its roofline's H200/H100 ratio, a new row as its roofline × run 7's ratio of
#  the same kind, 1.10 GPT-2 / 1.045 packed T5):
#      row                      H100 roofline  H200 roofline  run 7 (H100)     H200 predicted
#      gpt2_fusednorm               58.65          54.15      64.61, 43.8%     ~59.7 ms, ~47.5%
#      gpt2_gelu                    54.89          51.45      (~60.5, ~46.8%)  ~56.7 ms, ~49.9%
#      t5_b256_packed_grouped      254.32         234.99      265.86, 42.6%    ~245.7 ms, ~46.1%
#      t5_b256_packed_learned      247.12         229.92      (~258.2, ~43.9%) ~240.3 ms, ~47.1%
#      t5_b256_grouped             248.50         230.36      246.78, 45.9%    ~228.8 ms, ~49.5%
#      1b_b16_fusednorm            413.81         395.46      428.90, 60.2%    ~409.9 ms, ~63.0%
#  i.e. on an H200 every target but GPT-2's would be passed, by the bandwidth the H100 lacks.
#  - NEW, second row: packed T5 with `--packed_rows=32` (the packer lets at most 32 of 256 rows hold two
#    examples and puts them last; no row goes through cuDNN's packed layout: every row through the padded
#    one for its first example, the 32 rows' second examples through it again, rolled to the front;
#    `models/transformer.py` MixedLayout), against `t5_b256_packed_grouped` on the same machine. The
#    roofline cannot price it (it counts every call at full work and knows no per-slot cost: 254.32 →
#    259.22 ms). Predicted from run 7's profiles: attention 52.9 → ~40.5 ms (the padded layout's 38.5 plus
#    the packed batch's extra tokens and the second call's passes), element-wise −2.5 (the selects gone,
#    rolls added), copies +1.2: ~−13.7 ms, **~252 ms, ~44.9%** on an H100 (~234 ms, ~48.4% on an H200);
#    its pipeline column says the capped packer keeps up. Then `check_packing_t5_rows` (the cuDNN path with packed_rows against XLA's
#    attention one example per row, loss and gradient: must say EQUAL, or the timing means nothing), and
#    the same row with learned positions (roofline 259.22 → 253.36): ~246 ms, **~46.0%** on an H100.
#  A second, short call (≥ 240 s of budget left), e.g. the packed comparison with longer windows:
#    ROWS="t5_b256_packed_grouped t5_b256_packed" ARGS_EXTRA="--steps=30 --warmup=4" NOPROFILE=1
#    CALL_LIMIT=215 DEADLINE=175 COMPILE_TIMEOUT=100 bash notes/gpu_run.sh
#  or the `_mlp` rows with the tile setting `check_mlp_t5` found fastest (a later --mlp_tiles wins), e.g.
#    ROWS="t5_b256_packed_rows32_mlp t5_b256_packed_rows32_best gpt2_gelu_best 1b_b16_best" NOPROFILE=1 CALL_LIMIT=215 DEADLINE=175
#    COMPILE_TIMEOUT=100 ARGS_EXTRA="--mlp_tiles=mgpu:128,64,64,2|mgpu:128,64,64,3" bash notes/gpu_run.sh
VARIANTS=(
  "check_mlp_t5|$T --batch=$CHECK_B --check_mlp --steps=10 --mlp_tiles=$MLP_TILES"
  "check_mlp_t5_mgpu|$T --batch=$CHECK_B --check_mlp --steps=10 --mlp_tiles=$MLP_TILES_MGPU"
  "t5_b256_packed_rows32_mlp|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident,ul2_packed_pipeline --group_leaves --packed_rows=32 --mlp_impl=auto"
  "t5_b256_packed_rows32|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --packed_rows=32"
  "t5_b256_packed_rows32_best|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --packed_rows=32 --mlp_impl=auto --rope_impl=auto --xent_impl=auto --cross_kv_chain --residual_add=gemm --xla_flags=tuned_nomerge --qkv_chain --profile=/tmp/trace_t5_best"
  "check_packing_t5_rows|$T --batch=32 --layers=2 --attention=cudnn --padding_lengths --loss_chunk=8192 --check_packing --packed_rows=8 --norm=auto --mlp_impl=auto --rope_impl=auto --xent_impl=auto --cross_kv_chain --residual_add=gemm --qkv_chain"
  "check_xent_gpt2|$GG --check_xent --loss_chunk=$XENT_CHUNK --steps=10 --xent_tiles=$XENT_TILES"
  "gpt2_gelu_best|$GG --attention=cudnn --loss_chunk=8192 --xla_flags=tuned_nomerge --norm=auto --steps=30 --warmup=4 --mlp_impl=auto --xent_impl=auto --residual_add=gemm --qkv_chain --param_copy --profile=/tmp/trace_gpt2_best"
  "1b_b16_best|$B1 --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4 --mlp_impl=auto --rope_impl=auto --xent_impl=auto --residual_add=gemm --qkv_chain --param_copy"
  "check_mlp_gpt2_gelu|$GG --batch=$CHECK_B_G --check_mlp --steps=10 --mlp_tiles=$MLP_TILES_G"
)
EXTRA=(
  "t5_b256_packed_rows32_learned_adds|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --packed_rows=32 --positions=learned --cross_kv_chain --residual_add=gemm --qkv_chain --xla_flags=tuned_nomerge"
  "gpt2_gelu_mlp|$GG --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4 --mlp_impl=auto"
  "gpt2_gelu_adds|$GG --attention=cudnn --loss_chunk=8192 --xla_flags=tuned_nomerge --norm=auto --steps=30 --warmup=4 --mlp_impl=auto --xent_impl=auto --residual_add=gemm"
  "gpt2_gelu_best_chunk32k|$GG --attention=cudnn --loss_chunk=32768 --xla_flags=tuned_nomerge --norm=auto --steps=30 --warmup=4 --mlp_impl=auto --xent_impl=auto --residual_add=gemm --qkv_chain --param_copy"
  "gpt2_gelu_mlp_xent|$GG --attention=cudnn --loss_chunk=8192 --xla_flags=tuned_nomerge --norm=auto --steps=30 --warmup=4 --mlp_impl=auto --xent_impl=auto"
  "t5_b256_packed_rows32_adds|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --packed_rows=32 --cross_kv_chain --residual_add=gemm"
  "gpt2_gelu_mlp_nomerge|$GG --attention=cudnn --loss_chunk=8192 --xla_flags=tuned_nomerge --norm=auto --steps=30 --warmup=4 --mlp_impl=auto"
  "gpt2_gelu|$GG --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4"
  "1b_b16_mlp_rope_xent|$B1 --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4 --mlp_impl=auto --rope_impl=auto --xent_impl=auto"
  "1b_b16_fusednorm_mlp|$B1 --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4 --mlp_impl=auto"
  "t5_b256_grouped_mlp|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_resident --group_leaves --mlp_impl=auto"
  "t5_b256_packed_rows32_mlp_rope_xent|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --packed_rows=32 --mlp_impl=auto --rope_impl=auto --xent_impl=auto --xla_flags=tuned_nomerge"
  "t5_b256_packed_rows32_mlp_rope|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --packed_rows=32 --mlp_impl=auto --rope_impl=auto --xla_flags=tuned_nomerge"
  "t5_b256_packed_rows32_mlp_nomerge|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --packed_rows=32 --mlp_impl=auto --xla_flags=tuned_nomerge"
  "gpt2_fusednorm_mlp|$G --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4 --mlp_impl=auto"
  "gpt2_fusednorm|$G --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4"
  "t5_b256_packed_rows32_learned_mlp|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --packed_rows=32 --positions=learned --mlp_impl=auto --xla_flags=tuned_nomerge"
  "t5_b256_packed_grouped|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --profile=/tmp/trace_t5pg"
  "check_mlp_1b|$B1 --check_mlp --steps=10 --mlp_tiles=$MLP_TILES"
  "t5_b256_packed_rows32_learned|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --packed_rows=32 --positions=learned"
  "1b_b16_fusednorm|$B1 --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4"
  "t5_b256_grouped|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_resident --group_leaves"
  "gpt2_nodonate|$G --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4 --no_donate"
  "gpt2_nocb|$G --attention=cudnn --loss_chunk=8192 --xla_flags=tuned_ops --norm=auto --steps=30 --warmup=4"
  "gpt2_mem30|$G --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4 --mem_fraction=0.3"
  "t5_b256_packed|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident,ul2_packed_pipeline"
  "t5_b256_grouped_copy|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_resident --group_leaves --param_copy"
  "t5_b256_packed_grouped_copy|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --param_copy"
  "t5_b256_packed_learned|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --group_leaves --positions=learned"
  "1b_b16_fusednorm_copy|$B1 --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=30 --warmup=4 --param_copy"
  "t5_b256_nodonate|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_resident --group_leaves --no_donate"
  "check_unwritten_t5|$T --batch=32 --attention=cudnn --xla_flags=tuned --check_unwritten"
  "t5_b256_fusednorm_data|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_resident,ul2_pipeline,synthetic"
  "check_packing_t5|$T --batch=32 --layers=2 --attention=cudnn --padding_lengths --loss_chunk=8192 --check_packing"
  "gpt2_fusednorm_copy|$G --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --param_copy"
  "check_unwritten_t5_nocb|$T --batch=32 --attention=cudnn --xla_flags=tuned_ops --check_unwritten"
  "t5_b256_packed_ms4|$TB --optimizer=adafactor --norm=auto --steps=20 --warmup=4 --data=ul2_packed_resident --max_segments=4"
  "1b_b16|$B1 --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --steps=30 --warmup=4"
  "gpt2_ops_profile|$G --attention=cudnn --loss_chunk=8192 --xla_flags=tuned_ops --norm=auto --steps=4 --warmup=2 --profile=$OUT/trace_gpt2_ops"
  "t5_b256_adafactor_data|$TB --optimizer=adafactor --steps=20 --warmup=3 --data=ul2_resident,synthetic"
  "gpt2_best|$G --attention=cudnn --loss_chunk=8192 --xla_flags=tuned"
  "gpt2_gemm_fusion|$G --attention=cudnn --loss_chunk=8192 --xla_flags=gemm_fusion --norm=auto --profile=/tmp/trace_gpt2_gf"
  "gpt2_xla_default|$G --attention=cudnn --loss_chunk=8192 --xla_flags=none --norm=auto"
  "1b_b20|$B2 --attention=cudnn --loss_chunk=8192 --xla_flags=tuned --norm=auto --steps=6 --warmup=2"
)
# A short call (what a second call of a session can afford): ROWS="tag ..." runs only those rows, in
# that order, as main rows ("trainer" for the trainer row; no extra rows); ARGS_EXTRA is appended to
# every row's flags (the last of a repeated flag wins: "--steps=30 --warmup=4"); NOPROFILE=1 drops
# the rows' --profile. E.g. (run 5b) ROWS="1b_b16_fusednorm 1b_b16 t5_b256_fusednorm gpt2_fusednorm"
# ARGS_EXTRA="--steps=30 --warmup=4" NOPROFILE=1 CALL_LIMIT=215 DEADLINE=175 COMPILE_TIMEOUT=100.
if [[ -n ${ROWS:-} ]]; then
  picked=()
  for want in $ROWS; do
    for v in "${VARIANTS[@]}" "${EXTRA[@]}"; do [[ ${v%%|*} == "$want" ]] && picked+=("$v"); done
  done
  VARIANTS=("${picked[@]}"); EXTRA=()
fi
for i in "${!VARIANTS[@]}"; do
  v="${VARIANTS[$i]} ${ARGS_EXTRA:-}"
  [[ ${NOPROFILE:-0} == 1 ]] && v=$(echo "$v" | sed 's/ --profile=[^ ]*//')
  VARIANTS[$i]=$v
done
RUN_TRAINER=1
[[ -n ${ROWS:-} && " $ROWS " != *" trainer "* ]] && RUN_TRAINER=0

# The trainer itself (`paperjax.main`, needs the carried ml_collections and grain): T5-base UL2 from
# configs/ul2.py:base as it stands (cuDNN, lengths, fused CE, fused norm, Adafactor, unfused projections,
# packed two to a row) with packed_rows=32 (the capped packer and MixedLayout) and the MLP kernels
# (mlp_impl=auto, if check_mlp_t5 found them right and faster; ≈ t5_b256_packed_rows32_mlp) at B=256, fed by the real grain pipeline (Python's docs + stdlib code, byte tokens padded to the
# base's 32K vocab). Its metrics.jsonl logs step time, tokens/s, MFU and the host's input and
# device-wait time per 10-step window; the first window starts after the compiled first step.
# Stops at step 30 (no final eval).
TR="--config=configs/ul2.py:base --config.data.source=builtin:pydoc+stdlib_code --config.data.tokenizer=byte
 --config.data.max_chars=20000000 --config.data.batch_size=256 --config.model.packed_rows=32 --config.model.mlp_impl=auto
 --config.model.cross_kv_chain=True --config.model.residual_add=gemm --config.model.qkv_chain=True
 --config.train.stop_at=30 --config.train.log_every=10 --config.train.eval_every=0 --config.train.ckpt_every=0
 --config.train.ckpt_every_s=0 --xla_flags=tuned"   # paperjax.launch.preflight takes the same flags
if [[ ${SMOKE:-0} == 1 ]]; then
  TR="$TR --config.data.batch_size=8 --config.train.stop_at=6 --config.train.log_every=2 --config.model.d_model=64
 --config.model.num_heads=2 --config.model.head_dim=32 --config.model.d_ff=128 --config.model.num_layers=1
 --config.model.num_encoder_layers=1"
fi
# Only the main rows' programs and the trainer's step: the extra rows compile in their own rows (a
# cache miss costs them 15-60 s), so phase 1's T5 compiles share the CPU and the GPU's autotuner with
# three processes instead of seven (run 4: both T5 compiles were still running at 120 s while the
# decoders' took 10-18 s; a T5 step not in the cache by then costs its row a cold compile).
echo "== phase 1: compile the main rows' programs and the trainer's step in parallel (timeout ${COMPILE_TIMEOUT}s), t=$(el)s"
pids=()
for v in "${VARIANTS[@]}"; do
  tag=${v%%|*}; args=${v#*|}
  [[ $tag == check_* ]] && continue   # a check compiles its own two small programs in phase 2
  [[ $args == *--mem_fraction* ]] && continue   # the same program as its row without it (a cache hit then)
  [[ ${SMOKE:-0} == 1 ]] && args="${args//cudnn/xla} --steps=2 --warmup=1"
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout -k 5 "$COMPILE_TIMEOUT" $PY -m paperjax.bench $args --compile_only --progress \
    --compilation_cache="$CACHE" --tag="$tag" --json="$OUT/compile.jsonl" > "$LOGS/compile_$tag.log" 2>&1 &
  pids+=($!)
done
# The trainer's own step too: `paperjax.launch.preflight --topology=local` with the trainer's config
# and flags compiles the step the trainer will run into the same cache (same key: tests/test_preflight.py),
# so the trainer row starts from a cache hit instead of its own compile.
if (( RUN_TRAINER )) && $PY -c "import ml_collections, grain" 2>/dev/null; then
  XLA_PYTHON_CLIENT_PREALLOCATE=false PAPERJAX_COMPILATION_CACHE="$CACHE" timeout -k 5 "$COMPILE_TIMEOUT" \
    $PY -m paperjax.launch.preflight $TR --topology=local > "$LOGS/compile_trainer.log" 2>&1 &
  pids+=($!)
fi
for p in "${pids[@]}"; do wait "$p"; done
for f in "$LOGS"/compile_*.log; do echo "--- $f"; tail -4 "$f"; done > "$OUT/compile.log"
grep -h "compile only\|preflight:\|estimated peak\|Error\|error" "$LOGS"/compile_*.log | cut -c1-200 | head -30
echo "== phase 1 done, t=$(el)s"

run_rows() {  # each row its own process (XLA flags are per process), loading its program from the cache
  local start_by=$1; shift   # no row starts after this; a started row may run to the call's end
  for v in "$@"; do
    tag=${v%%|*}; args=${v#*|}
    [[ ${SMOKE:-0} == 1 ]] && args="${args//cudnn/xla} --steps=2 --warmup=1"
    left=$(( start_by - $(el) ))
    if (( left < 0 )); then echo "-- skip $tag: past its start deadline"; continue; fi
    left=$(( CALL_LIMIT - 30 - $(el) ))
    if (( left < 25 )); then echo "-- skip $tag: ${left}s left in the call"; continue; fi
    lim=$(( left < 240 ? left : 240 ))   # a T5 process needed ~130 s after its cached compile (run 4)
    echo "-- $tag (limit ${lim}s, t=$(el)s): $args"
    timeout -k 5 "$lim" $PY -m paperjax.bench $args --progress --compilation_cache="$CACHE" --tag="$tag" \
      --json="$OUT/results.jsonl" 2>&1 | grep -v "^\s*$" | grep -v "^[IWE][0-9]\{4\} " | tail -45 \
      || echo "!! $tag failed or timed out (rc=$?)"
  done
}

echo "== phase 2: timed runs, one at a time"
run_rows "$DEADLINE" "${VARIANTS[@]}"
echo "== phase 2 done, t=$(el)s"
# What a second call used to be for, right after the main rows (before the trainer row, which runs only if
# 150 s are left after them): the best rows again with the setting the checks
# found fastest, when it is not the default (≥ 2% faster, within the error bound), or without the kernel when
# XLA's path beat every setting. `tag|flags` lines: the base row's flags (no profile) + the override (the last
# of a repeated flag wins).
TUNED=(); TRAINER_MLP=xla   # the trainer row's MLP: XLA's unless check_mlp_t5 found a setting that beats it
while IFS='|' read -r base tag extra; do
  if [[ $base == trainer ]]; then TRAINER_MLP=$extra; continue; fi
  for v in "${VARIANTS[@]}"; do
    [[ ${v%%|*} == "$base" ]] && TUNED+=("$tag|$(echo "${v#*|}" | sed 's/ --profile=[^ ]*//') $extra")
  done
done < <($PY - "$OUT/results.jsonl" <<'PYEOF'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else []
def pick(checks, key, good, base, knob, impl_flag):
  cases, default, xla = {}, None, None  # setting → ms over the check rows; the first row's first is the default
  for r in sorted((r for r in rows if r.get("tag") in checks), key=lambda r: checks.index(r["tag"])):
    for name, c in r[key].items():
      if name == "xla":
        xla = xla or c.get("ms")
        continue
      default = default or name[len("pallas["):-1]
      if "error" not in c and c.get(good):
        cases.setdefault(name[len("pallas["):-1], c["ms"])
  if not cases or xla is None:
    return None  # no check, or no setting within the bound: XLA's path
  best = min(cases, key=cases.get)
  if cases[best] > xla:
    print(f"{base}|{base}_no{knob}|{impl_flag}")
    return None
  if best != default and cases[best] < 0.98 * cases.get(default, float("inf")):
    print(f"{base}|{base}_{knob}tiles|--{knob}_tiles={best}")
    return best
  return "default"  # the default setting (the step rows' and the trainer's own)
mlp = pick(("check_mlp_t5", "check_mlp_t5_mgpu"), "mlp_cases", "within", "t5_b256_packed_rows32_best", "mlp", "--mlp_impl=xla")
print(f"trainer|mlp|{'xla' if mlp is None else mlp}")  # the same rule for the trainer row
pick(("check_xent_gpt2",), "xent_cases", "equal", "gpt2_gelu_best", "xent", "--xent_impl=xla")
pick(("check_mlp_gpt2_gelu",), "mlp_cases", "within", "gpt2_gelu_best", "mlp", "--mlp_impl=xla")
PYEOF
)
(( ${#TUNED[@]} )) && printf -- "-- from the checks: %s\n" "${TUNED[@]%%|*}"
echo "-- the trainer row's MLP from the checks: $TRAINER_MLP"
run_rows "$(( DEADLINE + 60 ))" "${TUNED[@]}"
echo "== rows from the checks done, t=$(el)s"

left=$(( CALL_LIMIT - 60 - $(el) ))   # keep a minute for the extra rows and the table
if (( ! RUN_TRAINER )); then
  echo "-- trainer_ul2_base not in ROWS"
elif ! $PY -c "import ml_collections, grain" 2>/dev/null; then
  echo "-- skip trainer_ul2_base: ml_collections or grain missing (bash notes/fetch_wheels.sh, carry .whl)"
elif (( left < 150 )); then
  echo "-- skip trainer_ul2_base: ${left}s left before the call limit"
else
  # The MLP kernels in the trainer only if the checks found a setting (within the bound) faster than XLA's
  # GEMMs, and then that setting (the rule of the rows from the checks, above); else the trainer row runs without.
  if [[ $TRAINER_MLP == xla ]]; then
    TR="${TR/--config.model.mlp_impl=auto/--config.model.mlp_impl=xla}"
    echo "-- trainer_ul2_base without the MLP kernels (check_mlp_t5 missing, ABOVE, or XLA's GEMMs faster)"
  elif [[ $TRAINER_MLP != default ]]; then
    TR="$TR --config.model.mlp_tiles=$TRAINER_MLP"
  fi
  echo "-- trainer_ul2_base (limit $(( left - 10 ))s, t=$(el)s)"
  rm -rf /tmp/trainer_ul2
  PAPERJAX_COMPILATION_CACHE="$CACHE" timeout -k 5 $(( left - 10 )) $PY -m paperjax.main $TR --workdir=/tmp/trainer_ul2 2>&1 | grep -v "^[IW][0-9]" | tail -12
  cp /tmp/trainer_ul2/metrics.jsonl "$OUT/trainer_ul2_metrics.jsonl" 2>/dev/null
  $PY - /tmp/trainer_ul2/metrics.jsonl <<'PYEOF' 2>&1 | tee -a "$OUT/table.txt"
import json, sys
for r in map(json.loads, open(sys.argv[1])):
  if "step_time_s" in r:
    print(f"trainer_ul2_base step {r['step']:>4}: {1e3 * r['step_time_s']:8.2f} ms/step  {r.get('tokens_per_s', 0) / 1e3:8.1f}K tok/s  "
          f"MFU {100 * r.get('mfu', 0):5.1f}%  loss {r['loss']:.3f}  input {1e3 * r.get('input_time_s', 0):6.2f} ms  "
          f"dispatch {1e3 * r.get('dispatch_time_s', 0):6.2f} ms  device wait {1e3 * r.get('device_wait_s', 0):6.2f} ms  "
          f"examples/row {r.get('examples_per_row', 1):.3f}")
PYEOF
fi
echo "== trainer done, t=$(el)s"
run_rows "$(( CALL_LIMIT - 15 ))" "${EXTRA[@]}"

$PY - "$OUT/results.jsonl" <<'PYEOF' | tee -a "$OUT/table.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])] if __import__("os").path.exists(sys.argv[1]) else []
for r in [r for r in rows if "cases" in r]:  # --check_unwritten rows
  print(f"{r['tag']} on {r['device']} ({r['attention']}, B={r['batch']} L={r['length']}; NaN-filled memory first):")
  for name, c in r["cases"].items():
    print(f"  {name:18s} out {c['out']:6s} dq {c['dq']:6s} dk {c['dk']:6s} dv {c['dv']:6s} {'clean' if c['clean'] else 'NOT CLEAN'}")
def settings(cases, width, line):  # a check row's cases: one line each, or FAILED and the error
  for name, c in cases.items():
    print(f"  {name:{width}s} " + (f"FAILED {c['error'][:160]}" if "error" in c else line(c)))
for r in [r for r in rows if "mlp_cases" in r]:  # --check_mlp rows
  print(f"{r['tag']}: {r['mlp']} MLP, {r['rows']} rows × {r['d_model']} × {r['d_ff']} on {r['device']}, errors against "
        f"float32 ({'WITHIN' if r['ok'] else 'NOT ALL WITHIN'} {r['limit']:.1e}):")
  settings(r["mlp_cases"], 40, lambda c: f"{c['ms']:8.3f} ms {c['tflops']:6.1f} TFLOP/s  value {c['value']:.1e} "
           f"dx {c['dx']:.1e} dW {c['dw']:.1e} dWo {c['dwo']:.1e}{'' if c.get('within', True) else '  ABOVE'}")
for r in [r for r in rows if "xent_cases" in r]:  # --check_xent rows
  print(f"{r['tag']}: a loss chunk of {r['rows']} rows × {r['vocab']} on {r['device']} "
        f"({'EQUAL to XLA' if r['ok'] else 'NOT ALL EQUAL'}; GB/s = one read and one write over the time):")
  settings(r["xent_cases"], 28, lambda c: f"{c['ms']:8.3f} ms {c['gbps']:7.0f} GB/s  lse {c['lse']:.1e} "
           f"dlogits {c['dlogits']:.1e}")
for r in [r for r in rows if "examples" in r and "ok" in r]:  # --check_packing rows
  print(f"{r['tag']}: {r['examples']} examples in {r['rows']} packed rows, loss rel {r['loss_rel']:.2e}, "
        f"gradient rel {r['grad_rel']:.2e} on {r['device']} ({r['attention']}): {'EQUAL' if r['ok'] else 'DIFFERENT'}")
rows = [r for r in rows if "ms_per_step" in r]
print(f"\n{'variant':<30} {'B':>4} {'ms/step':>8} {'tok/s':>9} {'TFLOP/s':>8} {'MFU full':>8} {'MFU caus':>8} {'peakGiB':>7} {'compile':>7} {'loss':>6} {'call ms':>7}")
for r in rows:
  print(f"{r['tag']:<30} {r['batch']:>4} {r['ms_per_step']:>8.2f} {r['tokens_per_s']/1e3:>8.1f}K {r['tflops_full']:>8.1f} "
        f"{100*r.get('mfu_full', 0):>7.1f}% {100*r.get('mfu_causal', 0):>7.1f}% {r.get('peak_mem_gb') or 0:>7.2f} {r['compile_s']:>6.1f}s {r['loss']:>6.3f}"
        f" {r.get('call_ms_per_step', 0):>7.2f}"
        + (f"  floor {r['floor_ms']:.1f} ×{r['vs_floor']:.3f}" if "vs_floor" in r else "")
        + (f"  fill {100 * r['fill']:.1f}%" if "fill" in r else "")
        + (f"  call by position {' '.join(f'{x:.0f}' for x in r['call_ms_by_position'][:4])} …" if r.get("call_ms_by_position") else ""))
  for name, d in list(r.get("by_data", {}).items())[1:]:
    print(f"  {'data=' + name:<28} {'':>4} {d['ms_per_step']:>8.2f} {d['tokens_per_s']/1e3:>8.1f}K {d['tflops_full']:>8.1f} "
          f"{100*d.get('mfu_full', 0):>7.1f}% {100*d.get('mfu_causal', 0):>7.1f}%   {100*d['vs_first']:+.2f}% vs {r['data'].split(',')[0]}")
if rows:
  print(f"device: {rows[0]['device']}, jax {rows[0]['jax']}; MFU full = (6N + 12·L·H·K·T)·tok/s / peak, causal = half the causal attention term; floor = the roofline of the row's own program on this card, ×: measured / floor")
PYEOF
echo "== end, t=$(el)s"
