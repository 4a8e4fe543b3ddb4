# %% [markdown]
# # 6. Reasoning that pays, or not
#
# "Think step by step" is the most famous prompt of all, and the published evidence says it depends on the
# model's size. This chapter measures it on a task that really has steps: an account's **health colour**
# follows from four questions (set up? deployed widely? used deeply? can leadership explain the value?) and a
# rule (Red: not set up or two "no"s; Green: no "no" and at most one "partly"; Yellow: anything else).
#
# You will see:
# 1. thinking in `<thinking>` tags with the answer in its own `<answer>` tags, **graded on the answer only**;
# 2. the **token budget**: reasoning that is cut off never reaches its answer;
# 3. **self-consistency**: sample several reasoned answers at temperature > 0 and take the majority vote;
# 4. all of it on each local model, beside the published size threshold.

# %% tags=[parameters]
MODELS = ["local:smollm2", "local:qwen2.5-0.5b"]  # add "local:qwen2.5-1.5b" if installed (several minutes more)
N_ROWS = 6  # dev rows per measurement (CI runs fewer)
THINK_TOKENS = 160  # the budget that lets the reasoning finish
SHORT_TOKENS = 16  # a budget that cuts it off
SC_MODEL = "local:qwen2.5-0.5b"
SC_SAMPLES = 3  # k samples per row for self-consistency
SC_TEMPERATURE = 0.7
CHECK = True  # run the exercise check (CI checks exercises in tests/test_exercises.py)

# %%
%matplotlib inline
import pandas as pd

import promptkit as pk
from promptkit import lessons

pd.set_option("display.max_colwidth", 140)
health = pk.load_dataset("health_colour")
status = {r["spec"]: r["ready"] for r in pk.model_table()}
models = [m for m in MODELS if status.get(m)]
for m in MODELS:
    if m not in models:
        print(f"not installed, skipped: {m}")
print("measuring:", ", ".join(models))
base = health.template()

# %% [markdown]
# ## 1. The answer in its own tags
#
# Both prompts below end the same way: the colour goes inside `<answer></answer>`. The grader reads only what
# is inside the last pair of answer tags, so whatever the model writes while thinking cannot be mistaken for
# its answer, and an answer that never closes its tags is **unreadable**, counted apart from a wrong one.

# %%
rule = base.user.split("Answer with only")[0]
direct = base.replace(name="direct", prefill="<answer>", turns=[{"role": "user", "content": rule +
    "Answer with only the colour inside answer tags, like <answer>Yellow</answer>."}])
think = base.replace(name="think, then answer", prefill="<thinking>\n1. Set up:", turns=[{"role": "user", "content": rule +
    "First think inside <thinking></thinking> tags: answer each of the four questions with yes, partly or no, "
    "then apply the rule. Then give only the colour inside answer tags, like <answer>Yellow</answer>."}])
grader = pk.graders.in_tag(pk.graders.label_match(health.labels), "answer", name="colour")
print(think.user[-330:])
print(grader("<thinking>Set up: yes ... so Red, no wait</thinking><answer>Yellow</answer>", "Yellow").reason)

# %% [markdown]
# ## 2. Direct versus reasoned, and the token budget
#
# Each model answers the same dev rows three ways: directly, reasoning with a budget of `THINK_TOKENS`
# tokens, and reasoning with only `SHORT_TOKENS`.

# %%
short = lessons.Constrained(think, name=f"think, {SHORT_TOKENS}-token budget", max_tokens=SHORT_TOKENS)
runs = lessons.evaluate([direct, think, short], "health_colour", n=N_ROWS, models=models, graders=[grader],
                        max_tokens=THINK_TOKENS)
cut = runs.df.assign(cut=runs.df["finish_reason"].eq("length")).groupby(["variant", "model"])["cut"].sum()
board = lessons.scoreboard(runs).merge(cut.rename("cut off at budget").reset_index(), on=["variant", "model"])
board

# %%
runs.filter(model=models[-1]).side_by_side(max_chars=200)

# %% [markdown]
# Computed from this run, per model:

# %%
s = board.set_index(["model", "variant"])
for m in models:
    d, t, c = (s.loc[(m, v)] for v in (direct.name, think.name, short.name))
    print(f"{m}: accuracy {d['accuracy']:.2f} direct → {t['accuracy']:.2f} when it reasons first "
          f"({t['accuracy'] - d['accuracy']:+.2f}; balanced accuracy {d['balanced_accuracy']:.2f} → "
          f"{t['balanced_accuracy']:.2f}); {int(t['unparseable'])} of {int(t['n'])} reasoned answers unreadable, "
          f"{int(t['cut off at budget'])} cut off at {THINK_TOKENS} tokens; at {SHORT_TOKENS} tokens "
          f"{int(c['cut off at budget'])} of {int(c['n'])} were cut off and {int(c['unparseable'])} unreadable.")

