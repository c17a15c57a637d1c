"""Temporal smoothing: fixed points, flow and warping, occlusions, cuts, strength, errors."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from realtime.smoothing import (
    DEFAULT_STRENGTH,
    FLOW_MAX_BLEND,
    SMOOTH_MODES,
    STATS_MAX_MOMENTUM,
    StatsEMA,
    TemporalSmoother,
    blend,
    consistency_mask,
    dis_flow,
    gray_small,
    is_scene_cut,
    upscale_flow,
    warp,
)

H, W = 96, 128


def texture(seed: int, lo: int = 20, hi: int = 110, shape=(H, W)) -> np.ndarray:
    """(H, W, 3) uint8 RGB smooth random texture with values in [lo, hi]."""
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.random((*shape, 3)).astype(np.float32), (0, 0), 2.0)
    g = (g - g.min()) / (g.max() - g.min())
    return (lo + g * (hi - lo)).round().astype(np.uint8)


def shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Content moves by (dx, dy): out(x) = img(x - d). Wraps at the borders."""
    return np.roll(img, (dy, dx), axis=(0, 1))


def interior(a: np.ndarray, m: int = 12) -> np.ndarray:
    return a[m:-m, m:-m]


def stats(seed: int, n: int = 1, c: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, generator=g) + 0.5, torch.rand(n, c, generator=g) + 0.5


# ----------------------------------------------------------------------------- fixed points


@pytest.mark.parametrize("mode", SMOOTH_MODES)
def test_static_input_is_a_fixed_point(mode):
    content, styled = texture(0), texture(1, 0, 255)
    sm = TemporalSmoother(mode, strength=1.0)
    for _ in range(4):
        out = sm(content, styled)
        np.testing.assert_array_equal(out, styled)
    assert sm.cuts == 0


def test_constant_stats_stay_constant():
    ema = StatsEMA(momentum=STATS_MAX_MOMENTUM)
    mean, std = stats(0, n=3)
    mean, std = mean[:1].repeat(3, 1), std[:1].repeat(3, 1)  # one frame's stats, three times
    for _ in range(3):
        m, s = ema(mean, std)
        assert torch.equal(m, mean) and torch.equal(s, std)


def test_stats_ema_averages_in_frame_order():
    ema = StatsEMA(momentum=0.5)
    a, b = torch.ones(1, 4), torch.full((1, 4), 1.2)  # a 20 % step: below the restart jump
    m, s = ema(torch.cat([a, b, b]), torch.cat([a, a, a]))
    torch.testing.assert_close(m[:, 0], torch.tensor([1.0, 1.1, 1.15]))
    torch.testing.assert_close(s, torch.ones(3, 4))


def test_stats_ema_restarts_on_a_jump_in_feature_space():
    ema = StatsEMA(momentum=0.9)
    mean, std = stats(1)
    ema(mean, std)
    m, s = ema(3 * mean, std)  # a cut: the statistics triple
    assert torch.equal(m, 3 * mean) and torch.equal(s, std)


# ----------------------------------------------------------------------------- flow and warping


def test_flow_recovers_a_translation_and_warp_matches():
    dx, dy = 3, -2
    prev = texture(2)
    cur = shift(prev, dx, dy)
    g0, g1 = gray_small(prev, 256), gray_small(cur, 256)
    fwd = dis_flow(g1, g0)  # new -> previous: cur(x) = prev(x + f), f = -d
    err = np.abs(interior(fwd) - np.array([-dx, -dy], np.float32))
    assert np.median(err) < 0.1 and np.percentile(err, 95) < 0.5, (np.median(err), err.max())
    ok = consistency_mask(fwd, dis_flow(g0, g1))
    assert interior(ok).mean() > 0.95
    styled = texture(3, 0, 255)
    warped = warp(styled, fwd)
    diff = np.abs(warped.astype(np.int16) - shift(styled, dx, dy))
    assert interior(diff)[interior(ok)].mean() < 2.0
    # and not by accident: the unwarped frame is far off
    assert interior(np.abs(styled.astype(np.int16) - shift(styled, dx, dy))).mean() > 5


