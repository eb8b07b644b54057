"""Command line of the book runner: ``python -m oversmoothing {build,run,sweep,params,cache}``.

    python -m oversmoothing build --profile smoke            # execute the chapters, render _build/html
    python -m oversmoothing build --dry-run                  # the build's training runs and its estimated time
    python -m oversmoothing run 04 -p depth=64 -p device=cuda  # one chapter with other parameters
    python -m oversmoothing sweep 04 -p depth=8,16,32 -p seed=0,1,2 --jobs 2
    python -m oversmoothing params 04                        # a chapter's parameters and defaults
    python -m oversmoothing cache info                       # both caches: entries, sizes, what is current
    python -m oversmoothing cache prune --keep-current       # free what the current library cannot use
    python -m oversmoothing cache verify                     # re-hash every entry (exit 1 if one is damaged)
"""
from __future__ import annotations

import argparse
import signal
import sys

from .. import book


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expects an integer >= 1 (notebooks run at once), got {text!r}")
    return n


def _days(text: str) -> float:
    try:
        d = float(text)
    except ValueError:
        d = -1.0
    if not d >= 0:
        raise argparse.ArgumentTypeError(f"expects a number of days >= 0, got {text!r}")
    return d


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="oversmoothing", description="Build, re-run and sweep the chapters of the book.")
    ap.add_argument("--root", help="project root (default: the folder holding _toc.yml, from the cwd upwards)")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p, jobs=True):
        p.add_argument("--profile", default="default", help="parameter profile of book/profiles.yml (smoke|default|paper)")
        p.add_argument("--device", default=None, choices=book.DEVICES,
                       help="passed to every chapter as `device` (default: the profile's, else the notebook's: auto)")
        if jobs:
            p.add_argument("--jobs", "-j", type=_jobs, default=1, help="notebooks executed in parallel (default 1)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--workers", metavar="N", help="run the chapters' training grids on a Dask LocalCluster of N "
                       "worker processes (default: $OVERSMOOTHING_WORKERS, else in the kernel)")
        p.add_argument("--scheduler", metavar="ADDRESS", help="run them on a running Dask cluster instead "
                       "(tls://host:8786, tcp://host:8786 or a scheduler file; default: $OVERSMOOTHING_SCHEDULER)")
        for role, what in (("ca", "the CA certificate that signed the cluster's certificates"),
                           ("cert", "this client's certificate (PEM)"), ("key", "its private key, if not in --tls-cert")):
            p.add_argument(f"--tls-{role}", metavar="FILE", help=f"TLS for --scheduler tls://...: {what} "
                           f"(default: $OVERSMOOTHING_TLS_{role.upper()}, else Dask's distributed.comm.tls config)")

    b = sub.add_parser("build", help="execute the chapters (cached) with papermill and render the book")
    common(b)
    b.add_argument("--chapters", nargs="+", metavar="CHAPTER", help="only these chapters (stem, number or path)")
    b.add_argument("--force", action="store_true", help="re-execute every chapter, even unchanged ones")
    b.add_argument("--dry-run", action="store_true", help="build nothing: per chapter, the training runs and epochs, "
                   "how many are in the run cache, and the estimated wall time (every run trains 2 timed epochs)")
    b.add_argument("--out", help="HTML goes to OUT/_build/html (default: the project root)")
    b.add_argument("--staging", help="staging folder for executed notebooks (default: ROOT/_staging)")
    b.add_argument("--no-html", action="store_true", help="execute only, do not run jupyter-book")
    b.add_argument("-v", "--verbose", action="store_true", help="show jupyter-book's output")

    r = sub.add_parser("run", help="re-run one chapter with parameters")
    r.add_argument("chapter")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--out", help="output folder (default: ROOT/_runs/CHAPTER-TIMESTAMP)")
    common(r, jobs=False)

    s = sub.add_parser("sweep", help="run one chapter over a grid of parameters, gather one table")
    s.add_argument("chapter")
    s.add_argument("-p", "--param", action="append", default=[], metavar="NAME=V1,V2,...")
    s.add_argument("--out", help="output folder (default: ROOT/_runs/sweep-CHAPTER-TIMESTAMP)")
    s.add_argument("--resume", metavar="DIR", help="a previous sweep's folder: skip the points that finished there")
    s.add_argument("--plot", metavar="METRIC", help="plot.png: this metric (mean ± sd over seeds) against the "
                                                   "first swept parameter other than seed")
    common(s)

    p = sub.add_parser("params", help="list a chapter's parameters (or every chapter's)")
    p.add_argument("chapter", nargs="?")

    c = sub.add_parser("cache", help="the run cache and the notebook cache: info, prune, verify")
    c.add_argument("action", choices=("info", "prune", "verify"))
    c.add_argument("--cache", metavar="DIR", help="the run cache (default: $OVERSMOOTHING_GRID_CACHE, else "
                   "ROOT/_grid_cache)")
    c.add_argument("--staging", metavar="DIR", help="the notebook cache (default: ROOT/_staging)")
    c.add_argument("--keep-current", action="store_true", help="prune: keep the entries of the current library and "
                   "the chapters a build would reuse")
    c.add_argument("--older-than", type=_days, metavar="DAYS", help="prune: only what was written more than DAYS ago")
    c.add_argument("--dry-run", action="store_true", help="prune: say what would be removed, remove nothing")
    return ap


