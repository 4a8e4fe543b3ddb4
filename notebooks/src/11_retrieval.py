# %% [markdown]
# # 11. Retrieval: give the model the documents it needs
#
# A model knows nothing about *your* accounts and playbooks. **Retrieval** finds the few documents a
# question needs and puts them in the prompt, so the model can answer from them (and cite them). This
# chapter uses a small corpus of customer-success documents (playbooks and account histories) and
# questions whose gold answer and gold documents were written by hand, and measures:
#
# 1. how often the retriever finds the gold documents (**recall@k**), before any model runs;
# 2. answer accuracy **without** retrieval (closed book) and **with** the top 1 or top 3 documents;
# 3. whether the documents the model cites are the gold ones.
#
# The retriever is BM25, the classic lexical ranking (word overlap, weighted by how rare each word is),
# written out in `promptkit/retrieval.py` in forty lines.

# %% tags=[parameters]
MODEL = "local:qwen2.5-0.5b"
N_ROWS = 10  # dev questions answered per variant (CI runs fewer)
MAX_TOKENS = 60
CHECK = True  # run the exercise check on its held-out rows (CI checks exercises in tests/test_curriculum_b.py)

# %%
%matplotlib inline
import pandas as pd

import promptkit as pk
from promptkit import evidence, lessons, retrieval

pd.set_option("display.max_colwidth", 120)
qs = pk.load_dataset("cs_questions")
docs = retrieval.load_corpus()
index = retrieval.BM25(docs)
print(qs, f"\n{len(docs)} documents, {sum(len(d.text.split()) for d in docs)} words in all")

# %% [markdown]
# ## 1. The corpus and the questions

# %%
pd.DataFrame([{"id": d.id, "title": d.title, "words": len(d.text.split())} for d in docs])

# %%
qs.to_frame()[["id", "split", "question", "target"]].head(5)

# %% [markdown]
# ## 2. What BM25 does with one question
#
# Each document gets a score from the question's words it contains, more for rare words and for short
# documents. The top of the list goes into the prompt.

# %%
q = qs.split("dev").rows[0]
print("Question:", q.input["question"], "| gold documents:", q.target["docs"])
pd.DataFrame([{"rank": i + 1, "id": d.id, "score": round(s, 2), "gold": d.id in q.target["docs"]}
              for i, (d, s) in enumerate(index.search(q.input["question"], 5))])

# %% [markdown]
# ## 3. Retrieval quality, measured before any model runs
#
# Recall@k is the share of a question's gold documents among the top k retrieved, averaged over all the
# questions (every split: no model is tuned on them here). No model call is needed, so this runs in a
# blink on every question.

# %%
recall = retrieval.retrieval_table(index, qs.rows, ks=(1, 2, 3, 5))
ax = recall.plot(x="k", y=["recall@k", "all gold docs found"], marker="o", ylim=(0, 1.05), figsize=(6, 2.6))
ax.set_ylabel("share of questions")
recall

# %%
r1 = float(recall.set_index("k").loc[1, "recall@k"])
r3 = float(recall.set_index("k").loc[3, "recall@k"])
missed = [r.id for r in qs.rows if not set(r.target["docs"]) & {d.id for d, _ in index.search(r.input["question"], 3)}]
print(f"Over the {len(qs)} questions, BM25's recall@1 is {r1:.0%} and its recall@3 {r3:.0%}. "
      f"Questions with no gold document in the top 3: {', '.join(missed) or 'none'}.")

# %% [markdown]
# ## 4. Answers with and without retrieval
#
# Three variants on the same dev questions: the task's closed-book prompt, and a prompt with the top 1 or top
# 3 documents **first** and the question **last**, asking for the exact fact and the id of the document used.
# The grader passes an answer that contains the gold fact (a figure, a name, a date, in any of its accepted
# forms) and records its `[document-id]` citations against the gold documents.

