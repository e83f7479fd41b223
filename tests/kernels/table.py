#!/usr/bin/env python3
"""The kernel matrix table, from the row directories run.sh and suite.sh leave behind.

Each row directory holds (suite.sh) kernel, check.txt, check.rc, junit.xml, suite.env and
(run.sh) row.env: label=, seconds=, note= (why a row has no results, e.g. a kernel that apt
does not have). Prints one Markdown table: kernel, capture mode the probe chose (weftctl check),
the sockmap/sk_lookup features, the same-node relay ztunnel's --same-node-relay=auto would use
(weftctl check's "Same-node relay:" line; from a build before that line, the outcome of the same
self-test as SameNodeRelay.SelfTestPasses: passed = sockmap, failed = splice), the tests
passed/failed/skipped and the row's wall time.

  table.py ROW_DIR...            print the table
  table.py --check FILE RC       parse one `weftctl check` output (exit status RC) and print
                                 what the table would take from it; exit 1 if the report
                                 cannot be read (the self-test in CMakeLists.txt uses this)
"""
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# Table column -> the probe's feature name (agent/probe.cc).
FEATURES = [
    ("SOCKHASH", "map type SOCKHASH"),
    ("sk_msg", "program type sk_msg"),
    ("sk_skb", "program type sk_skb"),
    ("sk_redirect_hash", "helper bpf_sk_redirect_hash in sk_skb"),
    ("sk_lookup", "program type sk_lookup"),
    ("kTLS", 'kTLS (TCP_ULP "tls")'),
]
# Columns a report from an older build may lack ("–" in the table, not a parse error).
LATER_FEATURES = [
    ("set_retval", "helper bpf_set_retval in cgroup_sock_addr"),
    ("local legs", "sk_msg local legs (app <-> ztunnel)"),
]
ALL_FEATURES = FEATURES + LATER_FEATURES
STATUSES = ("ok", "MISSING", "missing (optional)")
# The test that runs the same self-test ztunnel's --same-node-relay=auto decides by.
RELAY_SELF_TEST = "SameNodeRelay.SelfTestPasses"


class ParseError(Exception):
    pass


def parse_check(text, rc):
    """(mode, {feature: bool}) from `weftctl check` output and its exit status."""
    found = {}
    decision = None
    for line in text.splitlines():
        if line.startswith("Same-node relay: "):
            found["relay"] = line[len("Same-node relay: "):].split(" ")[0]
            continue
        if line.startswith("Decision: "):
            decision = line[len("Decision: "):].strip()
            continue
        body = line.strip()
        # The longest status first: "missing (optional)" must not be read as "MISSING".
        for status in sorted(STATUSES, key=len, reverse=True):
            if body.startswith(status + " "):
                rest = body[len(status):].lstrip()
                for _, name in ALL_FEATURES:
                    if rest == name or rest.startswith(name + " "):
                        found[name] = status == "ok"
                break
    if decision is None:
        raise ParseError("no 'Decision:' line")
    missing = [name for _, name in FEATURES if name not in found]
    if missing:
        raise ParseError("no line for: " + ", ".join(missing))
    if decision.startswith("eBPF capture"):
        mode = "eBPF"
    elif decision.startswith("iptables capture"):
        m = re.search(r"eBPF needs (.*)$", decision)
        mode = "iptables (no " + m.group(1) + ")" if m else "iptables (" + decision + ")"
    else:
        raise ParseError("unknown decision: " + decision)
    # weftctl check: exit 0 exactly when eBPF capture is possible.
    if (rc == 0) != (mode == "eBPF"):
        raise ParseError("exit status %d disagrees with the decision '%s'" % (rc, decision))
    return mode, found


def parse_junit(path):
    """(passed, failed, skipped, failed names, {name: "passed"|"failed"|"skipped"}) from
    ctest's --output-junit file."""
    root = ET.parse(path).getroot()
    passed = failed = skipped = 0
    failed_names = []
    outcome = {}
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            failed_names.append(name)
            outcome[name] = "failed"
        elif case.find("skipped") is not None or case.get("status") in ("notrun", "disabled"):
            skipped += 1
            outcome[name] = "skipped"
        else:
            passed += 1
            outcome[name] = "passed"
    return passed, failed, skipped, failed_names, outcome


def relay(outcome):
    """The same-node relay the self-test picks: sockmap, splice (it failed), or unknown."""
    return {"passed": "sockmap", "failed": "splice (self-test failed)",
            "skipped": "– (self-test skipped)"}.get(outcome.get(RELAY_SELF_TEST), "–")


def read_env(path):
    env = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                env[k.strip()] = v.strip()
    return env


def minutes(seconds):
    s = int(seconds)
    return "%d:%02d" % (s // 60, s % 60)


def row(d):
    d = Path(d)
    env = read_env(d / "row.env")
    suite = read_env(d / "suite.env")
    label = env.get("label", d.name)
    kernel = (d / "kernel").read_text().strip() if (d / "kernel").exists() else env.get(
        "kernel", "?")
    wall = minutes(env["seconds"]) if "seconds" in env else "–"
    cells = [label, kernel]
    if not (d / "check.txt").exists():
        note = env.get("note", "no results (see console.log)")
        return cells + [note] + ["–"] * len(ALL_FEATURES) + ["–", "–", wall], None
    try:
        rc = int((d / "check.rc").read_text().strip())
        mode, feats = parse_check((d / "check.txt").read_text(), rc)
    except (ParseError, ValueError, OSError) as e:
        mode, feats = "unreadable check.txt: %s" % e, {}
    cells.append(mode)
    for _, name in ALL_FEATURES:
        cells.append("–" if name not in feats else ("yes" if feats[name] else "**no**"))
    failed_names = []
    relay_cell = "–"
    if (d / "junit.xml").exists():
        try:
            p, f, s, failed_names, outcome = parse_junit(d / "junit.xml")
            relay_cell = feats.get("relay") or relay(outcome)
            tests = "%d / %d / %d" % (p, f, s)
            if "ctest_rc" in suite and suite["ctest_rc"] != "0" and f == 0:
                tests += " (ctest exit %s)" % suite["ctest_rc"]
        except ET.ParseError as e:
            tests = "unreadable junit.xml: %s" % e
    else:
        tests = "no junit.xml (see console.log)"
    cells += [relay_cell, tests, wall]
    return cells, failed_names


def table(dirs):
    head = ["row", "kernel", "capture (probe)"] + [c for c, _ in ALL_FEATURES] + [
        "same-node relay", "tests passed / failed / skipped", "wall time"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for d in dirs:
        cells, failed = row(d)
        out.append("| " + " | ".join(cells) + " |")
        if failed:
            notes.append("%s failed: %s" % (cells[0], ", ".join(failed)))
    return "\n".join(out + [""] + notes) + ("\n" if notes else "")


def main(argv):
    if len(argv) == 4 and argv[1] == "--check":
        try:
            mode, feats = parse_check(Path(argv[2]).read_text(), int(argv[3]))
        except ParseError as e:
            print("table.py: %s: %s" % (argv[2], e), file=sys.stderr)
            return 1
        print("capture:", mode)
        for col, name in ALL_FEATURES:
            if name in feats:
                print("%s: %s" % (col, "yes" if feats[name] else "no"))
        if "relay" in feats:
            print("same-node relay:", feats["relay"])
        return 0
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(table(argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