def _tls(args) -> dict | None:
    tls = {role: getattr(args, f"tls_{role}") for role in ("ca", "cert", "key")}
    return tls if any(tls.values()) else None


def _cache_command(args) -> int:
    from pathlib import Path

    from ..grid import cache_dir
    from . import caches

    try:
        root = book.find_root() if args.root is None else Path(args.root).resolve()
    except book.BookError:
        root = None
    if args.staging is None and root is None:
        raise book.BookError("no project root (a folder holding _toc.yml) here: give --root or --staging DIR")
    staging = Path(args.staging) if args.staging else root / "_staging"
    folder = cache_dir(args.cache) if args.cache else cache_dir()
    if args.action != "prune" and (args.keep_current or args.older_than is not None or args.dry_run):
        raise book.BookError("--keep-current, --older-than and --dry-run are options of `cache prune`")
    if args.action == "info":
        print(caches.info(folder, staging, root))
    elif args.action == "prune":
        print(caches.prune(folder, staging, root, keep_current=args.keep_current, older_than=args.older_than,
                           dry_run=args.dry_run))
    else:
        text, bad = caches.verify(folder, staging, root)
        print(text)
        return 1 if bad else 0
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "cache":
            return _cache_command(args)
        root = book.find_root() if args.root is None else args.root
        if args.command == "build" and args.dry_run:
            from .estimate import dry_run

            dry_run(root, profile=args.profile, device=args.device, chapters_=args.chapters,
                    progress=not args.no_progress, staging=args.staging)
        elif args.command == "build":
            res = book.build(root, profile=args.profile, device=args.device, chapters_=args.chapters,
                             jobs=args.jobs, force=args.force, out=args.out, staging=args.staging,
                             html=not args.no_html, progress=not args.no_progress, verbose=args.verbose,
                             workers=args.workers, scheduler=args.scheduler, tls=_tls(args))
            if not args.no_html:
                print(f"book: {res.html / 'index.html'}")
        elif args.command == "run":
            folder = book.run_chapter(args.chapter, args.param, root=root, profile=args.profile,
                                      device=args.device, out=args.out, progress=not args.no_progress,
                                      workers=args.workers, scheduler=args.scheduler, tls=_tls(args))
            print(folder)
        elif args.command == "sweep":
            folder, df, failures = book.sweep(args.chapter, args.param, root=root, profile=args.profile,
                                              device=args.device, jobs=args.jobs, out=args.out,
                                              progress=not args.no_progress, resume=args.resume, plot=args.plot,
                                              workers=args.workers, scheduler=args.scheduler, tls=_tls(args))
            with __import__("pandas").option_context("display.max_columns", 20, "display.width", 160):
                print(df.drop(columns=["notebook", "error"]).to_string(index=False))
            print(folder / "results.csv")
            if failures:
                print("\n".join(failures), file=sys.stderr)
                return 1
        elif args.command == "params":
            chs = [book.resolve_chapter(root, args.chapter)] if args.chapter else book.chapters(root)
            for ch in chs:
                print(f"{ch.stem}:")
                for p in book.parse_parameters(ch.path).values():
                    print(f"  {p.name:<22s} {p.type:<6s} {p.default!r:<24}  # {p.comment}")
    except book.BookError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except book.BuildFailed as e:
        print(f"build failed: {e}" if args.command == "build" else str(e), file=sys.stderr)
        return 1
    except (book.Interrupted, KeyboardInterrupt) as e:
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # a second Ctrl-C must not break the exit
        print(str(e) if isinstance(e, book.Interrupted) else "interrupted (nothing was half-written)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
