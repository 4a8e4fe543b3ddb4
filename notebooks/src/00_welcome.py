# %% [markdown]
# # Welcome to the Prompt Intelligence tour
#
# This tour teaches prompting the way an engineer would want to learn it: **every claim is measured**.
# Each lesson runs on a real model, on customer-success data with gold labels, and shows the numbers,
# including when a famous technique does nothing or hurts.
#
# | Chapter | What you learn |
# |---|---|
# | `01_foundations` | the anatomy of a prompt, live: system vs user, clarity, context and audience, roles, examples, tags, prefill, temperature, tokens and cost; and how to read a score honestly |
# | `02_power_phrases` | the power-phrase library, and an ablation that measures what each phrase does on our data |
# | `03_model_differences` | the same prompts across models and settings: accuracy, variance, latency, tokens and cost |
# | `04_live_builder` | an interactive prompt builder: toggle phrases, pick rows and models, run, compare, save |
# | `05_structured_output` | JSON a program can read: free text vs format in words vs schema + prefill vs grammar; parse rate, schema validity, per-signal precision/recall/F1, schema errors and their fixes |
# | `06_reasoning` | thinking in tags graded on the answer only, the token budget, self-consistency by majority vote, per local model beside the published size threshold |
# | `08_injection` | planted instructions in customer text: attack success without and with defences (tags, instructions after the data, a separate check), and what still gets through |
#
# Each chapter ends with **exercises that check themselves**: you write a prompt, a check runs it on held-out
# rows, grades it, and gives a hint when it falls short.

# %% tags=[parameters]
# Papermill parameters: CI runs the tour small; raise them for a fuller picture.
MODELS = ["local:qwen2.5-0.5b", "local:smollm2"]
N_ROWS = 6

# %% [markdown]
# ## The models on this machine
#
# Two local models run on your CPU with llama.cpp, with no key and no network: **Qwen2.5-0.5B-Instruct**
# (installed by `make tour`) and **SmolLM2-135M-Instruct** (embedded in the kit). A technique can only be
# seen helping on a model that does better than chance with the plain prompt, so each measuring chapter
# checks that first, runs on the model that clears it (Qwen 0.5B on the tour's tasks) and keeps SmolLM2 as
# the contrast: what a 135-million-parameter model does with the same prompts. Both are hundreds to
# thousands of times smaller than the models most prompting papers measured; the chapters show those
# published results beside our measurements, with the model sizes they were measured on.
#
# Any API model whose key is set shows up as ready below.

# %%
import pandas as pd

import promptkit as pk

pd.DataFrame(pk.model_table())[["spec", "ready", "why"]]

# %% [markdown]
# ## Your first call
#
# `pk.complete` sends one prompt to one model and returns a `Completion`: the text, plus what it cost you in
# tokens, time and money.

# %%
for model in MODELS:
    c = pk.complete(
        "A customer's weekly active users fell by half since March. Is that a renewal risk? Answer in one sentence.",
        model,
        max_tokens=40,
    )
    print(f"{model}: {c.text.strip()}")
    print(f"  {c.input_tokens} tokens in, {c.output_tokens} out, {c.latency_s:.2f} s, "
          f"first token after {c.ttft_s:.2f} s, cost ${c.cost_usd}\n")

# %% [markdown]
# ## Adding API models
#
# The kit reads keys from the environment or from a `.env` file in the folder you start Jupyter from:
#
# ```
# ANTHROPIC_API_KEY=...
# OPENAI_API_KEY=...
# ```
#
# Then use specs such as `anthropic:claude-haiku-4-5` or `openai:gpt-4o-mini`. A local server that speaks the
# OpenAI API (Ollama, vLLM, LM Studio) needs no key: `ollama:llama3.2` or
# `openai:my-model@http://localhost:8000/v1`. Keys are never printed, cached or exported.
#
# ## How to read this tour
#
# * Cells are short: the logic lives in the `promptkit` package, where it is tested.
# * Numbers come from the run you are looking at, not from the text. If your numbers differ from a
#   sentence in the prose, trust the numbers, and tell us.
# * Published results ship with the kit (`pk.lessons.evidence()`, below), with the models they were
#   measured on. When our measurement disagrees with a paper, the lesson says so.

# %%
pk.lessons.evidence()[["technique", "paper", "arxiv", "sizes", "reported"]]
