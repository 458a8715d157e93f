"""`iot-remote-access lint` at CI scale: every output format against the checker alone.

Each figure is a ratio measured in one run, side by side, on this machine
(whole processes, so start-up is included on both sides):

- ``files``: N policy files (half compliant, half with two findings each);
- ``templates``: T CloudFormation templates (JSON) of P IoT policies each;
- ``linear``: one template of P policies and one of 4P policies: with one pass
  per file for line numbers the time per policy stays flat (ratio ~1, not ~4);
- ``startup``: ``lint`` of one file and ``--help``, whole process.

The baseline ("checker alone") is a Python process that reads and checks the same
files (``guard.sources.read_policies`` + ``guard.scan.scan_documents``) and prints
nothing. The CLI runs as the installed ``iot-remote-access`` console script with stdout to a file
(not a terminal, as in CI). Times are the median of ``--repeat`` paired runs; the
ratio is taken per pair (both runs back to back) so a busy machine hurts both.

    python benchmarks/guard_lint.py files --files 10000
    python benchmarks/guard_lint.py templates --templates 200 --policies 50
    python benchmarks/guard_lint.py linear --policies 800
    python benchmarks/guard_lint.py startup
    python benchmarks/guard_lint.py all --short      # small sizes, one repeat each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FORMATS = ("table", "json", "sarif")
#: The installed console script, as CI runs it.
CLI = [str(Path(sys.executable).parent / "iot-remote-access")]
#: Environment of the measured processes (``--code`` points them at another checkout).
ENV = dict(os.environ)
PYTHON_FLAGS: list[str] = []
ARN = "arn:aws:iot:eu-west-1:123456789012"
THING = "${iot:Connection.Thing.ThingName}"
COMPLIANT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"{ARN}:client/{THING}",
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        },
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}:topic/dt/{THING}/t"},
    ],
}
STAR = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
}

CHECKER_ALONE = """
import sys
from pathlib import Path
from iot_remote_access.guard.scan import scan_documents
from iot_remote_access.guard.sources import read_policies
scan_documents(read_policies([Path(p) for p in sys.argv[1:]]))
"""


def _policy(index: int) -> dict[str, Any]:
    return STAR if index % 2 else COMPLIANT


def write_files(folder: Path, count: int) -> list[str]:
    paths = []
    for index in range(count):
        path = folder / f"policy-{index:06d}.json"
        path.write_text(json.dumps(_policy(index), indent=2))
        paths.append(str(path))
    return paths


def write_template(path: Path, policies: int) -> None:
    resources: dict[str, Any] = {}
    for index in range(policies):
        resources[f"Bucket{index:05d}"] = {"Type": "AWS::S3::Bucket"}
        resources[f"DevicePolicy{index:05d}"] = {
            "Type": "AWS::IoT::Policy",
            "Properties": {"PolicyDocument": _policy(index)},
        }
    # CDK writes templates with indent=1: one key per line, as here.
    path.write_text(json.dumps({"Resources": resources}, indent=1))


def _run(command: list[str], out: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one whole process."""
    before, started = os.times(), time.perf_counter()
    with out.open("w") as stdout:
        # cwd elsewhere: ``python -c`` puts the working folder first on sys.path.
        subprocess.run(
            command,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            check=False,
            env=ENV,
            cwd=tempfile.gettempdir(),
        )
    wall, after = time.perf_counter() - started, os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def compare(paths: list[str], policies: int, repeat: int, label: str) -> None:
    """Checker alone vs the CLI in each format, paired runs, median ratios."""
    out = Path(tempfile.mkdtemp(prefix="guard-bench-out-")) / "out"
    checker = [sys.executable, *PYTHON_FLAGS, "-c", CHECKER_ALONE, *paths]
    print(f"{label}: {policies} policies")
    for output_format in FORMATS:
        cli = [*CLI, "lint", "-f", output_format, *paths]
        pairs = [(_run(checker, out), _run(cli, out)) for _ in range(repeat)]
        wall = statistics.median(cli[0] for _, cli in pairs)
        base_wall = statistics.median(base[0] for base, _ in pairs)
        wall_ratio = statistics.median(cli[0] / base[0] for base, cli in pairs)
        cpu_ratio = statistics.median(cli[1] / base[1] for base, cli in pairs)
        cpu = statistics.median(cli[1] for _, cli in pairs)
        print(
            f"  {output_format:6} checker alone {base_wall:6.2f} s  lint {wall:6.2f} s  "
            f"ratio wall {wall_ratio:5.2f}x cpu {cpu_ratio:5.2f}x (target <= 1.5)  "
            f"{policies / wall:6.0f} policies/s ({policies / cpu:6.0f} per CPU-second)"
        )
    out.unlink(missing_ok=True)


