"""`evidence verify`: check an exported ledger chain against its anchors.

Exit 0: the chain holds (every link, digest and anchor checked). Exit 1: it is
broken; one line names the first record where it broke and why. Exit 2: the
input cannot be used (a file missing or unreadable, an anchor file that is not
one, a chain file whose first line is not a ledger record: the wrong file).

The chain is read as a stream, line by line with a bounded line length, so a
year of records or a hostile file costs the same little memory.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import click

from iot_remote_access.cli.errors import CliError, InputError


class ChainBroken(CliError):
    """The chain does not hold (exit 1)."""


@click.group()
def evidence() -> None:
    """Compliance evidence: export and verify the tamper-evident access ledger."""


@evidence.command("verify")
@click.argument("chain", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--anchors",
    "anchor_files",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="anchor file(s): one anchor per line, as the anchor function writes them to "
    "S3 (concatenate a period's objects), or a folder of anchor objects as downloaded "
    "from S3, Azure Blob Storage or GCS (every *.json under it). Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def verify_command(chain: Path, anchor_files: tuple[Path, ...], as_json: bool) -> None:
    """Check CHAIN (an exported ledger, JSON Lines; - for stdin) against its anchors."""
    from iot_remote_access.core.ledger import LedgerError, bounded_lines, read_anchors
    from iot_remote_access.core.ledger_verify import verify

    anchors = []
    for path in _anchor_paths(anchor_files):
        with _opened(path, "anchor file") as stream:
            try:
                anchors += read_anchors(bounded_lines(stream))
            except LedgerError as error:
                raise InputError(f"anchor file {_name(path)}: {error}") from None
    if not anchors:
        raise InputError("--anchors: the anchor file(s) hold no anchor; allowed: 1 or more")
    with _opened(chain, "chain") as stream:
        try:
            result = verify(bounded_lines(stream), anchors)
        except LedgerError as error:  # two anchors disagree: the anchor set is not one ledger's
            raise InputError(f"--anchors: {error}") from None
        except OSError as error:
            raise InputError(f"chain {_name(chain)}: cannot be read ({error.strerror})") from None
    broken = result.broken
    if broken is not None and broken.unreadable and result.records == 0:
        raise InputError(f"chain {_name(chain)} is not a ledger export: {broken.reason}")
    anchored = max((a.seq for a in anchors if a.seq <= (result.last_seq or 0)), default=None)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "holds": broken is None,
                    "records": result.records,
                    "firstSeq": result.first_seq,
                    "lastSeq": result.last_seq,
                    "anchorsChecked": result.anchors_checked,
                    "lastAnchoredSeq": anchored,
                    "broken": None if broken is None else {"seq": broken.seq, "why": broken.reason},
                }
            )
        )
    if broken is not None:
        raise ChainBroken(f"chain broken at record {broken.seq}: {broken.reason}")
    if not as_json:
        click.echo(
            _summary(
                result.records, result.first_seq, result.last_seq, anchored, result.anchors_checked
            )
        )


@evidence.command("export")
@click.option("--table", required=True, help="the ledger's DynamoDB table (AccessLedger.table)")
@click.option("--bucket", required=True, help="the anchor bucket (AccessLedger.bucket)")
@click.option("--ledger-id", default="access", show_default=True, help="the chain's id")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="folder to write chain.jsonl and anchors.jsonl into (created; never overwritten)",
)
@click.option("--region", help="AWS region. Default: the profile's.")
@click.option("--profile", help="AWS named profile. Default: the default credential chain.")
def export_command(
    table: str, bucket: str, ledger_id: str, out: Path, region: str | None, profile: str | None
) -> None:
    """Write the ledger and its anchors as the two files `evidence verify` reads."""
    from iot_remote_access.cli.evidence_aws import export_ledger

    chain, anchors = out / "chain.jsonl", out / "anchors.jsonl"
    for path in (chain, anchors):
        if path.exists():
            raise InputError(f"--out: {_name(str(path))} exists; allowed: a folder without it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"--out: {_name(str(out))} cannot be created ({error.strerror})") from None
    records, anchor_count = export_ledger(
        table=table,
        bucket=bucket,
        ledger_id=ledger_id,
        chain=chain,
        anchors=anchors,
        region=region,
        profile=profile,
    )
    click.echo(f"exported {records} record(s) to {chain} and {anchor_count} anchor(s) to {anchors}")


def _summary(
    records: int, first: int | None, last: int | None, anchored: int | None, checked: int
) -> str:
    span = f"record(s), seq {first}..{last}" if records else "records"
    tail = ""
    if last is not None and anchored is not None and anchored < last:
        tail = f"; records {anchored + 1}..{last} are after the last anchor (not yet anchored)"
    return f"holds: {records} {span}, {checked} anchor(s) checked{tail}"


def _anchor_paths(given: tuple[Path, ...]) -> Iterator[Path]:
    """Each anchor file; a folder stands for every ``*.json`` under it (one anchor object
    each, as every cloud's anchor writer names them), in name order."""
    from iot_remote_access.core.ledger import MAX_ANCHORS

    for path in given:
        if not path.is_dir():
            yield path
            continue
        found = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not found:
            raise InputError(f"--anchors: folder {_name(path)} holds no *.json anchor object")
        if len(found) > MAX_ANCHORS:
            raise InputError(f"--anchors: folder {_name(path)} holds more than {MAX_ANCHORS}")
        yield from found


@contextmanager
def _opened(path: Path, what: str) -> Iterator[IO[bytes]]:
    if str(path) == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = path.open("rb")
    except OSError as error:
        raise InputError(f"{what} {_name(path)}: cannot be read ({error.strerror})") from None
    with stream:
        yield stream


def _name(path: Path | str) -> str:
    text = str(path)
    return repr(text if len(text) <= 80 else "..." + text[-77:])


def _add_pack_commands() -> None:
    # In modules of their own (evidence_pack*.py); registered here so `evidence` lists them.
    from iot_remote_access.cli.evidence_clouds import export_objects_command, record
    from iot_remote_access.cli.evidence_pack import pack_command
    from iot_remote_access.cli.evidence_pack_incident import incident

    evidence.add_command(pack_command)
    evidence.add_command(incident)
    evidence.add_command(record)
    evidence.add_command(export_objects_command)


_add_pack_commands()
