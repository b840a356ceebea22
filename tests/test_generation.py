"""Sampling in `perfrl_trl.generation`: the inverse-CDF draw matches the distribution transformers samples from,
and `generate_completions` applies the warpers and keeps every prompt's samples with their prompt."""

import pytest
import torch
from transformers.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from perfrl_trl.generation import (
    InverseCDFSampler,
    _fast_sampling_warpers,
    base_generation_config,
    generate_completions,
    sampling_config,
    tokenize_prompts,
)


def base_generation_config_for_tests():
    from transformers import GenerationConfig

    return GenerationConfig(max_new_tokens=8, pad_token_id=0, eos_token_id=2)


def drawn_frequencies(warpers, scores: torch.Tensor, n: int) -> torch.Tensor:
    """How often each token is drawn over ``n`` rows that all have ``scores``."""
    rows = scores.expand(n, -1).clone()
    for warper in warpers:
        rows = warper(None, rows)
    kept = torch.isfinite(rows)
    assert kept.sum(dim=1).eq(1).all() and rows[kept].eq(0).all()  # one token left per row, at score 0
    return kept.double().mean(dim=0)


@pytest.mark.parametrize(
    "temperature,top_k,top_p", [(1.0, 0, 1.0), (0.5, 0, 1.0), (1.0, 3, 1.0), (0.7, 0, 0.8)]
)
def test_inverse_cdf_draws_follow_the_warped_softmax(temperature, top_k, top_p):
    torch.manual_seed(0)
    scores = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, float("-inf"), 1.5]])
    config = sampling_config(
        base_generation_config_for_tests(), do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p
    )
    warpers = _fast_sampling_warpers(config)
    # What transformers samples from: the same warpers' softmax (no sampler), computed on its own.
    expected = scores.clone()
    for warper in (
        TemperatureLogitsWarper(temperature) if temperature != 1.0 else None,
        TopKLogitsWarper(top_k) if top_k else None,
        TopPLogitsWarper(top_p) if top_p < 1.0 else None,
    ):
        if warper is not None:
            expected = warper(None, expected)
    expected = expected.softmax(dim=-1)[0].double()
    n = 40_000
    got = drawn_frequencies(warpers, scores, n)
    sigma = (expected * (1 - expected) / n).sqrt()
    assert ((got - expected).abs() <= 5 * sigma + 1e-12).all(), (got, expected)
    assert got[expected == 0].eq(0).all()  # a token of probability 0 is never drawn


def test_inverse_cdf_draw_never_picks_a_zero_probability_token_at_the_edge(monkeypatch):
    # The tokens that can be drawn are 1 and 3; those after them have probability 0. A uniform that rounds up to
    # the total (forced here: rounding makes it possible, not likely) must still land on token 3, not past it.
    scores = torch.full((4, 6), float("-inf"))
    scores[:, [1, 3]] = 0.0
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.ones(*shape, **kw))
    out = InverseCDFSampler()(None, scores)
    assert out.argmax(dim=-1).eq(3).all()
    assert torch.isfinite(out).sum(dim=-1).eq(1).all()


def test_warpers_match_the_config_and_fall_back_for_others():
    base = base_generation_config_for_tests()
    warpers = _fast_sampling_warpers(
        sampling_config(base, do_sample=True, temperature=0.7, top_k=50, top_p=0.9)
    )
    assert [type(w) for w in warpers] == [
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        InverseCDFSampler,
    ]
    assert [type(w) for w in _fast_sampling_warpers(sampling_config(base, do_sample=True, top_k=0))] == [
        InverseCDFSampler
    ]
    # Not sampling, beams, or a warper the fast path does not reproduce: transformers' own sampler.
    assert _fast_sampling_warpers(sampling_config(base, do_sample=False)) is None
    assert _fast_sampling_warpers(sampling_config(base, do_sample=True, num_beams=2)) is None
    assert _fast_sampling_warpers(sampling_config(base, do_sample=True, min_p=0.1)) is None


@pytest.fixture(scope="module", params=["bundled", "bundled-causal"])
def bundled(request):
    from perfrl_trl.data.benchmark import build_benchmark
    from perfrl_trl.models import BUNDLED_CHECKPOINTS, load_model_and_tokenizer
    from perfrl_trl.trainer import RRHFConfig

    model, tok = load_model_and_tokenizer(str(BUNDLED_CHECKPOINTS[request.param]))
    prompts = list(build_benchmark(n_per_family=2, seed=0)["train"]["prompt"][:3])
    config = RRHFConfig("unused", max_completion_length=64, max_prompt_length=256, report_to=[])
    inputs = tokenize_prompts(tok, prompts, config.max_prompt_length, torch.device("cpu"))
    return model, tok, inputs, base_generation_config(model, tok, config)


def test_samples_with_top_k_1_are_each_prompts_greedy_decode(bundled):
    # Top-k 1 leaves each step one token, the arg-max: every sample must be its own prompt's greedy program,
    # which checks that the warpers run and that prompt i's samples are prompt i's.
    model, tok, inputs, base = bundled
    greedy = generate_completions(model, tok, inputs, sampling_config(base, do_sample=False), 1)
    sampled = generate_completions(model, tok, inputs, sampling_config(base, do_sample=True, top_k=1), 3)
    assert len({g[0].text for g in greedy}) == len(greedy)  # the prompts' programs differ
    for g, group in zip(greedy, sampled):
        assert [c.ids for c in group] == [g[0].ids] * 3


def test_sampling_is_reproducible_from_the_seed(bundled):
    model, tok, inputs, base = bundled
    config = sampling_config(base, do_sample=True, top_k=50)

    def draw(seed):
        torch.manual_seed(seed)
        return [[c.ids for c in group] for group in generate_completions(model, tok, inputs, config, 4)]

    first = draw(0)
    assert draw(0) == first
    assert draw(1) != first
    assert len(first) == 3 and all(len(group) == 4 for group in first)
    assert any(len({tuple(ids) for ids in group}) > 1 for group in first)  # samples, not one decode
