"""UL2: Unifying Language Learning Paradigms (Tay et al., ICLR 2023) — Mixture-of-Denoisers.

Presets (pick with `--config=configs/ul2.py:<preset>`; add `,objective=span|causal|ul2` for the
baselines of the paper's comparison):

  tiny   (default) encoder-decoder 2+2 layers, d=128, byte-level tokens, on Python's own
         documentation and stdlib sources (`builtin:pydoc+stdlib_code`), offline, 2 CPU cores:
           python -m paperjax.main --config=configs/ul2.py
         Expect: ~3 min on 2 cores (≈0.33 s/step), train loss ≈ 2 nats/byte after 400 steps; the
         summary lists train and eval loss per denoiser, with its own and with a mismatched mode token.
  base   T5.1.1-base-shaped encoder-decoder (12+12, d=768, 12 heads, gated d_ff=2048, SentencePiece
         32K) on `tfds:c4/en` (prepare it first: `tfds build c4 --config=en`), inputs 512 / targets
         128, bf16, one accelerator host (8 GPUs or a v5e-8 / v4-8 slice), 500K steps:
           python -m paperjax.main --config=configs/ul2.py:base --workdir=gs://…/ul2-base
         Expect: the T5-base regime (C4 validation span-corruption loss ≈ 1.9 nats/token at 500K steps,
         unverified at this scale in this codebase).
  large  ~1B encoder-decoder (24+24, d=1536), FSDP over a pod slice (v4-64 / 32×H100), layer scan +
         remat; same data:
           python -m paperjax.main --config=configs/ul2.py:large --workdir=gs://…/ul2-large
"""

from paperjax import config_lib

