#!/usr/bin/env python3
"""Helpers of tests/e2e/stipctl_e2e.sh: makes the hand-made fiscal year 2023, checks the
watch streams and stipctl's JSON, and writes the normalized files the two runs are compared
by. Every check that fails prints why and exits 1.

  e2e_check.py make-2023 SAMPLE_DIR OUT_DIR
  e2e_check.py report REPORT.ndjson OUT
  e2e_check.py expected-filings OUT FILE...       (accepted filing ids; reports as REPORT=FILE)
  e2e_check.py decisions EXPECTED OUT PART...
  e2e_check.py listings OUT PART...
  e2e_check.py delistings CLOSE.json SAMPLE_DIR YEAR2023.ndjson REPORT.ndjson OUT
  e2e_check.py roster ENTERPRISES.json LISTINGS_OUT OUT
  e2e_check.py stats OUT FILE...
  e2e_check.py decided HISTORY.json FILING_ID
"""
import json
import sys


def fail(message):
    print(f"e2e_check: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def read_ndjson(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def qualifies(filing):
    revenue = int(filing.get("grossRevenueFen", "0"))
    rd = int(filing.get("rdExpenditureFen", "0"))
    total = int(filing.get("totalEmployees", 0))
    tertiary = int(filing.get("tertiaryEducatedEmployees", 0))
    rd_staff = int(filing.get("rdEmployees", 0))
    return (total > 0 and rd * 10000 >= 300 * revenue and tertiary * 10000 >= 3000 * total
            and rd_staff * 10000 >= 1000 * total)


def make_2023(sample_dir, out_dir):
    """A qualifying 2023 filing for 12 enterprises: 4 that qualify again in 2024 (RENEWED),
    4 that do not (DELISTED by their decision) and 4 that file nothing for 2024 (DELISTED
    when the window of 2024 closes)."""
    enterprises = read_ndjson(f"{sample_dir}/enterprises.ndjson")
    filings = read_ndjson(f"{sample_dir}/filings.ndjson")
    filed = {f["uscc"] for f in filings}
    renew = [f["uscc"] for f in filings if qualifies(f)][:4]
    drop = [f["uscc"] for f in filings if not qualifies(f)][:4]
    silent = [e["uscc"] for e in enterprises if e["uscc"] not in filed][:4]
    if len(renew) < 4 or len(drop) < 4 or len(silent) < 4:
        fail(f"the sample is too small for the 2023 filings: {renew} {drop} {silent}")
    by_uscc = {e["uscc"]: e for e in enterprises}
    made = []
    for i, uscc in enumerate(renew + drop + silent):
        enterprise = by_uscc[uscc]
        made.append({
            "uscc": uscc,
            "parkId": enterprise["parkId"],
            "fiscalYear": 2023,
            "revision": 1,
            "grossRevenueFen": str(1_000_000_000 + i * 1_000_000),
            "rdExpenditureFen": str(50_000_000),
            "totalEmployees": 100,
            "tertiaryEducatedEmployees": 50,
            "rdEmployees": 20,
            "projects": [{
                "projectId": "HT2023-01",
                "title": "Composite material process",
                "field": "TECHNOLOGY_FIELD_NEW_MATERIALS",
                "stage": "PROJECT_STAGE_COMMERCIALIZED",
                "torchNominated": True,
            }],
            "enterpriseName": enterprise["name"],
        })
    with open(f"{out_dir}/single-2023.json", "w", encoding="utf-8") as f:
        json.dump(made[0], f)
    write_lines(f"{out_dir}/filings-2023.ndjson", [json.dumps(m) for m in made[1:]])
    write_lines(f"{out_dir}/silent-2024.txt", sorted(silent))


def report(path, out):
    """Every refused filing is reported with its line, USCC, code and each violated field
    with the rule it breaks."""
    lines = []
    entries = read_ndjson(path)
    if not entries:
        fail(f"{path}: no refused filing reported (the sample has invalid ones)")
    for entry in entries:
        if entry.get("code") != "INVALID_ARGUMENT":
            fail(f"{path}: refused with {entry.get('code')}, not INVALID_ARGUMENT: {entry}")
        violations = entry.get("violations") or []
        if not violations:
            fail(f"{path}: a refused filing without violations: {entry}")
        for v in violations:
            if not v.get("field") or not v.get("description"):
                fail(f"{path}: a violation without field or rule: {entry}")
        if not entry.get("uscc") or not entry.get("line"):
            fail(f"{path}: a refused filing without its USCC or line: {entry}")
        fields = ",".join(sorted(v["field"] for v in violations))
        lines.append(f"{entry['line']} {entry['uscc']} {fields}")
    write_lines(out, sorted(lines))


def expected_filings(out, files):
    """The ids of the filings the services must decide: every filing of FILE... except the
    lines a REPORT=FILE names as refused (reports refer to the file before them)."""
    ids = set()
    last = None
    for arg in files:
        if arg.startswith("REPORT="):
            refused = {e["line"] for e in read_ndjson(arg[len("REPORT="):])}
            for line_number in refused:
                ids.discard(last[line_number - 1])
            continue
        if arg.endswith(".ndjson"):
            filings = read_ndjson(arg)
        else:
            filings = [read_json(arg)]
        last = [f"{f['uscc']}/{f['fiscalYear']}/{f.get('revision', 1)}" for f in filings]
        ids.update(last)
    write_lines(out, sorted(ids))


def watch_entries(parts, key, id_field):
    """The entries of a watch split into parts: each part resumes after the previous part's
    last cursor; no entry may be seen twice."""
    entries = []
    for part in parts:
        entries.extend(read_ndjson(part))
    seen = set()
    for e in entries:
        if key not in e or "cursor" not in e:
            fail(f"a {key} watch line without {key} or cursor: {e}")
        ident = e[key][id_field]
        if ident in seen:
            fail(f"{key} {ident} seen twice across the resumed watch")
        seen.add(ident)
    return entries


def decisions(expected, out, parts):
    entries = watch_entries(parts, "decision", "decisionId")
    want = set(open(expected, encoding="utf-8").read().split())
    got = {}
    for e in entries:
        d = e["decision"]
        if d["filingId"] in got:
            fail(f"two decisions for filing {d['filingId']}")
        criteria = " ".join(f"{c['metric']}={c['outcome']}" for c in d.get("criteria", []))
        if len(d.get("criteria", [])) != 3:
            fail(f"decision {d['decisionId']} does not explain all three criteria: {criteria}")
        got[d["filingId"]] = f"{d['filingId']} {d['outcome']} {d['decisionId']} {criteria}"
    if set(got) != want:
        missing = sorted(want - set(got))[:5]
        extra = sorted(set(got) - want)[:5]
        fail(f"decisions watched: {len(got)}, filings accepted: {len(want)}; "
             f"missing e.g. {missing}, unexpected e.g. {extra}")
    write_lines(out, sorted(got.values()))
    print(len(got))


def listings(out, parts):
    entries = watch_entries(parts, "listing", "eventId")
    write_lines(out, sorted(f"{e['listing']['eventId']} {e['listing']['change']} "
                            f"{e['listing']['fiscalYear']}" for e in entries))
    # The last change of each enterprise, in stream order, for the roster check.
    last = {}
    for e in entries:
        last[e["listing"]["uscc"]] = e["listing"]["change"]
    write_lines(out + ".last", sorted(f"{u} {c}" for u, c in last.items()))
    changes = [e["listing"]["change"] for e in entries]
    for change in ("LISTING_CHANGE_LISTED", "LISTING_CHANGE_RENEWED", "LISTING_CHANGE_DELISTED"):
        if change not in changes:
            fail(f"no {change} among the {len(entries)} listing events")
    print(len(entries))


def delistings(close_json, sample_dir, year2023, report_path, out):
    """window close 2024 delists exactly the enterprises listed for 2023 that have no
    accepted 2024 filing."""
    response = read_json(close_json)
    got = sorted(d["uscc"] for d in response.get("delistings", []))
    for d in response.get("delistings", []):
        if d.get("change") != "LISTING_CHANGE_DELISTED" or d.get("fiscalYear") != 2024:
            fail(f"window close 2024 returned {d}")
    filings = read_ndjson(f"{sample_dir}/filings.ndjson")
    refused = {e["line"] for e in read_ndjson(report_path)}
    accepted = {f["uscc"] for i, f in enumerate(filings, 1) if i not in refused}
    listed_2023 = {f["uscc"] for f in read_ndjson(year2023)}
    want = sorted(listed_2023 - accepted)
    if got != want:
        fail(f"window close 2024 delisted {got}, expected {want}")
    write_lines(out, got)
    print(len(got))


def roster(enterprises_json, listings_last, out):
    enterprises = read_json(enterprises_json).get("enterprises", [])
    lines = []
    for e in enterprises:
        revisions = ",".join(f"{r['fiscalYear']}/{r['revision']}"
                             for r in sorted(e.get("latestRevisions", []),
                                             key=lambda r: r["fiscalYear"]))
        lines.append(f"{e['uscc']} {e['parkId']} {e.get('status')} {e.get('rosterStatus')} "
                     f"{revisions}")
    # The roster agrees with the listing stream: listed iff the last change listed or renewed.
    status = {e["uscc"]: e.get("rosterStatus") for e in enterprises}
    for line in open(listings_last, encoding="utf-8"):
        uscc, change = line.split()
        listed = change in ("LISTING_CHANGE_LISTED", "LISTING_CHANGE_RENEWED")
        if listed != (status.get(uscc) == "ROSTER_STATUS_LISTED"):
            fail(f"{uscc}: last listing change {change} but roster status {status.get(uscc)}")
    write_lines(out, sorted(lines))
    print(len(lines))


def stats(out, files):
    lines = []
    for path in files:
        lines.append(json.dumps(read_json(path), sort_keys=True))
    write_lines(out, lines)


def decided(history_json, filing_id):
    for entry in read_json(history_json).get("entries", []):
        if entry.get("decision", {}).get("filingId") == filing_id:
            print(entry["decision"]["outcome"])
            return
    sys.exit(3)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "make-2023":
        make_2023(*args)
    elif command == "report":
        report(*args)
    elif command == "expected-filings":
        expected_filings(args[0], args[1:])
    elif command == "decisions":
        decisions(args[0], args[1], args[2:])
    elif command == "listings":
        listings(args[0], args[1:])
    elif command == "delistings":
        delistings(*args)
    elif command == "roster":
        roster(*args)
    elif command == "stats":
        stats(args[0], args[1:])
    elif command == "decided":
        decided(*args)
    else:
        fail(f"unknown command {command}")


if __name__ == "__main__":
    main()
