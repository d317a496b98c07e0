"""Mutation testing of the method core, the evaluation metrics, the configuration and the
dataset runner, with mutmut 3 (``pip install -e .[bench]``).

Each target file is mutated on its own in a scratch copy of the repository (``src/``,
``tests/``, ``pyproject.toml`` with a ``[tool.mutmut]`` section written for that file), so
that every mutant runs only the test files that concern it, with one worker process; the
scratch copy (and mutmut's ``mutants/`` directory in it) is deleted afterwards. mutmut runs
only the tests that reach the mutated function. For each file the script prints the mutants
generated, killed, survived, timed out (and any other outcome), then the survivors with
their diffs. ``docs/mutation.md`` lists the survivors judged equivalent and why.

Usage::

    python benchmarks/mutation_test.py [--files localize moments ...] [--keep]
        [--timeout-per-file S] [--max-children 1] [--list-survivors-only] [--only NAMES]

``--files`` takes short names (the keys of ``TARGETS``: localize, moments, em_fast, mixture,
metrics, dataset, config, smoothing, traces, frames, window_baseline), in the order given;
default: all, most important first. ``--only NAMES`` re-runs just the mutants named in the
file NAMES (one a line, e.g. a previous run's survivors). ``--list-survivors-only`` prints
no diffs.

Last runs (2026-11-30, mutmut 3.8.1, one or two workers on a shared 2-core machine; the
details, the counts before the tests added for the survivors and the equivalent mutants are
in ``docs/mutation.md``)::

    file                          mutants  killed  survived  not run  time
    method/moments.py                 230     216        14        0  236 s
    method/localize.py                365     348        17        0  273 s
    config.py                          40      40         0        0   60 s
    method/mixture.py                 246     225        21        0  312 s + re-run
    method/em_fast.py                1204    1135        63        0  826 s (6 timeouts) + re-run
    method/smoothing.py               100      99         1        0   21 s
    method/frames.py                   37      37         0        0   25 s
    method/traces.py                  114     112         2        0   77 s
    method/window_baseline.py         301     282        19        0   98 s
    evaluation/metrics.py             849     794        55        0  1173 s + re-run
    pipelines/dataset.py              957     934        23        0  619 s + 3 re-runs

(killed counts include the survivors re-run with ``--only`` against tests added since; every
survivor is listed as equivalent, with the reason, in ``docs/mutation.md``.) A run of every file
to the end takes about 1.5 hours with two workers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Slow tests left out of every mutant's run (whole simulated data sets; 20-40 s each).
SLOW_TESTS = (
    "tests/test_em_fast.py::test_localisation_agrees_with_the_reference",
    "tests/test_neutral.py::test_the_real_tokenizer_is_used",
    "tests/test_neutral.py::test_checkpoint_source_is_computed_and_cached_by_content",
)

METHOD_TESTS = (
    "tests/test_localize.py",
    "tests/test_localize_batch.py",
    "tests/test_method_constants.py",
)

#: The tests of test_cli.py that run ``predict`` (not the demo's simulated data sets).
CLI_PREDICT_TESTS = (
    "test_predict_finds_planted_events",
    "test_max_windows_one_gives_the_top_window",
    "test_system1_without_neutral_is_a_clear_error",
    "test_bad_inputs_exit_nonzero_with_one_line",
    "test_predict_writes_its_settings_and_evaluate_reads_them",
    "test_library_errors_say_what_is_missing_without_flags",
    "test_window_baseline_system",
)


@dataclass(frozen=True)
class Target:
    """One source file and the test files its mutants run."""

    source: str
    tests: tuple[str, ...]


TARGETS: dict[str, Target] = {
    "localize": Target("src/audiomoment/method/localize.py",
                       (*METHOD_TESTS, "tests/test_properties.py")),
    "moments": Target("src/audiomoment/method/moments.py",
                      (*METHOD_TESTS, "tests/test_properties.py")),
    "em_fast": Target("src/audiomoment/method/em_fast.py",
                      ("tests/test_em_fast.py", "tests/test_em_fast_lloyd.py",
                       "tests/test_method_constants.py")),
    "mixture": Target("src/audiomoment/method/mixture.py",
                      ("tests/test_em_fast.py", *METHOD_TESTS)),
    "metrics": Target("src/audiomoment/evaluation/metrics.py",
                      ("tests/test_evaluate.py", "tests/test_properties.py")),
    "dataset": Target("src/audiomoment/pipelines/dataset.py",
                      ("tests/test_dataset_runner.py", "tests/test_cli_config.py",
                       "tests/test_feature_store.py",
                       *(f"tests/test_cli.py::{name}" for name in CLI_PREDICT_TESTS))),
    "config": Target("src/audiomoment/config.py",
                     ("tests/test_method_constants.py", "tests/test_cli_config.py",
                      "tests/test_neutral.py")),
    "smoothing": Target("src/audiomoment/method/smoothing.py", ("tests/test_smoothing.py",)),
    "traces": Target("src/audiomoment/method/traces.py",
                     ("tests/test_traces_and_frames.py", "tests/test_localize.py",
                      "tests/test_inputs.py")),
    "frames": Target("src/audiomoment/method/frames.py",
                     ("tests/test_traces_and_frames.py", *METHOD_TESTS,
                      "tests/test_window_baseline.py")),
    "window_baseline": Target("src/audiomoment/method/window_baseline.py",
                              ("tests/test_window_baseline.py",)),
}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          34: "skipped", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
          255: "timeout", 37: "type check", -11: "segfault", -9: "segfault", None: "not run"}
COLUMNS = ("killed", "survived", "timeout", "no tests", "not run", "other")


def mutmut_section(target: Target) -> str:
    """The ``[tool.mutmut]`` section for one target, as TOML text."""
    tests = [t for t in target.tests if (REPO / t.split("::")[0]).exists()]
    deselect = [a for t in SLOW_TESTS if t.split("::")[0] in tests for a in ("--deselect", t)]
    args = ["-p", "no:cacheprovider", "-x", "-q", *deselect]
    return (
        "[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = {json.dumps([target.source])}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        f"pytest_add_cli_args = {json.dumps(args)}\n"
        "use_git_change_detection = false\n"
        # forked from a process that has run NumPy/scikit-learn thread pools, a worker can
        # hang on a lock held by a thread that no longer exists: fork from a clean server
        'process_isolation = "forkserver"\n'
    )


def scratch_copy(target: Target) -> Path:
    """A scratch copy of src/, tests/ and pyproject.toml configured for ``target``."""
    work = Path(tempfile.mkdtemp(prefix="audiomoment-mutation-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".hypothesis")
    shutil.copytree(REPO / "src", work / "src", ignore=ignore)
    shutil.copytree(REPO / "tests", work / "tests", ignore=ignore)
    text = (REPO / "pyproject.toml").read_text()
    text = re.sub(r"\n\[tool\.mutmut\]\n(?:(?!\n\[).)*", "\n", text, flags=re.S)
    (work / "pyproject.toml").write_text(text.rstrip() + "\n\n" + mutmut_section(target))
    return work


def mutmut(work: Path, *args: str, timeout: float | None = None) -> tuple[int | None, str]:
    """Run ``python -m mutmut ARGS`` in ``work``: (exit status, None when stopped at
    ``timeout`` seconds with its whole process group; output)."""
    env = dict(os.environ)
    # the tests that read the shared data find it where the repository's tests do
    env.setdefault("AUDIOMOMENT_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    # one worker, one thread: the machine is shared
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "mutmut", *args], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out
    return proc.returncode, out


def outcomes(work: Path, source: str) -> dict[str, str]:
    """Mutant name -> status, from mutmut's ``.meta`` file of ``source``."""
    meta = work / "mutants" / (source + ".meta")
    data = json.loads(meta.read_text())
    return {k: STATUS.get(v, "other") for k, v in data["exit_code_by_key"].items()}


