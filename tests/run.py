#!/usr/bin/python3
"""Runs every Fleetforge test and prints one summary.

Unit tests are the cmocka binaries under <build>/tests/unit, fuzz corpora
are replayed through <build>/tests/fuzz/<target>, and integration tests are
pytest under tests/integration with FF_BUILD pointing at the build.
Exit status is 0 only when nothing failed."""

import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_unit(build):
    passed = failed = 0
    base = os.path.join(build, "tests", "unit")
    bins = []
    for dirpath, _, files in os.walk(base):
        bins += [os.path.join(dirpath, f) for f in files
                 if os.access(os.path.join(dirpath, f), os.X_OK)]
    for b in sorted(bins):
        proc = subprocess.run([b], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        out = proc.stdout + proc.stderr
        p = sum(int(m) for m in re.findall(r"\[  PASSED  \] (\d+) test", out))
        f = sum(int(m) for m in re.findall(r"\[  FAILED  \] (\d+) test", out))
        if proc.returncode != 0 and f == 0:
            f = 1  # crashed or failed before cmocka could count
        passed += p
        failed += f
        name = os.path.relpath(b, base)
        print(f"unit {name}: {p} passed, {f} failed")
        if f:
            sys.stdout.write(out)
    return passed, failed


def run_fuzz_replay(build):
    passed = failed = 0
    corpora = os.path.join(ROOT, "tests", "fuzz", "corpora")
    base = os.path.join(build, "tests", "fuzz")
    if not os.path.isdir(base):
        return 0, 0
    for target in sorted(os.listdir(base)):
        exe = os.path.join(base, target)
        if not os.path.isfile(exe):
            continue
        corpus = os.path.join(corpora, target)
        if not os.path.isdir(corpus) or not os.listdir(corpus):
            print(f"fuzz {target}: FAILED (no corpus in {corpus})")
            failed += 1
            continue
        proc = subprocess.run([exe, corpus], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)
        if proc.returncode == 0:
            passed += 1
            print(f"fuzz {target}: {proc.stdout.strip()}")
        else:
            failed += 1
            print(f"fuzz {target}: FAILED")
            sys.stdout.write(proc.stdout + proc.stderr)
    return passed, failed


def run_pytest(build, extra):
    tests = os.path.join(ROOT, "tests", "integration")
    if not any(f.startswith("test_") for _, _, fs in os.walk(tests) for f in fs):
        return 0, 0
    env = dict(os.environ, FF_BUILD=os.path.abspath(build),
               PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
           "-rfE", tests] + extra
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                          text=True)
    sys.stdout.write(proc.stdout[-20000:] + proc.stderr[-5000:])
    counts = {k: 0 for k in ("passed", "failed", "error", "errors", "skipped")}
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary):
        counts[word] += int(n)
    failed = counts["failed"] + counts["error"] + counts["errors"]
    if proc.returncode not in (0, 5) and failed == 0:
        failed = 1
    return counts["passed"], failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--only", choices=["unit", "fuzz", "integration"])
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()
    build = os.path.abspath(os.path.join(ROOT, args.build))
    start = time.monotonic()
    results = {}
    if args.only in (None, "unit"):
        results["unit"] = run_unit(build)
    if args.only in (None, "fuzz"):
        results["fuzz corpus replay"] = run_fuzz_replay(build)
    if args.only in (None, "integration"):
        results["integration"] = run_pytest(build, args.pytest_args)
    total_p = sum(p for p, _ in results.values())
    total_f = sum(f for _, f in results.values())
    print()
    print("=" * 60)
    for name, (p, f) in results.items():
        print(f"  {name:<22} {p:5d} passed {f:5d} failed")
    print(f"  {'time':<22} {time.monotonic() - start:5.0f} s")
    print("  RESULT: " + ("PASS" if total_f == 0 and total_p > 0 else "FAIL"))
    print("=" * 60)
    print(f"total: {total_p} passed, {total_f} failed")
    return 0 if total_f == 0 and total_p > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
