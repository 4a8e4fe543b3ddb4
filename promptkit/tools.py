"""Tool use: customer-success tools as JSON schemas, a model's tool call, its grade, and the call executed.

The tools and the small CRM they read are data (`datasets/cs_tools.yaml`). A model
asks for a tool in one of three ways, all measured in chapter 10:

- **native**: the vendor's tool interface. `tool_model("openai:gpt-4o-mini")` sends
  `tools=[...]` to Chat Completions, Anthropic gets `tools=[{input_schema}]`, and a
  local model gets the tools through its own chat template (Qwen2.5 writes
  `<tool_call>{...}</tool_call>`). The spec it returns runs in any experiment.
- **grammar**: a local model whose output is constrained by `tool_grammar()` to JSON that
  names one tool and fits its argument schema.
- **prompt**: the tools described in the prompt and JSON asked for, nothing enforced.

`tool_call()` grades every form against a gold `{"tool", "arguments"}`; `execute()` runs
a call against the CRM, and `answer_with_result()` feeds the result back to the model.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import yamlfile
from .errors import ModelSpecError, PromptkitError
from .graders import BaseGrader, Grade, extract_json, label_key, unparsed
from .providers.base import ModelSpec, Provider
from .types import Completion, Request

TOOL_MODES = ("native", "grammar", "prompt")


class ToolError(PromptkitError, ValueError):
    """A tool definition, a tool call or a tool spec is malformed."""


@dataclass(frozen=True)
class Tool:
    """One tool: its name, what it does (the model reads this) and the JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        """OpenAI Chat Completions form (also what Qwen's chat template expects)."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def anthropic(self) -> dict[str, Any]:
        """Anthropic Messages API form."""
        return {"name": self.name, "description": self.description, "input_schema": self.parameters}

    def defaults(self) -> dict[str, Any]:
        return {k: v["default"] for k, v in self.parameters.get("properties", {}).items() if "default" in v}


@dataclass
class ToolCall:
    """What a model asked for: a tool and its arguments (None when it asked for nothing readable)."""

    tool: str | None
    arguments: dict[str, Any] = field(default_factory=dict)
    problem: str = ""

    def to_json(self) -> str:
        return json.dumps({"tool": self.tool, "arguments": self.arguments}, ensure_ascii=False)


def tools_path() -> Path:
    from .datasets import datasets_dir

    return datasets_dir() / "cs_tools.yaml"


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    raw = yamlfile.load(path, ToolError, "tools file")
    if not isinstance(raw, dict) or not isinstance(raw.get("tools"), list):
        raise ToolError(f"{Path(path).name}: expected a mapping with a 'tools' list")
    import jsonschema

    for i, t in enumerate(raw["tools"]):
        missing = [k for k in ("name", "description", "parameters") if k not in t]
        if missing:
            raise ToolError(f"{Path(path).name}: tools[{i}] is missing {missing}")
        try:
            jsonschema.Draft202012Validator.check_schema(t["parameters"])
        except jsonschema.SchemaError as exc:
            raise ToolError(f"{Path(path).name}: tools[{i}] ({t['name']}): parameters is not a JSON Schema: {exc.message}") from None
    return raw


def load_tools(path: str | Path | None = None) -> list[Tool]:
    """The tools of `cs_tools.yaml` (or another file of the same shape), validated."""
    raw = _load(str(path or tools_path()))
    return [Tool(t["name"], t["description"].strip(), t["parameters"]) for t in raw["tools"]]


def accounts(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The fictional CRM the tools read."""
    return list(_load(str(path or tools_path())).get("accounts", []))


# --------------------------------------------------------------------------- reading a call


_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def parse_tool_call(text: str) -> ToolCall:
    """Read a tool call from any of the forms models write: our {"tool", "arguments"}, the OpenAI/Qwen
    {"name", "arguments"} (inside <tool_call> tags or not), or {"function": {...}}. Never raises."""
    s = text or ""
    m = _TOOL_CALL_TAG.search(s)
    if m:
        s = m.group(1)
    value, err = extract_json(s)
    if err is not None:
        return ToolCall(None, problem=err)
    if isinstance(value, list):
        value = value[0] if value and isinstance(value[0], Mapping) else {}
    if isinstance(value.get("function"), Mapping):
        value = value["function"]
    name = value.get("tool", value.get("name", value.get("tool_name")))
    args = value.get("arguments", value.get("args", value.get("parameters", value.get("input", {}))))
    if isinstance(args, str):  # OpenAI sends arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            return ToolCall(name if isinstance(name, str) else None, problem="the arguments are not valid JSON")
    if not isinstance(name, str) or not name:
        return ToolCall(None, problem="the JSON names no tool (expected a 'tool' or 'name' field)")
    if not isinstance(args, Mapping):
        return ToolCall(name, problem="the arguments are not a JSON object")
    return ToolCall(name, dict(args))


