"""Where kept tokens live: packed rows and fixed capacities give the invariant answers.

Bugs these catch: a packed layout that drops, duplicates or misplaces a row (embeddings or kept
differ from the padded invariant run); a "packed" mode that silently runs padded (the per-token
work would see padding rows); a capacity that changes the answer of an instance that fits, or
whose output size depends on the input (no static shapes); an overflow that is not reported.
"""

import pytest
import torch

import madtp_deploy
from madtp_deploy import capacity
from madtp_deploy.onnx import io as onnx_io

from ..conftest import TINY

T = 3.0


@pytest.fixture(scope="module")
def models():
    return {mode: madtp_deploy.load(TINY, mode=mode, temperature=T) for mode in ("invariant", "packed")}


@pytest.fixture(scope="module")
def images(models):
    return onnx_io.sample_images(models["invariant"].spec, 32, seed=5)[0]


@pytest.fixture(scope="module")
def captions(models):
    return onnx_io.sample_text(models["invariant"].spec, 32, seed=5)


def _batches(n):
    return [[0], list(range(8)), list(range(32))]


def test_inputs_prune_differently_and_some_skip_a_layer(models, images, captions):
    with torch.no_grad():
        img = models["invariant"].encode_image(images)
        txt = models["invariant"].encode_text(*captions)
    assert len({tuple(k) for k in img.kept.tolist()}) >= 5, "keep counts must differ across instances"
    assert (txt.kept[:, 0] == txt.tokens_in).any() and (txt.kept[:, 0] < txt.tokens_in).any(), \
        "some captions skip the first layer while others prune it"
    assert (captions[1] == 0).any(), "some captions carry padding in the attention mask"


@pytest.mark.parametrize("idx", _batches(32), ids=["b1", "b8", "b32"])
def test_packed_equals_invariant_image(models, images, idx):
    with torch.no_grad():
        want = models["invariant"].encode_image(images[idx])
        got = models["packed"].encode_image(images[idx])
    torch.testing.assert_close(got.embeds, want.embeds, atol=1e-5, rtol=0)
    assert torch.equal(got.kept, want.kept)


@pytest.mark.parametrize("idx", _batches(32), ids=["b1", "b8", "b32"])
def test_packed_equals_invariant_text(models, captions, idx):
    ids, mask = captions[0][idx], captions[1][idx]
    with torch.no_grad():
        want = models["invariant"].encode_text(ids, mask)
        got = models["packed"].encode_text(ids, mask)
    torch.testing.assert_close(got.embeds, want.embeds, atol=1e-5, rtol=0)
    assert torch.equal(got.kept, want.kept)


def test_packed_per_token_work_sees_only_kept_tokens(models, images):
    """The MLP of block 1 runs after its pruning on exactly sum_b kept[b, 1] rows (padding excluded)."""
    m = models["packed"]
    seen = []
    hook = m.visual.transformer.resblocks[1].mlp.register_forward_hook(lambda mod, a, out: seen.append(a[0].shape))
    try:
        with torch.no_grad():
            e = m.encode_image(images[:8])
    finally:
        hook.remove()
    assert seen == [torch.Size([int(e.kept[:, 1].sum()), m.spec.vision_width])]
    assert int(e.kept[:, 1].sum()) < 8 * int(e.kept[:, 1].max()), "the batch must be ragged for this to mean anything"


def test_slot_demand_from_kept():
    # 10 tokens in; layer 1 prunes to 1 + 5 + 1, layer 2 skips (keeps 7), layer 3 prunes to 1 + 2 + 1
    kept = torch.tensor([[7, 7, 4]])
    assert capacity.slot_demand(kept, torch.tensor([10])).tolist() == [[5, 6, 2]]
    assert capacity.quantile_capacity(torch.tensor([[5, 6, 2], [3, 6, 1]]), 1.0) == [5, 6, 2]


def _with_capacity(model, cap):
    m = madtp_deploy.load(TINY, mode="invariant", temperature=T)
    m.capacity = {"image": tuple(cap)}
    return m


def test_capacity_that_fits_gives_the_invariant_answer(models, images):
    inv = models["invariant"]
    with torch.no_grad():
        want = inv.encode_image(images)
    demand = capacity.slot_demand(want.kept, want.tokens_in)
    m = _with_capacity(inv, demand.amax(0).tolist())
    with torch.no_grad():
        got = m.encode_image(images)
    torch.testing.assert_close(got.embeds, want.embeds, atol=1e-5, rtol=0)
    assert torch.equal(got.kept, want.kept) and not got.overflow.any()


def test_tight_capacity_overflows_visibly_with_static_shapes(models, images):
    inv = models["invariant"]
    with torch.no_grad():
        want = inv.encode_image(images)
    demand = capacity.slot_demand(want.kept, want.tokens_in)
    cap = capacity.quantile_capacity(demand, 0.5)
    m = _with_capacity(inv, cap)
    lengths = []
    hook = m.visual.transformer.resblocks[-1].mlp.register_forward_hook(lambda mod, a, out: lengths.append(a[0].shape[1]))
    with torch.no_grad():
        got = m.encode_image(images)
        one = m.encode_image(images[:1])
    hook.remove()
    assert lengths == [cap[-1] + 2, cap[-1] + 2], "the slot count is fixed by the capacity, not by the batch"
    over = got.overflow.any(1)
    assert over.any() and (~over).any()
    # the first layer sees the exact inputs: it overflows where the demand exceeds it; an instance
    # whose demand fits every layer never overflows (later layers of overflowed ones see new tokens)
    assert torch.equal(got.overflow[:, 0], demand[:, 0] > cap[0])
    assert not got.overflow[(demand <= torch.tensor(cap)).all(1)].any()
    assert (got.kept <= torch.tensor(cap) + 2).all()
    fits = ~over
    torch.testing.assert_close(got.embeds[fits], want.embeds[fits], atol=1e-5, rtol=0)
    assert torch.equal(got.kept[fits], want.kept[fits])
    torch.testing.assert_close(one.embeds, got.embeds[:1], atol=1e-5, rtol=0)  # still batch-independent
