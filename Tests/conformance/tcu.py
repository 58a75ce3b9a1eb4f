#!/usr/bin/env python3
"""Parse libiscsi's iscsi-test-cu output and check it against expectations.

  tcu.py list < `iscsi-test-cu --list`          SUITE.TEST of family ALL, one a line
  tcu.py parse OUT.txt...                        per-test TSV: SUITE.TEST, STATUS, detail
                                                 (a later file overrides an earlier one)
  tcu.py select VARIANT.tsv TESTS.txt ALLTESTS.txt
                                                 the tests a focused variant runs: its pass/skip
                                                 lines that are in TESTS (the SUITES selection) or
                                                 not tests of this iscsi-test-cu at all (those end
                                                 NOTRUN, a regression)
  tcu.py check EXPECTED.tsv TESTS.txt RESULTS.tsv [--label L] [--all ALLTESTS.txt]
               [--variant VARIANT.tsv]           summary; exit 1 on any regression
                                                 (ALLTESTS: the full list, when TESTS is a subset;
                                                 VARIANT: a focused variant's expectations, which
                                                 override EXPECTED's)

Status of a test:
  PASS      CUnit "passed" and no "[SKIPPED]" line in the test's output
  SKIP      CUnit "passed" with a "[SKIPPED]" line: libiscsi reports unsupported
            features, missing -d, etc. through CU_PASS("[SKIPPED] ..."), so CUnit
            itself counts a skip as a pass
  FAIL      CUnit "FAILED", or its suite's initialisation failed
  NORESULT  the test started and never got a verdict (hung and killed by
            timeout, or the tool crashed)
  NOTRUN    in the test list, absent from every output

EXPECTED.tsv: SUITE.TEST <TAB> pass|skip <TAB> reason; '#' lines are comments.
check fails a run on FAIL, NORESULT, NOTRUN, and on SKIP where pass is
expected.  PASS where skip is expected is reported as an improvement.

VARIANT.tsv (expected-<variant>.tsv, a focused variant): the same format plus a
third status, exclude: SUITE.TEST <TAB> pass|skip|exclude <TAB> reason.  The
variant runs exactly its pass and skip lines, checked as above; exclude lines
are tests of those suites that it does not run, each with the reason (listed in
the summary; an excluded test that ran anyway is a regression).
"""
import re
import sys

RE_SUITE = re.compile(r"^Suite: (\S+)")
RE_TEST = re.compile(r"^  Test: (.+?) \.\.\.(.*)$")
RE_VERDICT = re.compile(r"^(passed|FAILED)\b")
RE_ASSERT = re.compile(r"^\s+\d+\. (\S+:\d+\s+- .*)$")
RE_INITFAIL = re.compile(r"WARNING - Suite initialization failed for '([^']+)'")


def cmd_list(stream):
    for word in stream.read().split():
        parts = word.split(".")
        if len(parts) == 3 and parts[0] == "ALL":
            print(f"{parts[1]}.{parts[2]}")
    return 0


def parse_file(path):
    """Return {SUITE.TEST: (status, detail)} for one iscsi-test-cu output."""
    with open(path, errors="replace") as f:
        lines = f.read().replace("\r", "").split("\n")
    results = {}
    suite = test = None
    verdict = None
    skip_line = fail_line = None
    asserts = []

    def close():
        nonlocal test
        if test is None:
            return
        if verdict == "FAILED":
            detail = " | ".join(x for x in [fail_line] + asserts[:2] if x)
            results[test] = ("FAIL", detail)
        elif verdict == "passed":
            results[test] = ("SKIP", skip_line) if skip_line else ("PASS", "")
        else:
            results[test] = ("NORESULT", "no verdict: the test hung (timeout) or the tool crashed")
        test = None

    def body(text):
        nonlocal verdict, skip_line, fail_line
        if test is None:
            return
        if verdict is None:
            m = RE_VERDICT.match(text)
            if m:
                verdict = m.group(1)
            elif "[SKIPPED]" in text and skip_line is None:
                skip_line = text.strip()
            elif "[FAILED]" in text and fail_line is None:
                fail_line = text.strip()
        elif verdict == "FAILED":
            m = RE_ASSERT.match(text)
            if m:
                asserts.append(m.group(1))

    for line in lines:
        m = RE_INITFAIL.search(line)
        if m:
            close()
            results[f"{m.group(1)}.*"] = ("FAIL", "suite initialization failed")
            continue
        m = RE_SUITE.match(line)
        if m:
            close()
            suite = m.group(1)
            continue
        m = RE_TEST.match(line)
        if m and suite:
            close()
            test = f"{suite}.{m.group(1)}"
            verdict = skip_line = fail_line = None
            asserts = []
            body(m.group(2).strip())
            continue
        if line.startswith("Run Summary:"):
            close()
            suite = None
            continue
        body(line)
    close()
    return results


def cmd_parse(paths):
    merged = {}
    for p in paths:
        merged.update(parse_file(p))
    for name, (status, detail) in merged.items():
        print(f"{name}\t{status}\t{detail}")
    return 0