# --------------------------------------------------------------------------- grading


def _norm(v: Any) -> Any:
    if isinstance(v, str):
        s = v.strip()
        if re.fullmatch(r"-?\d+", s):
            return int(s)
        return label_key(s)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class _ToolCallGrader(BaseGrader):
    def __init__(self, tools: Sequence[Tool] | None, name: str) -> None:
        self.name = name
        self.tools = {t.name: t for t in (tools if tools is not None else load_tools())}

    def grade(self, completion: Completion, target: Any) -> Grade:
        from .graders import gold_of

        gold = gold_of(target)
        if not isinstance(gold, Mapping) or "tool" not in gold:
            raise ToolError(f"{self.name}: the target must be {{'tool': ..., 'arguments': {{...}}}}, got {gold!r}")
        call = parse_tool_call(completion.text)
        if call.tool is None:
            g = unparsed(call.problem or "no tool call", text=completion.text[:200])
            g.details.update(tool_correct=False, arguments_correct=False)
            return g
        tool = self.tools.get(call.tool)
        known = tool is not None
        want = {**(self.tools[gold["tool"]].defaults() if gold["tool"] in self.tools else {}), **gold.get("arguments", {})}
        got = {**(tool.defaults() if tool else {}), **call.arguments}
        tool_ok = call.tool == gold["tool"]
        wrong = sorted(k for k in want if _norm(got.get(k)) != _norm(want[k]))
        extra = sorted(k for k in got if k not in want)
        args_ok = tool_ok and not wrong and not extra
        schema_errors: list[str] = []
        if tool is not None:
            import jsonschema

            schema_errors = [e.message for e in jsonschema.Draft202012Validator(tool.parameters).iter_errors(call.arguments)]
        details = {"tool": call.tool, "arguments": call.arguments, "tool_correct": tool_ok, "arguments_correct": args_ok,
                   "wrong_arguments": wrong, "extra_arguments": extra, "schema_errors": schema_errors,
                   "known_tool": known}
        if not tool_ok:
            reason = f"called {call.tool}, expected {gold['tool']}" + ("" if known else " (no such tool)")
        elif args_ok:
            reason = f"right tool ({call.tool}) and arguments"
        else:
            bits = [f"{k}={call.arguments.get(k)!r} (want {want[k]!r})" for k in wrong] + [f"extra {k}" for k in extra]
            reason = f"right tool ({call.tool}), wrong arguments: " + ", ".join(bits)
        return Grade(score=float(args_ok), passed=args_ok, reason=reason, label=call.tool, details=details)


def tool_call(tools: Sequence[Tool] | None = None, *, name: str = "tool_call") -> BaseGrader:
    """Grades a tool call against a gold {"tool", "arguments"}: passes when both are right.

    `label` is the tool the model chose (so tool-choice accuracy reads like a label task);
    details hold `tool_correct`, `arguments_correct` and which arguments were wrong. Optional
    arguments left out count as their schema default.
    """
    return _ToolCallGrader(tools, name)


def tool_scores(results: Any, grader: str = "tool_call") -> Any:
    """Per variant and model: tool-choice accuracy, argument accuracy, unreadable calls, latency and tokens."""
    import pandas as pd

    recs = []
    for (v, m), cells in results.cells_by("variant", "model").items():
        grades = [c.grades.get(grader) for c in cells]
        ok = [c for c in cells if c.completion.ok]
        lat = [c.completion.latency_s for c in ok if c.completion.latency_s is not None]
        out = [c.completion.output_tokens for c in ok if c.completion.output_tokens is not None]
        recs.append({
            "variant": v, "model": m, "n": len(cells), "errors": len(cells) - len(ok),
            "tool choice accuracy": sum(bool(g and g.details.get("tool_correct")) for g in grades) / len(cells),
            "tool + arguments accuracy": sum(bool(g and g.details.get("arguments_correct")) for g in grades) / len(cells),
            "unreadable calls": sum(1 for g in grades if g is not None and not g.parsed),
            "latency_p50": float(pd.Series(lat).median()) if lat else None,
            "output_tokens_mean": float(pd.Series(out).mean()) if out else None,
        })
    return pd.DataFrame(recs)


# --------------------------------------------------------------------------- grammar-constrained calls


