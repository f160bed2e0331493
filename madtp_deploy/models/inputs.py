"""Pure checks of what a user hands the library: tensors for the encoders, and plain numbers.

Each raises `InputError` (or the error class given) with one line naming the input, the field and
the fix, instead of an IndexError from deep inside torch or, worse, a silently wrong answer (NaN
embeddings with `kept` claiming no pruning, a cropped image, 0-255 pixels taken as normalised).

Cost on the hot path: `check_pixels` reads the pixels once (one `aminmax` gives finiteness and the
value range together) and syncs once; see tests/reliability/test_api_inputs.py for the measurement
against the shipped model's batch-8 latency. Under torch.compile / torch.export tracing the
data-dependent checks are skipped (they would become graph breaks or guards); shapes and dtypes
are still checked.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError, MadtpError
from ..specs import BlipSpec, ClipSpec, Spec

# CLIP-normalised pixels lie in about [-1.8, 2.2]; 0-255 data almost always exceeds this bound.
PIXEL_LIMIT = 30.0
MAX_BATCH = 4096  # beyond this a batch is a typo, not a workload (memory grows with it)


def _tracing() -> bool:
    return torch.compiler.is_compiling()


def check_pixels(spec: Spec, pixels, where: str = "pixels") -> None:
    """pixels: float [B, 3, S, S] (S = spec.image_size exactly), finite, CLIP-normalised."""
    if not isinstance(pixels, torch.Tensor):
        raise InputError(f"{where}: a {type(pixels).__name__}, expected a torch.Tensor; fix: torch.as_tensor(x)")
    s = spec.image_size
    if not pixels.is_floating_point():
        raise InputError(f"{where}: dtype {pixels.dtype}, expected a float tensor of CLIP-normalised values; "
                         f"fix: scale to [0, 1] and normalise with CLIP's mean/std "
                         f"(madtp_deploy.data.retrieval.preprocess)")
    if pixels.dim() != 4 or tuple(pixels.shape[1:]) != (3, s, s) or pixels.shape[0] < 1:
        raise InputError(f"{where}: shape {tuple(pixels.shape)}, expected [B, 3, {s}, {s}] for {spec.name}; "
                         f"fix: resize to {s}x{s} (madtp_deploy.data.retrieval.preprocess) and stack a batch")
    if _tracing():
        return
    lo_t, hi_t = torch.aminmax(pixels.detach())  # NaN propagates into both, +-inf shows in one
    lo, hi = float(lo_t), float(hi_t)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"{where}: contains NaN or Inf values; fix: check the image decoding and preprocessing")
    if max(-lo, hi) > PIXEL_LIMIT:
        raise InputError(f"{where}: values span [{lo:g}, {hi:g}], not CLIP-normalised (0-255 pixels?); "
                         f"fix: scale to [0, 1], then subtract CLIP's mean and divide by its std "
                         f"(madtp_deploy.data.retrieval.preprocess)")


def _check_ids(spec, input_ids, attention_mask, where: str, n: int, length: str, tokenizer: str):
    """Token ids int [B, L] with 1 <= L <= n, inside the vocabulary; the mask (if any) the same shape,
    0/1, 1 at position 0. Returns the mask as bool (or None; None too while tracing)."""
    if not isinstance(input_ids, torch.Tensor):
        raise InputError(f"{where}: a {type(input_ids).__name__}, expected a torch.Tensor; fix: torch.as_tensor(ids)")
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise InputError(f"{where}: dtype {input_ids.dtype}, expected an integer tensor of token ids; "
                         f"fix: tokenize the text ({tokenizer}) or .long() the ids")
    if input_ids.dim() != 2 or input_ids.shape[0] < 1 or not 1 <= input_ids.shape[1] <= n:
        raise InputError(f"{where}: shape {tuple(input_ids.shape)}, expected [B, L] with 1 <= L <= {n} "
                         f"(the {length} of {spec.name}); fix: tokenize to at most {n} tokens")
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
            shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
            raise InputError(f"attention_mask: shape {shape}, expected {tuple(input_ids.shape)} like input_ids; "
                             f"fix: pass the mask the tokenizer returned")
    if _tracing():
        return None
    lo, hi = (int(v) for v in torch.aminmax(input_ids))
    if lo < 0 or hi >= spec.vocab_size:
        bad = lo if lo < 0 else hi
        raise InputError(f"{where}: token id {bad} outside the vocabulary [0, {spec.vocab_size}) of {spec.name}; "
                         f"fix: use the model's own tokenizer")
    if attention_mask is None:
        return None
    mask = attention_mask.to(torch.bool)
    if bool(((attention_mask != 0) & (attention_mask != 1)).any()) or not bool(mask[:, 0].all()):
        raise InputError("attention_mask: values must be 0/1 with 1 at position 0 (the start token); "
                         "fix: pass the mask the tokenizer returned")
    return mask


def check_text(spec: ClipSpec, input_ids, attention_mask=None, where: str = "input_ids") -> None:
    """input_ids: int [B, L], 1 <= L <= context, ids < vocab; mask the same shape, 0/1, starting
    with 1; an EOT token inside the mask of every row."""
    mask = _check_ids(spec, input_ids, attention_mask, where, spec.context_length, "context",
                      "madtp_deploy.data.tokenize")
    if _tracing():
        return
    if spec.eot_token_id is None:  # OpenAI's rule: the EOT is the largest id of the row
        return
    eot = input_ids == spec.eot_token_id
    if mask is not None:
        eot &= mask
    missing = ~eot.any(1)
    if bool(missing.any()):
        row = int(missing.to(torch.int8).argmax())
        raise InputError(f"{where}[{row}]: no end-of-text token (id {spec.eot_token_id}) inside the attention mask; "
                         f"fix: tokenize with the model's tokenizer, which appends it")


def check_blip_text(spec: BlipSpec, input_ids, attention_mask=None, where: str = "input_ids") -> None:
    """input_ids: int [B, L], 1 <= L <= max_positions, ids in the vocabulary; the mask the same
    shape, 0/1, with 1 at position 0 ([CLS] or [ENC]: every caption has a first valid token)."""
    _check_ids(spec, input_ids, attention_mask, where, spec.max_positions, "positions",
               "BLIP's BERT tokenizer, madtp_deploy.data.bert_tokenizer")


# -- plain numbers (CLI options, config fields, loader arguments) ----------------------------------

def check_number(value, name: str, *, lo=None, hi=None, lo_open: bool = False, integer: bool = False,
                 fix: str, error: type[MadtpError] = InputError):
    """A finite number in [lo, hi] (or (lo, hi] with lo_open); else `error` naming `name` and `fix`."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise error(f"{name} {value!r}: not {kind}; fix: {fix}")
    if not math.isfinite(value):
        raise error(f"{name} {value}: not a finite number; fix: {fix}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and value > hi
    if below or above:
        left = "(" if lo_open else "["
        rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise error(f"{name} {value}: must be in {rng}; fix: {fix}")
    return value


def check_temperature(value, where: str = "temperature", error: type[MadtpError] = InputError) -> float:
    """A pruning temperature: finite and >= 0 (0 = dense). NaN or < 0 would silently turn pruning
    off; +inf would prune to the minimum."""
    return float(check_number(value, where, lo=0.0, fix="a finite temperature >= 0 (0 = no pruning)", error=error))


def check_batch_size(value, name: str = "--batch-size", error: type[MadtpError] = InputError) -> int:
    return check_number(value, name, lo=1, hi=MAX_BATCH, integer=True, error=error,
                        fix=f"an integer from 1 to {MAX_BATCH}, e.g. 64")


def parse_ints(text: str, option: str, lo: int, hi: int, example: str, error: type[MadtpError] = InputError) -> list[int]:
    """A comma-separated list of integers in lo..hi (a CLI option's value), or `error` naming the option."""
    try:
        values = [int(p) for p in text.split(",")]
    except ValueError as exc:
        raise error(f"{option} {text!r}: not a comma-separated list of integers; fix: e.g. {example}") from exc
    if not values or any(not lo <= v <= hi for v in values):
        raise error(f"{option} {text!r}: values must be in {lo}..{hi}; fix: e.g. {example}")
    return values
