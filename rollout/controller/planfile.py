"""Plan files: a rollout's stages, gates and metric sources, declared in YAML and checked before use.

YAML rather than TOML: a plan holds PromQL and SQL, which read best as YAML block scalars;
the configuration beside it (Grafana provisioning, Alertmanager, Prometheus rules) is YAML,
as are the plans of the tools operators know (Flagger, Argo Rollouts); and PyYAML's node tree
keeps each value's line, so every problem names its field and its line (`tomllib` keeps none).

A field the file leaves out keeps its value from the environment (ROLLOUT_*), so a plan may
say only what differs. `read_plan` returns a `PlanFile` or raises `PlanInvalid` listing every
problem (`rollout plan lint` prints them one a line); nothing connects while reading.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]  # (no stubs installed; PyYAML is untyped)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rollout.controller.gates.metric import MetricGate, metric_gate
from rollout.controller.gates.registry import GATES, Gate
from rollout.controller.plan import RolloutPlan
from rollout.controller.sources import BUILT_IN, SOURCES, MetricQuery, SourceConfig
from rollout.controller.sources.query_log import MEASURES
from rollout.controller.sources.source import Duration
from rollout.controller.thresholds import Thresholds
from rollout.errors import ConfigError

Path_ = tuple[str | int, ...]
NAME = r"^[a-z][a-z0-9_]{0,62}$"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan file: where (line, field) and what."""

    line: int | None
    field: str
    message: str

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}


class PlanInvalid(ConfigError):
    """A plan file with problems; the message is one line, `problems` has them all."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = list(problems)
        more = f" (and {len(problems) - 1} more: `rollout plan lint {file}` lists them)" if len(problems) > 1 else ""
        super().__init__(f"invalid plan: {problems[0].render(file)}{more}")


# -- the file's shape -------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomGateModel(_Strict):
    name: str = Field(pattern=NAME)
    role: Literal["guardrail", "signal"]
    source: str
    query: str = Field(min_length=1)
    total: str | None = Field(None, min_length=1)
    comparison: Literal["below", "above"]
    threshold: float = Field(allow_inf_nan=False)
    no_data: Literal["hold", "pass", "fail"] = "hold"
    description: str = ""


class GatesModel(_Strict):
    registry: list[str] | None = None          # the registry's gates that run (unset: all of them)
    thresholds: dict[str, float] = {}          # overrides of the `Thresholds` fields
    custom: list[dict[str, Any]] = []          # each checked on its own (CustomGateModel), so all problems show


class PlanModel(_Strict):
    stages: list[float] | None = None
    min_stage: Duration | None = Field(None, ge=0)
    evaluation_interval: Duration | None = Field(None, gt=0)
    complete_after: Duration | None = Field(None, ge=0)
    critical_window: Duration | None = Field(None, gt=0)
    traffic_grace: Duration | None = Field(None, ge=0)
    rollback_to: Literal["zero", "previous"] | None = None
    sources: dict[str, dict[str, Any]] = {}
    gates: GatesModel = GatesModel()


# -- what a valid file gives --------------------------------------------------------------------------
@dataclass(frozen=True)
class FilePlan(RolloutPlan):
    """A plan read from a file: the stages and thresholds, plus the gates and sources it chose."""

    file: str = ""
    registry_gates: tuple[str, ...] = ()
    metric_gates: tuple[MetricGate, ...] = ()
    sources: tuple[tuple[str, SourceConfig], ...] = ()

    @property
    def gates(self) -> tuple[Gate, ...]:
        """The gates the verdict runs: the chosen registry gates in the registry's order, then the custom ones."""
        chosen = tuple(g for g in GATES if g.name in self.registry_gates)
        return chosen + tuple(metric_gate(spec) for spec in self.metric_gates)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "file": self.file, "gates": list(self.registry_gates),
                "metric_gates": [g.to_dict() for g in self.metric_gates],
                "sources": {name: config.model_dump() for name, config in self.sources}}


