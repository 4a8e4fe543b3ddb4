# %% [markdown]
# # 7. Grounding: answers from the notes, or invented ones
#
# Ask a model a question about an account and it answers. When the notes hold the answer, that is what you
# want. When they do not, a model that always answers has to **invent** one: a renewal date, a discount, a
# competitor's name, confidently written and wrong. That is a **hallucination**, and in customer success it
# ends up in a forecast, a QBR deck or an email to the customer.
#
# This chapter measures it on `account_questions`: hand-written account notes, each with one question. On half
# the rows the notes give the answer; on the other half (gold **"not stated"**) they mention the topic but not
# the asked detail (a renewal but no date, "another tool" but no name). Two numbers per prompt:
#
# * the **invented-answer rate** on "not stated" rows (lower is better);
# * **accuracy** on the answerable rows (higher is better), and how many of them the prompt **refused**.
#
# The prompts: the plain question; **giving the model an out** ("if the notes do not say, answer Not stated");
# **answering only from the notes**; **quoting first** (find the sentence, then answer from it); and the out
# together with "only from the notes".

# %% tags=[parameters]
MODEL = "local:qwen2.5-0.5b"  # the tour's measuring model
CONTRAST = "local:smollm2"  # a smaller model on the plain question and the out ("" to skip)
N_ROWS = 20  # dev rows: half answerable, half not stated (CI runs fewer)
MAX_TOKENS = 32  # one short sentence
QUOTE_TOKENS = 48  # the quoting step copies one sentence
INCLUDE_API = True  # API models whose key is set join the contrast
CHECK = True  # run the exercise check (CI checks exercises in tests/test_curriculum_c.py)

# %%
%matplotlib inline
import pandas as pd

import promptkit as pk
from promptkit import chains, evidence, grounding, lessons

qa, rows = lessons.chapter_rows("account_questions", N_ROWS)
lessons.row_counts(qa, "split", status=lambda ex: ex.target["status"])

# %% [markdown]
# Two rows: one the notes answer, one they do not (the notes mention what the question is about, which is what
# tempts a model to fill the gap).

# %%
for r in rows[:2]:
    print(r.input["notes"], "\n\nQ:", r.input["question"], "\ngold:", r.target["answer"],
          f"({r.target['status']})", "\n" + "-" * 60)

# %% [markdown]
# ## 1. How the answers are graded
#
# The grader (`grounding.grounded_answer`) reads what a person would: on a "not stated" row the answer passes
# only if it says the notes do not say; a value, or "not stated" followed by a guess, counts as **invented**.
# On an answerable row it passes when it contains the gold fact in one of its accepted forms; "not stated"
# there is a **refusal**. Text inside `<quote>` tags is evidence, never the answer. Hand-written answers:

# %%
grade = grounding.grounded_answer()
ns, st = rows[1].target, rows[0].target
examples = [("The notes do not mention a QA director's name.", ns), ("It is probably Dr. Lee.", ns),
            ("Not stated, but I would guess Dr. Lee.", ns), (f"It is {st['answer']}.", st), ("Not stated.", st)]
pd.DataFrame([{"answer": a, "gold": t["answer"], "passes": grade(a, t).passed, "why": grade(a, t).reason}
              for a, t in examples])

# %% [markdown]
# ## 2. Five ways to ask
#
# The plain question is the task's own prompt. The others put the notes in `<notes>` tags and add one idea each.
# Quoting first is a **two-step chain** (chapter 9): a first call copies the sentence of the notes that answers
# the question (or writes `none`), a second answers from that sentence. Asking for both in one reply asks a
# small model to follow a two-part format; the chain asks for one thing per call, and costs a second call.

# %%
plain = qa.template().replace(name="plain question")
ask = "Account notes:\n<notes>\n{{notes}}\n</notes>\n\nQuestion: {{question}}\n"
OUT = "If the notes do not say, answer exactly: Not stated."
ONLY = "Answer only from the notes above, never from outside knowledge or assumptions."
out = plain.replace(name="give an out", turns=[{"role": "user", "content": ask + OUT}])
only = plain.replace(name="notes only", turns=[{"role": "user", "content": ask + ONLY}])
both = plain.replace(name="notes only + out", turns=[{"role": "user", "content": ask + ONLY + " " + OUT}])
quote = plain.replace(name="quote step", prefill="<quote>", turns=[{"role": "user", "content": ask +
    "Copy the one sentence of the notes that answers the question inside <quote></quote> tags, word for word. "
    "If no sentence answers it, write <quote>none</quote>."}])
answer = plain.replace(name="answer step", turns=[{"role": "user", "content": ask +
    "The sentence of the notes that bears on it: {{quote}}\nAnswer from that sentence. If it is none or does "
    "not answer the question, answer exactly: Not stated."}])
print(out.user, "\n---\n", answer.user)

