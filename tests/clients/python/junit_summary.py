"""Summarise a pytest junit XML report as JSON, for tests/tests/ykman_test_piv.rs.

Usage: python junit_summary.py REPORT.xml

Prints one JSON object: {"tests": [{"id", "outcome", "message", "detail"}]}
with, for every <testcase>, its id as pytest shows it without the file
("TestClass::test_name[params]"), its outcome ("passed", "failed", "error"
or "skipped"), the message of its <failure>/<error>/<skipped> element (a
skip's reason, a failure's exception line) and the element's text (the
traceback, or for a skip "FILE:LINE: reason"). Parsed with the standard
library's ElementTree; exits 1 naming the problem when the file is missing
or not a junit report.
"""

import json
import sys
import xml.etree.ElementTree as ET


def outcome_of(case):
    for tag in ("failure", "error", "skipped"):
        element = case.find(tag)
        if element is not None:
            name = "failed" if tag == "failure" else tag
            return name, element.get("message") or "", (element.text or "").strip()
    return "passed", "", ""


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: junit_summary.py REPORT.xml")
    try:
        root = ET.parse(sys.argv[1]).getroot()
    except (OSError, ET.ParseError) as e:
        sys.exit(f"junit_summary: cannot read {sys.argv[1]} as XML: {e}")
    if root.tag not in ("testsuites", "testsuite"):
        sys.exit(f"junit_summary: {sys.argv[1]} is not a junit report (root <{root.tag}>)")
    tests = []
    for case in root.iter("testcase"):
        # classname "tests.device.test_piv.TestKeyManagement", name "test_x[p]"
        classname = case.get("classname") or ""
        cls = classname.rsplit(".", 1)[-1] if "." in classname else classname
        name = case.get("name") or ""
        outcome, message, detail = outcome_of(case)
        tests.append(
            {
                "id": f"{cls}::{name}" if cls.startswith("Test") else name,
                "outcome": outcome,
                "message": message,
                "detail": detail,
            }
        )
    json.dump({"tests": tests}, sys.stdout)


if __name__ == "__main__":
    main()
