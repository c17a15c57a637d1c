"""`rtstyle tune-temporal`: the two views, the shared interior, the batched decoder it trains
through, a step that lowers the temporal loss, and a tiny run that snapshots and resumes."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from realtime.microast import MicroAST, load_microast_file, save_microast
from realtime.temporal_tune import TuneConfig, Tuner, shift_error, shifted_views, stack_codes, tune


@pytest.mark.parametrize("dy, dx", [(0, 0), (3, -2), (-4, 4), (1, 0)])
def test_views_and_interior_line_up(dy, dx):
    """A shift-equivariant 'network' (the identity) agrees exactly on the shared interior;
    read with a wrong shift, it does not."""
    big = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    x, x2 = shifted_views(big, 32, dy, dx)
    assert x.shape == x2.shape == (2, 3, 32, 32)
    assert torch.equal(x2[..., 5, 7], x[..., 5 + dy, 7 + dx])
    assert shift_error(x, x2, dy, dx, margin=2).item() == 0.0
    assert shift_error(x, x2, dy + 1, dx, margin=2).item() > 0.01
    with pytest.raises(ValueError, match="margin"):
        shifted_views(big, 32, 5, 0)


def test_batched_codes_decode_like_one_style_at_a_time():
    torch.manual_seed(0)
    model = MicroAST().eval()
    styles, content = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    codes = stack_codes(model, styles)
    assert [tuple(t.shape) for t in codes] == [(3, 2, 64)] * 4
    with torch.no_grad():
        together = model(content, *codes)
        alone = torch.cat([model(content[i:i + 1], *model.style_code(styles[i:i + 1]).tensors())
                           for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.fixture
def data(tmp_path):
    """Two folders of small random-texture pictures, and a random MicroAST as the teacher."""
    rng = np.random.default_rng(0)
    for folder, n in (("content", 12), ("styles", 12)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            img = cv2.GaussianBlur((rng.random((72, 80, 3)) * 255).astype(np.uint8), (0, 0), 1.5)
            cv2.imwrite(str(tmp_path / folder / f"t{folder}__{i:02d}.png"), img)
    torch.manual_seed(0)
    save_microast(MicroAST(), tmp_path / "teacher.safetensors")
    return tmp_path


def config(d, **kw) -> TuneConfig:
    base = dict(teacher=str(d / "teacher.safetensors"), content_dirs=(str(d / "content"),),
                style_dirs=(str(d / "styles"),), out_dir=str(d / "run"), steps=2, batch_size=2, crop=32,
                shift=4, margin=4, eval_every=2, ckpt_every=1, log_every=1, eval_images=2, max_side=64,
                heldout_fraction=0.3, device="cpu", amp="off")
    return TuneConfig(**{**base, **kw})


def test_steps_on_the_temporal_loss_alone_lower_it(data):
    """Gradients reach the decoder through both views: a few steps on one fixed batch with only
    the temporal term lower it (and leave the frozen parts untouched)."""
    tu = Tuner(config(data, lr=1e-3, warmup=0, content_weight=0.0, style_weight=0.0, temporal_weight=1.0))
    g = torch.Generator().manual_seed(1)
    big, styles = torch.rand(2, 3, 40, 40, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    x, x2 = shifted_views(big, 32, 2, -3)
    codes = stack_codes(tu.model, styles)
    frozen = {k: v.clone() for k, v in tu.model.style_encoder.state_dict().items()}
    first = None
    for _ in range(8):
        parts = tu.losses(x, x2, codes, 2, -3)
        first = first if first is not None else parts["temporal"].item()
        tu.opt.zero_grad()
        parts["total"].backward()
        tu.opt.step()
    assert tu.losses(x, x2, codes, 2, -3)["temporal"].item() < 0.8 * first
    assert all(torch.equal(v, tu.model.style_encoder.state_dict()[k]) for k, v in frozen.items())


def test_a_tiny_run_snapshots_logs_and_resumes(data):
    result = tune(config(data))
    run = data / "run"
    assert result["step"] == 2 and set(result["student"]) == set(result["teacher"])
    snap = load_microast_file(run / "snapshots" / "step_000002.safetensors")
    meta = json.loads(snap.provenance["fine_tuned"])
    assert meta["step"] == 2 and meta["heldout"] == result["student"]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["model"] for r in records if r["kind"] == "eval"] == ["teacher", "student"]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]
    # the decoder and the content encoder moved; the style encoder and modulator are the teacher's
    teacher = load_microast_file(data / "teacher.safetensors")
    assert not torch.equal(snap.decoder.out.weight, teacher.decoder.out.weight)
    assert not torch.equal(snap.content_encoder.stem.weight, teacher.content_encoder.stem.weight)
    assert torch.equal(snap.style_encoder.stem.weight, teacher.style_encoder.stem.weight)
    assert torch.equal(snap.modulator.weight[0].weight, teacher.modulator.weight[0].weight)
    # resuming continues exactly where the checkpoint left off: the same weights as one run of 3
    assert tune(config(data, steps=3))["step"] == 3
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    tune(config(data, steps=3, out_dir=str(data / "straight")))
    resumed, straight = (torch.load(data / d / "checkpoint.pt", weights_only=True)["decoder"]
                         for d in ("run", "straight"))
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    # a changed recipe is refused, and so is starting afresh over a run
    with pytest.raises(ValueError, match="temporal_weight"):
        tune(config(data, steps=4, temporal_weight=5.0))
    with pytest.raises(ValueError, match="holds a run"):
        tune(config(data, steps=4, resume=False))


def test_without_shifts_only_the_still_scene_is_scored(data):
    result = tune(config(data, shift=0, steps=1, eval_every=1))
    assert set(result["student"]) == {"vgg_content", "vgg_style", "shift_error_static"}