# %%
for m in models:
    print(lessons.effect(runs, direct.name, think.name, model=m, metric="accuracy"))

# %% [markdown]
# Reasoning costs tokens: the output tokens per answer (and so latency and price) are in the scoreboard.
# A budget too small for the reasoning turns right answers into unreadable ones: set `max_tokens` for the
# reasoning *plus* the answer, and check `finish_reason` (or the "cut off" column) before reading a score.
#
# ## 3. Self-consistency: a vote over sampled reasoning
#
# Wang et al. sampled 40 reasoned answers per question and took the majority. Here `SC_SAMPLES` samples per
# row at temperature `SC_TEMPERATURE` on one model, through the runner's `repeats` (with `seed=None` each
# repeat draws afresh; each is its own cached call, so a re-run reads the same samples back):

# %%
sc_model = SC_MODEL if status.get(SC_MODEL) else models[0]
sampled = lessons.evaluate(think, "health_colour", n=N_ROWS, models=[sc_model], graders=[grader],
                           repeats=SC_SAMPLES, max_tokens=THINK_TOKENS, temperature=SC_TEMPERATURE, seed=None)
vote = lessons.majority_vote(sampled)
vote

# %%
v = vote.iloc[0]
greedy = s.loc[(sc_model, think.name), "accuracy"] if (sc_model, think.name) in s.index else float("nan")
print(f"{sc_model}: one sample at temperature {SC_TEMPERATURE} is right {v['one-sample accuracy']:.0%} of the time; "
      f"the majority of {int(v['samples per row'])} samples is right on {v['majority-vote accuracy']:.0%} of "
      f"{int(v['rows'])} rows (greedy reasoning: {greedy:.0%}); the samples all agree on "
      f"{v['rows whose samples agree']:.0%} of rows, at {int(v['samples per row'])}× the tokens.")

# %% [markdown]
# ## 4. Beside the published threshold
#
# The studies that found reasoning prompts help measured models from billions of parameters up; the one study
# that included SmolLM2 places the threshold near 1.6B:

# %%
lessons.cited("wei2022", "wang2022", "hsiao2025")

# %%
PARAMS_B = {"local:smollm2": 0.135, "local:qwen2.5-0.5b": 0.5, "local:qwen2.5-1.5b": 1.5}
threshold = 1.6  # Hsiao & Dutta 2025, the row above
gains = pd.DataFrame([{"model": m, "parameters (B)": PARAMS_B.get(m),
                       "direct": s.loc[(m, direct.name), "accuracy"], "reasoned": s.loc[(m, think.name), "accuracy"]}
                      for m in models])
gains["gain"] = gains["reasoned"] - gains["direct"]
for _, r in gains.iterrows():
    side = "below" if r["parameters (B)"] and r["parameters (B)"] < threshold else "at or above"
    print(f"{r['model']} ({r['parameters (B)']}B, {side} the ~{threshold}B threshold): reasoning changed accuracy "
          f"by {r['gain']:+.2f} on {N_ROWS} rows.")
gains

# %% [markdown]
# On this few rows a difference of one or two answers is noise: the paired test above says whether it is
# more. The honest reading is "not shown on this model" where nothing moved, and "costs N× the tokens" always.
#
# ## Exercise
#
# ### 6.1 Reason, then answer where the grader looks
# The check grades only what is inside `<answer>` tags, with a fixed token budget. Write a prompt that lets
# the model reason and still close its answer tags on 24 held-out rows: the lower bound of the readable share
# must reach 0.75, and the colours must follow the accounts (balanced accuracy at least 0.42, where one colour
# for every row scores 0.33).
#
# Why not "above chance", as in chapters 01-04? On Qwen2.5-0.5B none of the reasoning prompts we tried (free
# reasoning, the four questions one per line, quoting the evidence first) put the lower bound of balanced
# accuracy above chance on these rows, while answering directly did (the comparison above measures both
# on this run's rows). So this exercise is about the form (reason first, answer where the grader looks, inside
# the budget) with a floor that one colour for everything cannot pass; whether reasoning *pays* on a model this
# small is the question this chapter answers (on the exercise's rows it did not: the measured numbers are beside
# the exercise in promptkit/data/exercises.yaml).

# %%
pk.exercises.get_exercise("reasoning.answer_in_tags")

# %% tags=[no-dashboard]
my_prompt = pk.exercises.get_exercise("reasoning.answer_in_tags").starter()  # edit me: system, turns, prefill
if CHECK:
    display(pk.exercises.check("reasoning.answer_in_tags", my_prompt))
