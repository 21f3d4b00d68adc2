"""``zoo check``: run the conformance harness from the command line.

    zoo check                       # every registered variant, ci profile
    zoo check pure --profile quick  # one variant, a smoke run
    zoo check hf --property padding --property incremental --json out.json
    zoo check pure --replay         # rerun only the failures stored by earlier runs
    zoo check --all -n 4 --json check.json   # every variant, four at a time in worker processes

Prints a table (variant x property: pass/fail/skip, examples, worst error
against its bound, time), then each failure with its shrunk counterexample
and a command that reproduces it; progress goes to stderr (a bar on a
terminal). Exits 1 if anything failed.

With ``-n N`` the variants are checked N at a time, each in a worker process
of its own (``zoo check NAME``) that gets cpu_count/N torch threads unless
``--threads`` says otherwise; the table and ``--json`` are the same as one
process would give.

Failing examples are saved to hypothesis' example database in the user's
cache ($ZOO_HYPOTHESIS_DB, else $ZOO_CACHE/hypothesis, else
~/.cache/gpt2-zoo/hypothesis) and replayed first by the next run.
"""
# This module is also the harness's zoo plugin (entry point ``conformance`` in
# the ``zoo`` group): its ``zoo_addcommands`` hook adds ``zoo check`` to the
# core's command line, which imports nothing from the harness. Importing it
# stays cheap (no hypothesis, no torch): ``cmd_check`` imports them when run.

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from zoo import hookimpl

__all__ = ["SCHEMA", "add_parser", "cmd_check", "zoo_addcommands"]

SCHEMA = "gpt2-zoo/check/1"  # the layout of --json files: zoo/schemas/check.schema.json