def bench_files(count: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as folder:
        compare(write_files(Path(folder), count), count, repeat, f"files: {count} policy files")


def bench_templates(templates: int, policies: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as folder:
        paths = []
        for index in range(templates):
            path = Path(folder) / f"stack{index:04d}.template.json"
            write_template(path, policies)
            paths.append(str(path))
        label = f"templates: {templates} templates x {policies} policies"
        compare(paths, templates * policies, repeat, label)


def bench_linear(policies: int) -> None:
    """In-process: reading one template of P and of 4P policies (line numbers included)."""
    from iot_remote_access.guard.sources import read_policies

    with tempfile.TemporaryDirectory(prefix="guard-bench-") as folder:
        per_policy = []
        for size in (policies, 4 * policies):
            path = Path(folder) / f"big{size}.template.json"
            write_template(path, size)
            started = time.perf_counter()
            sources = list(read_policies([path]))
            took = time.perf_counter() - started
            assert len(sources) == size and all(s.line for s in sources)
            per_policy.append(took / size)
            print(f"linear: one template of {size:6} policies read in {took:6.3f} s")
        print(
            f"linear: time per policy at 4x the policies / at 1x: "
            f"{per_policy[1] / per_policy[0]:.2f} (linear ~1; quadratic ~4)"
        )


def bench_startup(repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as folder:
        (path,) = write_files(Path(folder), 1)
        out = Path(folder) / "out"
        for label, command in (
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("lint one file", [*CLI, "lint", path]),
            ("--help", [*CLI, "--help"]),
        ):
            times = [_run(command, out) for _ in range(repeat)]
            wall = statistics.median(t[0] for t in times)
            cpu = statistics.median(t[1] for t in times)
            print(f"startup: {label:15} wall {wall:5.3f} s  cpu {cpu:5.3f} s (target lint <= 0.15)")


def _use_code(folder: Path) -> None:
    """Run the measured processes on another copy of the package: without ``site``
    (the editable install would win), with site-packages on PYTHONPATH instead."""
    import site

    global CLI
    ENV["PYTHONPATH"] = os.pathsep.join([str(folder), *site.getsitepackages()])
    PYTHON_FLAGS.append("-S")
    CLI = [sys.executable, "-S", "-c", "from iot_remote_access.cli import main; main()"]
    print(f"code under test: {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("files", "templates", "linear", "startup", "all"))
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--templates", type=int, default=200)
    parser.add_argument("--policies", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--short", action="store_true", help="small sizes, one repeat")
    parser.add_argument(
        "--code",
        type=Path,
        help="measure the package in this folder instead (e.g. `git archive` of the baseline)",
    )
    args = parser.parse_args()
    if args.code:
        _use_code(args.code.resolve())
    if args.short:
        args.files, args.templates, args.repeat = 1000, 20, 1
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.what in ("files", "all"):
        bench_files(args.files, args.repeat)
    if args.what in ("templates", "all"):
        bench_templates(args.templates, args.policies, args.repeat)
    if args.what in ("linear", "all") and args.code:
        print("linear: measured in this process, so not with --code (it reads this checkout)")
    elif args.what in ("linear", "all"):
        bench_linear(200 if args.short else max(args.policies, 800))
    if args.what in ("startup", "all"):
        bench_startup(args.repeat if args.short else max(args.repeat, 5))


if __name__ == "__main__":
    main()
