"""The answers of the 1M-listing serving bundle, as a digest: did a change alter any answer?

Builds (or reuses) the ANN bundle of ``benchmarks/serving_bundle_1m.py`` under ``--workdir``, builds
the transformer exactly as ``python -m inference.transformer`` would (in-process scoring by the
student, memory inventory, no switches, so nothing outside the process moves the answers), and
sends the bundle's own ``requests.json`` checkouts through ``preprocess -> predict -> postprocess``
one at a time, each with the same fixed ``timestamp`` (exploration's daily pacing reads the clock:
without it two runs of the same code differ in a few slots). Writes every answer (policy, fallback
reason, six listing ids, six propensities rounded to 1e-9) and its SHA-256 to ``--out``.

Run it on two checkouts of the code over the same ``--workdir`` and compare the digests::

    .venv/bin/python benchmarks/serving_answers.py --workdir /tmp/crbench-1m --out /tmp/answers-new.json
    (cd OLD_CHECKOUT && PYTHONPATH=. python benchmarks/serving_answers.py ... --out /tmp/answers-old.json)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving_bundle_1m import build_ann_bundle, bundle_requests  # noqa: E402
from inference.transformer import build_parser, build_transformer  # noqa: E402

#: The checkout time every request carries (UTC, ISO 8601).
FIXED_TIME = "2026-12-07T12:00:00+00:00"


async def answers(model: Any, bodies: list[dict], n: int) -> list[list[Any]]:
    """[policy, fallback reason, six listing ids, six propensities] for ``n`` requests in order."""
    rows: list[list[Any]] = []
    for i in range(n):
        job = await model.predict(await model.preprocess(bodies[i % len(bodies)]))
        for p in (await model.postprocess(job))["predictions"]:
            rows.append(
                [
                    p["policy"],
                    p.get("fallback_reason"),
                    [it["listing_id"] for it in p["items"]],
                    [round(it["propensity"], 9) for it in p["items"]],
                ]
            )
    return rows


def main() -> None:
    """Parse flags, build the bundle and the transformer, answer, write the digest."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/crbench-1m"))
    ap.add_argument("--listings", type=int, default=1_000_000)
    ap.add_argument(
        "-n", type=int, default=2000, help="requests (the bundle's, in order, repeated)"
    )
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving_answers.json"
    )
    args = ap.parse_args()
    bundle = build_ann_bundle(args.workdir, args.listings)
    targs = build_parser().parse_args(
        [
            "--bundle",
            str(bundle),
            "--users",
            "bundle",
            "--inventory",
            "memory",
            "--switches",
            "none",
            "--candidates",
            "auto",
            "--scoring",
            "inprocess",
            "--huge_pages",
            "off",
        ]
    )
    bodies = bundle_requests(bundle) or []
    for body in bodies:
        for inst in body["instances"]:
            inst["timestamp"] = FIXED_TIME
    rows = asyncio.run(answers(build_transformer(targs), bodies, args.n))
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "listings": args.listings,
                "requests": len(rows),
                "sha256": digest,
                "policies": {p: sum(r[0] == p for r in rows) for p in {r[0] for r in rows}},
                "answers": rows,
            }
        )
    )
    print(json.dumps({"requests": len(rows), "sha256": digest}))


if __name__ == "__main__":
    main()