def test_smoother_blends_the_warped_previous_output():
    dx, dy, strength = 2, 3, 1.0
    c0, s0 = texture(4), texture(5, 0, 200)
    c1 = shift(c0, dx, dy)
    s1 = np.clip(shift(s0, dx, dy).astype(np.int16) + 40, 0, 255).astype(np.uint8)  # new styling: +40
    sm = TemporalSmoother("flow", strength=strength)
    sm(c0, s0)
    out = sm(c1, s1)
    w = strength * FLOW_MAX_BLEND
    expect = (1 - w) * s1.astype(np.float32) + w * shift(s0, dx, dy)
    assert np.abs(interior(out, 16) - interior(expect, 16)).mean() < 2.0
    assert np.abs(interior(out, 16).astype(np.float32) - interior(s1, 16)).mean() > 25


def test_upscale_flow_scales_vectors():
    f = np.zeros((10, 20, 2), np.float32)
    f[..., 0], f[..., 1] = 1.5, -0.5
    big = upscale_flow(f, (40, 60))
    assert big.shape == (40, 60, 2)
    np.testing.assert_allclose(big[..., 0], 4.5)
    np.testing.assert_allclose(big[..., 1], -2.0)


def test_warp_samples_exactly_where_separate_x_and_y_maps_would():
    """``warp`` hands OpenCV one (H, W, 2) map (one pass); the result is the two-map remap's."""
    rng = np.random.default_rng(4)
    flow = rng.normal(0, 3, (36, 64, 2)).astype(np.float32)
    gx, gy = np.meshgrid(np.arange(64, dtype=np.float32), np.arange(36, dtype=np.float32))
    for image in (rng.integers(0, 256, (36, 64, 3), dtype=np.uint8), rng.random((36, 64)).astype(np.float32)):
        for interpolation in (cv2.INTER_LINEAR, cv2.INTER_CUBIC):
            want = cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], interpolation,
                             borderMode=cv2.BORDER_REPLICATE)
            assert np.array_equal(warp(image, flow, interpolation), want)


def jitter(img: np.ndarray, seed: int, amount: int = 20) -> np.ndarray:
    """The same stylized picture with new fine detail: +-``amount`` grey levels of noise."""
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.int16) + rng.integers(-amount, amount + 1, img.shape), 0, 255).astype(np.uint8)


def test_occluded_or_changed_regions_take_the_new_frame():
    c0, s0, s1 = texture(6), texture(7, 0, 255), texture(8, 0, 255)
    c1 = c0.copy()
    c1[30:70, 40:90] = texture(9, 170, 250)[30:70, 40:90]  # something new appears
    sm = TemporalSmoother("flow", strength=1.0, still=0)
    sm(c0, s0)
    out = sm(c1, s1)
    np.testing.assert_array_equal(out[33:67, 43:87], s1[33:67, 43:87])
    # the unchanged left part is blended with the previous output (the flow there is ~0)
    w, left = FLOW_MAX_BLEND, np.s_[8:-8, 4:20]
    expect = (1 - w) * s1[left].astype(np.float32) + w * s0[left]
    assert np.abs(out[left] - expect).mean() < 2.0
    assert np.abs(out[left].astype(np.float32) - s1[left]).mean() > 20


def test_a_change_takes_the_new_frame_while_the_rest_is_held():
    """The same scene with the hold: the new thing is the new stylized frame, the unchanged
    part (the same picture, new fine detail in the stylized frame) keeps the previous output
    exactly (DIS spreads some flow up to 8 px from the change: not there)."""
    c0, s0 = texture(6), texture(7, 0, 255)
    c1 = c0.copy()
    c1[30:70, 40:90] = texture(9, 170, 250)[30:70, 40:90]
    s1 = jitter(s0, 1)
    s1[30:70, 40:90] = texture(8, 0, 255)[30:70, 40:90]
    sm = TemporalSmoother("flow", strength=1.0)
    sm(c0, s0)
    out = sm(c1, s1)
    np.testing.assert_array_equal(out[33:67, 43:87], s1[33:67, 43:87])
    np.testing.assert_array_equal(out[8:-8, 4:12], s0[8:-8, 4:12])


def _change(xs: list[np.ndarray]) -> float:
    """Mean |x_t - x_t-1| over frames 4.. in grey levels."""
    return float(np.mean([np.abs(b.astype(np.float32) - a).mean() for a, b in zip(xs[4:], xs[5:])]))


