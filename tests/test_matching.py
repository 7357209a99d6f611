"""Matching in the field's language: each failure the relevance issue listed, pinned.

Fixtures are small explicit papers; where the issue named a real paper of the
bundled sample, the test uses the sample itself.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bot.matching import (
    ALERT_THRESHOLD,
    PaperTerms,
    Topic,
    TopicIndex,
    Vocabulary,
    field_vocabulary,
)
from bot.models import Paper
from bot.ranking import rank_for_topic
from bot.sample import load_sample

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def paper(pid: str, title: str, summary: str = "", upvotes: int = 0) -> Paper:
    return Paper(paper_id=pid, title=title, summary=summary, upvotes=upvotes, published_at=NOW)


def relevance(topic: str, title: str, summary: str = ""):
    return Topic(topic).relevance(PaperTerms.of(paper("x", title, summary)))


def titles(topic: str, papers: list[Paper]) -> list[str]:
    return [doc.paper.title for doc, _ in TopicIndex(papers).match(topic)]


@pytest.fixture(scope="module")
def sample() -> list[Paper]:
    return load_sample()


# --- abbreviations, both ways --------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "title"), [
    ("ood", "Domain-Specific Risk Minimization for Out-of-Distribution Generalization"),
    ("out-of-distribution", "Unraveling the Key Components of OOD Generalization"),
    ("vlm", "Test-Time Prompt Tuning for Zero-Shot Generalization in Vision-Language Models"),
    ("vision-language models", "OrdinalBench: Ordinal Number Understanding of VLMs"),
    ("llm", "Exploring Length Generalization in Large Language Models"),
    ("large language models", "Can LLMs Solve longer Math Word Problems Better?"),
    ("moe", "Optimal Sparsity of Mixture-of-Experts Language Models"),
    ("mixture of experts", "Uni-Perceiver-MoE: Learning Sparse Generalist Models with Conditional MoEs"),
    ("rl", "The Generalization Gap in Offline Reinforcement Learning"),
    ("cot", "Scaling Curves of Chain-of-Thought Granularity"),
    ("icl", "In-Context Learning Without Labels"),
    ("in-context learning", "What Makes ICL Work?"),
])
def test_abbreviation_and_long_form_meet(topic: str, title: str) -> None:
    assert relevance(topic, title).sent, (topic, title)


def test_explanation_says_which_form_was_found_where() -> None:
    found = relevance("ood", "The Value of Out-of-Distribution Data")
    assert found.reasons == ("OOD → out-of-distribution (title)",)
    found = relevance("vision language models", "Prompting VLMs", "We prompt vision-language models.")
    assert "vision language models → VLM (title)" in found.reasons
    assert "vision language models (abstract)" in found.reasons


def test_ood_recall_on_the_sample_is_no_longer_a_sixth(sample: list[Paper]) -> None:
    """The issue measured recall 0.16 for OOD: papers saying 'out-of-distribution' were never found."""
    found = set(titles("ood generalization", sample))
    for title in ("Domain-Specific Risk Minimization for Out-of-Distribution Generalization",
                  "The Value of Out-of-Distribution Data",
                  "Unraveling the Key Components of OOD Generalization via Diversification"):
        assert title in found


# --- plural abbreviations ----------------------------------------------------------------------


def test_plural_abbreviation_is_the_abbreviation(sample: list[Paper]) -> None:
    assert "Can LLMs Solve longer Math Word Problems Better?" in titles("llm reasoning", sample)
    assert titles("vlms", sample) == titles("vlm", sample)
    assert relevance("gnn", "Towards Understanding the Generalization of GNNs").sent
    assert relevance("llms", "A Survey of Large Language Models").sent


# --- hyphenated and compound terms -------------------------------------------------------------


def test_in_context_learning_is_a_phrase_not_context_plus_learning(sample: list[Paper]) -> None:
    assert "Improvements to context based self-supervised learning" not in titles("in-context learning", sample)
    assert not relevance("in-context learning", "Context Matters for Continual Learning").sent
    assert relevance("in-context learning", "In Context Learning of Linear Functions").sent


def test_test_time_scaling_is_not_test_time_adaptation(sample: list[Paper]) -> None:
    assert titles("test-time scaling", sample) == []
    assert not relevance("test-time scaling", "Improved Test-Time Adaptation for Domain Generalization",
                         "Scaling laws for time series; a test of adaptation.").sent
    assert relevance("test-time scaling", "Test-Time Scaling for Reasoning Models").sent


def test_hyphenated_and_joined_spellings_meet() -> None:
    assert relevance("overparameterized networks", "Why Over-Parameterized Networks Generalize").sent
    assert relevance("fine-tuning", "Finetuning Language Models").sent
    assert relevance("finetuning", "Robust Fine-Tuning of Robot Policies").sent
    assert relevance("sim-to-real", "Sim-to-Real Transfer for Mobile Robots").sent


# --- long questions ------------------------------------------------------------------------------


def test_long_question_finds_length_generalization_first(sample: list[Paper]) -> None:
    """Question words do not count; 'generalize to longer inputs' is the field's length generalization."""
    topic = Topic("why do llms fail to generalize to longer inputs")
    assert {c.label for c in topic.concepts} >= {"LLM", "generalize to longer inputs"}
    assert not {"why", "do", "to"} & {c.label for c in topic.concepts}
    found = titles("why do llms fail to generalize to longer inputs", sample)
    assert found and found[0] == "Exploring Length Generalization in Large Language Models"
    assert "SAGE-Eval: Evaluating LLMs for Systematic Generalizations of Safety Facts" not in found
    ranked = [r.paper.title for r in rank_for_topic("why do llms fail to generalize to longer inputs", sample, now=NOW)]
    assert all("Length Generalization" in t or "longer" in t for t in ranked[:4])


