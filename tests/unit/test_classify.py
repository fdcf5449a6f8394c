from __future__ import annotations

import numpy as np
import pytest

from edged.classify import Classifier, Labels, dequantize
from edged.config import ClassifyConfig
from edged.publish.events import PublishPolicy


def labels(n: int = 5, background: bool = False) -> Labels:
    names = [f"c{i}" for i in range(n)]
    if background:
        names[0] = "background"
    return Labels.build(names, n, "test", "m")


def test_topk_order_and_dequantize() -> None:
    raw = np.array([0, 10, 200, 30, 16], np.uint8)
    r = Classifier(labels(), ClassifyConfig(top_k=3))(raw, 1 / 256, 0)
    assert [c.label for c in r.top_k] == ["c2", "c3", "c4"]
    assert r.top_k[0].score == pytest.approx(200 / 256)
    assert not r.ambiguous


def test_equal_scores_rank_the_lower_class_id_first() -> None:
    # quantized outputs often tie; the ranking must not depend on argpartition's whims
    n = 1000
    raw = np.zeros(n, np.uint8)
    tied = [917, 3, 511, 64, 700]
    raw[tied] = 90
    raw[42] = 120
    for top_k in (1, 3, 6):
        r = Classifier(labels(n), ClassifyConfig(top_k=top_k))(raw, 1 / 256, 0)
        assert [c.id for c in r.top_k] == [42, 3, 64, 511, 700, 917][:top_k]
        assert r.top1 is not None and r.top1.id == int(np.argmax(raw))


def test_ambiguous_when_spread_or_close() -> None:
    clf = Classifier(labels(), ClassifyConfig())
    assert clf(np.array([0.3, 0.3, 0.2, 0.1, 0.1], np.float32)).ambiguous  # below 0.5
    assert clf(np.array([0.0, 0.54, 0.46, 0.0, 0.0], np.float32)).ambiguous  # margin 0.1
    assert not clf(np.array([0.0, 0.9, 0.1, 0.0, 0.0], np.float32)).ambiguous


def test_background_never_reported() -> None:
    clf = Classifier(labels(background=True), ClassifyConfig(top_k=2))
    r = clf(np.array([0.9, 0.06, 0.04, 0.0, 0.0], np.float32))
    assert [c.label for c in r.top_k] == ["c1", "c2"]


def test_allow_deny_and_min_score() -> None:
    names = ["tabby, tabby cat", "dog", "car", "egyptian cat"]
    lab = Labels.build(names, 4, "t", "m")
    r = Classifier(lab, ClassifyConfig(allow=["tabby", "Egyptian cat"]))(
        np.array([0.2, 0.7, 0.0, 0.1], np.float32)
    )
    assert [c.label for c in r.top_k] == ["tabby, tabby cat", "egyptian cat"]
    r = Classifier(lab, ClassifyConfig(deny=["dog"], min_score=0.15))(
        np.array([0.2, 0.7, 0.0, 0.1], np.float32)
    )
    assert [c.label for c in r.top_k] == ["tabby, tabby cat"]


def test_allow_never_reports_a_class_under_min_score_or_at_zero() -> None:
    names = ["tabby, tabby cat", "hotdog", "rocket"]
    lab = Labels.build(names, 3, "t", "m")
    hotdog = np.array([0.0, 0.98, 0.02], np.float32)
    r = Classifier(lab, ClassifyConfig(allow=["tabby"]))(hotdog)
    assert r.top_k == () and r.top1 is None
    r = Classifier(lab, ClassifyConfig(allow=["tabby"], min_score=0.3))(
        np.array([0.2, 0.8, 0.0], np.float32)
    )
    assert r.top_k == ()
    r = Classifier(lab, ClassifyConfig(allow=["tabby"], min_score=0.3))(
        np.array([0.6, 0.4, 0.0], np.float32)
    )
    assert [c.label for c in r.top_k] == ["tabby, tabby cat"]
    assert r.top_k[0].score == pytest.approx(0.6)