def cmd_check(args: argparse.Namespace) -> int:
    import torch

    import zoo

    from . import profiles, runner
    from .properties import PROPERTIES

    known = [p.name for p in PROPERTIES]
    for prop in args.property or ():
        if prop not in known:
            raise zoo.ZooError(f"unknown property {prop!r}; choose from {', '.join(known)}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise zoo.CapabilityError(f"--device {args.device!r} is not a device torch knows; use cpu or cuda") from None
    for option, path in (("--json", args.json), ("--plot", args.plot)):  # before the run, not after
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise zoo.ZooError(f"{option} {path}: the folder {os.path.dirname(os.path.abspath(path))} "
                               "does not exist; create it first")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise zoo.ZooError("--plot needs matplotlib: pip install 'gpt2-zoo[plot]'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise zoo.CapabilityError("--device cuda was given but torch sees no CUDA GPU; use --device cpu")
    try:
        profile = profiles.resolve(args.profile)
    except ValueError as exc:
        raise zoo.ZooError(str(exc)) from exc
    if args.all and args.names:
        raise zoo.ZooError(f"--all checks every registered variant, so it cannot go with names "
                           f"({', '.join(args.names)}); drop one of them")
    names = args.names or zoo.list_variants()
    for name in names:
        zoo.resolve(name)  # an unknown name or precision fails now, with its close matches
    seed_value = args.seed
    if seed_value is None and not profiles.is_derandomized(profile):
        seed_value = int(time.time() * 1000) % 2**31  # printed in every reproducer
    if args.threads:
        torch.set_num_threads(args.threads)
    workers = min(args.workers, len(names))

    from zoo.progress import Progress

    from .database import cache_path, default_path, open_database

    if args.replay and args.no_database:
        raise zoo.ZooError("--replay reruns the failures stored in the database, so it cannot go with "
                           "--no-database; drop one of them")
    db_path = None if args.no_database else (args.database or default_path())
    if args.replay and (db_path is None or not os.path.isdir(db_path)):
        raise zoo.ZooError(f"--replay: there is no example database at {db_path}, so no stored failure to "
                           "rerun; run zoo check first (or give the folder with --database DIR)")
    database = None if db_path is None else open_database(db_path)
    if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        from hypothesis.configuration import set_hypothesis_home_dir

        # hypothesis' other files (a cache of the constants in the code it runs) go to the zoo's
        # cache too, not into a .hypothesis folder wherever zoo check was started
        set_hypothesis_home_dir(cache_path() / "hypothesis-storage")
    wanted = len(args.property) if args.property else len(PROPERTIES)
    progress = Progress("zoo check", total=len(names) * (1 + wanted), bar=False if args.json else None,
                        quiet=getattr(args, "quiet", False), unit="check")
    progress.keep(f"profile {profile}, device {args.device}"
                  + (f", seed {seed_value}" if seed_value is not None else "") + f", variants: {', '.join(names)}"
                  + (f"; replaying the failures stored in {db_path}" if args.replay
                     else f"; failures kept in {db_path}" if db_path is not None else ""))

    def done(result: runner.PropertyResult) -> None:
        progress.advance()
        if result.status == "fail" and progress.bar:  # plain lines already said it
            progress.keep(f"{result.variant}: {result.prop} FAILED")

    start = time.perf_counter()
    with progress:
        if workers > 1:
            results = _in_workers(names, workers, args, profile, seed_value, db_path, progress, done)
        else:
            results = runner.check(names, profile=profile, device=args.device, properties=args.property,
                                   seed_value=seed_value, progress=progress, database=database,
                                   replay=args.replay, on_result=done)
    elapsed = time.perf_counter() - start
    print(runner.table(results))
    fidelity = runner.fidelity_table(results)
    if fidelity:
        print(f"\nfidelity against Hugging Face float32 on held-out text (KL = mean KL(float32 || variant)):\n"
              f"{fidelity}")
    failed = [r for r in results if r.status == "fail"]
    if failed:
        print()
        print(runner.failures(results))
    per_variant: dict[str, float] = {}
    for r in results:
        per_variant[r.variant] = per_variant.get(r.variant, 0.0) + r.seconds
    print()
    if args.replay:
        replayed = sum(r.replayed or 0 for r in results)
        print(f"replayed {replayed} stored example{'s' if replayed != 1 else ''} from {db_path}")
    print(f"{len(failed)} failed, {sum(r.status == 'pass' for r in results)} passed, "
          f"{sum(r.status == 'skip' for r in results)} skipped in {elapsed:.1f}s ("
          + ", ".join(f"{v} {t:.1f}s" for v, t in per_variant.items()) + ")")
    payload: dict[str, Any] = {
        "schema": SCHEMA, "profile": profile, "replay": bool(args.replay), "device": args.device,
        "seed": seed_value, "seconds": elapsed, "workers": workers,
        "versions": {"zoo": zoo.__version__, "torch": torch.__version__},
        "results": [r.to_json() for r in results],
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
    if args.plot:
        from .scoreboard import plot

        progress(f"drew {plot(payload, args.plot)}")
    return 1 if failed else 0


def _in_workers(names: list[str], workers: int, args: argparse.Namespace, profile: str, seed_value: int | None,
                db_path: Any, progress: Any, done: Any) -> list[Any]:
    """Check ``names`` ``workers`` at a time, each variant by a ``zoo check NAME --json`` process of its own.

    A worker that dies without writing its results (killed, out of memory) becomes a failed
    ``interface`` row for its variant, with the end of what it printed.
    """
    import subprocess
    import sys
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    import zoo

    from . import runner

    unseen = [name for name in names if zoo.distribution_of(zoo.resolve(name)[0].name) is None]
    if unseen:
        raise zoo.ZooError(f"{', '.join(unseen)} registered at run time, which worker processes cannot see; "
                           "check them in this process (-n 1), or install them as a plugin (entry-point group 'zoo')")
    threads = args.threads or max(1, (os.cpu_count() or 1) // workers)
    common = ["--profile", profile, "--device", args.device, "--threads", str(threads), "--no-database"
              if db_path is None else f"--database={db_path}"]
    common += ["--seed", str(seed_value)] if seed_value is not None else []
    common += [f"--property={p}" for p in args.property or ()]
    common += ["--replay"] if args.replay else []
    verbose = ["-v"] if getattr(args, "verbose", False) else []
    progress.keep(f"{workers} worker processes, {threads} torch thread{'s' if threads != 1 else ''} each")

    def one(name: str, folder: str) -> list[runner.PropertyResult]:
        out = os.path.join(folder, f"{len(name)}-{abs(hash(name))}.json")
        start = time.perf_counter()
        progress(f"{name}: started")
        proc = subprocess.run([sys.executable, "-m", "zoo", *verbose, "-q", "check", name, *common, "--json", out],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        if proc.returncode in (0, 1) and os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                found = [runner.PropertyResult(**r) for r in json.load(f)["results"]]
        else:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            found = [runner.PropertyResult(name, runner.INTERFACE, "fail", message=(
                f"the worker process checking {name} exited with code {proc.returncode} before writing its "
                f"results; run zoo check {name} alone to see why. It printed: {tail or '(nothing)'}"))]
        failed = sum(r.status == "fail" for r in found)
        progress.keep(f"{name}: {failed} failed, {sum(r.status == 'pass' for r in found)} passed "
                      f"({time.perf_counter() - start:.0f}s)")
        for result in found:
            done(result)
        return found

    with tempfile.TemporaryDirectory(prefix="zoo-check-") as folder, ThreadPoolExecutor(workers) as pool:
        per_name = list(pool.map(lambda name: one(name, folder), names))
    return [r for found in per_name for r in found]


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an int >= 1")
    return int(text)


def add_parser(sub: Any) -> None:
    """Add ``zoo check`` to the ``zoo`` command's sub-parsers."""
    p = sub.add_parser("check", help="check variants against Hugging Face with the conformance harness",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="variants to check, NAME or NAME@PRECISION (default: all registered)")
    p.add_argument("--all", action="store_true", help="check every registered variant (the default without NAME)")
    p.add_argument("-n", "--workers", type=_positive_int, default=1, metavar="N",
                   help="check N variants at a time, each in a worker process with cpu_count/N torch threads "
                        "(default 1: in this process)")
    p.add_argument("--profile", default=None, help="quick, ci (default; or $HYPOTHESIS_PROFILE) or thorough")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--property", action="append", metavar="P",
                   help="check only this property (repeatable): logits, causality, batch, padding, "
                        "incremental, generation, sampling, weights, tie, training, bad-input, determinism, fidelity")
    p.add_argument("--seed", type=int, default=None, help="hypothesis seed (profiles that are not derandomised)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON "
                   "(python -m conformance.scoreboard FILE renders them as the README's scoreboard)")
    p.add_argument("--plot", metavar="FILE", help="also draw the scoreboard as a heat map (PNG; needs matplotlib)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--database", metavar="DIR", default=None,
                   help="hypothesis example database: failures are saved there and replayed first next time "
                        "(default: $ZOO_HYPOTHESIS_DB, else $ZOO_CACHE/hypothesis, else ~/.cache/gpt2-zoo/hypothesis)")
    p.add_argument("--no-database", action="store_true", help="neither replay nor save failing examples")
    p.add_argument("--replay", action="store_true",
                   help="rerun only the failing examples the database holds for these variants")
    p.set_defaults(func=cmd_check)


@hookimpl
def zoo_addcommands(subparsers: Any) -> None:
    """Add ``zoo check`` (see :func:`zoo.hookspec.zoo_addcommands`)."""
    add_parser(subparsers)
