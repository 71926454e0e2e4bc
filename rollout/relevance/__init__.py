"""Relevance evidence: does the candidate find what the baseline found, or better?

Raw cosine similarity cannot answer that across two embedding models (their scales differ),
so relevance is measured from sources that know what a good answer is: a labelled golden
set (`rollout eval`), user feedback, known-item probes and a pairwise judge. Every row is
stored with the name of the version that produced it.
"""
