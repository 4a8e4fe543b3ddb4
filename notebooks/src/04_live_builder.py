# %% [markdown]
# # 4. The live prompt builder
#
# Everything from the first three chapters, in one place you can play with: start from a dataset's prompt
# or a blank page, switch power phrases on and off, pick rows and models, run, and read the outputs side by
# side with their grades, latency, tokens and cost. When a prompt works, save it as a template file and load
# it again in code with `pk.load_template(...)`.
#
# **How to use it**
# 1. *Start from* a dataset's prompt (its `{{variables}}` are filled from the dataset rows), or from a blank prompt.
# 2. Tick power phrases. With *also run without the phrases* on, every run compares your prompt with and
#    without them on the same rows, so you see what the phrases did, not what you hoped they did.
# 3. Choose rows, models and settings, then **Run**. Answers already computed come from the cache at once.
# 4. Read the summary first: accuracy beside the majority baseline, balanced accuracy, unparseable answers.

# %% tags=[parameters]
DATASET = "renewal_tier"
MODELS = ["local:smollm2"]
N_ROWS = 4
AUTORUN = False

# %%
import promptkit as pk

builder = pk.prompt_builder(dataset=DATASET, models=MODELS, n_rows=N_ROWS)
builder

# %% [markdown]
# ## Driving the builder from code
#
# The builder is a plain Python object: everything you can click, a cell can set. This is how the kit's
# tests drive it, and how you can script a quick experiment.

# %%
if AUTORUN:
    builder.start.value = DATASET
    builder.phrase_boxes["only_label"].value = True
    builder.run_button.click()
    print(builder.status.value)

# %% [markdown]
# ## Exercise: a prompt worth saving
#
# Use the builder above to write a prompt for the `competitor_mention` task (does an account's notes mention
# a competing product?) that the small model answers with a readable Yes or No, save it as
# `my_competitor_prompt.yaml`, and check it on held-out rows with the cell below.

# %%
pk.exercises.get_exercise("builder.readable_yes_no")

# %%
import os

answer = "my_competitor_prompt.yaml" if os.path.exists("my_competitor_prompt.yaml") else pk.load_dataset("competitor_mention").template()
pk.exercises.check("builder.readable_yes_no", answer, progress=False)