def tool_call_schema(tools: Sequence[Tool] | None = None) -> dict[str, Any]:
    """JSON Schema of one call to one of `tools`: {"tool": <name>, "arguments": <that tool's schema>}."""
    tools = list(tools if tools is not None else load_tools())
    return {"anyOf": [{"type": "object", "properties": {"tool": {"const": t.name}, "arguments": t.parameters},
                       "required": ["tool", "arguments"], "additionalProperties": False} for t in tools]}


def tool_grammar(tools: Sequence[Tool] | None = None) -> str:
    """GBNF for a local model: only a call that names one of the tools with arguments that fit its schema."""
    from .grammars import json_grammar

    return json_grammar(tool_call_schema(tools), prop_order=["tool", "arguments"])


class WithGrammar:
    """A prompt variant that always runs with a grammar (local models honour it), beside plain variants."""

    def __init__(self, template: Any, grammar: str, name: str | None = None) -> None:
        self.template, self.grammar = template, grammar
        self.name = name or f"{template.name}+grammar"

    def to_request(self, variables: Mapping[str, Any], settings: Any) -> Request:
        from dataclasses import replace

        req = self.template.to_request(variables, settings)
        return replace(req, settings=replace(req.settings, grammar=self.grammar))


def what_the_model_sees(model: str, request: str, system: str | None = None) -> str:
    """The exact text a local model reads when the tools go through its chat template (the native way)."""
    from .providers import get_provider

    lm = get_provider(model).loaded()
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": request}]
    return lm.formatter(messages=msgs, tools=[t.openai() for t in load_tools()]).prompt


def tool_confusion(results: Any, grader: str = "tool_call", **where: Any) -> Any:
    """Gold tool down, chosen tool across (\"unreadable\" when no call could be read): which tools get confused."""
    import pandas as pd

    sub = results.filter(**where) if where else results
    recs = []
    for r in sub.results:
        g = r.grades.get(grader)
        chosen = (g.details.get("tool") if g is not None and g.parsed else None) or "unreadable"
        recs.append({"gold tool": r.cell.target["tool"], "chosen": chosen})
    df = pd.DataFrame(recs)
    return pd.crosstab(df["gold tool"], df["chosen"])


