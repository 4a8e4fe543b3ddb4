# %% [markdown]
# # 2. Power phrases, measured
#
# Prompting guides and social media are full of "power phrases": *Let's think step by step*, *Take a deep
# breath*, *You are an expert*, *I'll tip you $200*, *Answer with only the label*. Some come from controlled
# studies on large models; many are folklore. This chapter does what the guides rarely do: it applies each
# phrase to the same prompt, on the same rows, and **measures** what it changes, with a paired test to say
# whether the change is more than noise.
#
# The library lives in a data file (`promptkit/data/phrases.yaml`): each phrase has its text, where it goes
# in the prompt, when it tends to help or hurt, and its source.

# %% tags=[parameters]
MODELS = ["local:smollm2"]
DATASETS = ["renewal_tier", "competitor_mention"]
PHRASES = ["analyst", "cot", "only_label", "answer_prefill", "xml_input", "quote_first", "deep_breath", "emotion", "tip"]
N_ROWS = 18
MAX_TOKENS = 48

# %%
%matplotlib inline
import pandas as pd

import promptkit as pk
from promptkit import lessons

pd.set_option("display.max_colwidth", 90)
table = pk.phrase_table()
print(f"{len(table)} phrases in {table['category'].nunique()} categories")
table.groupby("category")["id"].apply(", ".join).to_frame("phrases")

# %% [markdown]
# ## What a phrase does to a prompt
#
# Applying a phrase makes a new template; the original is untouched. Here is the renewal-tier prompt with
# zero-shot chain of thought (Kojima et al. 2022, arXiv 2205.11916) and the answer prefilled:

# %%
tier = pk.load_dataset("renewal_tier")
cot = pk.apply_phrases(tier.template(), ["cot", "answer_prefill"])
cot

# %%
table[table["id"].isin(PHRASES)][["id", "category", "placement", "helps_when", "hurts_when", "source"]]

# %% [markdown]
# ## The ablation
#
# For each dataset: the task's own prompt (the **baseline**), each phrase alone, and all of them together,
# on the same dev rows, at temperature 0. `MAX_TOKENS` is generous enough for the reasoning phrases to finish
# a short chain of thought; a phrase that makes the model ramble past it shows up as unreadable answers,
# which is a real cost of that phrase at this budget.

# %%
runs = {}
for name in DATASETS:
    ds = pk.load_dataset(name)
    variants = pk.ablation(ds.template(), PHRASES)
    runs[name] = lessons.evaluate(variants, name, n=N_ROWS, models=MODELS, max_tokens=MAX_TOKENS, name=f"ablation: {name}")
    print(f"{name}: {len(variants)} variants x {len(MODELS)} models x {min(N_ROWS, len(ds.split('dev')))} rows")

# %% [markdown]
# ### Renewal tier (three labels)

# %%
effects = {name: lessons.ablation_table(runs[name], pk.load_dataset(name).template().name) for name in DATASETS}
lessons.scoreboard(runs[DATASETS[0]])

# %%
effects[DATASETS[0]]

# %%
lessons.plot_effects(effects[DATASETS[0]])

# %% [markdown]
# ### Competitor mention (Yes / No)

# %%
lessons.scoreboard(runs[DATASETS[-1]])

# %%
effects[DATASETS[-1]]

# %%
lessons.plot_effects(effects[DATASETS[-1]])

# %% [markdown]
# ## What helped, what did nothing, what hurt
#
# Generated from the tables above, so it always says what this run measured:

# %%
for name, eff in effects.items():
    for verdict in ("helped", "hurt", "no significant effect"):
        part = eff[eff["verdict"] == verdict]
        names = ", ".join(f"{v} ({d:+.2f})" for v, d in zip(part["variant"], part["Δ balanced_accuracy"])) or "none"
        print(f"{name} — {verdict}: {names}")
    print()

# %% [markdown]
# ## Set beside the published results
#
# The evidence file the kit cites (`shared/research/prompting-evidence.md`) is explicit that almost all of
# these phrases were measured on models from 7B to 540B parameters, and that:
#
# * **Chain of thought does not transfer down.** Wei et al. 2022 (arXiv 2201.11903) found no benefit from
#   few-shot CoT below roughly 100B parameters, with small models scoring *below* plain prompting; Hsiao &
#   Dutta 2025 (arXiv 2502.15120, preprint), whose 23 models include SmolLM2, place the threshold near 1.6B.
# * **Tips and threats did nothing** even on large models in a controlled test (Meincke et al. 2025,
#   arXiv 2508.00614), and EmotionPrompt's smallest model was Flan-T5-Large, about 780M (arXiv 2307.11760).
# * **Personas in system prompts** did not improve accuracy across four model families (Zheng et al.,
#   arXiv 2311.10054).
# * **Surface form** — format, answer words, example order — moved accuracy as much as or more than wording
#   (Sclar et al. arXiv 2310.11324; Webson & Pavlick arXiv 2109.01247; Lu et al. arXiv 2104.08786).
#
# Where a phrase's published gain does not show up in the tables above, that is our measurement disagreeing
# with the paper *on this model and task*, not a refutation of the paper. With a few dozen rows, only large
# effects reach significance: "no significant effect" means "not shown here", not "proven useless". Raise
# `N_ROWS`, add `MODELS`, and run it again.

# %%
phrase_sources = pk.phrase_table().set_index("id").loc[[p for p in PHRASES], ["title", "source", "reported"]]
phrase_sources

# %% [markdown]
# ## Exercise
#
# ### 2.1 Keep the reasoning phrase, keep the answers readable

# %%
pk.exercises.get_exercise("phrases.measured_phrase")

# %%
mine = pk.apply_phrases(pk.load_dataset("competitor_mention").template(), ["cot"])  # keep cot, add phrases
pk.exercises.check("phrases.measured_phrase", mine, progress=False)
