"""The bench driver: run the sections, check the goals, write results.json and results.md.

    python -m bench.run                 # full (a few minutes on 2 cores): bench/results.*
    python -m bench.run --quick         # seconds: results in a temp folder (see --out)
    python -m bench.run --only relaunch,startup --out /tmp/b

Exit status 0 when every run worked (slow figures and missed goals are reported,
not failed), 1 when a run broke (crash, wrong count, missing output), 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench import goals, report
from bench.common import BENCH, FULL, QUICK, BenchError, Sizes, machine, sizes_dict, workdir

SECTIONS = ("accuracy", "throughput", "relaunch", "bounded", "memory", "checkpoints", "startup", "profile")


def _runners(sizes: Sizes, base: Path) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each section's entry point, imported only when it runs."""
    memory_project = base / "memory-project"

    def checkpoints() -> dict[str, Any]:
        from bench.sections import checkpoints as mod

        memory_project.mkdir(exist_ok=True)
        return mod.run(sizes, memory_project)

    def startup() -> dict[str, Any]:
        from bench.sections import checkpoints as ck
        from bench.sections import startup as mod

        if not (memory_project / ".memory" / "checkpoints").is_dir():
            memory_project.mkdir(exist_ok=True)
            ck.build(memory_project, sizes.memory_tasks, sizes.memory_checkpoints)
        return mod.run(sizes, memory_project)

    def simple(name: str, *args: Any) -> Callable[[], dict[str, Any]]:
        def call() -> dict[str, Any]:
            module = __import__(f"bench.sections.{name}", fromlist=["run"])
            return module.run(sizes, *args)  # type: ignore[no-any-return]

        return call

    def profile() -> dict[str, Any]:
        from bench import profile as mod

        return mod.run(sizes, base)

    return {
        "accuracy": simple("accuracy"),
        "throughput": simple("throughput", base),
        "relaunch": simple("relaunch"),
        "bounded": simple("bounded"),
        "memory": simple("memory"),
        "checkpoints": checkpoints,
        "startup": startup,
        "profile": profile,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; bad section names end with a one-line error (exit 2)."""
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: seconds instead of minutes")
    ap.add_argument(
        "--out",
        type=Path,
        help="folder for results.json and results.md "
        "[default: bench/ for a full run, a temp folder for --quick]",
    )
    ap.add_argument("--only", help=f"comma-separated sections to run (of: {', '.join(SECTIONS)})")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profile (default in --quick)")
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else list(SECTIONS)
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    if (args.quick or args.no_profile) and not args.only:
        wanted.remove("profile")
    args.sections = wanted
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 0 if no run broke, 1 otherwise."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    out = args.out or (Path(tempfile.gettempdir()) / "aether-bench-quick" if args.quick else BENCH)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "mode": sizes.mode,
        "command": "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "sizes": sizes_dict(sizes),
        "sections": {},
        "seconds": {},
        "failures": [],
    }
    started = time.perf_counter()
    with workdir("base") as base:
        runners = _runners(sizes, base)
        for name in args.sections:
            print(f"bench: {name} ...", end=" ", flush=True)
            t0 = time.perf_counter()
            try:
                results["sections"][name] = runners[name]()
                print(f"{time.perf_counter() - t0:.1f} s", flush=True)
            except BenchError as exc:
                results["failures"].append({"section": name, "error": str(exc)})
                print(f"BROKEN: {exc}", flush=True)
            except Exception as exc:  # a bug in the bench or in aether: recorded, the rest still runs
                where = traceback.extract_tb(exc.__traceback__)[-1]
                error = f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"
                results["failures"].append({"section": name, "error": error})
                print(f"BROKEN: {error}", flush=True)
            results["seconds"][name] = round(time.perf_counter() - t0, 1)
    results["seconds_total"] = round(time.perf_counter() - started, 1)
    results["goals"] = goals.check(results["sections"])
    (out / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    (out / "results.md").write_text(report.render(results), encoding="utf-8")
    print(f"bench: wrote {out / 'results.md'} and results.json in {results['seconds_total']:.0f} s")
    for g in results["goals"]:
        state = {True: "met", False: "MISSED", None: "not measured"}[g["met"]]
        print(f"  {state:>12}  {g['goal']}: {g['value']}")
    if results["failures"]:
        print(
            f"bench: {len(results['failures'])} broken run(s): "
            + "; ".join(f"{f['section']}: {f['error']}" for f in results["failures"]),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
