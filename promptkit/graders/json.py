"""JSON answers: pull the JSON out of a reply, check it against a schema, score per-field F1 (`json_match`)."""
from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable, Mapping, Sequence

from ..errors import GraderError
from ..types import Completion, Grade
from .base import BaseGrader, check_threshold, gold_of, unparsed
from .labels import label_key

__all__ = ["extract_json", "extraction_summary", "json_match", "prf"]

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def extract_json(text: str) -> tuple[Any, str | None]:
    """The first JSON object or array in an answer (code fences and text around it allowed), or why not."""
    s = (text or "").strip()
    if not s:
        return None, "empty answer"
    chunks = [m.group(1) for m in _FENCE.finditer(s)] + [s]
    decoder = json.JSONDecoder()
    first_error: str | None = None
    for chunk in chunks:
        chunk = chunk.strip()
        try:
            value = json.loads(chunk)
            if isinstance(value, (dict, list)):
                return value, None
        except ValueError:
            pass
        starts = [i for i, c in enumerate(chunk) if c in "{["][:50]
        for i in starts:
            try:
                value, _ = decoder.raw_decode(chunk, i)
            except json.JSONDecodeError as exc:
                if first_error is None:
                    first_error = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
                if chunk[i + 1:].lstrip()[:1] in ("{", "["):
                    continue  # a doubled opener, e.g. a prefilled "{" that the model wrote again
                if not _closes(chunk, i):
                    break  # cut off: a list inside it must not pass for the whole answer
                continue
            if isinstance(value, (dict, list)):
                return value, None
    return None, first_error or "no JSON object or array in the answer"


def _closes(text: str, i: int) -> bool:
    """Whether the bracket at i is closed later (string contents skipped)."""
    depth, in_str, esc = 0, False, False
    for c in text[i:]:
        if in_str:
            esc, in_str = (not esc and c == "\\"), in_str and (esc or c != '"')
        elif c == '"':
            in_str = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return True
    return False


_TRUE = {"true", "yes", "y", "1", "present", "met", "pass"}
_FALSE = {"false", "no", "n", "0", "absent", "none", "null", "", "fail", "not met"}
_ITEM_KEYS = ("label", "signal", "name", "type", "category", "driver", "id", "value")


def truthy(v: Any) -> bool | None:
    """A JSON value read as yes/no ("present", 1, "no", null ...), or None when it says neither."""
    if isinstance(v, bool):
        return v
    if v is None:
        return False
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, str):
        s = v.strip().casefold()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    return None


