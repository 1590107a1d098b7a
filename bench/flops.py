"""FLOPs, analytically from the configs, and the report's FLOPs section."""

from __future__ import annotations

from common import Bench, Section, clip_config, md_table


# --- FLOPs, analytically from the configs ----------------------------------------------------
# 2 FLOPs per multiply-add. Counted: every matrix product (projections, attention scores and
# the attention-weighted sum, MLPs, patch embedding, output heads). Left out: LayerNorm, softmax,
# activations, biases and residual additions, which are O(tokens × width) and well under 1 %
# of the total at these sizes; also padding and finished rows in a batch ("useful" FLOPs).

def transformer_layer_macs(n: int, d: int, f: int, inner: int | None = None,
                           ffn_mats: int = 2) -> int:
    """One encoder layer over n tokens: Q, K, V and output projections (4·n·d·inner), attention
    scores and weighted sum (2·n²·inner), and an MLP of `ffn_mats` d×f matrices (2 for GELU,
    3 for gated GELU)."""
    inner = inner or d
    return 4 * n * d * inner + 2 * n * n * inner + ffn_mats * n * d * f


def vit_flops(config) -> float:
    """One image through Chinese-CLIP's image tower and projection.

    N = (image/patch)² patches + 1 class token = 197 for ViT-B/16 at 224 px; patch embedding
    (patches × 3·p² × d), 12 layers of `transformer_layer_macs(N, d, f)`, and the class token's
    projection (d × projection_dim).
    """
    v = config.vision_config
    patches = (v.image_size // v.patch_size) ** 2
    macs = patches * 3 * v.patch_size ** 2 * v.hidden_size
    macs += v.num_hidden_layers * transformer_layer_macs(patches + 1, v.hidden_size,
                                                         v.intermediate_size)
    macs += v.hidden_size * config.projection_dim
    return 2.0 * macs


def text_flops(config, tokens: int) -> float:
    """One text of `tokens` tokens (with [CLS] and [SEP]) through the text tower: 12 BERT layers,
    the BERT pooler (d²) and the projection of [CLS] (d × projection_dim)."""
    t = config.text_config
    macs = t.num_hidden_layers * transformer_layer_macs(tokens, t.hidden_size,
                                                        t.intermediate_size)
    macs += t.hidden_size ** 2 + t.hidden_size * config.projection_dim
    return 2.0 * macs


def t5_prompt_flops(config, s: int) -> float:
    """What a prompt of s tokens costs once per `generate` call: the encoder (per layer
    4·s·d·inner + 2·s²·inner + 3·s·d·f with gated GELU; inner = heads × d_kv) and the
    cross-attention keys and values each decoder layer computes from its output (2·s·d·inner)."""
    c = config
    inner, gates = c.num_heads * c.d_kv, 3 if c.is_gated_act else 2
    macs = c.num_layers * transformer_layer_macs(s, c.d_model, c.d_ff, inner, gates)
    macs += c.num_decoder_layers * 2 * s * c.d_model * inner
    return 2.0 * macs


def t5_step_flops(config, t: int, s: int) -> float:
    """One decoder step of one sequence with t positions cached, cross-attending to s encoder
    tokens: per layer self-attention (4·d·inner + 2·t·inner), cross-attention queries and output
    (2·d·inner + 2·s·inner), the gated-GELU MLP (3·d·f); then the LM head over the whole
    vocabulary (d × vocab)."""
    c = config
    inner, gates = c.num_heads * c.d_kv, 3 if c.is_gated_act else 2
    per_layer = 6 * c.d_model * inner + 2 * t * inner + 2 * s * inner + gates * c.d_model * c.d_ff
    return 2.0 * (c.num_decoder_layers * per_layer + c.d_model * c.vocab_size)


def lm_head_flops(config) -> float:
    return 2.0 * config.d_model * config.vocab_size


def poem_flops(poet, keywords, written, options) -> tuple[float, list[int]]:
    """Useful FLOPs of `poet.write(keywords, options)`: per poem and line, the prompt once
    (`t5_prompt_flops`) and each generated token (`t5_step_flops`, the line's tokens spread
    evenly over its lines)."""
    config, form = poet.model.config, options.form
    total, lengths = 0.0, []
    for words, verses in zip(keywords, written):
        for verse in verses:
            per_line = (verse.tokens + form.lines) / form.lines
            for i in range(form.lines):
                previous = verse.lines[:i]
                text = poet.format.encoder_text(form, words, previous, options.hint,
                                                options.imitate)
                s = len(poet.tokenizer(text).input_ids)
                prefix = len(poet.tokenizer(poet.format.decoder_prefix(previous),
                                            add_special_tokens=False).input_ids) if previous else 0
                lengths.append(s)
                total += t5_prompt_flops(config, s)
                total += prefix * t5_step_flops(config, prefix, s)
                for step in range(round(per_line)):
                    total += t5_step_flops(config, prefix + step + 1, s)
    return total, lengths


# 5. FLOPs.
def flops(bench: Bench) -> Section:
    clip = bench.scorer.model.config if bench.scorer else clip_config()
    t5 = bench.poet.model.config
    tokens = bench.results.get("text_tokens_mean", 8.0)
    s = bench.results.get("prompt_tokens_mean", 24.0)
    per_line = bench.results.get("line_tokens_mean", 5.0)
    t = max(1, round(1 + per_line / 2))
    v = clip.vision_config
    rows = [
        [f"Chinese-CLIP image tower, per image ({(v.image_size // v.patch_size) ** 2 + 1} "
         "tokens)", f"{vit_flops(clip) / 1e9:.2f}", "`vit_flops`"],
        [f"Chinese-CLIP text tower, per text (mean {tokens:.1f} tokens)",
         f"{text_flops(clip, round(tokens)) / 1e9:.3f}", "`text_flops`"],
        [f"T5 encoder + cross-attention keys/values, per prompt (mean {s:.0f} tokens)",
         f"{t5_prompt_flops(t5, round(s)) / 1e9:.3f}", "`t5_prompt_flops`"],
        [f"T5 decoder, per generated token (t = {t} cached, s = {s:.0f})",
         f"{t5_step_flops(t5, t, round(s)) / 1e9:.3f}", "`t5_step_flops`"],
        [f"… of which the LM head ({t5.d_model} × {t5.vocab_size})",
         f"{lm_head_flops(t5) / 1e9:.3f}", "d × vocab"],
    ]
    if bench.peak:
        rows.append([f"this machine's measured peak: {bench.peak[1]}",
                     f"{bench.peak[0] / 1e9:,.0f} GFLOP/s", "timed with torch"])
    about = ("Computed analytically from the configs (2 FLOPs per multiply-add; every matrix "
             "product counted, LayerNorm, softmax, activations and biases left out; formulas "
             "in the docstrings of `bench/flops.py`). The tables above divide these by the "
             "measured times; \"of peak\" compares with the matmul rate in the last row, "
             "timed here on the same device, for context only.")
    return Section("FLOPs", about, md_table(["computation", "GFLOP", "formula"], rows))
