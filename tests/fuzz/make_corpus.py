#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<name>/) from the repository's
real inputs: filings from stip-sample-year (JSON, and their protobuf encoding by protoc),
the policy files of policies/, and page tokens and cursors as the registry makes them.

  tests/fuzz/make_corpus.py BUILD_DIR     (BUILD_DIR has tools/sample_year/stip-sample-year)

The files are committed; run this again only to change the seeds. Needs protoc.
"""
import base64
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

root = pathlib.Path(__file__).resolve().parents[2]
corpus = root / "tests/fuzz/corpus"
SEPARATOR_INBOUND = b"\n--8<--\n"    # inbound_fuzz.cc's kSeparator
SEPARATOR_POLICY = b"\n---8<---\n"   # policy_fuzz.cc's kSeparator


def snake(name):
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def text_format(value, indent=""):
    """The protobuf text format of a filing in its JSON mapping (enums by name)."""
    lines = []
    for key, item in value.items():
        field = snake(key)
        for element in item if isinstance(item, list) else [item]:
            if isinstance(element, dict):
                lines.append(f"{indent}{field} {{\n{text_format(element, indent + '  ')}{indent}}}")
            elif isinstance(element, bool):
                lines.append(f"{indent}{field}: {'true' if element else 'false'}")
            elif isinstance(element, int):
                lines.append(f"{indent}{field}: {element}")
            elif re.fullmatch(r"-?[0-9]+", element) and field.endswith("_fen"):
                lines.append(f"{indent}{field}: {element}")
            elif re.fullmatch(r"[A-Z][A-Z0-9_]+", element) and field in ("field", "stage"):
                lines.append(f"{indent}{field}: {element}")
            else:
                lines.append(f"{indent}{field}: {json.dumps(element, ensure_ascii=False)}")
    return "".join(line + "\n" for line in lines)


def encode(filing):
    return subprocess.run(
        ["protoc", "--encode=stip.v1.AnnualFiling", "-I", str(root / "proto"),
         str(root / "proto/stip/v1/filing.proto")],
        input=text_format(filing).encode(), capture_output=True, check=True).stdout


def write(name, files):
    folder = corpus / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)


def main():
    build = pathlib.Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([str(build / "tools/sample_year/stip-sample-year"), "--out", out,
                        "--scale", "0.02"], check=True, capture_output=True)
        filings = [json.loads(line) for line in open(f"{out}/filings.ndjson")]
        amendment = json.loads(open(f"{out}/amendments.ndjson").readline())
    urumqi = [f for f in filings if f["parkId"] == "urumqi-hnz"]
    with_projects = [f for f in urumqi if f.get("projects")][:2]
    without = [f for f in urumqi if not f.get("projects")][:1]
    chinese = dict(with_projects[0], enterpriseName="乌鲁木齐凯联特种合金有限公司",
                   projects=[dict(with_projects[0]["projects"][0], title="高纯多晶硅工艺（二期）")])
    invalid = dict(without[0], uscc=without[0]["uscc"].lower(), totalEmployees=0,
                   rdExpenditureFen="-1")
    chosen = {"urumqi-projects-1": with_projects[0], "urumqi-projects-2": with_projects[1],
              "urumqi-plain": without[0], "urumqi-chinese": chinese, "invalid": invalid,
              "kunming-amendment": amendment}
    as_json = {k: json.dumps(v, ensure_ascii=False).encode() for k, v in chosen.items()}
    as_proto = {k: encode(v) for k, v in chosen.items()}

    write("filing_validator", {f"{k}.pb": v for k, v in as_proto.items()})

    inbound = {}
    for k in chosen:
        inbound[f"json-{k}"] = b"J" + as_json[k]
        inbound[f"proto-{k}"] = b"P" + as_proto[k]
    inbound["charset-urumqi-plain"] = b"j" + as_json["urumqi-plain"]
    inbound["no-content-type-urumqi-plain"] = b"N" + as_proto["urumqi-plain"]
    inbound["text-plain"] = b"T" + as_json["urumqi-plain"]
    inbound["batch-repeat"] = b"J" + as_json["urumqi-plain"] + SEPARATOR_INBOUND + as_json["urumqi-plain"]
    conflict = dict(chosen["urumqi-plain"], totalEmployees=chosen["urumqi-plain"]["totalEmployees"] + 1)
    inbound["batch-conflict"] = (b"J" + as_json["urumqi-plain"] + SEPARATOR_INBOUND +
                                 json.dumps(conflict).encode())
    write("inbound", inbound)

    default = (root / "policies/stip-default.yaml").read_bytes()
    banded = (root / "policies/packs/hnte-2016/hnte-2016-banded.yaml").read_bytes()
    readme = (root / "policies/README.md").read_text()
    example = re.search(r"```yaml\n(id:.*?)```", readme, re.S).group(1).encode()
    until_2015 = default.replace(b"to: open", b"to: 2015")
    write("policy", {
        "stip-default.yaml": default,
        "hnte-2016-banded.yaml": banded,
        "readme-example.yaml": example,
        "set-default-then-banded": until_2015 + SEPARATOR_POLICY + banded,
        "set-overlapping": default + SEPARATOR_POLICY + banded,
    })

    def token(text):  # absl::WebSafeBase64Escape: URL-safe alphabet, no padding
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=")
    # page_token_fuzz.cc: a byte choosing listing and filters, a byte for the page size.
    write("page_token", {
        "parks-first": bytes([0, 1]),
        "parks-next": bytes([0, 1]) + token("parks|0|changchun-hnz"),
        "parks-western-next": bytes([12, 2]) + token("parks|3|kunming-hnz"),
        "enterprises-next": bytes([1, 1]) + token("enterprises|,0,0,0|91650100MA0000001X"),
        "enterprises-park-next": bytes([5, 0]) + token("enterprises|urumqi-hnz,0,0,0|91650100MA0000000X"),
        "history-next": bytes([2, 0]) + token("history|91650100MA0000000X|3"),
        "other-filters": bytes([0, 0]) + token("parks|3|kunming-hnz"),
    })
    write("watch_cursor", {
        "decisions-start": b"d.0", "decisions": b"d.1042", "listings": b"l.17",
        "listings-max": b"l.9223372036854775807", "too-large": b"d.9223372036854775808",
        "empty-seq": b"d.", "other": b"x.5",
    })


if __name__ == "__main__":
    main()