# --- three-word topics -------------------------------------------------------------------------


def test_three_word_topic_needs_all_of_it(sample: list[Paper]) -> None:
    """The issue: `vision language models` returned 82 of 174 papers, speech and robotics on top."""
    found = titles("vision language models", sample)
    assert 0 < len(found) <= 15
    for off_topic in ("LLaSO: A Foundational Framework for Reproducible Research in Large Language and Speech Model",
                      "Learning to Grasp Anything by Playing with Random Toys"):
        assert off_topic not in found


def test_hate_speech_is_not_speech(sample: list[Paper]) -> None:
    speech = titles("speech", sample)
    assert speech and not any("Hate Speech" in t for t in speech)
    assert len(titles("hate speech detection", sample)) == 2


# --- popularity --------------------------------------------------------------------------------


def test_domain_generalization_titles_beat_a_popular_near_miss(sample: list[Paper]) -> None:
    ranked = rank_for_topic("domain generalization", sample, now=NOW)
    top = [r.paper.title for r in ranked[:5]]
    assert sum("Domain Generalization" in t for t in top) >= 4
    assert "X-Reasoner: Towards Generalizable Reasoning Across Modalities and Domains" not in top


# --- the threshold and the API others build on -----------------------------------------------


def test_a_passing_mention_is_not_sent_but_a_title_is() -> None:
    filler = " ".join(f"We evaluate model {i} on a benchmark of tasks." for i in range(25))
    passing = relevance("grokking", "Efficient Attention Kernels", f"{filler} We also note grokking once.")
    assert 0 < passing.score < ALERT_THRESHOLD and not passing.sent
    assert relevance("grokking", "Explaining Grokking Through Circuit Efficiency").sent


def test_threshold_is_a_parameter_and_scores_are_bounded() -> None:
    doc = PaperTerms.of(paper("x", "Grokking", "Grokking grokking grokking."))
    strict = Topic("grokking").relevance(doc, threshold=1.01)
    loose = Topic("grokking").relevance(doc, threshold=0.0)
    assert strict.score == loose.score and 0 < strict.score <= 1
    assert loose.sent and not strict.sent


# --- the vocabulary ------------------------------------------------------------------------------


def test_bundled_vocabulary_parses_and_covers_the_field() -> None:
    vocabulary = field_vocabulary()
    names = {term.name for term in vocabulary.terms}
    assert {"LLM", "VLM", "OOD", "MoE", "RL", "RLHF", "CoT", "ICL", "ViT", "GNN", "GAN", "VAE", "NeRF", "SFT",
            "DPO", "PEFT", "LoRA", "RAG", "KD", "SSL", "ASR", "TTS", "NLP", "CV"} <= names


def test_vocabulary_refuses_a_form_on_two_lines_and_is_extended_by_a_line() -> None:
    with pytest.raises(ValueError, match="belongs to both"):
        Vocabulary.parse("DG | domain generalization\nDGX | domain generalization\n")
    with pytest.raises(ValueError, match="not defined"):
        Vocabulary.parse("UDA > domain adaptation\n")
    extended = Vocabulary.parse("UDA | unsupervised domain adaptation\n")
    topic = Topic("uda", extended)
    doc = PaperTerms.compute(paper("x", "Unsupervised Domain Adaptation for Segmentation"), extended)
    assert topic.relevance(doc).sent