# %%
closed = qs.template().replace(name="closed book")
grounded = pk.Template.from_dict({
    "name": "grounded", "system": "You are a customer-success operations assistant. You answer only from the documents you are given.",
    "turns": [{"role": "user", "content": (
        "{{documents}}\n\nQuestion: {{question}}\n\nAnswer in one short sentence with the exact figure, name or date "
        "from the documents. End with the id of the document you used, in square brackets, e.g. [doc-id].")}]})
variants = [closed, retrieval.WithRetrieval(grounded, index, k=1, name="top 1"),
            retrieval.WithRetrieval(grounded, index, k=3, name="top 3")]
answers = lessons.evaluate(variants, "cs_questions", n=N_ROWS, models=[MODEL], max_tokens=MAX_TOKENS)
table = retrieval.answer_table(answers)
table

# %%
ax = table.set_index("variant")[["answer accuracy", "cites a gold document"]].plot.bar(rot=0, figsize=(7, 2.8), ylim=(0, 1))
ax.set_ylabel("share of questions")

# %% [markdown]
# Computed from this run:

# %%
t = table.set_index("variant")
best = t["answer accuracy"].idxmax()
print(f"Closed book, the model answered {t.loc['closed book', 'answer accuracy']:.0%} of {int(t.loc['closed book', 'n'])} "
      f"questions right; with the top document {t.loc['top 1', 'answer accuracy']:.0%}, with the top 3 "
      f"{t.loc['top 3', 'answer accuracy']:.0%}. Best: {best}.")
print(f"Reading 3 documents cost {t.loc['top 3', 'input_tokens_mean'] / t.loc['closed book', 'input_tokens_mean']:.1f}× "
      f"the input tokens of the closed-book prompt ({t.loc['top 3', 'input_tokens_mean']:.0f} vs "
      f"{t.loc['closed book', 'input_tokens_mean']:.0f} per question).")
test = answers.compare("top 3", "closed book")
print(f"Top 3 vs closed book on the same questions: {test.test}, p = {test.p_value:.2f} "
      f"({'a significant difference' if test.significant else 'not significant on this many questions'}).")

# %% [markdown]
# ## 5. Citations, checked against the gold documents
#
# A citation is only useful if it points at a document that holds the answer. For every answer that cites
# something: what it cited, the gold documents, and whether the answer itself was right.

# %%
rows = []
for r in answers.results:
    d = r.grades["cited_answer"].details
    if d["cited"]:
        rows.append({"variant": r.cell.variant, "row_id": r.cell.row_id, "answer": r.completion.text.strip()[:100],
                     "cited": ", ".join(d["cited"]), "gold docs": ", ".join(d["gold_docs"]),
                     "citation precision": d["citation_precision"], "answer right": d["answer_correct"]})
cites = pd.DataFrame(rows, columns=["variant", "row_id", "answer", "cited", "gold docs", "citation precision", "answer right"])
print(f"{len(cites)} of {len(answers.results)} answers cite a document; "
      f"{int((cites['citation precision'] == 1).sum())} of those cite only gold documents.")
cites

# %% [markdown]
# ## 6. What the literature says
#
# Published, on models far larger than this one: where the answer document sits in a long prompt matters,
# and vendors advise documents first, the question last, documents in tags, and quoting before answering.
# Our prompts follow that layout; with one to three short documents the "middle" effect has little room to
# show here.

# %%
evidence.cited("lost_in_the_middle", "docs_first_query_last", "xml_prefill_grounding")

# %% [markdown]
# ## Exercises
#
# ### 11.1 Answer from the documents
# The check retrieves the 2 best documents for each held-out question into `{{documents}}`. Write the prompt
# that makes the model state the gold fact, on all 23 held-out questions: the lower bound (95%) of the share
# answered right must reach 0.45, so a lucky few cannot pass. Citations are not graded in this check: read
# them in `result.results.df` and compare them with the gold documents yourself.

# %%
pk.exercises.get_exercise("retrieval.grounded_answer")

# %% tags=[no-dashboard]
my_prompt = qs.template().replace(name="my attempt")  # the starter (closed book): edit me
if CHECK:
    display(pk.exercises.check("retrieval.grounded_answer", my_prompt, progress=False))