PRESETS = ("tiny", "base", "large")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("ul2")
  c.preset = preset

  c.model = dict(
      kind="encdec", d_model=128, num_heads=4, head_dim=32, d_ff=384, num_layers=2, num_encoder_layers=2,
      activation="gelu", dropout=0.0, dtype="float32", param_dtype="float32", logits_dtype="float32",
      tie_embeddings=True, scan_layers=False, remat="none", attention_impl="auto", padding_as_lengths=False,
      fused_projections=False, norm_impl="xla",   # "auto"/"pallas": fused residual-add + RMSNorm GPU kernels
      loss_chunk=0, loss_impl="fused", z_loss=0.0,
      max_segments=2,   # data.pack: most examples in a row (cuDNN pays per slot; transformer.py)
      packed_rows=0,    # data.pack: >0, only that many rows (last) hold several; no packed layout (MixedLayout)
      mlp_impl="xla", mlp_tiles="",   # "auto"/"pallas": the MLP's gate inside GEMM kernels of ours (fused_mlp.py)
      rope_impl="xla",                # "auto"/"pallas": rotary inside the q/k projections' GEMM kernel (fused_rope.py)
      xent_impl="xla", xent_tiles="",  # "auto"/"pallas": the loss chunks' lse and gradient in one kernel (fused_xent.py)
      cross_kv_chain=False,  # the encoder output's gradient summed inside the decoder's K/V GEMMs (transformer.py)
      residual_add="norm",   # "gemm": with norm_impl auto/pallas, each residual add in the GEMM before the norm
      qkv_chain=False)       # self-attention's input gradient summed inside the q/k/v GEMMs (transformer.py)
  # The kernel options above, cross_kv_chain, residual_add="gemm" and qkv_chain are untimed on a card (notes/perf.md):
  # opt-in, off by default.

  # Mixture-of-Denoisers (paper §3.1.2 and the UL2-20B configuration in its appendix):
  # R: (μ=3, r=.15), (8, .15) with [NLU]; X: (3, .5), (8, .5), (64, .15), (64, .5) with [NLG];
  # S: prefix-LM with [S2S]. Rates: R 40%, X 40%, S 20%, split evenly inside each group.
  c.ul2 = dict(
      objective=kv.pop("objective", "ul2"),   # ul2 | span (T5 span corruption only) | causal (causal LM only)
      inputs_length=96, targets_length=96,
      mode_tokens=True,
      # Held-out tasks of the paper's comparison: infilling (R) and suffix-given-prefix (S).
      eval_batch_size=32,
  )
  c.data.raw_length = 94    # 96 minus the mode token and eos: no denoiser drops or truncates a token
  c.data.batch_size = 32
  # Several examples per row (T5X packs its pretraining tasks; data/pipeline.py `Packing`; logs
  # examples_per_row): at 512/128 the mixture fills 60% of the input and 81% of the target positions
  # unpacked; packed two to a row at most, 1.084 examples a row fill 65% / 88% (notes/perf.md). On in
  # the base and large presets: on one H100 the packed step is 6.6% longer and holds 8.5% more real
  # tokens (cuDNN's packed layout checked against XLA's attention there: `bench --check_packing`).
  # Off at the toy default's 96/96, where every denoiser's input is at least 50 tokens long (1.00
  # examples a row).
  c.data.pack = False
  c.optimizer.lr = 3e-3
  c.optimizer.warmup_steps = 40
  c.train.steps = 400
  c.train.log_every = 25
  c.train.eval_every = 200
  c.train.eval_batches = 4
  c.train.ckpt_every = 200

  if preset == "base":
    c.model.update(d_model=768, num_heads=12, head_dim=64, d_ff=2048, num_layers=12, num_encoder_layers=12,
                   dtype="bfloat16", attention_impl="auto", padding_as_lengths=True, loss_chunk=8192,
                   tie_embeddings=False, norm_impl="auto")
    # notes/perf.md (one H100): cuDNN attention, encoder padding as lengths and the fused
    # cross-entropy take the T5-base UL2 step from 47.5 to 45.3 ms at B=32; B=128 reaches 38% MFU;
    # at B=256 the fused residual-add + RMSNorm kernels ("auto": on GPUs only) 263.2 → 253.6 ms; run 6:
    # 251.2 ms padded (45.1%), 267.9 ms packed two to a row (42.3%, 8.5% more real tokens a step).
    # group_leaves: Adafactor once per group of equal-shaped leaves (~3000 small optimizer kernels →
    # ~670), the same numbers (the trainer's logged losses on the H100, all four digits); run 7, B=256, one
    # H100: padded 250.78 → 246.78 ms (45.2 → 45.9%), packed 266.88 → 265.86 ms (42.6%), peak memory
    # unchanged packed, +1.3 GiB padded.
    c.data.update(source="tfds:c4/en", tokenizer="sentencepiece", vocab_size=32000, raw_length=568,
                  batch_size=128, max_chars=0, pack=True)
    c.ul2.update(inputs_length=512, targets_length=128)
    c.optimizer.update(name="adafactor", lr=1e-2, warmup_steps=10_000, schedule="rsqrt", clip_norm=0.0, weight_decay=0.0,
                       group_leaves=True)
    c.train.update(steps=500_000, log_every=100, eval_every=5000, eval_batches=20, ckpt_every=5000, ckpt_every_s=1800.0)
  elif preset == "large":
    c.model.update(d_model=1536, num_heads=24, head_dim=64, d_ff=4096, num_layers=24, num_encoder_layers=24,
                   dtype="bfloat16", scan_layers=True, remat="dots_no_batch", tie_embeddings=False,
                   padding_as_lengths=True, loss_chunk=8192, norm_impl="auto")
    c.data.update(source="tfds:c4/en", tokenizer="sentencepiece", vocab_size=32000, raw_length=568,
                  batch_size=1024, pack=True)
    c.ul2.update(inputs_length=512, targets_length=128)
    c.mesh.shape = (1, -1, 1)   # FSDP over every chip
    # param_copy: Adafactor also writes the bf16 kernels the step reads, so the scanned, rematerialised
    # layers stop casting their fp32 kernels (forward and again in the recompute): the same numbers, and
    # on two H100s (deviceless compile, B=16) a roofline of 103.1 instead of 106.0 ms and 12.6 instead
    # of 13.2 GiB per device. (The base preset gains nothing: XLA already shares the cast's read there.)
    c.optimizer.update(name="adafactor", lr=1e-2, warmup_steps=10_000, schedule="rsqrt", clip_norm=0.0, weight_decay=0.0,
                       param_copy="bfloat16")
    c.train.update(steps=1_000_000, log_every=100, eval_every=10_000, eval_batches=20, ckpt_every=5000, ckpt_every_s=1800.0)

  for k, v in kv.items():  # remaining `key=value` pairs of the arg: train.steps, seed, ...
    if k in ("steps",):
      c.train.steps = int(v)
    elif k == "seed":
      c.seed = int(v)
    else:
      raise ValueError(f"Unknown config arg {k!r} in 'configs/ul2.py:{arg}'; use objective=, steps= or seed= "
                       "(everything else via --config.<key>=<value>).")
  return c
