#!/usr/bin/env python3
"""Benchmark driver: time python-tuf's ngclient doing "refresh + download one target".

This is the Python half of `rampart-bench tuf-client`. Rampart builds a TUF
repository, serves it over a local static HTTP server, times its own client,
and then runs this script against the same server so the two clients can be
compared as a ratio.

Each iteration starts from scratch:

  1. (untimed) create a fresh temporary metadata dir and copy the trusted root
     into it as ``root.json``; create a fresh temporary target dir;
  2. (timed) construct ``tuf.ngclient.Updater``, call ``refresh()``,
     ``get_targetinfo(NAME)`` (must not be None) and ``download_target(info)``;
  3. (untimed) remove both temporary dirs.

The timed region is measured with ``time.perf_counter()`` and includes Updater
construction (which loads and verifies the local root). Warmup iterations run
the same sequence but are not counted.

Usage:
  python3 scripts/bench_ngclient.py --metadata-url URL --targets-url URL \\
      --root PATH_TO_TRUSTED_ROOT_JSON --target-name NAME --iterations N \\
      [--warmup W] [--json]

With ``--json`` exactly one JSON line is written to stdout; everything else
(configuration, errors) goes to stderr. Exit status: 0 on success, 1 if an
iteration fails, 2 on usage errors or if ``tuf`` is not installed.

Install dependencies with: pip install -r scripts/requirements-bench.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from typing import NoReturn

CLIENT_NAME = "python-tuf ngclient"
INSTALL_HINT = "pip install -r scripts/requirements-bench.txt"

# Both clients are configured with the same metadata size limits. ngclient's
# defaults (snapshot 2,000,000 B, targets 5,000,000 B) would otherwise be a
# client-specific limit that a large targets role might hit.
MAX_METADATA_LENGTH = 64 * 1024 * 1024  # 64 MiB

EXIT_ITERATION_FAILED = 1
EXIT_USAGE = 2


def _die(message: str, code: int) -> NoReturn:
    print(f"bench_ngclient: error: {message}", file=sys.stderr)
    sys.exit(code)


def _import_tuf():
    """Import tuf lazily so a missing install produces a clear message."""
    try:
        import tuf
        from tuf.ngclient import Updater, UpdaterConfig
    except ImportError as exc:
        _die(
            f"python-tuf is not installed or is unusable ({exc}).\n"
            f"  Install it with: {INSTALL_HINT}",
            EXIT_USAGE,
        )
    return tuf, Updater, UpdaterConfig


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Time python-tuf ngclient doing 'refresh + download one target' "
            "from a fresh metadata directory."
        ),
        epilog=f"Dependencies: {INSTALL_HINT}",
    )
    parser.add_argument(
        "--metadata-url", required=True, help="base URL of the repository metadata"
    )
    parser.add_argument(
        "--targets-url", required=True, help="base URL of the repository targets"
    )
    parser.add_argument(
        "--root",
        required=True,
        help="path to the trusted root.json used to initialise each client",
    )
    parser.add_argument(
        "--target-name", required=True, help="target path to look up and download"
    )
    parser.add_argument(
        "--iterations", type=int, required=True, help="number of timed iterations"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed warmup iterations run first (default: 2)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a single JSON result line on stdout",
    )
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def _percentile(sorted_samples: list[float], pct: float) -> float:
    """Percentile with linear interpolation between closest ranks.

    Same definition as numpy's default ("linear"): position (n - 1) * pct / 100.
    """
    if not sorted_samples:
        raise ValueError("no samples")
    pos = (len(sorted_samples) - 1) * pct / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return sorted_samples[lo]
    frac = pos - lo
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * frac


class _Runner:
    def __init__(self, args: argparse.Namespace, Updater, config) -> None:
        self.args = args
        self.Updater = Updater
        self.config = config
        # tuf >= 7 makes `bootstrap` a required keyword argument. Passing None
        # means "use the root.json in metadata_dir as the trust anchor", which
        # is exactly the fresh-directory setup this benchmark prescribes.
        params = inspect.signature(Updater.__init__).parameters
        self.extra_kwargs = {"bootstrap": None} if "bootstrap" in params else {}

    def run_once(self) -> float:
        """Run one iteration; return the timed duration in milliseconds."""
        args = self.args
        metadata_dir = tempfile.mkdtemp(prefix="bench-ngclient-md-")
        target_dir = tempfile.mkdtemp(prefix="bench-ngclient-tg-")
        try:
            shutil.copyfile(args.root, os.path.join(metadata_dir, "root.json"))

            start = time.perf_counter()
            updater = self.Updater(
                metadata_dir=metadata_dir,
                metadata_base_url=args.metadata_url,
                target_base_url=args.targets_url,
                target_dir=target_dir,
                config=self.config,
                **self.extra_kwargs,
            )
            updater.refresh()
            info = updater.get_targetinfo(args.target_name)
            if info is None:
                raise LookupError(
                    f"target {args.target_name!r} not found in repository metadata "
                    f"(get_targetinfo returned None)"
                )
            path = updater.download_target(info)
            elapsed = time.perf_counter() - start

            # Sanity check outside the timed region (download_target has
            # already verified length and hashes).
            if not os.path.isfile(path) or os.path.getsize(path) != info.length:
                raise RuntimeError(
                    f"downloaded file {path!r} missing or has unexpected size"
                )
            return elapsed * 1000.0
        finally:
            shutil.rmtree(metadata_dir, ignore_errors=True)
            shutil.rmtree(target_dir, ignore_errors=True)


def _describe_config(config) -> str:
    parts = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if hasattr(value, "name") and not isinstance(value, (str, int)):
            value = value.name  # enums
        parts.append(f"{field.name}={value}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    tuf, Updater, UpdaterConfig = _import_tuf()
    tuf_version = getattr(tuf, "__version__", "unknown")

    if not os.path.isfile(args.root):
        _die(f"trusted root {args.root!r} does not exist or is not a file", EXIT_USAGE)

    config = UpdaterConfig(
        snapshot_max_length=MAX_METADATA_LENGTH,
        targets_max_length=MAX_METADATA_LENGTH,
    )
    runner = _Runner(args, Updater, config)

    # Configuration goes to stderr in --json mode so stdout stays one JSON line.
    info_out = sys.stderr if args.json else sys.stdout
    print(f"{CLIENT_NAME} (tuf {tuf_version}, Python {sys.version.split()[0]})", file=info_out)
    print(f"  metadata url : {args.metadata_url}", file=info_out)
    print(f"  targets url  : {args.targets_url}", file=info_out)
    print(f"  trusted root : {args.root}", file=info_out)
    print(f"  target       : {args.target_name}", file=info_out)
    print(f"  iterations   : {args.iterations} (+{args.warmup} warmup)", file=info_out)
    print(f"  UpdaterConfig: {_describe_config(config)}", file=info_out)
    if runner.extra_kwargs:
        print("  bootstrap    : None (trust anchor = copied root.json)", file=info_out)
    info_out.flush()

    total = args.warmup + args.iterations
    samples: list[float] = []
    for i in range(total):
        warm = i < args.warmup
        label = f"warmup {i + 1}/{args.warmup}" if warm else (
            f"iteration {i - args.warmup + 1}/{args.iterations}"
        )
        try:
            ms = runner.run_once()
        except Exception as exc:  # noqa: BLE001 - report any failure loudly
            traceback.print_exc(file=sys.stderr)
            _die(f"{label} failed: {type(exc).__name__}: {exc}", EXIT_ITERATION_FAILED)
        if not warm:
            samples.append(ms)

    ordered = sorted(samples)
    result = {
        "client": CLIENT_NAME,
        "tuf_version": tuf_version,
        "iterations": args.iterations,
        "median_ms": round(_percentile(ordered, 50), 3),
        "min_ms": round(ordered[0], 3),
        "max_ms": round(ordered[-1], 3),
        "p10_ms": round(_percentile(ordered, 10), 3),
        "p90_ms": round(_percentile(ordered, 90), 3),
        "samples_ms": [round(s, 3) for s in samples],
    }

    if args.json:
        print(json.dumps(result, separators=(",", ":")))
    else:
        print()
        print(f"refresh + download '{args.target_name}', {args.iterations} iterations:")
        print(f"  median : {result['median_ms']:10.3f} ms")
        print(f"  min    : {result['min_ms']:10.3f} ms")
        print(f"  p10    : {result['p10_ms']:10.3f} ms")
        print(f"  p90    : {result['p90_ms']:10.3f} ms")
        print(f"  max    : {result['max_ms']:10.3f} ms")
        print("  samples: " + ", ".join(f"{s:.3f}" for s in result["samples_ms"]))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