# %%
single = lessons.evaluate([plain, out, only, both], rows, models=[MODEL], graders=[grade], max_tokens=MAX_TOKENS,
                          name="account_questions (dev)")
chain = chains.run_chain([chains.Step(quote, "quote", {"max_tokens": QUOTE_TOKENS}), chains.Step(answer, "answer")],
                         rows, MODEL, name="quote first", grader=grade, settings={"max_tokens": MAX_TOKENS})
runs = chains.combine(single, chain)
table = grounding.grounding_table(runs)
table

# %%
grounding.plot(table, title=f"{MODEL}, {len(rows)} dev rows")

# %% [markdown]
# Down and to the right is better: few invented answers *and* the answerable questions still answered.
# Computed from this run:

# %%
print("\n".join(grounding.table_sentences(table)))

# %% [markdown]
# ## 3. More than noise? Each prompt against the plain question
#
# Each prompt is compared with the plain question on the same rows, separately on the "not stated" rows
# (invented answers) and the answerable rows (right answers), by the exact McNemar test: only rows where the
# two prompts disagree carry evidence. With several prompts and two kinds of rows there are many tests, so the
# p-values are corrected (Holm), and the rows needed for any change to count rise with them.

# %%
paired = grounding.paired_table(runs, plain.name)
paired[["variant", "metric", "rows", "n", "baseline value", "variant value", "better", "worse", "p", "p (Holm)",
        "smallest detectable", "verdict"]]

# %%
print("\n".join(grounding.paired_sentences(paired, plain.name)))

# %% [markdown]
# ## 4. The trade-off: an out can also refuse what the notes do answer
#
# A model that says "Not stated" to everything invents nothing, and is useless. The second number keeps the
# first honest. Per prompt, computed from this run:

# %%
print("\n".join(grounding.tradeoff_sentences(table, plain.name)))

# %% [markdown]
# What the model wrote on the "not stated" rows, and how each answer was graded. Read the invented ones: could
# someone reading them in the CRM tell them from real answers?

# %%
grounding.not_stated_answers(runs, n=12, variant=[plain.name, out.name])

# %% [markdown]
# And on the answerable rows, the answers the out turned into refusals:

# %%
question = {r.id: r.input["question"] for r in rows}
refused = [{"row": r.cell.row_id, "question": question[r.cell.row_id], "gold": r.cell.target["answer"],
            "answer": r.completion.text.strip()}
           for r in runs.filter(variant=out.name).results if r.grades[grade.name].details.get("refused")]
pd.DataFrame(refused, columns=["row", "question", "gold", "answer"])

# %% [markdown]
# ## 5. Other models
#
# The plain question and the out on a smaller model (and on any API model whose key is set), same rows:

# %%
status = pd.DataFrame(pk.model_table())
others = [m for m in [CONTRAST] if m and m != MODEL and bool(status.set_index("spec")["ready"].get(m, False))]
others += [s for s, ok, kind in zip(status["spec"], status["ready"], status["kind"])
           if INCLUDE_API and ok and kind == "api" and "<model>" not in s and s.split(":")[0] in ("openai", "anthropic")]
print("also measuring:", ", ".join(others) or "none")
if others:
    contrast = lessons.evaluate([plain, out], rows, models=others, graders=[grade], max_tokens=MAX_TOKENS,
                                name="account_questions (dev)")
    wide = grounding.grounding_table(contrast)
    print("\n".join(grounding.table_sentences(wide) + grounding.tradeoff_sentences(wide, plain.name)))
    display(wide)

# %% [markdown]
# ## 6. What the published guidance says
#
# Anthropic's guidance to reduce hallucinations is to let the model say "I don't know" and to have it extract
# word-for-word quotes before answering; it publishes no numbers. Chain-of-Verification measured a related idea
# (check the draft with independent questions) on a 65B model. Neither was measured on models this small, so
# this run's numbers stand on their own:

# %%
evidence.cited("xml_prefill_grounding", "chain_of_verification")

# %% [markdown]
# In production: give the model an out *and* measure what it refuses, keep the notes in tags with the question
# last, and read the invented answers of every new prompt or model on rows whose gold is "not stated". A prompt
# that never says "not stated" on such rows is inventing, however fluent it sounds.
#
# ## Exercise
#
# ### 7.1 Cut the invented answers, keep the right ones
# On held-out rows, half of them "not stated": bring the upper bound of the invented-answer rate under the bar
# while keeping accuracy on the answerable rows above the floor.

# %%
pk.exercises.get_exercise("grounding.cut_invented")

# %% tags=[no-dashboard]
my_prompt = pk.exercises.get_exercise("grounding.cut_invented").starter()  # edit me: system, turns, prefill
if CHECK:
    display(pk.exercises.check("grounding.cut_invented", my_prompt))
