"""Command line of the report and the submission package: ``report``, ``package-submission``.

Argument parsing and printing only; the work is done in :mod:`audiomoment.reporting`
(``inputs`` reads, ``report`` writes the report, ``submission`` builds the package).

``audiomoment report --annotations A.jsonl --predictions P1.jsonl [P2.jsonl ...] --out DIR``
writes the tables, figures, ``report.md`` and ``report.html`` described in
:mod:`audiomoment.reporting.report`. Figure 2 needs ``--features`` (and ``--checkpoint`` for
768-d features, ``--neutral-embedding`` for System 1): the chosen queries are localised again
with the run settings saved beside the drawn system's predictions file (the defaults, said in
the report, when there are none). Several datasets: repeat ``--annotations`` and give one
``--predictions`` group (and one ``--names`` group) per dataset, in the same order.

``audiomoment package-submission --annotations EVAL.jsonl --system S1.jsonl [--system ...]
--report REPORT.pdf --lastname ... --out submission.zip`` builds the DCASE 2026 Task 6 package
(:mod:`audiomoment.reporting.submission`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from audiomoment.errors import InputError


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- report


def _cmd_report(args: argparse.Namespace) -> int:
    from audiomoment.reporting.inputs import (
        TraceExample,
        figure_settings,
        per_dataset,
        read_datasets,
        read_search_results,
        trace_examples,
    )
    from audiomoment.reporting.report import write_report
    from audiomoment.reporting.tables import sample_qids

    datasets = read_datasets(args.annotations, args.predictions, args.names, args.dataset_names,
                             args.simulated, warn=_warn)
    n = len(datasets)
    features = per_dataset(args.features, n, "--features")
    checkpoints = per_dataset(args.checkpoint, n, "--checkpoint")
    neutrals = per_dataset(args.neutral_embedding, n, "--neutral-embedding")
    system = args.figure_system or (1 if any(neutrals) else 2)
    examples: list[TraceExample] = []
    chosen = args.figure_queries or []
    found: set[str] = set()
    for i, dataset in enumerate(datasets):
        if features[i] is None:
            continue
        keys = {str(a["qid"]) for a in dataset.annotations}
        mine = [q for q in chosen if q in keys]
        found.update(mine)
        if chosen and not mine:
            continue
        qids = sample_qids(dataset.annotations, args.n_figure_queries, args.seed, mine or None)
        settings, settings_from = figure_settings(dataset, system)
        examples += trace_examples(dataset, features[i], qids, system=system,
                                   checkpoint=checkpoints[i], neutral_path=neutrals[i],
                                   settings=settings, settings_from=settings_from)
    if chosen and set(chosen) - found:
        raise InputError("--figure-queries not found in any dataset with --features: "
                         + ", ".join(sorted(set(chosen) - found)[:5]))
    moments = read_search_results(args.search_results) if args.search_results else []
    contrast = tuple(args.contrast) if args.contrast else None
    paths = write_report(datasets, args.out, examples=examples, moments=moments,
                         bin_by=args.bin_by, contrast_pair=contrast, title=args.title)
    print(f"wrote the report to {args.out}: {paths['report_html'].name}, {paths['report_md'].name},"
          f" tables as Markdown and CSV, {1 + len(examples)} figure(s)")
    if not examples:
        print("note: Figure 2 omitted (pass --features to draw traces)", file=sys.stderr)
    elif any(ex.settings is None for ex in examples):
        print(f"note: no run settings beside the System {system} predictions; Figure 2 was "
              "re-localised with the default configuration", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- package


def _slots(args: argparse.Namespace, name: str) -> dict[int, str]:
    """Submission index -> value of ``--<name>`` (repeated, in order) or ``--<name>1..4``."""
    listed = getattr(args, name) or []
    numbered = {k: v for k in range(1, 5) if (v := getattr(args, f"{name}{k}")) is not None}
    flag = "--" + name.replace("_", "-")
    if listed and numbered:
        raise InputError(f"give either {flag} (repeated) or {flag}1..{flag}4, not both")
    if len(listed) > 4:
        raise InputError(f"{flag}: at most 4 systems per task, got {len(listed)}")
    return dict(enumerate(listed, start=1)) if listed else numbered


def _authors(args: argparse.Namespace) -> list[Any]:
    from audiomoment.reporting.submission import Author, read_authors

    if args.authors:
        if args.lastname or args.institute_abbreviation:
            raise InputError("give the authors either with --authors FILE or with --lastname, "
                             "--institute-abbreviation, ..., not both")
        return read_authors(args.authors)
    if not args.lastname or not args.institute_abbreviation:
        raise InputError("package-submission: give --lastname and --institute-abbreviation "
                         "(and --firstname, --email, --institute), or --authors FILE")
    return [Author(lastname=args.lastname, firstname=args.firstname or "",
                   email=args.email or "", institute=args.institute or "",
                   abbreviation=args.institute_abbreviation,
                   department=args.department or "", location=args.location or "",
                   corresponding=True)]


def _cmd_package(args: argparse.Namespace) -> int:
    from audiomoment.io.annotations import by_qid, read_annotations
    from audiomoment.io.predictions import read_prediction_file
    from audiomoment.io.run_settings import check_same_settings, read_run_settings
    from audiomoment.reporting.inputs import read_metrics_file
    from audiomoment.reporting.submission import (
        SystemEntry,
        development_results,
        evaluate_development,
        package_submission,
    )

    if args.report and args.no_report:
        raise InputError("give --report FILE.pdf or --no-report, not both")
    systems = _slots(args, "system")
    if not systems:
        raise InputError("package-submission: give --system PREDICTIONS (up to four times) "
                         "or --system1 .. --system4")
    dev_files = _slots(args, "dev_predictions")
    dev_metrics = _slots(args, "dev_metrics")
    for what, slots in (("--dev-predictions", dev_files), ("--dev-metrics", dev_metrics)):
        extra = sorted(set(slots) - set(systems))
        if extra:
            raise InputError(f"{what}: no system {extra[0]} to go with it")
    both = sorted(set(dev_files) & set(dev_metrics))
    if both:
        raise InputError(f"system {both[0]}: give its development results once, as "
                         "--dev-predictions or as --dev-metrics")
    if dev_files and not args.dev_annotations:
        raise InputError("--dev-predictions needs --dev-annotations (the development-testing "
                         "ground truth)")
    annotations = read_annotations(args.annotations)
    dev_annotations = (read_annotations(args.dev_annotations, require_windows=True)
                       if args.dev_annotations else None)
    entries = []
    for index, path in sorted(systems.items()):
        rows, check = read_prediction_file(path)
        for message in check.warnings:
            _warn(message)
        settings = read_run_settings(path)
        results, dev_source = None, ""
        if index in dev_files:
            assert dev_annotations is not None
            dev_rows, check = read_prediction_file(dev_files[index], by_qid(dev_annotations))
            for message in check.warnings:
                _warn(message)
            check_same_settings([path, dev_files[index]],
                                [settings, read_run_settings(dev_files[index])])
            results = evaluate_development(dev_annotations, dev_rows, args.top_k)
            dev_source = f"evaluated: {dev_files[index]} against {args.dev_annotations}"
        elif index in dev_metrics:
            results = development_results(read_metrics_file(dev_metrics[index]),
                                          dev_metrics[index])
            dev_source = f"read from {dev_metrics[index]}"
        if settings is None:
            _warn(f"{path}: no run settings beside it"
                  + (f"; described as System {index} with the default configuration"
                     if index in (1, 2) else ""))
        entries.append(SystemEntry(index, rows, str(path), settings, results, dev_source))
    packaged = package_submission(
        args.out, annotations, entries, _authors(args), technical_report=args.report,
        allow_missing_report=args.no_report, top_k=args.top_k,
    )
    print(f"wrote {args.out}")
    for p in packaged:
        print(f"  {p.label}: {p.n_rows} queries, up to {args.top_k} window(s) each -> {p.output}")
    missing = [e.index for e in entries if e.dev_results is None]
    if missing:
        print("note: no development-testing results for system(s) "
              + ", ".join(map(str, missing)) + " (give --dev-predictions with "
              "--dev-annotations, or --dev-metrics); the meta file leaves them empty",
              file=sys.stderr)
    if args.no_report:
        print("note: built without the technical report (--no-report); DCASE expects one in "
              "the package", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- parsers


def add_report_commands(subparsers: Any) -> None:
    """Register ``report`` and ``package-submission`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "report", help="tables, figures and a self-contained HTML page from predictions files",
        epilog="example:\n  audiomoment report --annotations castella_test_release.jsonl "
               "--predictions system1.jsonl system2.jsonl --features FEATURES "
               "--checkpoint CLAP_weights_2023.pth --out report/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", action="append", required=True,
                   help="annotation JSON Lines with windows; repeat for several datasets")
    p.add_argument("--predictions", action="append", nargs="+", required=True,
                   help="predictions JSON Lines, one group per --annotations (any system in "
                        "the standard layout)")
    p.add_argument("--names", action="append", nargs="+",
                   help="system names, one group per --predictions group (default: file stems)")
    p.add_argument("--dataset-names", nargs="+", help="one name per --annotations")
    p.add_argument("--simulated", action="store_true",
                   help="label every dataset SIMULATED (automatic with a simulation.json marker)")
    p.add_argument("--bin-by", help="the system whose delta bins Table III (default: System 1, "
                                    "recognised by its settings or name, else the first "
                                    "with deltas)")
    p.add_argument("--contrast", nargs=2, metavar=("WITH", "WITHOUT"),
                   help="system names of System 1 and System 2 for the contrast effect "
                        "(default: names containing 'system 1' / 'system 2')")
    p.add_argument("--features", action="append",
                   help="features folder (clap/, clap_text/) to draw Figure 2; once per dataset")
    p.add_argument("--checkpoint", action="append",
                   help="CLAP_weights_2023.pth for 768-d features (once, or once per dataset)")
    p.add_argument("--neutral-embedding", action="append",
                   help="neutral embedding .npy for System 1 traces (once, or once per dataset)")
    p.add_argument("--figure-system", type=int, choices=[1, 2],
                   help="system whose traces Figure 2 shows (default: 1 with a neutral "
                        "embedding, else 2); its run settings configure the localisation")
    p.add_argument("--figure-queries", nargs="+", metavar="QID", help="qids to draw")
    p.add_argument("--n-figure-queries", type=int, default=4,
                   help="queries sampled for Figure 2 when none are chosen (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query sample")
    p.add_argument("--search-results",
                   help="JSON Lines of {audio, query, pred_relevant_windows}: players in the page")
    p.add_argument("--title", default="Audio moment retrieval report")
    p.add_argument("--out", required=True, help="folder to write")
    p.set_defaults(handler=_cmd_report)

    p = subparsers.add_parser(
        "package-submission",
        help="validate and zip the DCASE 2026 Task 6 submission (up to four systems)",
        epilog="example:\n  audiomoment package-submission --annotations eval.jsonl --system "
               "s1.jsonl --system s2.jsonl --lastname Doe --institute-abbreviation UNI "
               "--report Doe_UNI_task6.technical_report.pdf --out submission.zip",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", required=True,
                   help="the evaluation set's annotation file (qids and durations)")
    p.add_argument("--system", action="append", metavar="PREDICTIONS",
                   help="a system's predictions on the evaluation set; repeat for up to four "
                        "(labelled task6_1, task6_2, ... in order)")
    for k in range(1, 5):
        p.add_argument(f"--system{k}", metavar="PREDICTIONS",
                       help=f"the predictions of submission {k}" if k > 2 else
                       f"the predictions of submission {k} (System {k} when no run settings "
                       "are beside the file)")
    p.add_argument("--dev-annotations",
                   help="development-testing ground truth (e.g. the CASTELLA test set) to "
                        "compute each system's Recall1@0.7 / Recall1@0.5")
    p.add_argument("--dev-predictions", action="append", metavar="PREDICTIONS",
                   help="a system's predictions on that set, in the order of --system")
    p.add_argument("--dev-metrics", action="append", metavar="JSON",
                   help="a system's development metrics (audiomoment evaluate --json), in the "
                        "order of --system")
    for k in range(1, 5):
        p.add_argument(f"--dev-predictions{k}", metavar="PREDICTIONS",
                       help=argparse.SUPPRESS if k > 1 else
                       "--dev-predictions1..4: the same for submission 1..4")
        p.add_argument(f"--dev-metrics{k}", metavar="JSON",
                       help=argparse.SUPPRESS if k > 1 else
                       "--dev-metrics1..4: the same for submission 1..4")
    p.add_argument("--lastname", help="corresponding author's last name (used in the label)")
    p.add_argument("--institute-abbreviation", help="institute abbreviation (used in the label)")
    p.add_argument("--firstname")
    p.add_argument("--email")
    p.add_argument("--institute")
    p.add_argument("--department")
    p.add_argument("--location")
    p.add_argument("--authors", metavar="YAML",
                   help="all authors, in the meta template's layout, instead of the fields "
                        "above (the one marked corresponding, else the first, gives the label)")
    p.add_argument("--report", "--technical-report", dest="report", metavar="PDF",
                   help="the technical report PDF, stored as "
                        "task6/<Lastname>_<Institute>_task6.technical_report.pdf")
    p.add_argument("--no-report", action="store_true",
                   help="build the package without the technical report")
    p.add_argument("--top-k", type=int, default=10,
                   help="windows kept per query (default 10, as the organisers' baseline)")
    p.add_argument("--out", required=True, help="zip file to write")
    p.set_defaults(handler=_cmd_package)
