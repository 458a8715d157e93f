"""A stand-in for the GitHub Actions runner: runs a composite action's `run:` steps locally.

Each `run:` step is executed as GitHub does (``bash --noprofile --norc -eo
pipefail``) with its ``env``, after substituting the ``${{ inputs.* }}``,
``${{ github.action_path }}`` and ``${{ steps.<id>.outputs.* }}`` expressions; the
step's outputs are read back from its ``$GITHUB_OUTPUT`` file. ``uses:`` steps
are replaced by named stand-ins passed in by the test (the runner fails on one
it has none for). Execution stops at the first failing step, as on GitHub.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
StandIn = Callable[[Mapping[str, str]], None]


@dataclass
class StepRecord:
    name: str
    code: int
    stdout: str = ""
    stderr: str = ""


@dataclass
class ActionRun:
    steps: list[StepRecord] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def failed_step(self) -> StepRecord | None:
        return next((s for s in self.steps if s.code != 0), None)


@dataclass
class CompositeActionStandInRunner:
    action_file: Path
    inputs: Mapping[str, str]
    #: Variables every step sees (GITHUB_*, RUNNER_TEMP, PATH ...).
    environment: Mapping[str, str]
    workspace: Path
    #: ``uses`` value without the version (``github/codeql-action/upload-sarif``) -> stand-in.
    stand_ins: Mapping[str, StandIn]
    #: Step names (or ids) to leave out, e.g. an install already done.
    skip: frozenset[str] = frozenset()

    def run(self) -> ActionRun:
        action = yaml.safe_load(self.action_file.read_text())
        defaults = {k: str(v.get("default", "")) for k, v in action.get("inputs", {}).items()}
        inputs = {**defaults, **self.inputs}
        record = ActionRun()
        for index, step in enumerate(action["runs"]["steps"]):
            name = step.get("name") or step.get("id") or step.get("uses") or f"step {index}"
            if name in self.skip or step.get("id") in self.skip:
                continue
            resolve = self._resolver(inputs, record)
            if "uses" in step:
                result = self._uses(step, name, resolve)
            else:
                result = self._run(step, name, index, resolve, record)
            record.steps.append(result)
            if result.code != 0:
                break
        return record

    def _resolver(self, inputs: Mapping[str, str], record: ActionRun) -> Callable[[str], str]:
        def value(expression: str) -> str:
            if expression.startswith("inputs."):
                return inputs[expression.removeprefix("inputs.")]
            if expression == "github.action_path":
                return str(self.action_file.parent)
            match = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expression)
            if match:
                return record.outputs.get(match[1], {}).get(match[2], "")
            raise ValueError(f"the stand-in runner does not know ${{{{ {expression} }}}}")

        return lambda text: EXPRESSION.sub(lambda m: value(m[1]), text)

    def _uses(
        self, step: Mapping[str, Any], name: str, resolve: Callable[[str], str]
    ) -> StepRecord:
        target = str(step["uses"]).split("@", 1)[0]
        stand_in = self.stand_ins.get(target)
        if stand_in is None:
            raise KeyError(f"no stand-in for uses: {step['uses']}")
        stand_in({k: resolve(str(v)) for k, v in (step.get("with") or {}).items()})
        return StepRecord(name, 0)

    def _run(
        self,
        step: Mapping[str, Any],
        name: str,
        index: int,
        resolve: Callable[[str], str],
        record: ActionRun,
    ) -> StepRecord:
        assert step.get("shell") == "bash", f"{name}: composite run steps must name their shell"
        output_file = Path(self.environment["RUNNER_TEMP"]) / f"output-{index}"
        output_file.write_text("")
        script = Path(self.environment["RUNNER_TEMP"]) / f"step-{index}.sh"
        script.write_text(resolve(str(step["run"])))
        env = {
            **self.environment,
            **{k: resolve(str(v)) for k, v in (step.get("env") or {}).items()},
            "GITHUB_OUTPUT": str(output_file),
        }
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=self.workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if "id" in step:
            record.outputs[step["id"]] = dict(
                line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line
            )
        return StepRecord(name, done.returncode, done.stdout, done.stderr)


def runner_environment(root: Path, bin_folder: Path) -> dict[str, str]:
    """GITHUB_* and RUNNER_* variables pointing into ``root``; ``bin_folder`` first on PATH."""
    folders = {name: root / name.lower() for name in ("RUNNER_TEMP", "GITHUB_WORKSPACE")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))},
        **{name: str(folder) for name, folder in folders.items()},
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "PATH": os.pathsep.join([str(bin_folder), os.environ.get("PATH", "")]),
    }
