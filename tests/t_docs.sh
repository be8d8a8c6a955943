#!/usr/bin/env bash
# Issue 9, item 13: the project's documents stand on their own and match the code.
#  - Every file a document or script names (NAME.md, a relative link or ../path) exists inside
#    the repository: nothing points outside it.
#  - Every control command is in docs/control.md's table, in `vm --help` (--control) and in
#    `ctl --help`.
set -u
BIN=${MFD_BUILD:-build}/multifd
ROOT=${MFD_ROOT:-.}
fail() { echo "FAIL: $*"; exit 1; }

python3 - "$ROOT" <<'PY' || fail "documents name files that are not in the repository"
import os, re, subprocess, sys
root = os.path.realpath(sys.argv[1])
files = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True).stdout.split()
if not files:  # not a git checkout: every file under the root
    files = [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
             if "/build" not in d and "/.git" not in d for f in fs]
docs = [f for f in files if f.endswith(".md") or f.startswith("bench/") or f == "Makefile"]
bad = 0
name = re.compile(r"(?<![\w/.-])((?:\.\./|\./)?[\w.-]+(?:/[\w.-]+)*\.md)\b"
                  r"|\]\(([^)#\s]+)(?:#[^)\s]*)?\)")  # a NAME.md anywhere; a markdown link
for f in docs:
    text = open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
    here = os.path.dirname(os.path.join(root, f))
    for m in name.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        found = None
        for base in (here, root):
            p = os.path.realpath(os.path.join(base, target))
            if os.path.exists(p):
                found = p
                break
        if not found or not (found == root or found.startswith(root + os.sep)):
            print("%s: names %s, which is not in the repository" % (f, target))
            bad = 1
sys.exit(bad)
PY
echo "every file the documents name is in the repository"

vmhelp=$("$BIN" help vm) && ctlhelp=$("$BIN" help ctl) || fail "help"
control_line=$(sed -n '/--control SOCKET/,/--incoming/p' <<<"$vmhelp")
for c in query migrate save cancel stop cont quit set events migrate-incoming; do
	grep -q "^| \`$c\` |" "$ROOT/docs/control.md" || fail "docs/control.md has no row for $c"
	grep -qw "$c" <<<"$control_line" || fail "vm --help (--control) does not list $c: $control_line"
	grep -qw "$c" <<<"$ctlhelp" || fail "ctl --help does not list $c"
done
echo "every control command is documented in control.md, vm --help and ctl --help"
man1=$(sed 's/\\-/-/g' "$ROOT/man/multifd.1")	# groff's \- is a plain hyphen here
for c in bench vm ctl demo inspect query migrate save cancel stop cont quit set events migrate-incoming info; do
	grep -qw -- "$c" <<<"$man1" || fail "man/multifd.1 does not mention $c"
done
for o in timeline wait max-bandwidth downtime-ms incoming json; do
	grep -q -- "--$o" <<<"$man1" || fail "man/multifd.1 does not describe --$o"
done
echo "multifd(1) covers every command, control command and the options of issue 12"
