"""FID and KID: equal to pytorch-fid's own pipeline and to torchmetrics' KID on the same inputs.

The Inception weights cannot be downloaded here, so a randomly initialised FID Inception is saved
to a file. The FID reference is pytorch-fid end to end: its own ``InceptionV3([3])`` (its download
patched to load that file), ``calculate_activation_statistics`` reading PNG files, and
``calculate_frechet_distance``. Inception runs at 299x299 on CPU, so few, tiny images.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from inpaint import io
from inpaint.metrics import FeatureAccumulator, InceptionFeatures, MetricWeightsMissing, fid, kid, polynomial_mmd2
from inpaint.metrics.features import inception_backbone


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A random-weight FID Inception state dict, saved like pt_inception-2015-12-05-6726825d.pth."""
    torch.manual_seed(0)
    net = inception_backbone()
    # He-normal convolutions: with PyTorch's default init the activations shrink ~1e-8 over
    # Inception's depth and every FID would be ~0, which would make the comparison vacuous.
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("fid") / "inception-random.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def image_sets() -> tuple[np.ndarray, np.ndarray]:
    """Four noisy 32 px images ("real") and four smooth ones ("fake"), uint8 (4, 32, 32, 3)."""
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, 32)[None, :, None, None] * rng.uniform(0.3, 1.0, (4, 1, 1, 3))
    fake = np.broadcast_to(ramp, (4, 32, 32, 3)).astype(np.uint8)
    return real, fake


def pytorch_fid_statistics(monkeypatch, inception_file, tmp_path, *image_sets) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mu, sigma) of each set computed by pytorch-fid alone, from PNG files, its model loading our file."""
    from pytorch_fid import fid_score, inception

    state = torch.load(inception_file, weights_only=True)
    monkeypatch.setattr(inception, "load_state_dict_from_url", lambda *args, **kwargs: state)
    model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    stats = []
    for k, images in enumerate(image_sets):
        files = [io.save_image(image, tmp_path / f"set{k}" / f"{i}.png") for i, image in enumerate(images)]
        stats.append(
            fid_score.calculate_activation_statistics(files, model, batch_size=len(files), dims=2048, num_workers=0)
        )
    return stats


def streamed(inception_file, images: np.ndarray) -> FeatureAccumulator:
    """Our features of a set, streamed in batches of two as the bench will do."""
    accumulator = FeatureAccumulator(InceptionFeatures(weights=inception_file, batch_size=2))
    for start in range(0, len(images), 2):
        accumulator.update(io.to_tensor(images[start : start + 2]))
    return accumulator


def test_features_equal_pytorch_fid_pipeline(monkeypatch, tmp_path, inception_file, image_sets):
    """Model, resize, normalisation and 8-bit input all match: same (mu, sigma) as pytorch-fid on PNGs.

    One set suffices (both go through the same code); Inception at 299 px is slow on a small CPU.
    """
    [(mu, sigma)] = pytorch_fid_statistics(monkeypatch, inception_file, tmp_path, image_sets[0])
    accumulator = streamed(inception_file, image_sets[0])
    assert accumulator.features.shape == (4, 2048) and accumulator.features.dtype == np.float64
    ours_mu, ours_sigma = accumulator.statistics()
    assert np.abs(mu).max() > 0.01  # the random network is not silent: the comparison means something
    np.testing.assert_allclose(ours_mu, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours_sigma, sigma, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::scipy.linalg.LinAlgWarning")
def test_fid_equals_pytorch_fid_pipeline(monkeypatch, tmp_path, inception_file, image_sets, capsys):
    """End to end at 2048-d. Slow: each 2048x2048 scipy sqrtm takes 10-30 s on a small CPU."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    result = fid(*(streamed(inception_file, images) for images in image_sets))
    assert capsys.readouterr().out == ""  # pytorch-fid's printed fallback is captured, not printed
    (mu1, sigma1), (mu2, sigma2) = pytorch_fid_statistics(monkeypatch, inception_file, tmp_path, *image_sets)
    expected = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    assert expected > 1.0
    assert result.value == pytest.approx(expected, abs=1e-3)
    assert "FID on 4 < 2048 images is biased and not comparable with published numbers" in result.note


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")
def test_fid_on_features_matches_frechet_distance_and_warns_below_2048():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (40, 8)), rng.normal(0.5, 1.2, (30, 8))
    expected = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    result = fid(a, torch.from_numpy(b))
    assert result.value == pytest.approx(expected, abs=1e-9) and result.n == 30
    assert result.name == "fid" and math.isnan(result.ci_low) and math.isnan(result.ci_high)
    assert result.note == "FID on 30 < 2048 images is biased and not comparable with published numbers"
    with pytest.raises(ValueError, match="at least 2 images"):
        fid(a[:1], b)


