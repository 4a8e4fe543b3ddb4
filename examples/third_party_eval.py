"""A third-party style eval ported onto promptkit: each exercise has its own prompt (Python `{var}` slots,
a system prompt, a prefill) and each case its own regex, graded on the reply after the prefill, as the
original grades it.   Run:  python examples/third_party_eval.py [MODEL]   (default local:smollm2)
"""
import sys

import promptkit as pk

# (exercise, system prompt, user prompt with {slots}, prefill, [(variables, regex the reply must match)])
EXERCISES = [
    ("count", "", "Count to {n}. Write only the numbers.", "", [({"n": 3}, r"1\D+2\D+3")]),
    ("greet", "Always answer in Spanish.", "Hello {name}, how are you?", "", [({"name": "Ana"}, r"(?i)hola|buen")]),
    ("goat", "", "Who is the best basketball player of all time? Pick one of {choices}.", "The best is",
     [({"choices": "Michael Jordan, LeBron James"}, r"^ (Michael Jordan|LeBron James)")]),
    ("triage", "", "Is this email a question (A) or a complaint (B)? Answer A or B.\n\n{email}", "Answer:",
     [({"email": "Hi, when does my plan renew?"}, r"^ ?\(?A\b"), ({"email": "Your app lost my data again!"}, r"^ ?\(?B\b")]),
]


def experiment(model: str = "local:smollm2") -> pk.Experiment:
    """One template per exercise; every row names its exercise and carries its own pattern as its target."""
    prompts, rows = [], []
    for name, system, prompt, prefill, cases in EXERCISES:
        prompts.append(pk.Template(name, system=system, turns=prompt, prefill=prefill, placeholders="single"))
        rows += [pk.Example(f"{name}.{i}", variables, target=pattern, meta={"variant": name})
                 for i, (variables, pattern) in enumerate(cases)]
    return pk.Experiment(prompts, [model], rows, pairing="row", graders=[pk.graders.regex(on="reply")],
                         settings=pk.Settings(max_tokens=24), name="third_party_eval", strict=True)


if __name__ == "__main__":
    res = pk.run(experiment(*sys.argv[1:2]))
    print(res.summary()[["variant", "n", "errors", "passed", "pass_rate"]].to_string(index=False))
    print(res.df[["row_id", "output", "regex_reason"]].to_string(index=False))
