"""Command line of the book runner: ``python -m oversmoothing {build,run,sweep,params}``.

    python -m oversmoothing build --profile smoke            # execute the chapters, render _build/html
    python -m oversmoothing run 04 -p depth=64 -p device=cuda  # one chapter with other parameters
    python -m oversmoothing sweep 04 -p depth=8,16,32 -p seed=0,1,2 --jobs 2
    python -m oversmoothing params 04                        # a chapter's parameters and defaults
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
                       "(tcp://host:8786 or a scheduler file; default: $OVERSMOOTHING_SCHEDULER)")

    b = sub.add_parser("build", help="execute the chapters (cached) with papermill and render the book")
    common(b)
    b.add_argument("--chapters", nargs="+", metavar="CHAPTER", help="only these chapters (stem, number or path)")
    b.add_argument("--force", action="store_true", help="re-execute every chapter, even unchanged ones")
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
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        root = book.find_root() if args.root is None else args.root
        if args.command == "build":
            res = book.build(root, profile=args.profile, device=args.device, chapters_=args.chapters,
                             jobs=args.jobs, force=args.force, out=args.out, staging=args.staging,
                             html=not args.no_html, progress=not args.no_progress, verbose=args.verbose,
                             workers=args.workers, scheduler=args.scheduler)
            if not args.no_html:
                print(f"book: {res.html / 'index.html'}")
        elif args.command == "run":
            folder = book.run_chapter(args.chapter, args.param, root=root, profile=args.profile,
                                      device=args.device, out=args.out, progress=not args.no_progress,
                                      workers=args.workers, scheduler=args.scheduler)
            print(folder)
        elif args.command == "sweep":
            folder, df, failures = book.sweep(args.chapter, args.param, root=root, profile=args.profile,
                                              device=args.device, jobs=args.jobs, out=args.out,
                                              progress=not args.no_progress, resume=args.resume, plot=args.plot,
                                              workers=args.workers, scheduler=args.scheduler)
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