def test_fid_captures_what_pytorch_fid_prints_and_warns(monkeypatch, capsys):
    """pytorch-fid prints its singular-product fallback and scipy warns; both belong in the note."""
    from pytorch_fid import fid_score

    def noisy(*args, **kwargs):
        print("fid calculation produces singular product; adding 1e-06 to diagonal of cov estimates")
        warnings.warn("Matrix is singular.", RuntimeWarning, stacklevel=1)
        return 1.5

    monkeypatch.setattr(fid_score, "calculate_frechet_distance", noisy)
    result = fid(np.eye(3), np.eye(3))
    assert result.value == 1.5 and capsys.readouterr().out == ""
    assert "adding 1e-06 to diagonal" in result.note and "scipy: Matrix is singular." in result.note


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_equals_torchmetrics():
    """Same features, same seed: torchmetrics' KernelInceptionDistance with an identity extractor."""
    torchmetrics_kid = pytest.importorskip("torchmetrics.image.kid")
    rng = np.random.default_rng(2)
    real = torch.from_numpy(np.abs(rng.normal(0.3, 0.2, (60, 2048))))
    fake = torch.from_numpy(np.abs(rng.normal(0.35, 0.25, (45, 2048))))
    metric = torchmetrics_kid.KernelInceptionDistance(feature=torch.nn.Identity(), subsets=20, subset_size=30)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(5)  # torchmetrics draws its subsets from the global generator
    expected_mean, expected_std = metric.compute()

    ours = kid(real, fake, subsets=20, subset_size=30, seed=5)
    assert ours.mean == pytest.approx(expected_mean.item(), abs=1e-6)
    assert ours.std == pytest.approx(expected_std.item(), abs=1e-6)
    assert ours.mean > 0 and ours.subset_size == 30 and (ours.n_real, ours.n_fake) == (60, 45)


def test_kid_equals_the_unbiased_estimator_written_out():
    """Subsets as large as the sets: every subset is the whole set, so KID is the full-set MMD^2."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 1, (12, 5)), rng.normal(0.4, 1, (12, 5))

    def k(a, b):
        return (a @ b / 5 + 1) ** 3

    m = 12
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    expected = xx + yy - 2 * xy

    result = kid(x, y, subsets=3, subset_size=1000, seed=0)
    assert result.subset_size == 12 and result.subsets == 1
    # One subset, the whole set: no spread to report (a std of 0 would read as certainty).
    assert result.mean == pytest.approx(expected, abs=1e-9) and math.isnan(result.std)
    assert kid(x, y, subsets=3, subset_size=11, seed=0).std > 0
    assert polynomial_mmd2(torch.from_numpy(x), torch.from_numpy(y)).item() == pytest.approx(expected, abs=1e-9)
    assert kid(x, y, subsets=5, subset_size=6, seed=0) == kid(x, y, subsets=5, subset_size=6, seed=0)


def test_accumulator_keeps_features_only_and_checks_shapes():
    acc = FeatureAccumulator()
    acc.add_features(np.ones((3, 4)))
    acc.add_features(torch.zeros(2, 4))
    assert len(acc) == 5 and acc.features.shape == (5, 4) and acc.features.dtype == np.float64
    with pytest.raises(ValueError, match="one D"):
        acc.add_features(np.ones((1, 3)))
    with pytest.raises(ValueError, match="no extractor"):
        acc.update(torch.rand(1, 3, 8, 8))


def test_missing_inception_weights_say_how_to_provide_them(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("INPAINT_FID_WEIGHTS", raising=False)
    with pytest.raises(MetricWeightsMissing) as info:
        InceptionFeatures()
    message = str(info.value)
    for part in ("pt_inception-2015-12-05-6726825d.pth", "--fid-weights", "INPAINT_FID_WEIGHTS", str(tmp_path)):
        assert part in message


def test_kid_default_subsets_give_a_spread_at_the_studys_500_images():
    """At N = 500 the customary subset size (1000) would make every subset the whole set (no
    spread); the default takes half the images, so the subsets differ."""
    from inpaint.metrics.features import kid_subset_size

    assert kid_subset_size(500) == 250 and kid_subset_size(2000) == 1000 and kid_subset_size(50_000) == 1000
    assert kid_subset_size(3) == 2
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, (500, 8)), rng.normal(0.2, 1, (500, 8))
    result = kid(x, y, subsets=10, seed=0)
    assert result.subset_size == 250 and result.subsets == 10 and result.std > 0
    assert result == kid(x, y, subsets=10, subset_size=250, seed=0)
