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
EXERCISE = "builder.prompt_worth_saving"  # the builder opens on this exercise's dataset, model and file name
N_ROWS = 4
AUTORUN = False

# %%
import promptkit as pk

exercise = pk.exercises.get_exercise(EXERCISE)
builder = pk.prompt_builder(exercise=EXERCISE, n_rows=N_ROWS)
exercise

# %%
builder

# %% [markdown]
# ## Driving the builder from code
#
# The builder is a plain Python object: everything you can click, a cell can set. This is how the kit's
# tests drive it, and how you can script a quick experiment.

# %%
if AUTORUN:
    builder.phrase_boxes["only_label"].value = True
    builder.run_button.click()
    print(builder.status.value)

# %% [markdown]
# ## Exercise: a prompt worth saving
#
# The builder above opened on the exercise's dataset and model with a blank page (only the data slot). Write
# the question, make the answers readable and better than answering one tier for every account, **Run** to see
# them, then **Save and check exercise**: it saves your prompt under the exercise's file name and checks it on 24
# held-out rows the builder never showed you (readable, and the lower end of balanced accuracy above chance).
# In a notebook you can also check the saved file with the cell below.

# %% tags=[no-dashboard]
try:
    display(pk.exercises.check(EXERCISE, exercise.save_as))
except pk.exercises.ExerciseError as missing:  # nothing saved yet: say so instead of grading another prompt
    print(missing)