def run_target(name: str, target: Target, args: argparse.Namespace) -> dict:
    work = scratch_copy(target)
    t0 = time.monotonic()
    try:
        module = target.source.removeprefix("src/").removesuffix(".py").replace("/", ".")
        names = [m for m in args.only if m.startswith(module + ".")]
        if args.only and not names:
            return {"name": name, "source": target.source, "mutants": 0, "counts": Counter(),
                    "survivors": [], "diffs": {}, "seconds": 0.0}
        code, out = mutmut(work, "run", "--max-children", str(args.max_children), *names,
                           timeout=args.timeout_per_file)
        elapsed = time.monotonic() - t0
        if code is None:
            print(f"{name}: stopped after {args.timeout_per_file:.0f} s; counts so far")
        elif code != 0:
            print(out[-3000:])
        meta = work / "mutants" / (target.source + ".meta")
        status = outcomes(work, target.source) if meta.exists() else {}
        if names:
            status = {k: v for k, v in status.items() if k in names}
        survivors = sorted(k for k, v in status.items() if v == "survived")
        diffs = {}
        if not args.list_survivors_only:
            for m in survivors:
                diffs[m] = mutmut(work, "show", m)[1].strip()
    finally:
        if args.keep:
            print(f"{name}: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    counts = Counter(v if v in COLUMNS else "other" for v in status.values())
    return {"name": name, "source": target.source, "mutants": len(status), "counts": counts,
            "survivors": survivors, "diffs": diffs, "seconds": elapsed}


def print_result(res: dict) -> None:
    c = res["counts"]
    print(f"\n== {res['source']}: {res['mutants']} mutants, "
          + ", ".join(f"{c[k]} {k}" for k in COLUMNS) + f" ({res['seconds']:.0f} s)")
    for m in res["survivors"]:
        print(f"  survived: {m}")
        diff = res["diffs"].get(m)
        if diff:
            print("    " + "\n    ".join(diff.splitlines()[-12:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("--timeout-per-file", type=float, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument("--list-survivors-only", action="store_true")
    parser.add_argument("--only", type=Path, default=None,
                        help="a file of mutant names (one a line, e.g. the survivors of a "
                        "previous run): run just those")
    args = parser.parse_args(argv)
    args.only = args.only.read_text().split() if args.only else []
    results = []
    for name in args.files:
        res = run_target(name, TARGETS[name], args)
        print_result(res)
        results.append(res)
        sys.stdout.flush()
    print("\nfile | mutants | " + " | ".join(COLUMNS) + " | seconds")
    for r in results:
        print(f"{r['source']} | {r['mutants']} | "
              + " | ".join(str(r["counts"][k]) for k in COLUMNS) + f" | {r['seconds']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