def test_logits_become_probabilities() -> None:
    r = Classifier(labels(3), ClassifyConfig(top_k=3))(np.array([2.0, -1.0, 5.0], np.float32))
    assert sum(c.score for c in r.top_k) == pytest.approx(1.0, abs=1e-5)
    assert r.top_k[0].label == "c2"


def test_int8_dequantize() -> None:
    out = dequantize(np.array([-128, 127], np.int8), 1 / 256, -128)
    assert out.tolist() == pytest.approx([0.0, 255 / 256])


def test_label_count_mismatch() -> None:
    with pytest.raises(ValueError, match="has 3 labels but m outputs 10 classes"):
        Labels.build(["a", "b", "c"], 10, "file", "m")
    lab = Labels.build([f"x{i}" for i in range(1000)], 1001, "file", "m")
    assert lab.background == 0 and lab.names[1] == "x0"


def test_publish_policies() -> None:
    clf = Classifier(labels(), ClassifyConfig())
    a = clf(np.array([0, 0.9, 0.1, 0, 0], np.float32))
    b = clf(np.array([0, 0.1, 0.9, 0, 0], np.float32))
    p = PublishPolicy("on_change", 10, 0.0)
    assert [p.should_publish(x, t) for t, x in enumerate([a, a, b, b, a])] == [
        True,
        False,
        True,
        False,
        True,
    ]
    p = PublishPolicy("interval", 10, 0.0)
    assert [p.should_publish(a, t) for t in (0, 5, 10, 11, 21)] == [True, False, True, False, True]
    p = PublishPolicy("every_frame", 10, 0.95)
    assert not p.should_publish(a, 0)


def test_top_k_is_the_stable_sort_cut_at_k_on_tie_heavy_scores() -> None:
    """The partition shortcut ranks exactly as a stable sort of every score: ties by class
    id, ties at the k-th place included."""
    import numpy as np

    from edged.classify.topk import _top

    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(3, 1200))
        k = min(int(rng.integers(2, 8)), n)
        scores = (rng.integers(0, int(rng.integers(2, 50)), n) / 7).astype(np.float32)
        assert list(_top(scores, k)) == list(np.argsort(-scores, kind="stable")[:k])


def test_quantized_outputs_classify_as_their_dequantized_scores() -> None:
    """An integer output is ranked on its integers (only the winners dequantized): the same
    classification, float for float, as its dequantized scores on the general path, for
    uint8 and int8, ties, background, allow and deny, and logits (which need softmax)."""
    rng = np.random.default_rng(1)
    n = 1001
    names = ["background"] + [f"c{i}, alias{i}" for i in range(n - 1)]
    lab = Labels.build(names, n, "test", "m")
    configs = [
        ClassifyConfig(top_k=5),
        ClassifyConfig(top_k=1, min_score=0.0),
        ClassifyConfig(top_k=3, allow=["c7", "alias9", "c400", "c999"]),
        ClassifyConfig(top_k=4, deny=[f"c{i}" for i in range(0, 900, 3)]),
    ]
    fast = 0
    for _ in range(600):
        cfg = configs[int(rng.integers(len(configs)))]
        clf = Classifier(lab, cfg)
        signed = bool(rng.integers(2))
        dtype, zp = (np.int8, int(rng.integers(-128, -100))) if signed else (np.uint8, 0)
        info = np.iinfo(dtype)
        if rng.integers(3) == 0:  # logits: the sum is far above 1
            raw = rng.integers(info.min, info.max, n).astype(dtype)
            scale = 0.1
        else:  # a quantized softmax: a few classes share the mass, many tie at the floor
            raw = np.full(n, zp if signed else 0, dtype)
            hot = rng.choice(n, int(rng.integers(1, 12)), replace=False)
            raw[hot] = rng.integers(zp + 1, zp + 40, hot.size)
            scale = 1 / 256 if rng.integers(2) else 0.0  # 0: the 1/256 default
        got = clf(raw, scale, zp)
        want = clf(dequantize(raw, scale, zp))
        assert got == want
        fast += clf._quantized(raw, scale, zp, min(max(cfg.top_k, 2), n)) is not None
    assert 300 < fast < 600  # both paths were compared
