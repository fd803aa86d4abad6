import math

import pytest

torch = pytest.importorskip("torch")

from training.objectives import (  # noqa: E402
    bernoulli_nll,
    gaussian_nll,
    importance_weighted_bound,
    kl_per_dim,
    log_normal,
    log_standard_normal,
    negative_elbo,
)


def test_closed_form_kl_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    mu = torch.tensor([[0.5, -1.0, 2.0]])
    logvar = torch.tensor([[-0.5, 0.3, -2.0]])
    z = mu + torch.randn(400_000, 3, generator=gen) * (0.5 * logvar).exp()
    monte_carlo = (log_normal(z, mu, logvar) - log_standard_normal(z)).mean()
    assert kl_per_dim(mu, logvar).sum().item() == pytest.approx(monte_carlo.item(), rel=0.01)


def _toy_bound(k: int, reps: int, gen):
    """IW bound for x = 1.5 under z ~ N(0, 1), x|z ~ N(z, 1), with a deliberately poor q = N(0.2, 0.5)."""
    x, q_mu, q_logvar = 1.5, torch.tensor(0.2), torch.tensor(math.log(0.5))
    z = q_mu + torch.randn(k, reps, generator=gen) * (0.5 * q_logvar).exp()
    log_px_z = -0.5 * (math.log(2 * math.pi) + (x - z) ** 2)
    log_pz = -0.5 * (math.log(2 * math.pi) + z**2)
    log_qz = -0.5 * (math.log(2 * math.pi) + q_logvar + (z - q_mu) ** 2 / q_logvar.exp())
    return importance_weighted_bound(log_px_z, log_pz, log_qz).mean()


def test_importance_weighted_bound_tightens_with_k_towards_log_px():
    gen = torch.Generator().manual_seed(0)
    exact = -0.5 * (math.log(2 * math.pi * 2.0) + 1.5**2 / 2.0)  # x ~ N(0, 2) marginally
    bounds = [_toy_bound(k, 4000, gen).item() for k in (1, 5, 50, 1000)]
    assert bounds == sorted(bounds), bounds
    assert bounds[0] < exact - 0.05  # K=1 is the (loose) ELBO
    assert bounds[-1] <= exact + 1e-3 and bounds[-1] == pytest.approx(exact, abs=0.01)


def test_beta_scales_only_the_kl():
    gen = torch.Generator().manual_seed(1)
    rec = torch.rand(8, generator=gen) * 100
    mu, logvar = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    one, four = negative_elbo(rec, mu, logvar, beta=1.0), negative_elbo(rec, mu, logvar, beta=4.0)
    assert torch.equal(one.rec, four.rec) and torch.equal(one.kl, four.kl)
    assert four.total.item() == pytest.approx(one.rec.item() + 4.0 * one.kl.item(), rel=1e-6)


def test_free_bits_floor_the_objective_but_not_the_reported_kl():
    mu, logvar = torch.zeros(4, 3), torch.zeros(4, 3)  # q equals the prior: KL is 0
    terms = negative_elbo(torch.zeros(4), mu, logvar, free_bits=0.5)
    assert terms.kl.item() == 0.0
    assert terms.total.item() == pytest.approx(1.5)  # 3 dimensions x 0.5 nats


def test_bernoulli_nll_is_the_negative_log_probability_of_the_pixels():
    logits = torch.tensor([[[[0.0, 2.0]]]])
    x = torch.tensor([[[[1.0, 0.0]]]])
    expected = -(math.log(0.5) + math.log(1 - 1 / (1 + math.exp(-2.0))))
    assert bernoulli_nll(logits, x).item() == pytest.approx(expected, rel=1e-6)


def test_gaussian_nll_matches_the_density():
    mean, x = torch.zeros(1, 1, 1, 2), torch.tensor([[[[0.1, -0.2]]]])
    log_sigma = torch.tensor(math.log(0.1))
    density = sum(-0.5 * math.log(2 * math.pi * 0.01) - v**2 / 0.02 for v in (0.1, -0.2))
    assert gaussian_nll(mean, x, log_sigma).item() == pytest.approx(-density, rel=1e-5)