@pytest.mark.parametrize("noise, flat", [(2.0, False), (5.0, False), (2.0, True)])
def test_a_still_noisy_scene_is_held(noise, flat):
    """A camera on a still scene (textured, or a flat wall, where DIS's flow is noise): the
    input changes only by its noise, the stylized frames flicker by +-30. With the default
    settings the output is held: it changes from frame to frame less than the input does, and
    it is a stylized frame, not a blur of many. Without the hold (``still=0``) it keeps
    changing by more than the input."""
    bg = np.full((H, W, 3), 120, np.uint8) if flat else texture(21)
    styled_bg, rng = texture(22, 0, 200), np.random.default_rng(2)
    held, blended = TemporalSmoother(), TemporalSmoother(still=0)
    ins, styled_all, outs, outs0 = [], [], [], []
    for _ in range(12):
        ins.append(np.clip(bg + rng.normal(0, noise, bg.shape), 0, 255).astype(np.uint8))
        styled_all.append(np.clip(styled_bg + rng.integers(-30, 31, bg.shape), 0, 255).astype(np.uint8))
        outs.append(held(ins[-1], styled_all[-1]))
        outs0.append(blended(ins[-1], styled_all[-1]))
    assert _change(outs) < 0.5 * _change(ins)
    assert _change(outs0) > _change(ins)
    # the held picture keeps the stylized frames' texture: as far from their mean as one of them
    mean = np.mean(styled_all, axis=0)
    spread = lambda x: np.abs(x.astype(np.float32) - mean).mean()  # noqa: E731
    assert spread(outs[-1]) > 0.7 * spread(styled_all[-1])
    assert spread(outs0[-1]) < 0.7 * spread(styled_all[-1])  # averaging washes it out


def test_a_held_pixel_is_copied_and_released_when_the_input_drifts():
    """No flow, no change: the first output is kept exactly (no resampling) while the stylized
    frames change only in their fine detail. When the input then brightens by 6 grey levels
    (more than twice ``still``; not a cut), the hold lets go and the new stylized frame is
    blended in as it would be without the hold."""
    c0, base = texture(23), texture(24, 0, 255)
    styled = [base] + [jitter(base, i) for i in range(1, 5)]
    c1 = (c0 + 6).astype(np.uint8)
    sm, plain = TemporalSmoother(still=2.0), TemporalSmoother(still=0)
    outs = [sm(c0, s) for s in styled[:4]]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, styled[0])
    plain(c0, styled[0])
    released, expect = sm(c1, styled[4]), plain(c1, styled[4])
    assert np.abs(interior(released).astype(np.float32) - interior(styled[0])).mean() > 4
    assert np.abs(interior(released).astype(np.int16) - interior(expect)).max() <= 1


def test_a_new_look_is_not_held():
    """The input stays still, but the stylized frames change their look (a new colour setting,
    a strength change): the held picture lets go and follows, as without the hold."""
    c0, base = texture(25), texture(26, 0, 200)
    sm = TemporalSmoother()
    first = jitter(base, 0)
    for i in range(3):
        np.testing.assert_array_equal(sm(c0, jitter(base, i)), first)  # held
    recoloured = np.clip(base.astype(np.int16) + (60, 0, -40), 0, 255).astype(np.uint8)
    out = sm(c0, recoloured).astype(np.float32)
    w = DEFAULT_STRENGTH * FLOW_MAX_BLEND  # the plain blend weight: same input, no flow
    expect = (1 - w) * recoloured.astype(np.float32) + w * first
    assert np.abs(interior(out) - interior(expect)).max() <= 1


def test_the_hold_starts_again_after_a_reset_and_at_low_strength_is_partial():
    c0, base = texture(27), texture(28, 0, 200)
    sm = TemporalSmoother(strength=1.0)
    sm(c0, base)
    np.testing.assert_array_equal(sm(c0, jitter(base, 1)), base)  # held
    sm.reset()
    fresh = jitter(base, 2)
    np.testing.assert_array_equal(sm(c0, fresh), fresh)  # the first frame after a reset passes
    np.testing.assert_array_equal(sm(c0, jitter(base, 3)), fresh)  # and is the one held now
    sm.strength = 0.25  # below HOLD_FULL_AT: held by half
    newer = jitter(base, 4)
    out = sm(c0, newer).astype(np.float32)
    expect = 0.5 * fresh.astype(np.float32) + 0.5 * newer
    assert np.abs(interior(out) - interior(expect)).max() <= 1


