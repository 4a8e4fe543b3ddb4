"""The live prompt builder: an ipywidgets app built by one function, so tests can drive it without a browser.

A learner starts from a dataset's template or a blank prompt, toggles power
phrases, picks rows (or fills variables), models and settings, runs, and reads
the outputs side by side with grades, latency, tokens and cost; then saves the
prompt as a template file. Every callback shows its errors in the page.
"""
from __future__ import annotations

import functools
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from .htmlrender import macro, trusted
from .providers import DEFAULT_MODEL
from .results import SUMMARY_VIEWS
from .templates import Template, load_template, variables_in
from .types import Message, Row, Settings

BLANK = "(blank prompt)"
NO_DATASET = "(none: fill the variables)"
BLANK_USER = "Account notes:\n{{notes}}\n\nIs this account at risk of not renewing? Answer Yes or No."


def _html(piece: str, **context: Any) -> str:
    """One of the builder's HTML pieces, a macro of data/templates/builder.html.j2 (escaped, keys redacted)."""
    return macro("builder.html.j2", piece, **context)


def _shows_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Widget callbacks swallow exceptions silently; show them in the builder instead."""

    @functools.wraps(method)
    def wrapper(self: "PromptBuilder", *args: Any, **kwargs: Any) -> Any:
        try:
            self.error.value = ""
            return method(self, *args, **kwargs)
        except Exception as exc:  # shown to the learner, kept for tests
            self.last_error = exc
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.error.value = _html("error", kind=type(exc).__name__, message=str(exc), traceback=tb)
            self.status.value = _html("status", text="Something went wrong; see the message above.", tone="error")
            return None

    return wrapper


class PromptBuilder:
    """The live builder's widgets and actions; `.widget` is what a notebook or dashboard shows."""

    def __init__(
        self,
        dataset: str | None = "renewal_tier",
        models: Sequence[str] | None = None,
        n_rows: int = 3,
        split: str = "dev",
        max_tokens: int = 32,
        exercise: str | None = None,
    ) -> None:
        import ipywidgets as w

        from .datasets import list_datasets
        from .phrases import default_library

        self.exercise = None
        if exercise is not None:  # the exercise decides the dataset, the model, the budget and the file name
            from .exercises import get_exercise

            self.exercise = get_exercise(exercise)
            dataset, models = self.exercise.dataset, [self.exercise.model]
            max_tokens = int(self.exercise.settings.get("max_tokens", max_tokens))
        self._w = w
        self.split = split
        self.results: Any = None
        self.last_error: Exception | None = None
        self.saved_path: Path | None = None
        self._earlier_turns: tuple[Message, ...] = ()
        self._dataset_obj: Any = None

        names = list_datasets()
        full = w.Layout(width="98%")
        self.start = w.Dropdown(description="Start from", options=[BLANK] + names, layout=w.Layout(width="360px"))
        self.system = w.Textarea(description="System", placeholder="optional system prompt", layout=w.Layout(width="98%", height="60px"))
        self.user = w.Textarea(description="User", value=BLANK_USER, layout=w.Layout(width="98%", height="130px"))
        self.prefill = w.Text(description="Prefill", placeholder="optional start of the answer", layout=full)

        lib = default_library()
        self.phrase_boxes: dict[str, Any] = {}
        sections = []
        for cat in lib.categories:
            boxes = []
            for p in lib.phrases:
                if p.category != cat.id:
                    continue
                cb = w.Checkbox(value=False, description=p.title, indent=False, tooltip=p.text,
                                layout=w.Layout(width="auto"))
                self.phrase_boxes[p.id] = cb
                boxes.append(cb)
            if boxes:
                sections.append((cat.title, w.VBox([w.HTML(_html("about", text=cat.about))] + boxes)))
        self.phrases = w.Accordion(children=[s[1] for s in sections])
        for i, (title, _) in enumerate(sections):
            self.phrases.set_title(i, title)
        self.compare_baseline = w.Checkbox(value=True, description="also run without the phrases", indent=False)

        self.dataset = w.Dropdown(description="Dataset", options=[NO_DATASET] + names,
                                  value=dataset if dataset in names else NO_DATASET, layout=w.Layout(width="360px"))
        self.n_rows = w.IntSlider(description="Rows", min=1, max=30, value=n_rows)
        self.variables = w.VBox()
        self._var_fields: dict[str, Any] = {}

        ready = self._ready_models()
        chosen = [m for m in (models or ready[:1]) if m in ready] or ready[:1]
        self.models = w.SelectMultiple(description="Models", options=ready, value=tuple(chosen), rows=min(5, max(2, len(ready))))
        self.temperature = w.FloatSlider(description="Temperature", min=0.0, max=1.5, step=0.1, value=0.0)
        self.max_tokens = w.IntSlider(description="Max tokens", min=1, max=512, value=max_tokens)
        self.repeats = w.IntSlider(description="Repeats", min=1, max=5, value=1)

        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.save_name = w.Text(description="Save as", value=(self.exercise and self.exercise.save_as) or "my_prompt.yaml")
        self.save_button = w.Button(description="Save template", icon="save")
        self.check_button = w.Button(description="Save and check exercise", icon="check",
                                     layout=w.Layout(display="" if self.exercise else "none"))
        self.check_html = w.HTML()  # empty until the learner checks: no result before an attempt
        self.preview = w.HTML()
        self.status = w.HTML()
        self.error = w.HTML()
        self.result_html = w.HTML()
        self.progress = w.Output()

        self.start.observe(self._on_start, names="value")
        self.dataset.observe(self._on_dataset, names="value")
        for wid in (self.system, self.user, self.prefill, *self.phrase_boxes.values()):
            wid.observe(self._on_edit, names="value")
        self.run_button.on_click(self._on_run)
        self.save_button.on_click(self._on_save)
        self.check_button.on_click(self._on_check)

        prompt_box = w.VBox([w.HTML(_html("heading", text="1. Prompt")), self.start, self.system, self.user, self.prefill])
        phrase_box = w.VBox([w.HTML(_html("heading", text="2. Power phrases")), self.compare_baseline, self.phrases])
        data_box = w.VBox([w.HTML(_html("heading", text="3. Data and models")), self.dataset, self.n_rows, self.variables,
                           self.models, self.temperature, self.max_tokens, self.repeats])
        left = w.VBox([prompt_box, phrase_box], layout=w.Layout(width="58%"))
        right = w.VBox([data_box, w.HBox([self.run_button]), w.HBox([self.save_name, self.save_button]),
                        self.check_button], layout=w.Layout(width="40%"))
        self.widget = w.VBox([
            w.HBox([left, right]),
            self.error, self.status, self.check_html,
            w.HTML(_html("heading", text="What the model sees (first row)")), self.preview,
            self.progress,
            w.HTML(_html("heading", text="Results")), self.result_html,
        ], layout=w.Layout(width="100%"))
        self.widget.add_class("pk-builder")
        self._on_dataset({"new": self.dataset.value})
        if self.exercise is not None:
            self.user.value = self.blank_user()

    # ---------------------------------------------------------------- state

    @staticmethod
    def _ready_models() -> list[str]:
        from .models_status import model_table

        ready = [r["spec"] for r in model_table() if r["ready"] and "<model>" not in r["spec"]]
        return ready or [DEFAULT_MODEL]

    def selected_phrases(self) -> list[str]:
        return [pid for pid, cb in self.phrase_boxes.items() if cb.value]

    def base_template(self) -> Template:
        """The prompt as typed, before phrases."""
        turns = self._earlier_turns + (Message("user", self.user.value),)
        return Template(name="my_prompt", system=self.system.value, turns=turns, prefill=self.prefill.value)

    def template(self) -> Template:
        """The prompt as typed with the chosen phrases applied."""
        from .phrases import apply_phrases

        ids = self.selected_phrases()
        return apply_phrases(self.base_template(), ids) if ids else self.base_template()

    def rows(self) -> list[Row]:
        """The dataset rows to run on, or one row made from the variable fields."""
        if self._dataset_obj is not None:
            ds = self._dataset_obj
            part = ds.split(self.split) if self.split in ds.splits else ds
            return list(part.rows)[: self.n_rows.value]
        values = {name: f.value for name, f in self._var_fields.items() if f.value.strip()}
        missing = self.template().missing(values)
        if missing:
            raise ValueError(f"fill the variable field(s) {missing} first (or pick a dataset)")
        return [Row(id="input", input=values, target=None)]

    def graders(self) -> list[Any]:
        if self._dataset_obj is None:
            return []
        from .graders import default_grader

        return [default_grader(self._dataset_obj.task)]

    def settings(self) -> Settings:
        return Settings(temperature=float(self.temperature.value), max_tokens=int(self.max_tokens.value))

    # ---------------------------------------------------------------- callbacks

    def blank_user(self) -> str:
        """A blank page for the chosen dataset: only its data slots, so the learner writes the question."""
        if self._dataset_obj is None:
            return BLANK_USER
        return "".join(f"{name.capitalize()}:\n{{{{{name}}}}}\n\n" for name in self._dataset_obj.task.input_fields)

    @_shows_errors
    def _on_start(self, change: dict[str, Any]) -> None:
        name = change["new"]
        if name == BLANK:
            self._earlier_turns = ()
            self.system.value, self.prefill.value, self.user.value = "", "", self.blank_user()
            return
        from .datasets import load_dataset

        t = load_dataset(name).template()
        self._earlier_turns = t.turns[:-1]
        self.system.value, self.prefill.value, self.user.value = t.system, t.prefill, t.user
        if self.dataset.value != name:
            self.dataset.value = name
        self._refresh_preview()

    @_shows_errors
    def _on_dataset(self, change: dict[str, Any]) -> None:
        from .datasets import load_dataset

        name = change["new"]
        self._dataset_obj = None if name == NO_DATASET else load_dataset(name)
        self._refresh_variables()
        self._refresh_preview()

    @_shows_errors
    def _on_edit(self, change: dict[str, Any]) -> None:
        self._refresh_variables()
        self._refresh_preview()

    def _refresh_variables(self) -> None:
        w = self._w
        if self._dataset_obj is not None:
            self.variables.children = ()
            return
        names = [v for v in self.template().variable_order()]
        for n in names:
            if n not in self._var_fields:
                self._var_fields[n] = w.Textarea(description=n, layout=w.Layout(width="98%", height="50px"))
                self._var_fields[n].observe(self._on_edit, names="value")
        self.variables.children = tuple(self._var_fields[n] for n in names)

    def _refresh_preview(self) -> None:
        t = self.template()
        if self._dataset_obj is not None:
            rows = self.rows()
            variables = rows[0].input if rows else {}
        else:
            variables = {n: f.value for n, f in self._var_fields.items() if f.value.strip()}
        missing = t.missing(variables)
        if missing:
            self.preview.value = _html("warning", text=(
                f"The prompt uses {', '.join('{{' + m + '}}' for m in missing)}, which the "
                f"{'dataset rows do not have' if self._dataset_obj is not None else 'variable fields do not fill yet'}."
                f" Dataset fields: {sorted(variables)}"))
            return
        req = t.render(variables)
        self.preview.value = _html("preview", messages=req.messages, prefill=req.prefill)

    @_shows_errors
    def _on_run(self, _button: Any = None) -> Any:
        return self.run_now()

    def run_now(self) -> Any:
        """Run the prompt (and its baseline, if phrases are on) on the chosen rows and models."""
        from .lessons import experiment
        from .runner import run

        if not self.models.value:
            raise ValueError("choose at least one model in the Models list")
        t = self.template()
        variants = [t]
        if self.selected_phrases() and self.compare_baseline.value:
            variants = [self.base_template().replace(name="without phrases"), t.replace(name="with phrases")]
        rows = self.rows()
        exp = experiment(variants, rows, models=list(self.models.value), repeats=int(self.repeats.value),
                         graders=self.graders(), name="live builder", **self.settings().to_dict())
        n = exp.n_cells
        self.status.value = _html("status", text=f"Running {n} call{'s' if n != 1 else ''}…")
        self.progress.clear_output()
        with self.progress:
            self.results = run(exp, progress=True)
        self.result_html.value = self._render_results(self.results)
        meta = self.results.meta
        self.status.value = _html("status", tone="ok", text=f"Done: {len(self.results)} calls"
                                  f" ({meta['counts']['cache_hits']} from the cache) in {meta.get('wall_s', 0):.1f} s.")
        return self.results

    @staticmethod
    def _render_results(results: Any) -> str:
        df = results.df
        across = "model" if df["model"].nunique() > 1 and df["variant"].nunique() == 1 else "variant"
        table, problem = None, None
        try:
            summary = results.summary()
            cols = [c for c in SUMMARY_VIEWS["builder"] if c in summary.columns]
            table = trusted((summary[cols] if cols else summary).to_html(float_format=lambda x: f"{x:.2f}"))
        except Exception as exc:  # a summary problem must not hide the outputs
            problem = str(exc)
        sbs = results.side_by_side(across=across)
        per_call = df[["variant", "model", "row_id", "latency_s", "input_tokens", "output_tokens", "cost_usd", "error_kind"]]
        # pandas escapes every cell of these tables itself
        return _html("results", summary=table, summary_error=problem, side_by_side=trusted(sbs.to_html()),
                     per_call=trusted(per_call.to_html(index=False, float_format=lambda x: f"{x:.3g}")))

    @_shows_errors
    def _on_save(self, _button: Any = None) -> Path:
        return self.save(self.save_name.value)

    def save(self, path: str | Path) -> Path:
        """Save the built prompt (phrases applied) as a template file a learner can load again."""
        p = Path(path).expanduser()
        if p.suffix.lower() not in (".yaml", ".yml", ".toml"):
            raise ValueError(f"save name {str(path)!r} must end in .yaml, .yml or .toml")
        name = p.stem or "my_prompt"
        t = self.template().replace(name=name)
        self.saved_path = t.save(p)
        self.status.value = _html("status", text=f"Saved to {self.saved_path}", tone="ok")
        return self.saved_path

    @_shows_errors
    def _on_check(self, _button: Any = None) -> Any:
        return self.check_exercise()

    def check_exercise(self) -> Any:
        """Save the prompt under the exercise's file name and check that file on the exercise's held-out rows."""
        from .exercises import check

        if self.exercise is None:
            raise ValueError("this builder was not opened for an exercise; use prompt_builder(exercise=...)")
        path = self.save(self.save_name.value)
        settings = {k: v for k, v in {"max_tokens": int(self.max_tokens.value)}.items()
                    if k in self.exercise.allow_settings}
        self.status.value = _html("status", text=f"Checking {path.name} on {self.exercise.rows} held-out rows…")
        self.progress.clear_output()
        with self.progress:
            result = check(self.exercise.id, str(path), settings=settings, progress=True)
        self.check_html.value = result._repr_html_()
        self.status.value = _html("status", text=f"Checked {path}.", tone="ok")
        return result

    def load(self, path: str | Path) -> Template:
        """Load a saved template into the builder's fields (phrases already baked in)."""
        t = load_template(path)
        self._earlier_turns = t.turns[:-1]
        self.system.value, self.prefill.value, self.user.value = t.system, t.prefill, t.user
        for cb in self.phrase_boxes.values():
            cb.value = False
        return t

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def prompt_builder(**kwargs: Any) -> PromptBuilder:
    """Build the live prompt builder (display it with `display(b)` or by leaving it last in a cell)."""
    return PromptBuilder(**kwargs)


__all__ = ["PromptBuilder", "prompt_builder", "variables_in"]