# -- reading -----------------------------------------------------------------------------------------
def field_name(path: Path_) -> str:
    """("gates", "custom", 0, "threshold") -> gates.custom[0].threshold"""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Lines:
    """Each field's line in the YAML file, from PyYAML's node tree; duplicate keys are problems too."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[Path_, int] = {}
        self.duplicates: list[Problem] = []
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: Path_) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                line = key.start_mark.line + 1
                if name in seen:
                    self.duplicates.append(Problem(line, field_name((*path, name)), "given twice (the last would win)"))
                seen.add(name)
                self.lines[(*path, name)] = line
                self._walk(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def of(self, path: Path_) -> int | None:
        """The line of the deepest known part of `path`."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _pydantic_problems(error: ValidationError, lines: _Lines, prefix: Path_ = ()) -> list[Problem]:
    found = []
    for item in error.errors(include_url=False):
        path = (*prefix, *(part for part in item["loc"] if isinstance(part, (str, int))))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required"
        elif item["type"] == "string_pattern_mismatch" and path[-1] == "name":
            message = "a name is lower-case letters, digits and _, starting with a letter"
        found.append(Problem(lines.of(path), field_name(path), message))
    return found


def lint_text(text: str, defaults: RolloutPlan, file: str = "plan") -> tuple[FilePlan | None, list[Problem]]:
    """The plan a file's text declares over `defaults` (the environment's plan), and its problems (the plan is
    None when there are any)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [Problem(mark.line + 1 if mark else None, "", f"not valid YAML: {what}")]
    lines = _Lines(root)
    if not isinstance(data, dict):
        return None, [Problem(1, "", "a plan is a mapping of fields (stages, gates, sources, ...); "
                                     f"this file holds {'nothing' if data is None else type(data).__name__}")]
    problems = list(lines.duplicates)
    try:
        model = PlanModel.model_validate(data)
    except ValidationError as exc:
        return None, sorted(problems + _pydantic_problems(exc, lines), key=lambda p: p.line or 0)
    stages = defaults.stages
    if model.stages is not None:
        try:
            stages = RolloutPlan.parse_stages(model.stages)
        except ValueError as exc:
            problems.append(Problem(lines.of(("stages",)), "stages", str(exc)))
    sources = _sources(model, lines, problems)
    thresholds = _thresholds(model, defaults.thresholds, lines, problems)
    registry = _registry(model, lines, problems)
    custom = _custom(model, sources, registry, lines, problems)
    if problems:
        return None, sorted(problems, key=lambda p: p.line or 0)
    plan = FilePlan(
        stages=stages,
        min_stage_s=_or(model.min_stage, defaults.min_stage_s),
        evaluation_interval_s=_or(model.evaluation_interval, defaults.evaluation_interval_s),
        rollback_to=model.rollback_to or defaults.rollback_to,
        complete_after_s=_or(model.complete_after, defaults.complete_after_s),
        critical_window_s=_or(model.critical_window, defaults.critical_window_s),
        traffic_grace_s=_or(model.traffic_grace, defaults.traffic_grace_s),
        thresholds=thresholds, file=file, registry_gates=registry, metric_gates=custom,
        sources=tuple(sorted((name, config) for name, config in sources.items() if name not in BUILT_IN
                             or any(g.source == name for g in custom))))
    return plan, []


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _sources(model: PlanModel, lines: _Lines, problems: list[Problem]) -> dict[str, SourceConfig]:
    found: dict[str, SourceConfig] = dict(BUILT_IN)
    for name, body in model.sources.items():
        path: Path_ = ("sources", name)
        if name in BUILT_IN:
            problems.append(Problem(lines.of(path), field_name(path), f"{name} is built in; give another name"))
            continue
        if not re.match(NAME, name):
            problems.append(Problem(lines.of(path), field_name(path),
                                    "a name is lower-case letters, digits and _, starting with a letter"))
            continue
        kind = body.get("type")
        if kind in BUILT_IN:
            problems.append(Problem(lines.of((*path, "type")), field_name((*path, "type")),
                                    f"{kind} is built in: a gate names it as its source, with no block here"))
            continue
        if kind not in SOURCES:
            problems.append(Problem(lines.of((*path, "type")), field_name((*path, "type")),
                                    f"unknown source type {kind!r}; known: {', '.join(SOURCES)}"
                                    if kind is not None else f"required (one of {', '.join(SOURCES)})"))
            continue
        try:
            found[name] = SOURCES[kind].Config.model_validate(body)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, lines, path))
    return found


def _thresholds(model: PlanModel, defaults: Thresholds, lines: _Lines, problems: list[Problem]) -> Thresholds:
    kinds = {f.name: f.type for f in dataclasses.fields(Thresholds)}
    overrides: dict[str, float | int] = {}
    for name, value in model.gates.thresholds.items():
        path: Path_ = ("gates", "thresholds", name)
        if name not in kinds:
            problems.append(Problem(lines.of(path), field_name(path),
                                    f"unknown threshold; known: {', '.join(kinds)}"))
        elif kinds[name] == "int" and not float(value).is_integer():
            problems.append(Problem(lines.of(path), field_name(path), f"must be a whole number, not {value:g}"))
        else:
            overrides[name] = int(value) if kinds[name] == "int" else value
    try:
        return dataclasses.replace(defaults, **overrides)  # type: ignore[arg-type]
    except ConfigError as exc:
        path = ("gates", "thresholds")
        message = str(exc).removeprefix("invalid rollout thresholds: ")
        problems.append(Problem(lines.of(path), field_name(path), message))
        return defaults


def _registry(model: PlanModel, lines: _Lines, problems: list[Problem]) -> tuple[str, ...]:
    known = [g.name for g in GATES]
    if model.gates.registry is None:
        return tuple(known)
    chosen: list[str] = []
    for index, name in enumerate(model.gates.registry):
        path: Path_ = ("gates", "registry", index)
        if name not in known:
            problems.append(Problem(lines.of(path), field_name(path),
                                    f"unknown gate {name!r}; known: {', '.join(known)}"))
        elif name in chosen:
            problems.append(Problem(lines.of(path), field_name(path), f"{name} is listed twice"))
        else:
            chosen.append(name)
    return tuple(chosen)


def _custom(model: PlanModel, sources: Mapping[str, SourceConfig], registry: Sequence[str], lines: _Lines,
            problems: list[Problem]) -> tuple[MetricGate, ...]:
    taken = {g.name for g in GATES}
    gates: list[MetricGate] = []
    for index, raw in enumerate(model.gates.custom):
        path: Path_ = ("gates", "custom", index)
        try:
            gate = CustomGateModel.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, lines, path))
            continue

        def problem(field: str, message: str, path: Path_ = path) -> None:
            problems.append(Problem(lines.of((*path, field)), field_name((*path, field)), message))

        if gate.name in taken:
            problem("name", f"{gate.name} is already a gate's name" + (" (of the registry)" if gate.name in
                                                                     {g.name for g in GATES} else ""))
        taken.add(gate.name)
        config = sources.get(gate.source)
        if config is None:
            declared = [name for name in sources]
            problem("source", f"unknown source {gate.source!r}; declared: {', '.join(declared)}")
            continue
        for message in SOURCES[config.type].problems(MetricQuery(gate.query, gate.total)):
            problem("total" if message.startswith("total") else "query", message)
        counted = gate.total is not None or (config.type == "query_log" and MEASURES.get(gate.query, ("", None))[1]
                                             is not None)
        if counted and not 0 < gate.threshold < 1:
            problem("threshold", f"the source counts events of trials, so the threshold is a rate in (0, 1), "
                                 f"not {gate.threshold:g}")
        if not math.isfinite(gate.threshold):
            problem("threshold", "must be a finite number")
        gates.append(MetricGate(name=gate.name, role=gate.role, source=gate.source, query=gate.query,
                                total=gate.total, comparison=gate.comparison, threshold=gate.threshold,
                                no_data=gate.no_data, description=gate.description))
    return tuple(gates)


def read_plan(path: str | Path, defaults: RolloutPlan) -> FilePlan:
    """The plan of a file; PlanInvalid (every problem) or ConfigError (unreadable) otherwise."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the plan {file}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    plan, problems = lint_text(text, defaults, file)
    if plan is None:
        raise PlanInvalid(file, problems)
    return plan
