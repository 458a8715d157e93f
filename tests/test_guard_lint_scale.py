"""`lint` at CI scale: plain output off a terminal, one pass for line numbers, lazy commands.

Behaviour only; the speed-ups are measured by ``benchmarks/guard_lint.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_remote_access.cli import COMMANDS, cli, load_command
from iot_remote_access.guard import sources
from iot_remote_access.guard.report import OutputFormat, plain_table, render
from iot_remote_access.guard.scan import scan_documents
from iot_remote_access.guard.sources import read_policies
from tests.support.cli_runner import run_cli

STAR = {"Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
CLI = str(Path(sys.executable).parent / "iot-remote-access")


def _template(policies: int) -> dict[str, object]:
    resources: dict[str, object] = {}
    for index in range(policies):
        resources[f"Queue{index}"] = {"Type": "AWS::SQS::Queue", "DependsOn": [f"P{index}"]}
        resources[f"P{index}"] = {
            "Type": "AWS::IoT::Policy",
            "Properties": {"PolicyDocument": STAR},
        }
    return {"Resources": resources}


def test_line_numbers_of_many_policies_point_at_their_keys(tmp_path: Path) -> None:
    """CDK's layout (indent=1, DependsOn naming later resources) and YAML."""
    template = _template(300)
    path = tmp_path / "big.template.json"
    text = json.dumps(template, indent=1)
    path.write_text(text)
    lines = text.splitlines()
    found = list(read_policies([path]))
    assert len(found) == 300
    for source in found:
        assert source.line is not None
        # As before the one-pass index: the first line that starts with the key
        # (here the DependsOn entry of the queue just before it).
        assert lines[source.line - 1].strip().startswith(f'"{source.name}"')
        assert source.line == sources._line_of(text, source.name)


_line = st.text(alphabet=" \"':abPx-1\n", max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(_line, max_size=12), st.sampled_from(["P", "Pa", "a:b", "x'", 'b"', "", "P1"]))
def test_one_pass_index_agrees_with_the_scan(lines: list[str], key: str) -> None:
    text = "\n".join(lines)
    assert sources._KeyLines(text).line_of(key) == sources._line_of(text, key)


def test_plain_table_off_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "star.json").write_text(json.dumps(STAR))
    result = run_cli("lint", str(tmp_path / "star.json"))
    assert result.code == 1
    title, blank, header, *rows = result.stdout.splitlines()
    assert (title, blank) == ("2 findings in 1 IoT policies", "")
    assert header.split() == ["policy", "rule", "severity", "stmt", "action", "resource", "why"]
    assert len(rows) == 2 and all(
        row.startswith(f"star ({tmp_path / 'star.json'})") for row in rows
    )
    assert "IRA001 wildcard-action" in rows[0] or "IRA001 wildcard-action" in rows[1]
    # aligned: every column starts at the same place on every line
    starts = {line.index("  ", len(f"star ({tmp_path / 'star.json'})")) for line in rows}
    assert len(starts) == 1
    assert "\x1b[" not in result.stdout  # no terminal escapes in CI logs


def test_rich_table_on_a_terminal_and_plain_elsewhere_say_the_same(tmp_path: Path) -> None:
    import io

    (tmp_path / "star.json").write_text(json.dumps(STAR))
    results = scan_documents(read_policies([tmp_path / "star.json"]))
    terminal = io.StringIO()
    render(results, OutputFormat.TABLE, terminal, terminal=True)
    plain = plain_table(results)
    for finding in results[0].findings:
        for text in (finding.rule_id, finding.action, str(finding.severity)):
            assert text in terminal.getvalue() and text in plain
    assert "2 findings in 1 IoT policies" in terminal.getvalue()


def test_json_and_sarif_off_a_terminal_are_one_compact_document(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps(_template(3)))
    for output_format in ("json", "sarif"):
        result = run_cli("lint", "-f", output_format, str(tmp_path / "t.json"))
        assert result.code == 1
        assert result.stdout.count("\n") == 1
        json.loads(result.stdout)
    sarif = json.loads(run_cli("lint", "-f", "sarif", str(tmp_path / "t.json")).stdout)
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in sarif["runs"][0]["results"]
    }
    assert len(uris) == 1 and next(iter(uris)).endswith("t.json")


def test_no_findings_plain(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps({"Resources": {}}))
    result = run_cli("lint", str(tmp_path / "t.json"))
    assert (result.code, result.stdout) == (0, "0 IoT policies checked: no findings.\n")


def test_help_lists_every_command_without_importing_them() -> None:
    """The console script, as a user runs it: `lint` and `--help` import no other command."""
    probe = (
        "import json, sys\n"
        "from iot_remote_access.cli import main\n"
        "try:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('iot_remote_access.cli.'))), file=sys.stderr)\n"
    )
    for args in (["--help"], ["lint", "--help"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        loaded = json.loads(done.stderr.strip().splitlines()[-1])
        assert loaded == (
            ["iot_remote_access.cli.errors"]
            if args == ["--help"]
            else ["iot_remote_access.cli.errors", "iot_remote_access.cli.guard"]
        )
    listed = subprocess.run([CLI, "--help"], capture_output=True, text=True, check=True, timeout=60)
    assert all(f"  {name} " in listed.stdout for name in COMMANDS)


def test_lazy_help_is_what_the_commands_say() -> None:
    """The help kept in COMMANDS matches each command's own, so the listing cannot drift."""
    for name, (_, _, summary) in COMMANDS.items():
        command = load_command(name)
        assert command.name == name
        own = " ".join((command.help or "").split("\n\n")[0].split())
        assert summary == own, name
        for limit in (30, 45, 80):
            assert click.utils.make_default_short_help(
                summary, limit
            ) == command.get_short_help_str(limit)


def test_every_subcommand_still_runs_and_gcp_keeps_manifests() -> None:
    ctx = click.Context(cli)
    assert cli.get_command(ctx, "nope") is None
    gcp = cli.get_command(ctx, "gcp")
    assert isinstance(gcp, click.Group) and "manifests" in gcp.commands
    result = run_cli("nope")
    assert result.code == 2 and "No such command 'nope'" in result.stderr
    for name in COMMANDS:
        shown = run_cli(name, "--help")
        assert shown.code == 0 and "Usage:" in shown.stdout, name


def test_sarif_uris_relative_inside_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolved once per folder and per file, with the same answers as resolving each."""
    outside, work = tmp_path / "outside", tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    outside.mkdir()
    (work / "sub" / "a.json").write_text(json.dumps(STAR))
    (outside / "b.json").write_text(json.dumps(STAR))
    (work / "link.json").symlink_to(outside / "b.json")
    monkeypatch.chdir(work)
    paths = ["sub/a.json", str(work / "sub" / "a.json"), "link.json", str(outside / "b.json")]
    sarif = json.loads(run_cli("lint", "-f", "sarif", *paths).stdout)
    uris = [
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in sarif["runs"][0]["results"]
    ]
    assert uris == [
        *["sub/a.json"] * 4,
        *["link.json"] * 2,  # leads outside: kept as given
        *[(outside / "b.json").as_uri()] * 2,
    ]