def read_tsv(path, ncols):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            cols = (line.split("\t") + [""] * ncols)[:ncols]
            rows[cols[0]] = cols[1:]
    return rows


STATUSES = ("pass", "skip")


def read_expected(path, allowed):
    rows = {k: (v[0].strip().lower(), v[1]) for k, v in read_tsv(path, 3).items()}
    bad = [f"{k} ({v[0] or 'no status'})" for k, v in rows.items() if v[0] not in allowed]
    if bad:
        sys.exit(f"{path}: status must be {'|'.join(allowed)}: {', '.join(bad)}")
    return rows


def read_list(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip()]


def cmd_select(variant_path, tests_path, all_path):
    variant = read_expected(variant_path, STATUSES + ("exclude",))
    selected, known = set(read_list(tests_path)), set(read_list(all_path))
    for t, (want, _) in variant.items():
        if want != "exclude" and (t in selected or t not in known):
            print(t)
    return 0


def cmd_check(expected_path, tests_path, results_path, label, all_path=None, variant_path=None):
    expected = read_expected(expected_path, STATUSES)
    excluded = {}
    if variant_path:
        for t, (want, reason) in read_expected(variant_path, STATUSES + ("exclude",)).items():
            if want == "exclude":
                excluded[t] = reason
                expected.pop(t, None)
            else:
                expected[t] = (want, reason)
    with open(tests_path) as f:
        tests = [l.strip() for l in f if l.strip()]
    raw = read_tsv(results_path, 3)
    initfail = {k[:-2] for k, v in raw.items() if k.endswith(".*")}
    counts = {s: 0 for s in ("PASS", "FAIL", "SKIP", "NORESULT", "NOTRUN")}
    checks = {"PASS": 0, "FAIL": 0}  # the harness's own Probe.* / Target.* lines
    problems, improvements, notes = [], [], []
    for t in tests:
        if t in raw:
            status, detail = raw[t]
        elif t.split(".")[0] in initfail:
            status, detail = "FAIL", "suite initialization failed"
        else:
            status, detail = "NOTRUN", "not in any output"
        if t.startswith(("Probe.", "Target.")):
            checks["PASS" if status == "PASS" else "FAIL"] += 1
        else:
            counts[status] += 1
        want, reason = expected.get(t, (None, ""))
        if t in excluded:
            if status != "NOTRUN":
                problems.append(f"  {status:<8} {t}: ran, but {variant_path} excludes it ({excluded[t][:160]})")
            continue
        if want is None:
            notes.append(f"  not in expected.tsv: {t} ({status})")
        if status in ("FAIL", "NORESULT", "NOTRUN"):
            problems.append(f"  {status:<8} {t}: {detail[:240]}")
        elif status == "SKIP" and want != "skip":
            problems.append(f"  SKIP     {t}: expected pass; {detail[:200]}")
        elif status == "PASS" and want == "skip":
            improvements.append(f"  PASS     {t} (expected skip: {reason})")
    known = set(tests)
    if all_path:
        with open(all_path) as f:
            known |= {l.strip() for l in f if l.strip()}
    for t in list(expected) + list(excluded):
        if t not in known and not t.startswith(("Probe.", "Target.")):
            notes.append(f"  in expected.tsv but not a test of this iscsi-test-cu: {t}")
    head = f"conformance{' ' + label if label else ''}:"
    print(f"{head} {sum(counts.values())} tests: pass {counts['PASS']}  fail {counts['FAIL']}  "
          f"skip {counts['SKIP']}  no-result {counts['NORESULT']}  not-run {counts['NOTRUN']}; "
          f"harness checks {checks['PASS']}/{checks['PASS'] + checks['FAIL']} ok; "
          f"{len(problems)} regression(s), {len(improvements)} improvement(s)")
    if excluded:
        print(f"excluded by {variant_path.rsplit('/', 1)[-1]} (not run):")
        print("\n".join(f"  {t}: {r}" for t, r in excluded.items()))
    if improvements:
        where = variant_path.rsplit('/', 1)[-1] if variant_path else "expected.tsv"
        print(f"improvements (passed where the expectations say skip; update {where}):")
        print("\n".join(improvements))
    if notes:
        print("notes:")
        print("\n".join(notes))
    if problems:
        print(f"REGRESSIONS ({len(problems)}):")
        print("\n".join(problems))
        return 1
    print(f"OK: every test matches {'expected.tsv and ' + variant_path.rsplit('/', 1)[-1] if variant_path else 'expected.tsv'}")
    return 0


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] == "list":
        return cmd_list(sys.stdin)
    if argv[0] == "parse" and len(argv) > 1:
        return cmd_parse(argv[1:])
    if argv[0] == "select" and len(argv) == 4:
        return cmd_select(argv[1], argv[2], argv[3])
    if argv[0] == "check" and len(argv) >= 4:
        opts = dict(zip(argv[4::2], argv[5::2]))
        return cmd_check(argv[1], argv[2], argv[3], opts.get("--label", ""), opts.get("--all"), opts.get("--variant"))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
