"""Distillation from a frozen teacher while compressing (CLIP's --distill): the loss term and its wiring."""

import pytest
import torch

import madtp_deploy
from madtp_deploy.errors import UsageError
from madtp_deploy.train import blip_nlvr, clip, loop
from madtp_deploy.train.loop import TrainConfig


def _kl_by_hand(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean over rows of sum_j p_t log(p_t / p_s), with the probabilities written out."""
    p_s, p_t = s.exp() / s.exp().sum(1, keepdim=True), t.exp() / t.exp().sum(1, keepdim=True)
    return (p_t * (p_t.log() - p_s.log())).sum(1).mean()


def test_distill_loss_is_both_directions_kl_from_the_teacher():
    # catches: KL(student || teacher) instead of KL(teacher || student); the text->image direction dropped or
    # taken over the wrong axis; the teacher's logit scale replaced by the student's
    g = torch.Generator().manual_seed(0)
    img, txt, t_img, t_txt = (torch.randn(6, 8, generator=g) for _ in range(4))
    scale, t_scale = torch.tensor(1.2), torch.tensor(2.0)

    def logits(i, t, sc):
        i, t = i / i.norm(dim=1, keepdim=True), t / t.norm(dim=1, keepdim=True)
        return sc.exp() * i @ t.t()

    s, t = logits(img, txt, scale), logits(t_img, t_txt, t_scale)
    want = (_kl_by_hand(s, t) + _kl_by_hand(s.t(), t.t())) / 2
    got = clip.distill_loss(img, txt, t_img, t_txt, scale, t_scale)
    torch.testing.assert_close(got, want)
    assert float(clip.distill_loss(img, txt, img, txt, scale, scale)) == pytest.approx(0.0, abs=1e-6)


def _run(data, out, **kw):
    cfg = TrainConfig(str(data), str(out), init="clip-tiny-test", reduce=0.3, epochs=1, batch_size=8, lr=1e-3,
                      max_steps=2, **kw).validate()
    return loop.train(cfg, clip.HOOKS, log=lambda *_: None)


def test_distillation_term_is_in_the_loss_and_moves_the_weights(tiny_scenes, tmp_path):
    # catches: the term computed and logged but left out of the optimised loss
    teacher = madtp_deploy.load("clip-tiny-test")
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    path = tmp_path / "teacher.pt"
    torch.save({"model": teacher.state_dict(), "temperature": 0.0, "spec": teacher.spec.to_dict()}, path)

    plain = _run(tiny_scenes, tmp_path / "plain")
    kd = _run(tiny_scenes, tmp_path / "kd", distill=str(path), distill_weight=5.0)
    assert "distill" not in plain["history"][0]
    assert all(h["distill"] > 0 for h in kd["history"])
    a = madtp_deploy.load(tmp_path / "plain" / "madtp.pt").state_dict()
    b = madtp_deploy.load(tmp_path / "kd" / "madtp.pt").state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_distill_is_refused_where_it_has_no_meaning(tiny_scenes, tiny_nlvr, tmp_path):
    # catches: --distill silently ignored by a family without the term; a teacher of another geometry accepted
    cfg = TrainConfig(str(tiny_nlvr), str(tmp_path / "n"), init="blip-nlvr-tiny", epochs=1, batch_size=8,
                      max_steps=1, distill="clip-tiny-test").validate()
    with pytest.raises(UsageError, match="--distill: BLIP NLVR2 training has no distillation term"):
        loop.train(cfg, blip_nlvr.HOOKS, log=lambda *_: None)
    with pytest.raises(UsageError, match="--distill madtp-clip-deep: its inputs \\(spec madtp-clip-deep\\)"):
        _run(tiny_scenes, tmp_path / "g", distill="madtp-clip-deep")
    with pytest.raises(UsageError, match="--distill-weight"):
        TrainConfig(str(tiny_scenes), str(tmp_path / "w"), distill_weight=-1.0).validate()


def test_a_teacher_equal_to_the_student_costs_nothing_at_the_first_step(tiny_scenes, tmp_path):
    # catches: the precomputed teacher embeddings indexed by caption row for images (t_img[rows]) or otherwise
    # out of step with the batch; the teacher run with the student's pruning instead of its own
    student = madtp_deploy.load("clip-tiny-test")
    path = tmp_path / "same.pt"
    torch.save({"model": student.state_dict(), "temperature": 0.0, "spec": student.spec.to_dict()}, path)
    r = loop.train(TrainConfig(str(tiny_scenes), str(tmp_path / "s"), init=str(path), epochs=1, batch_size=8,
                               max_steps=1, distill=str(path)).validate(), clip.HOOKS, log=lambda *_: None)
    assert r["history"][0]["distill"] == pytest.approx(0.0, abs=1e-5)