@pytest.mark.parametrize("h, w", [(360, 640), (720, 1280)])
def test_a_slow_pan_is_followed_not_held(h, w):
    """A textured picture panning 1 px a frame (under the hold's flow threshold on the flow's
    grid at 1280x720, where the hold is off; above it at 640x360, where it is on): the output
    moves with it as it does without the hold; it does not stick and jump."""
    big_c, big_s = texture(30, shape=(h, w + 20)), texture(31, 0, 255, shape=(h, w + 20))
    outs = {}
    for still in (0.0, 2.0):
        sm, outs[still] = TemporalSmoother(still=still), []
        for t in range(8):
            c, s = big_c[:, 10 - t:w + 10 - t], jitter(big_s[:, 10 - t:w + 10 - t], t)
            outs[still].append(sm(c, s))

    def lag(xs):  # how far each output is from the previous one moved along by the pan
        return np.mean([np.abs(b[20:-20, 21:-20].astype(np.float32) - a[20:-20, 20:-21]).mean()
                        for a, b in zip(xs[2:], xs[3:])])

    assert lag(outs[2.0]) <= 1.1 * lag(outs[0.0])
    assert lag(outs[0.0]) < 0.5 * lag([jitter(big_s[:, 10:w + 10], t) for t in range(8)])  # it did smooth


def test_fast_motion_does_not_ghost():
    """A bright square jumps 24 px a frame (more than its size) over a still background: no
    trail where it was, the new frame where it is, and the still background around it is
    smoothed (its frame-to-frame flicker drops)."""
    bg, rng = texture(20), np.random.default_rng(1)
    sm = TemporalSmoother("flow", strength=1.0)
    outs, styled_all = [], []
    for t in range(5):
        c = bg.copy()
        c[30:50, 10 + 24 * t:30 + 24 * t] = 240
        styled = np.clip(255 - c.astype(np.int16) + rng.integers(-20, 21, c.shape), 0, 255).astype(np.uint8)
        outs.append(sm(c, styled))
        styled_all.append(styled)
    was, now = np.s_[32:48, 60:76], np.s_[32:48, 108:124]  # frame 3's and frame 4's square, 2 px in
    # The square paints ~15 +- 20; the background 125-255. No trail where it was, none of the
    # old background where it is (a naive blend fails both by far).
    assert outs[-1][was].min() > 100
    assert np.abs(outs[-1][now].astype(np.int16) - styled_all[-1][now]).max() <= 1
    still = np.s_[60:90, 8:120]  # below the square's path
    change = lambda xs: np.mean([np.abs(b[still].astype(np.float32) - a[still]).mean()  # noqa: E731
                                 for a, b in zip(xs[1:], xs[2:])])
    assert change(outs) < 0.6 * change(styled_all)


def test_blend_and_mask_edges():
    a, b = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 200, np.uint8)
    wgt = np.array([[0, 0.25, 0.5, 1]] * 4, np.float32)
    np.testing.assert_array_equal(blend(a, b, wgt)[0, :, 0], [0, 50, 100, 200])
    f = np.zeros((8, 8, 2), np.float32)
    f[..., 0] = 3.0  # points 3 px right: the last 3 columns leave the frame
    ok = consistency_mask(f, -f)
    assert ok[:, :5].all() and not ok[:, 5:].any()


# ----------------------------------------------------------------------------- cuts and reset


def test_scene_cut_detection():
    a, b = gray_small(texture(10), 256), gray_small(texture(11, 150, 250), 256)
    assert is_scene_cut(a, b)
    assert not is_scene_cut(a, gray_small(shift(texture(10), 3, 1), 256))


def test_a_cut_resets_output_and_stats():
    sm = TemporalSmoother("all", strength=1.0)
    filt = sm.stats_filter
    ca, sa = texture(12), texture(13, 0, 255)
    ma, da = stats(2)
    for _ in range(3):
        filt(ma, da)
        sm(ca, sa)
    mb, db = ma * 1.2, da * 1.2  # close enough in feature space not to restart by itself
    control = TemporalSmoother("all", strength=1.0)
    control.stats_filter(ma, da)
    m, _ = control.stats_filter(mb, db)
    assert not torch.equal(m, mb)  # without a cut the EMA mixes in the past
    cb, sb = texture(14, 150, 250), texture(15, 0, 255)
    out = sm(cb, sb)
    np.testing.assert_array_equal(out, sb)
    assert sm.cuts == 1
    m, d = filt(mb, db)
    assert torch.equal(m, mb) and torch.equal(d, db)


def test_reset_clears_state():
    sm = TemporalSmoother("all", strength=1.0)
    c, s0, s1 = texture(16), texture(17, 0, 255), texture(18, 0, 255)
    sm.stats_filter(*stats(3))
    sm(c, s0)
    assert not np.array_equal(sm(c, s1), s1)  # blended with the past
    sm.reset()
    np.testing.assert_array_equal(sm(c, s1), s1)
    mean, std = stats(4)
    m, d = sm.stats_filter(mean, std)
    assert torch.equal(m, mean) and torch.equal(d, std)