def _label_list(value: Any, key: str | None) -> list[str] | None:
    """The labels in a JSON value: a list, a dict of booleans, or the one list inside a dict."""
    if isinstance(value, Mapping):
        if key is not None and key in value:
            return _label_list(value[key], None)
        flags = {k: truthy(v) for k, v in value.items()}
        if value and all(f is not None for f in flags.values()):
            return [k for k, f in flags.items() if f]
        lists = [v for v in value.values() if isinstance(v, (list, Mapping))]
        if len(lists) == 1:
            return _label_list(lists[0], None)
        return None
    if isinstance(value, (list, tuple, set)):
        out = []
        for item in value:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, Mapping):
                k = next((k for k in _ITEM_KEYS if isinstance(item.get(k), str)), None)
                if k is None:
                    return None
                out.append(item[k])
            else:
                return None
        return out
    return None


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1; an empty prediction of an empty gold set scores 1 (nothing to find, nothing claimed)."""
    p = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    r = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return truthy(a) == truthy(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, str) and isinstance(b, str):
        return label_key(a) == label_key(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return sorted(label_key(json.dumps(x)) for x in a) == sorted(label_key(json.dumps(x)) for x in b)
    return a == b


class _JsonMatch(BaseGrader):
    def __init__(self, schema, fields, key, aliases, threshold, strict, name):
        self.name = name
        self.validator = None
        if schema is not None:
            import jsonschema

            cls = jsonschema.validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise GraderError(f"{name}: the JSON schema is invalid at {'/'.join(map(str, exc.path)) or 'top'}: {exc.message}") from None
            self.validator = cls(schema)
        self.fields = list(fields) if fields is not None else None
        self.key, self.threshold, self.strict = key, check_threshold(threshold, name), strict
        self.canon: dict[str, str] = {}
        for f in self.fields or []:
            self.canon[label_key(f)] = f
        for alias, label in (aliases or {}).items():
            if label_key(label) not in self.canon:
                raise GraderError(f"{name}: alias {alias!r} points to {label!r}, which is not one of the fields {self.fields}")
            self.canon[label_key(alias)] = self.canon[label_key(label)]

    def _canonical(self, labels: Iterable[str]) -> dict[str, str]:
        """key -> display name, mapping spellings and aliases onto the field names."""
        out: dict[str, str] = {}
        for lab in labels:
            k = label_key(lab)
            out[label_key(self.canon.get(k, lab))] = self.canon.get(k, lab)
        return out

    def grade(self, completion: Completion, target: Any) -> Grade:
        value, err = extract_json(completion.text)
        if err is not None:
            g = unparsed(err, text=completion.text[:200])
            if completion.finish_reason == "length":
                g.reason += " (the answer was cut off at max_tokens)"
            gold = gold_of(target)
            if gold is not None:  # count the gold labels as missed, so summaries over rows stay honest
                empty = self._compare({}, gold)
                if isinstance(empty, Grade):
                    empty = self._compare([], gold)
                if not isinstance(empty, Grade):
                    g.details.update(per_field=empty["per_field"], tp=0, fp=0, fn=empty["fn"])
            return g
        details: dict[str, Any] = {"value": value}
        schema_errors: list[str] = []
        if self.validator is not None:
            errs = sorted(self.validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
            schema_errors = [f"{e.json_path}: {e.message}" for e in errs]
            details["schema_errors"] = schema_errors
        gold = gold_of(target)
        if gold is None:  # schema (or parse) check only
            ok = not schema_errors
            reason = "valid JSON" + (" matching the schema" if self.validator else "") if ok else \
                "schema violation: " + "; ".join(schema_errors[:3])
            return Grade(float(ok), ok, reason, details=details)
        cmp = self._compare(value, gold)
        if isinstance(cmp, Grade):
            cmp.details.update(details)
            return cmp
        details.update(cmp)
        score, reason = cmp["f1"], cmp["summary"]
        if schema_errors:
            reason = "schema violation: " + "; ".join(schema_errors[:3]) + "; " + reason
            if self.strict:
                score = 0.0
        ok = not schema_errors and score >= self.threshold
        return Grade(score=score, passed=ok, reason=reason, details=details)

    def _compare(self, value: Any, gold: Any) -> dict[str, Any] | Grade:
        named_fields = (isinstance(gold, Mapping) and bool(self.fields) and self.key is None
                        and not all(isinstance(v, bool) for v in gold.values())
                        and all(any(label_key(k) == label_key(f) for k in gold) for f in self.fields))
        gold_is_set = not named_fields and (isinstance(gold, (list, tuple, set)) or (
            isinstance(gold, Mapping) and (_label_list(gold, self.key) is not None)))
        if not gold_is_set:
            if not isinstance(gold, Mapping):
                raise GraderError(f"{self.name}: the target must be a list of labels or a JSON object, got {gold!r}")
            return self._compare_fields(value, gold)
        gold_labels = _label_list(gold, self.key)
        if gold_labels is None:
            raise GraderError(f"{self.name}: cannot read a list of labels from the target {gold!r}")
        pred_labels = _label_list(value, self.key)
        if pred_labels is None:
            where = f"under the key {self.key!r}" if self.key else "(pass key=... to name where it is)"
            return unparsed(f"the JSON holds no list of labels {where}")
        pred, want = self._canonical(pred_labels), self._canonical(gold_labels)
        universe = list(dict.fromkeys([*(label_key(f) for f in self.fields or []), *want, *pred]))
        names = {**{label_key(f): f for f in self.fields or []}, **want, **pred}
        per_field = {}
        for k in universe:
            per_field[names[k]] = {"tp": int(k in pred and k in want), "fp": int(k in pred and k not in want),
                                   "fn": int(k in want and k not in pred)}
        return self._summarise(per_field, predicted=sorted(pred.values()), gold=sorted(want.values()),
                               unknown=sorted(v for k, v in pred.items() if self.fields and k not in
                                              {label_key(f) for f in self.fields}))

    def _compare_fields(self, value: Any, gold: Mapping[str, Any]) -> dict[str, Any] | Grade:
        if not isinstance(value, Mapping):
            return unparsed(f"expected a JSON object with the fields {list(gold)}, got a {type(value).__name__}")
        per_field = {}
        for f in self.fields or list(gold):
            g = gold.get(f, next((v for k, v in gold.items() if label_key(k) == label_key(f)), None))
            p = value.get(f)
            if p is None:  # tolerate other spellings of the key ("Renewal Tier" for "renewal_tier")
                p = next((v for k, v in value.items() if label_key(k) == label_key(f)), None)
            same = g is not None and p is not None and _same(p, g)
            per_field[f] = {"tp": int(same), "fp": int(p is not None and not same), "fn": int(g is not None and not same)}
        return self._summarise(per_field, predicted=None, gold=None, unknown=[])

    def _summarise(self, per_field, predicted, gold, unknown) -> dict[str, Any]:
        tp = sum(c["tp"] for c in per_field.values())
        fp = sum(c["fp"] for c in per_field.values())
        fn = sum(c["fn"] for c in per_field.values())
        p, r, f = prf(tp, fp, fn)
        missed = [k for k, c in per_field.items() if c["fn"]]
        extra = [k for k, c in per_field.items() if c["fp"]]
        summary = f"F1 {f:.2f} (P {p:.2f}, R {r:.2f})"
        if missed:
            summary += "; missed " + ", ".join(missed)
        if extra:
            summary += "; extra " + ", ".join(extra)
        out = {"per_field": per_field, "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f,
               "summary": summary}
        if predicted is not None:
            out.update(predicted=predicted, gold=gold, unknown=unknown)
        return out


def json_match(
    schema: Mapping[str, Any] | None = None,
    fields: Sequence[str] | None = None,
    *,
    key: str | None = None,
    aliases: Mapping[str, str] | None = None,
    threshold: float = 1.0,
    strict: bool = True,
    name: str = "json_match",
) -> BaseGrader:
    """Extraction grader: parses JSON from the answer, checks a JSON schema, scores F1 against the gold.

    The gold may be a list of labels, a dict of booleans, or a dict of field values. Score is the
    micro F1 over the fields; per-field tp/fp/fn sit in `details["per_field"]` (see `extraction_summary`).

    Args:
        fields: the label (or field) names; spellings like "Declining-Usage" map onto them.
        key: where the list of labels sits in a JSON object (found automatically when there is one list).
        threshold: the F1 at which the grade passes.
        strict: a schema violation scores 0 (the output would break the program reading it).
    """
    return _JsonMatch(schema, fields, key, aliases, threshold, strict, name)


def extraction_summary(grades: Iterable[Grade]) -> dict[str, Any]:
    """Micro and macro precision/recall/F1 over many json_match grades (unparsed answers count as misses)."""
    per: dict[str, dict[str, int]] = {}
    n = unparsed_n = 0
    for g in grades:
        n += 1
        unparsed_n += not g.parsed
        if "per_field" not in g.details:
            continue
        for f, c in g.details["per_field"].items():
            acc = per.setdefault(f, {"tp": 0, "fp": 0, "fn": 0})
            for k in acc:
                acc[k] += c[k]
    tp, fp, fn = (sum(c[k] for c in per.values()) for k in ("tp", "fp", "fn"))
    p, r, f = prf(tp, fp, fn)
    table = {}
    for name, c in per.items():
        fp_, rp_, ff_ = prf(c["tp"], c["fp"], c["fn"])
        table[name] = {"precision": fp_, "recall": rp_, "f1": ff_, "support": c["tp"] + c["fn"], **c}
    macro = sum(v["f1"] for v in table.values()) / len(table) if table else 0.0
    return {"micro": {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn},
            "macro_f1": macro, "per_field": table, "rows": n, "unparsed": unparsed_n}


# --------------------------------------------------------------------------- numeric / length
