"""The pure parts of the training recipes: augmentation views, the deep recipe's settings,
the recipe choice and the memory and thread limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edged.train import augment
from edged.train.deep import (
    CACHE_BYTES_PER_VIEW,
    DeepParams,
    decode_side,
    install_hint,
    missing,
)
from edged.train.pipeline import RECIPES, TrainError, TrainOptions, choose_recipe, holdout, train
from edged.train.resources import (
    MemoryCheck,
    lower_priority,
    mem_available,
    training_threads,
)

MEMINFO = """MemTotal:        1872528 kB
MemFree:          301244 kB
MemAvailable:    1234567 kB
Buffers:           12000 kB
"""


def frame(h: int = 60, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_views_stay_within_the_limits() -> None:
    rng = np.random.default_rng(0)
    views = [augment.draw(rng) for _ in range(500)]
    for v in views:
        assert 0.6 <= v.area <= 1.0
        assert 0.0 <= v.x <= 1.0 and 0.0 <= v.y <= 1.0
        for f in (v.brightness, v.contrast, v.saturation):
            assert 0.9 <= f <= 1.1
    flips = sum(v.flip for v in views)
    assert 150 < flips < 350  # half of the time
    assert min(v.area for v in views) < 0.65 and max(v.area for v in views) > 0.95


def test_views_are_seeded() -> None:
    a = [augment.draw(np.random.default_rng(7)) for _ in range(3)]
    b = [augment.draw(np.random.default_rng(7)) for _ in range(3)]
    assert a == b


def test_no_flip_no_colour_when_switched_off() -> None:
    aug = augment.Augmentation(crop=(1.0, 1.0), colour=0.0, flip=False)
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = augment.draw(rng, aug)
        assert (v.area, v.flip, v.brightness, v.contrast, v.saturation) == (
            1.0,
            False,
            1.0,
            1.0,
            1.0,
        )


def test_identity_view_keeps_the_frame() -> None:
    f = frame()
    assert np.array_equal(augment.apply(f, augment.IDENTITY), f)


def test_flip_mirrors_and_crop_keeps_its_share_of_the_area() -> None:
    f = frame(100, 200)
    flipped = augment.apply(f, augment.View(1.0, 0.5, 0.5, True, 1.0, 1.0, 1.0))
    assert np.array_equal(flipped, f[:, ::-1])
    cropped = augment.apply(f, augment.View(0.64, 0.0, 1.0, False, 1.0, 1.0, 1.0))
    assert cropped.shape == (80, 160, 3)  # sides of 0.8: area 0.64, aspect kept
    assert np.array_equal(cropped, f[20:, :160])  # left edge, bottom edge


def test_brightness_scales_the_pixels() -> None:
    f = np.full((10, 10, 3), 100, dtype=np.uint8)
    brighter = augment.apply(f, augment.View(1.0, 0.5, 0.5, False, 1.1, 1.0, 1.0))
    assert np.all(brighter == 110)
    grey = np.zeros((10, 10, 3), dtype=np.uint8)
    grey[..., 0] = 200
    paler = augment.apply(grey, augment.View(1.0, 0.5, 0.5, False, 1.0, 1.0, 0.9))
    assert paler[0, 0, 0] < 200 and paler[0, 0, 1] > 0  # towards its grey


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"crop": (0.0, 1.0)}, "crop (0.0, 1.0)"),
        ({"crop": (0.9, 0.6)}, "0 < low <= high <= 1"),
        ({"colour": 1.5}, "colour 1.5"),
    ],
)
def test_bad_augmentation_names_the_value(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        augment.Augmentation(**kwargs)  # type: ignore[arg-type]


def test_deep_defaults_are_the_measured_recipe() -> None:
    p = DeepParams()
    d = p.describe()
    assert (p.epochs, p.batch, p.lr_blocks, p.lr_head, p.weight_decay, p.blocks) == (
        25,
        16,
        1e-4,
        1e-3,
        0.01,
        2,
    )
    assert d["batchnorm"] == "frozen" and d["schedule"] == "cosine"
    assert d["augmentation"] == {"flip": True, "crop_area": [0.6, 1.0], "colour": 0.1}
    assert p.views_per_photo == 25 and DeepParams(views=5).views_per_photo == 5


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"epochs": 0}, "epochs=0"),
        ({"batch": 2.5}, "batch=2.5"),
        ({"lr_head": 0.0}, "lr_head=0.0"),
        ({"observer": "best"}, "observer='best'"),
        ({"dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_bad_deep_settings_name_the_value(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        DeepParams(**kwargs)  # type: ignore[arg-type]


def test_memory_needed_grows_with_the_cached_views() -> None:
    p = DeepParams(epochs=10)
    assert p.memory_needed(100) - p.memory_needed(0) == 100 * 10 * CACHE_BYTES_PER_VIEW
    # a photo is decoded large enough for the smallest crop, after the daemon's center crop
    assert decode_side(augment.Augmentation(), 0.875) == 331  # 224 / 0.875 / sqrt(0.6)


def test_mem_available_is_read_from_meminfo() -> None:
    assert mem_available(MEMINFO) == 1234567 * 1024
    assert mem_available("MemTotal: 1 kB\n") is None


def test_memory_refusal_says_how_much_and_what_to_do() -> None:
    check = MemoryCheck(needed=1_200_000_000, available=800_000_000)
    assert not check.ok
    msg = check.message("deep")
    assert "1200 MB" in msg and "MemAvailable is 800 MB" in msg and "--recipe head" in msg
    assert MemoryCheck(1, None).ok  # unknown: no refusal


def test_training_threads_leave_a_core_for_the_daemon() -> None:
    assert training_threads(4, {}) == 3
    assert training_threads(2, {}) == 1
    assert training_threads(1, {}) == 1
    assert training_threads(4, {"EDGED_TRAIN_THREADS": "2"}) == 2
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match=f"EDGED_TRAIN_THREADS='{bad}'"):
            training_threads(4, {"EDGED_TRAIN_THREADS": bad})


def test_lower_priority_never_lowers_the_niceness() -> None:
    import os

    now = os.getpriority(os.PRIO_PROCESS, 0)
    assert lower_priority(0) == now  # already at least 0: unchanged


def test_holdout_is_stratified() -> None:
    labels = [0] * 10 + [1] * 5 + [2] * 2
    train_idx, val_idx = holdout(labels, 3, 0.2, 0)
    y = np.asarray(labels)
    assert sorted(np.bincount(y[val_idx], minlength=3)) == [1, 1, 2]
    assert set(train_idx) | set(val_idx) == set(range(len(labels)))
    assert not set(train_idx) & set(val_idx)
    assert np.bincount(y[train_idx]).min() >= 1


def opts(tmp_path: Path, recipe: str) -> TrainOptions:
    return TrainOptions(tmp_path / "data", tmp_path / "m.tflite", recipe=recipe)


def test_unknown_recipe_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="recipe 'deeper' is not known; valid: head, deep, auto"):
        train(opts(tmp_path, "deeper"))
    assert RECIPES == ("head", "deep", "auto")


def test_deep_without_memory_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=r"MemAvailable is 100 MB.*--recipe head"):
        choose_recipe(opts(tmp_path, "deep"), 100, 100_000_000)


def test_auto_falls_back_to_head_and_says_why(tmp_path: Path) -> None:
    recipe, why = choose_recipe(opts(tmp_path, "auto"), 100, 100_000_000)
    assert recipe == "head" and "MemAvailable is 100 MB" in why
    recipe, why = choose_recipe(opts(tmp_path, "auto"), 100, 64_000_000_000)
    if missing():
        assert recipe == "head" and "the deep recipe needs" in why
    else:
        assert recipe == "deep"
    assert choose_recipe(opts(tmp_path, "head"), 100, 1) == ("head", "")


def test_install_hint_says_where_the_extra_does_not_install() -> None:
    import platform

    if platform.system() == "Linux":
        assert "x86-64 machine" in install_hint("aarch64")
    assert "pip install 'edged[learn]'" in install_hint("x86_64")