def tool_verdict(scores: Any) -> str:
    """Sentences, from a tool_scores table, naming the best way to ask and how far the others fell behind."""
    s = scores.sort_values("tool + arguments accuracy", ascending=False).reset_index(drop=True)
    best = s.iloc[0]
    lines = [f"Best here: {best['variant']} on {best['model']}, with the right tool and arguments on "
             f"{best['tool + arguments accuracy']:.0%} of {int(best['n'])} requests "
             f"(right tool {best['tool choice accuracy']:.0%})."]
    for _, r in s.iloc[1:].iterrows():
        lines.append(f"{r['variant']} on {r['model']}: {r['tool + arguments accuracy']:.0%} fully right, "
                     f"right tool {r['tool choice accuracy']:.0%}, {int(r['unreadable calls'])} unreadable.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- executing a call


def execute(call: ToolCall | Mapping[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """Run a call against the CRM and return its result as JSON-ready data ({"error": ...} when it cannot run)."""
    if isinstance(call, Mapping):
        call = ToolCall(call.get("tool"), dict(call.get("arguments", {})))
    tools = {t.name: t for t in load_tools(path)}
    if call.tool not in tools:
        return {"error": f"unknown tool {call.tool!r}; tools are {sorted(tools)}"}
    import jsonschema

    errs = [e.message for e in jsonschema.Draft202012Validator(tools[call.tool].parameters).iter_errors(call.arguments)]
    if errs:
        return {"error": f"invalid arguments for {call.tool}: " + "; ".join(errs)}
    args = {**tools[call.tool].defaults(), **call.arguments}
    accts = accounts(path)
    if call.tool == "lookup_account":
        want = label_key(args["name"])
        found = [a for a in accts if label_key(a["name"]) == want] or \
                [a for a in accts if want and want in label_key(a["name"])]
        if not found:
            return {"error": f"no account named {args['name']!r}"}
        a = found[0]
        return {k: str(a[k]) if k == "renewal_date" else a[k] for k in ("id", "name", "plan", "arr_usd", "renewal_date", "csm", "health")}
    acct = next((a for a in accts if a["id"] == args["account_id"]), None)
    if acct is None:
        return {"error": f"no account with id {args['account_id']!r}"}
    if call.tool == "get_usage":
        return {"account_id": acct["id"], "metric": args["metric"], "days": args["days"],
                "value": acct["usage"][args["metric"]][args["days"]]}
    if call.tool == "list_open_tickets":
        tickets = [t for t in acct.get("tickets", []) if args["priority"] in ("any", t["priority"])]
        return {"account_id": acct["id"], "priority": args["priority"], "open_tickets": tickets}
    if call.tool == "get_contract":
        return {"account_id": acct["id"], **{k: str(v) if k in ("start", "end") else v for k, v in acct["contract"].items()}}
    return {"error": f"{call.tool} has no implementation"}  # pragma: no cover - every tool above is implemented


# --------------------------------------------------------------------------- native tool interfaces


def tool_model(model: str) -> str:
    """A model spec whose answers are tool calls made through the model's native tool interface.

    `tool_model("local:qwen2.5-0.5b")` -> "tools:local:qwen2.5-0.5b". The answer text is the call as
    JSON ({"tool", "arguments"}) for API models, and the model's own text for local ones (graded the same way).
    """
    from .providers import parse_spec

    spec = parse_spec(model)
    if spec.provider == "tools":
        raise ModelSpecError(f"{model!r} is already a tool spec")
    return f"tools:{model}"


class ToolCallProvider(Provider):
    """`tools:<model spec>`: the request goes out with the CS tools through the vendor's tool interface."""

    name = "tools"

    def __init__(self, spec: ModelSpec) -> None:
        from .providers import parse_spec

        base = spec.model + (f"@{spec.base_url}" if spec.base_url else "")
        self.base_spec = parse_spec(base)
        if self.base_spec.provider not in ("local", "openai", "ollama", "vllm", "lmstudio", "anthropic"):
            raise ModelSpecError(f"tool calls run on local, OpenAI-compatible and Anthropic models, not {base!r}")
        super().__init__(self.base_spec)
        self.spec = spec
        self.tools = load_tools()

    @property
    def base(self) -> Provider:
        from .providers import get_provider

        return get_provider(self.base_spec)

    @property
    def cost_provider(self) -> str:
        return self.base.cost_provider

    async def _complete(self, request: Request) -> Completion:
        kind = self.base_spec.provider
        if kind == "local":
            return await self._local(request)
        if kind == "anthropic":
            return await self._anthropic(request)
        return await self._openai(request)

    async def _local(self, request: Request) -> Completion:
        base = self.base
        lm = base.loaded()
        template = lm.llm.metadata.get("tokenizer.chat_template") or ""
        if "tools" not in template:
            return Completion(error_kind="config", error=f"{self.base_spec}'s chat template has no tool support "
                                                          "(it ignores tools); use the grammar or prompt mode")
        msgs = [{"role": m.role, "content": m.content} for m in request.messages]
        prompt = lm.formatter(messages=msgs, tools=[t.openai() for t in self.tools]).prompt + request.prefill
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(lm.executor, _local_generate, lm, prompt, request)

    async def _openai(self, request: Request) -> Completion:
        base = self.base
        client = await base._clients.get()
        s = request.settings
        t0 = time.perf_counter()
        resp = await client.chat.completions.create(
            model=base.model, messages=[{"role": m.role, "content": m.content} for m in request.messages],
            tools=[t.openai() for t in self.tools], tool_choice="auto", max_tokens=s.max_tokens,
            temperature=s.temperature, **({"seed": s.seed} if s.seed is not None else {}),
        )
        msg = resp.choices[0].message
        calls = getattr(msg, "tool_calls", None) or []
        if calls:
            fn = calls[0].function
            try:
                args = json.loads(fn.arguments or "{}")
            except ValueError:
                args = fn.arguments
            text = json.dumps({"tool": fn.name, "arguments": args}, ensure_ascii=False)
        else:
            text = msg.content or ""
        usage = resp.usage
        return Completion(text=text, input_tokens=getattr(usage, "prompt_tokens", None),
                          output_tokens=getattr(usage, "completion_tokens", None),
                          latency_s=time.perf_counter() - t0, finish_reason=resp.choices[0].finish_reason)

    async def _anthropic(self, request: Request) -> Completion:
        base = self.base
        client = await base._clients.get()
        s = request.settings
        t0 = time.perf_counter()
        params: dict[str, Any] = {
            "model": base.model, "max_tokens": s.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.turns],
            "tools": [t.anthropic() for t in self.tools],
        }
        if request.system:
            params["system"] = request.system
        resp = await client.messages.create(**params)
        uses = [b for b in resp.content if getattr(b, "type", None) == "tool_use"]
        if uses:
            text = json.dumps({"tool": uses[0].name, "arguments": uses[0].input}, ensure_ascii=False)
        else:
            text = "".join(getattr(b, "text", "") for b in resp.content)
        return Completion(text=text, input_tokens=resp.usage.input_tokens, output_tokens=resp.usage.output_tokens,
                          latency_s=time.perf_counter() - t0, finish_reason=resp.stop_reason)

    def classify(self, exc: BaseException) -> tuple[str, float | None]:
        return self.base.classify(exc)


def _local_generate(lm: Any, prompt: str, request: Request) -> Completion:
    """Greedy (or sampled) generation from a prompt rendered with tools, on the model's own thread."""
    s = request.settings
    t0 = time.perf_counter()
    tokens = lm.tokenize(prompt)
    if len(tokens) + 1 > lm.n_ctx:
        return Completion(error_kind="context_length", input_tokens=len(tokens),
                          error=f"the prompt with its tools is {len(tokens)} tokens, over the context window of {lm.n_ctx}")
    kwargs: dict[str, Any] = dict(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=0,
                                  min_p=0.0, repeat_penalty=1.0, stop=list(s.stop) or None,
                                  seed=s.seed if s.seed is not None else int(time.time_ns() % 2**31))
    if s.grammar:
        kwargs["grammar"] = lm.grammar(s.grammar)
    with lm.lock:
        lm.llm.reset()
        out = lm.llm.create_completion(tokens, **kwargs)
    choice = out["choices"][0]
    usage = out.get("usage") or {}
    return Completion(text=request.prefill + choice["text"], input_tokens=usage.get("prompt_tokens", len(tokens)),
                      output_tokens=usage.get("completion_tokens"), latency_s=time.perf_counter() - t0,
                      finish_reason=choice.get("finish_reason"))


# --------------------------------------------------------------------------- feeding the result back


def answer_with_result(model: str, question: str, call: ToolCall, result: Mapping[str, Any], *,
                       way: str = "native", max_tokens: int = 80) -> Completion:
    """Second turn: the tool's result goes back to the model, which answers the CSM's question from it.

    way="native": a local model whose chat template knows tools gets its own `tool` turn (Qwen:
    <tool_response>); way="plain" (and every model without tool support) gets the result in a tagged
    user turn.
    """
    from .complete import complete
    from .providers import get_provider, parse_spec
    from .types import Message, Settings

    if way not in ("native", "plain"):
        raise ToolError(f"answer_with_result: way must be 'native' or 'plain', got {way!r}")
    payload = json.dumps(result, ensure_ascii=False)
    spec = parse_spec(model)
    if way == "native" and spec.provider == "local":
        lm = get_provider(model).loaded()
        if "tools" in (lm.llm.metadata.get("tokenizer.chat_template") or ""):
            msgs = [
                {"role": "user", "content": question},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": call.tool, "arguments": call.arguments}}]},
                {"role": "tool", "name": call.tool, "content": payload},
            ]
            prompt = lm.formatter(messages=msgs, tools=[t.openai() for t in load_tools()]).prompt
            req = Request(messages=(Message("user", question),), settings=Settings(max_tokens=max_tokens))
            c = lm.executor.submit(_local_generate, lm, prompt, req).result()
            c.provider, c.model = "local", spec.model
            return c
    text = (f"{question}\n\nYou called {call.tool} with {json.dumps(call.arguments)}. Its result:\n"
            f"<tool_result>\n{payload}\n</tool_result>\n\nAnswer the question from the result, in one or two sentences.")
    return complete(text, model, max_tokens=max_tokens)


def result_facts(result: Any) -> list[str]:
    """The checkable values in a tool result (ids, numbers, dates, names), to look for in the final answer."""
    out: list[str] = []
    if isinstance(result, Mapping):
        for k, v in result.items():
            if k in ("account_id", "priority", "metric"):
                continue
            out += result_facts(v)
    elif isinstance(result, list):
        for v in result:
            out += result_facts(v)
    elif isinstance(result, bool) or result is None:
        pass
    elif isinstance(result, (int, float)):
        out.append(f"{result:g}" if isinstance(result, float) else str(result))
    elif isinstance(result, str) and (re.search(r"\d", result) or len(result.split()) <= 3):
        out.append(result)
    return list(dict.fromkeys(out))


def facts_used(answer: str, result: Any) -> dict[str, bool]:
    """Which of the result's values the answer repeats (numbers also match with thousands separators)."""
    low = (answer or "").casefold()
    flat = low.replace(",", "")
    return {f: (f.casefold() in low or f.casefold() in flat) for f in result_facts(result)}


__all__ = ["TOOL_MODES", "Tool", "ToolCall", "ToolCallProvider", "ToolError", "WithGrammar", "accounts",
           "answer_with_result", "execute", "facts_used", "result_facts", "load_tools", "parse_tool_call", "tool_call", "tool_call_schema",
           "tool_confusion", "tool_grammar", "tool_model", "tool_scores", "tool_verdict", "what_the_model_sees"]
