"""Retrieval: find the documents a question needs (BM25), put them in the prompt, check the citations.

The corpus is a folder of Markdown files (`datasets/cs_corpus/`, one document each,
its id the file name without `.md`). BM25 (Robertson & Zaragoza's Okapi weighting,
k1=1.5, b=0.75) is written out here in a few lines: the corpus is small, and a
learner can read every step of the ranking.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import PromptkitError
from .graders import BaseGrader, Grade, gold_of
from .types import Completion, Request, Settings

_WORD = re.compile(r"[a-z0-9]+(?:[.'%-][a-z0-9]+)*")
STOPWORDS = frozenset(
    "a an and are as at be by for from has have how in is it its of on or that the their them they this to was "
    "what when which who will with within our we you your does do did after before".split())


class RetrievalError(PromptkitError, ValueError):
    """A corpus or a retrieval setting is malformed."""


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers, stop words dropped (the same for documents and questions)."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


def corpus_dir() -> Path:
    from .datasets import datasets_dir

    return datasets_dir() / "cs_corpus"


def load_corpus(path: str | Path | None = None) -> list[Document]:
    """Every `*.md` file of the folder as a Document (title: its first `# ` line)."""
    folder = Path(path) if path is not None else corpus_dir()
    files = sorted(folder.glob("*.md"))
    if not files:
        raise RetrievalError(f"{folder}: no .md documents")
    docs = []
    for f in files:
        text = f.read_text(encoding="utf-8").strip()
        first = text.splitlines()[0] if text else ""
        title = first[2:].strip() if first.startswith("# ") else f.stem
        docs.append(Document(f.stem, title, text))
    return docs


class BM25:
    """Okapi BM25 over a list of Documents: `search(question, k)` returns the k best (document, score)."""

    def __init__(self, docs: Sequence[Document], k1: float = 1.5, b: float = 0.75) -> None:
        if not docs:
            raise RetrievalError("BM25 needs at least one document")
        self.docs, self.k1, self.b = list(docs), k1, b
        self.tf = [Counter(tokenize(d.text)) for d in self.docs]
        self.len = [sum(tf.values()) for tf in self.tf]
        self.avg = sum(self.len) / len(self.len)
        df = Counter(w for tf in self.tf for w in tf)
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}

    def scores(self, query: str) -> list[float]:
        q = tokenize(query)
        out = []
        for tf, length in zip(self.tf, self.len):
            s = 0.0
            for w in q:
                f = tf.get(w, 0)
                if f:
                    s += self.idf[w] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * length / self.avg))
            out.append(s)
        return out

    def search(self, query: str, k: int = 3) -> list[tuple[Document, float]]:
        if not isinstance(k, int) or k < 1:
            raise RetrievalError(f"k must be a whole number of at least 1, got {k!r}")
        sc = self.scores(query)
        order = sorted(range(len(sc)), key=lambda i: (-sc[i], self.docs[i].id))
        return [(self.docs[i], sc[i]) for i in order[:k]]


def recall_at_k(retrieved: Sequence[str], gold: Iterable[str]) -> float:
    """Share of the gold documents among the retrieved ids."""
    gold = list(gold)
    return sum(g in retrieved for g in gold) / len(gold) if gold else 1.0


def retrieval_table(index: BM25, rows: Sequence[Any], ks: Sequence[int] = (1, 2, 3, 5)) -> Any:
    """Mean recall@k over the rows (their targets' `docs`) for each k, and the share with every gold doc found."""
    import pandas as pd

    recs = []
    for k in ks:
        rec = [recall_at_k([d.id for d, _ in index.search(r.input["question"], k)], r.target["docs"]) for r in rows]
        recs.append({"k": k, "recall@k": sum(rec) / len(rec), "all gold docs found": sum(x == 1.0 for x in rec) / len(rec)})
    return pd.DataFrame(recs)


def format_documents(docs: Sequence[Document]) -> str:
    """Documents in tags with their ids, for the prompt: the model cites them as [id]."""
    return "\n\n".join(f'<document id="{d.id}">\n{d.text}\n</document>' for d in docs)


class WithRetrieval:
    """A prompt variant that retrieves k documents for the row's question and fills `{{documents}}`."""

    def __init__(self, template: Any, index: BM25, k: int = 3, *, field: str = "question", name: str | None = None,
                 strict: bool = True) -> None:
        if strict and "documents" not in template.variables:
            raise RetrievalError(f"template {template.name!r} has no {{{{documents}}}} slot for the retrieved text")
        self.template, self.index, self.k, self.field = template, index, k, field
        self.name = name or f"{template.name} (top {k})"

    def retrieved(self, variables: Mapping[str, Any]) -> list[Document]:
        return [d for d, _ in self.index.search(str(variables[self.field]), self.k)]

    def to_request(self, variables: Mapping[str, Any], settings: Settings) -> Request:
        docs = self.retrieved(variables)
        return self.template.to_request({**variables, "documents": format_documents(docs)}, settings)


_CITE = re.compile(r"\[([a-z0-9][a-z0-9-]*)\]")


def citations(text: str) -> list[str]:
    """Document ids cited as [id] in an answer, in order, each once."""
    return list(dict.fromkeys(_CITE.findall((text or "").lower())))


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", str(text).replace("\u2019", "'").replace("\u2013", "-").casefold()).strip()


def _found(accept: str, text: str) -> bool:
    """Whether an accepted answer appears in the text as a whole word or number ("40" in "40%", not in "140")."""
    a = _plain(accept)
    t = _plain(text)
    if not a:
        return False
    pat = (r"(?<![a-z0-9])" if a[0].isalnum() else "") + re.escape(a) + (r"(?![a-z0-9])" if a[-1].isalnum() else "")
    return re.search(pat, t) is not None or re.search(pat, t.replace(",", "")) is not None


class _CitedAnswer(BaseGrader):
    def __init__(self, name: str) -> None:
        self.name = name

    def grade(self, completion: Completion, target: Any) -> Grade:
        gold = gold_of(target)
        if not isinstance(gold, Mapping) or "accept" not in gold:
            raise RetrievalError(f"{self.name}: the target must hold 'answer', 'accept' and 'docs', got {gold!r}")
        text = completion.text or ""
        cited = citations(text)
        want = list(gold.get("docs", []))
        hits = [a for a in gold["accept"] if _found(a, text)]
        correct = bool(hits)
        good = [c for c in cited if c in want]
        details = {"answer_correct": correct, "cited": cited, "gold_docs": want,
                   "citation_precision": len(good) / len(cited) if cited else None,
                   "citation_recall": len(good) / len(want) if want else None,
                   "cites_gold": bool(good), "matched": hits}
        if not text.strip():
            return Grade(0.0, False, "empty answer", parsed=False, details=details)
        reason = (f"answer {'contains' if correct else 'lacks'} the gold answer ({gold['answer']!r})"
                  + (f"; cites {', '.join(cited)}" if cited else "; cites nothing")
                  + (f" ({len(good)} of them gold)" if cited else ""))
        return Grade(float(correct), correct, reason, details=details)


def cited_answer(*, name: str = "cited_answer") -> BaseGrader:
    """Grades an answer by whether it contains one of the target's accepted answers; records its [doc-id]
    citations against the gold documents (precision, recall) in the details."""
    return _CitedAnswer(name)


def answer_table(results: Any, grader: str = "cited_answer") -> Any:
    """Per variant and model: answer accuracy, the share citing a gold document, citation precision, tokens."""
    import pandas as pd

    recs = []
    for (v, m), cells in results.cells_by("variant", "model").items():
        ds = [c.grades[grader].details for c in cells if grader in c.grades]
        prec = [d["citation_precision"] for d in ds if d.get("citation_precision") is not None]
        recs.append({
            "variant": v, "model": m, "n": len(cells),
            "answer accuracy": sum(d["answer_correct"] for d in ds) / len(cells),
            "cites a gold document": sum(d["cites_gold"] for d in ds) / len(cells),
            "answers with citations": sum(bool(d["cited"]) for d in ds) / len(cells),
            "citation precision": sum(prec) / len(prec) if prec else None,
            "input_tokens_mean": float(pd.Series([c.completion.input_tokens for c in cells], dtype="float").mean()),
        })
    return pd.DataFrame(recs)


__all__ = ["BM25", "Document", "RetrievalError", "WithRetrieval", "answer_table", "cited_answer", "citations",
           "format_documents", "load_corpus", "recall_at_k", "retrieval_table", "tokenize"]
