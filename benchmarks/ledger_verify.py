"""`evidence verify` throughput and peak memory on a generated ledger export.

Builds a chain of realistic tunnel decisions (as the broker records them) with an
anchor every ``--anchor-every`` records, writes the export and the anchor file,
then runs the real console script on them in a subprocess and reports records/s
and the subprocess's peak resident memory. Memory should not grow with the chain
(the verifier streams); compare two sizes to see it.

    python benchmarks/ledger_verify.py                      # 200,000 records
    python benchmarks/ledger_verify.py --records 1000000
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from iot_remote_access.core.ledger import anchor_of, next_record  # noqa: E402
from tests.support.ledger_chain import START, decision  # noqa: E402


def build(records: int, anchor_every: int, folder: Path) -> tuple[Path, Path, float]:
    chain, anchors = folder / "chain.jsonl", folder / "anchors.jsonl"
    started = time.perf_counter()
    head = None
    with chain.open("wb") as out, anchors.open("wb") as anchor_out:
        for index in range(records):
            head = next_record(head, decision(index), START + timedelta(seconds=index))
            out.write(head.line() + b"\n")
            if (index + 1) % anchor_every == 0:
                anchor_out.write(anchor_of(head, START + timedelta(seconds=index)).line() + b"\n")
    return chain, anchors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--anchor-every", type=int, default=500)
    args = parser.parse_args()
    script = Path(sys.executable).parent / "iot-remote-access"
    with tempfile.TemporaryDirectory() as folder:
        chain, anchors, build_seconds = build(args.records, args.anchor_every, Path(folder))
        size = chain.stat().st_size
        started = time.perf_counter()
        result = subprocess.run(
            [str(script), "evidence", "verify", str(chain), "--anchors", str(anchors)],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"records: {args.records:,} ({size / 1e6:.1f} MB), anchors every {args.anchor_every}")
    print(f"build (append in-process): {args.records / build_seconds:,.0f} records/s")
    print(f"verify exit {result.returncode}: {result.stdout.strip() or result.stderr.strip()}")
    print(f"verify: {seconds:.1f} s, {args.records / seconds:,.0f} records/s (console script)")
    print(f"verify peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
