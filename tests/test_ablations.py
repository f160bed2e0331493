"""The study's ablation policies: each one knob, monotone in how much it keeps."""

import torch

import madtp_deploy
from madtp_deploy import ablations

from .conftest import TINY, tiny_inputs


def _kept(policy):
    m = madtp_deploy.load(TINY, mode="invariant", temperature=3.0)
    m.score_fn = policy
    with torch.no_grad():
        return m.encode_image(tiny_inputs(8, seed=5)[0]).kept.sum().item()


def test_knobs_move_the_keep_counts():
    """Strictly: a knob that is disconnected (the policy ignores it) keeps the same counts.
    (ca_fixed is monotone only until layers start to skip: at ratio 1.5 too few tokens pass.)"""
    assert _kept(ablations.ca_fixed(0.5)) > _kept(ablations.ca_fixed(0.8)) > _kept(ablations.ca_fixed(1.0))
    assert _kept(ablations.sa_only(0.1)) > _kept(ablations.sa_only(1.0)) > _kept(ablations.sa_only(50.0))
    assert _kept(ablations.random_keep(0.9)) > _kept(ablations.random_keep(0.2))


def test_random_keep_all_keeps_everything():
    full = madtp_deploy.load(TINY).spec.vision_tokens * 2 * 8
    assert _kept(ablations.random_keep(1.0)) == full