def test_a_new_frame_size_resets():
    sm = TemporalSmoother("flow", strength=1.0)
    sm(texture(19), texture(20, 0, 255))
    c, s = texture(21, shape=(64, 80)), texture(22, 0, 255, shape=(64, 80))
    np.testing.assert_array_equal(sm(c, s), s)
    assert sm.cuts == 0


# ----------------------------------------------------------------------------- strength


def test_strength_zero_is_mode_none_and_is_live():
    frames = [(shift(texture(23), 2 * t, t), texture(24 + t, 0, 255)) for t in range(4)]
    zero, none = TemporalSmoother("all", strength=0.0), TemporalSmoother("none")
    assert none.stats_filter is None and TemporalSmoother("flow").stats_filter is None
    for c, s in frames:
        np.testing.assert_array_equal(zero(c, s), none(c, s))
        mean, std = stats(5)
        m, d = zero.stats_filter(mean, std)
        assert torch.equal(m, mean) and torch.equal(d, std)
    zero.strength = 0.5  # turned up mid-stream
    c, s = shift(texture(23), 8, 4), texture(40, 0, 255)
    assert not np.array_equal(zero(c, s), s)
    with pytest.raises(ValueError, match="strength"):
        zero.strength = 1.5


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs_give_clear_errors():
    sm = TemporalSmoother("flow")
    with pytest.raises(ValueError, match=r"\(96, 128, 3\).*\(64, 128, 3\)"):
        sm(texture(0), texture(1)[:64])
    with pytest.raises(ValueError, match="uint8"):
        sm(texture(0).astype(np.float32), texture(1))
    with pytest.raises(ValueError, match="none.*stats.*flow.*all"):
        TemporalSmoother("blur")
    with pytest.raises(ValueError, match="still"):
        TemporalSmoother(still=-1)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        StatsEMA()(torch.ones(4), torch.ones(4))


# ----------------------------------------------------------------------------- the benchmark


def test_benchmark_help_and_tiny_run(tmp_path, shared_data, capsys):
    pytest.importorskip("skvideo")
    from benchmarks import temporal

    with pytest.raises(SystemExit) as e:
        temporal.main(["--help"])
    assert e.value.code == 0 and "--random-decoder" in capsys.readouterr().out
    result = temporal.main([
        "--random-decoder", "--clips", "bikes", "--frames", "3", "--size", "64", "--max-side", "32",
        "--style-size", "64", "--videos", str(shared_data / "videos"), "--out", str(tmp_path),
    ])
    saved = json.loads((tmp_path / "temporal.json").read_text())
    assert saved["network"] == temporal.RANDOM_LABEL == result["network"]
    assert set(saved["summary"]) == set(temporal.MODES)
    assert all(row["note"] == temporal.RANDOM_LABEL for row in saved["clips"])
    table = (tmp_path / "temporal.md").read_text()
    assert table.count(temporal.RANDOM_LABEL) == len(temporal.MODES)


def test_stats_filter_plugs_into_the_stylizer(tiny_encoder, tiny_decoder):
    from realtime.stylizer import StyleSettings, Stylizer

    st = Stylizer(tiny_encoder, tiny_decoder, backend="eager", device="cpu")
    code = st.encode_style(texture(30, 0, 255, shape=(64, 64)))
    a = texture(31, shape=(64, 64))
    b = a + np.uint8(12)  # a little brighter: no restart of the average
    frames = torch.from_numpy(np.stack([a, a, b]))
    plain = st(frames, StyleSettings(code))
    sm = TemporalSmoother("stats", strength=1.0)
    seen = []

    def recording(mean, std):
        out = sm.stats_filter(mean, std)
        seen.append(((mean, std), out))
        return out

    st(frames, StyleSettings(code, stats_filter=recording))
    (mean, std), (m, d) = seen[0]
    assert mean.shape == m.shape == (3, tiny_encoder.widths.c4)
    assert torch.equal(m[:2], mean[:2]) and torch.equal(d[:2], std[:2])  # constant: unchanged
    assert not torch.allclose(m[2], mean[2])  # the third frame's statistics were averaged
    sm.strength = 0.0  # strength 0 == no filter
    sm.reset()
    assert torch.equal(st(frames, StyleSettings(code, stats_filter=sm.stats_filter)), plain)
