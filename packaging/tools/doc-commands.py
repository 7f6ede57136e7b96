#!/usr/bin/env python3
"""Checks that every `warren` and `warren-controller` command line in the
docs parses: the doc test for the commands the docs show.

Usage: doc-commands.py --warren BIN --controller BIN FILE.md...

It reads every fenced code block marked sh, bash, shell or console, and
every inline code span that starts with `warren ` or `warren-controller `.
From each it takes the command lines (backslash continuations joined, the
insides of `$(...)` as commands of their own, pipelines and `&&`/`;`
lists split, `sudo`/`runuser -u USER --` and `VAR=value` prefixes
dropped). Placeholders the docs use (NETWORK-ID, FILE, "$NET", ...) are
replaced by sample values of the right shape, and synopsis brackets
(`[--json]`, `human|json`) are tried both ways. Each line is then given to
`BIN generate-assets --check -- ARGS...`, which parses it with the
binary's own clap definitions and runs nothing. A line that does not parse
fails the check, except that an inline span naming a command without its
required arguments (`warren join` in a sentence) passes if the command and
every flag it shows exist (checked by parsing it with `--help` added).

With `--trace FILE` it also checks that every command the docs show was
run by the test suites. The binaries append each command line they are
started with to the file named by `WARREN_CLI_TRACE` (`scripts/test` sets
it to target/cli-trace.txt); a documented command (`warren routes
advertise`, whatever its flags) that no traced line names fails the check.
"""

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

PROGRAMS = ("warren", "warren-controller")

# Sample values, by placeholder word (the docs write placeholders in
# capitals) and by shell variable name.
SAMPLES = {
    "NETWORK-ID": "0123456789abcdef",
    "NETID": "0123456789abcdef",
    "NET": "0123456789abcdef",
    "NETWORK": "0123456789abcdef",
    "NODE-ID": "0123456789",
    "NODE": "0123456789",
    "NODEID": "0123456789",
    "FINGERPRINT": "ab" * 32,
    "FP": "ab" * 32,
    "PRE-AUTH-KEY": "wk_example",
    "KEY": "wk_example",
    "PREAUTH_KEY": "wk_example",
    "KEYID": "1",
    "KEY-ID": "1",
    "FILE": "/tmp/warren-doc-example",
    "DIR": "/tmp/warren-doc-example",
    "PATH": "/tmp/warren-doc-example",
    "TOKEN": "wt_example",
    "WARREN_TOKEN": "wt_example",
    "URL": "http://127.0.0.1:7480",
    "ADDR": "127.0.0.1:7443",
    "ADDRS": "127.0.0.1:3478",
    "BYTES": "2097152",
    "N": "10",
    "TIME": "2026-01-01T00:00:00Z",
    "NAME": "example",
    "NEWNAME": "example-2",
    "PEER": "laptop-b",
    "CIDR": "10.0.0.0/24",
    "FILTER": "info",
    "HOST:PORT": "server.example:7443",
    "PORT": "8080",
    "NAMES": "warren.example.org",
    "ID": "0123456789abcdef",
    "PREFIX": "10.96.0.0/12",
}

SHELL_LANGS = {"sh", "bash", "shell", "console", "shell-session"}
OPERATORS = {"|", "||", "&&", ";", "&", "(", ")", "|&"}
REDIRECTS = {">", ">>", "<", "2>", "2>>", "&>", "<<", ">&", "<&"}


def sample_for_variable(name):
    name = name.upper()
    if name in SAMPLES:
        return SAMPLES[name]
    for key, value in (("FINGERPRINT", SAMPLES["FP"]), ("FP", SAMPLES["FP"]),
                       ("NODE", SAMPLES["NODE"]), ("NET", SAMPLES["NET"]),
                       ("TOKEN", SAMPLES["TOKEN"]), ("KEY", SAMPLES["KEY"])):
        if key in name:
            return value
    return "example"


def substitutions(line):
    """Splits `$(...)` out of a line: (line with each replaced by a
    marker, [inner command lines])."""
    inner = []
    out = []
    i = 0
    while i < len(line):
        if line.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(line) and depth:
                if line[j] == "(":
                    depth += 1
                elif line[j] == ")":
                    depth -= 1
                j += 1
            body = line[i + 2:j - 1]
            rest, more = substitutions(body)
            inner.append(rest)
            inner.extend(more)
            out.append("SUBSTITUTED")
            i = j
        else:
            out.append(line[i])
            i += 1
    return "".join(out), inner


def split_commands(line):
    """Tokenizes one shell line into simple commands (lists of words)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:
        return []
    commands, current, skip_next = [], [], False
    for token in tokens:
        if skip_next:
            skip_next = False
            continue
        if token in OPERATORS:
            if current:
                commands.append(current)
            current = []
        elif token in REDIRECTS or re.fullmatch(r"\d?[<>]+&?\d*", token):
            skip_next = not re.fullmatch(r".*&\d", token)
        else:
            current.append(token)
    if current:
        commands.append(current)
    return commands


def strip_prefixes(words):
    """Drops `sudo [-u USER]`, `runuser -u USER --`, `env`, `exec`,
    `export` and `VAR=value` prefixes."""
    while words:
        w = words[0]
        if w == "sudo":
            words = words[1:]
            while words and words[0].startswith("-"):
                flag = words[0]
                words = words[1:]
                if flag in ("-u", "-g") and words:
                    words = words[1:]
        elif w == "runuser":
            words = words[1:]
            while words and words[0] != "--" and words[0].startswith("-"):
                flag = words[0]
                words = words[1:]
                if flag in ("-u", "-g") and words:
                    words = words[1:]
            if words and words[0] == "--":
                words = words[1:]
        elif w in ("env", "exec", "export", "time", "nohup"):
            words = words[1:]
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w):
            words = words[1:]
        else:
            break
    return words


def fill(word):
    """Replaces shell variables and placeholder words by sample values."""
    word = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                  lambda m: sample_for_variable(m.group(1)), word)
    if word == "SUBSTITUTED":
        return "example"
    if word in SAMPLES:
        return SAMPLES[word]
    # FLAG=VALUE with a placeholder value: --config=FILE
    if "=" in word and word.startswith("--"):
        flag, value = word.split("=", 1)
        return f"{flag}={fill(value)}"
    return word.replace("…", "")


def synopsis_variants(text):
    """A synopsis such as `warren status [--json]` or `--scope
    admin|auditor` as command lines: without the optional parts, and with
    all of them, taking the first of each `a|b`."""
    if "[" not in text and not re.search(r"\w\|\w", text):
        return [text]
    without = re.sub(r"\s*\[[^\[\]]*\]", "", text)
    with_all = re.sub(r"\[([^\[\]]*)\]", r"\1", text)
    variants = []
    for v in (without, with_all):
        v = re.sub(r"(\S+?)\|\S+", r"\1", v).replace("...", "").replace("…", "")
        if v not in variants:
            variants.append(v)
    return variants


def command_lines(path):
    """Yields (line number, text, inline) for each command line in a
    Markdown file; inline is true for code spans in prose."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    in_block, lang, pending, pending_line = False, "", "", 0
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        fence = re.match(r"^(`{3,}|~{3,})\s*([\w-]*)", stripped)
        if fence:
            if not in_block:
                in_block, lang = True, fence.group(2).lower()
            else:
                in_block = False
            continue
        if in_block:
            if lang not in SHELL_LANGS:
                continue
            line = raw.rstrip()
            if lang in ("console", "shell-session"):
                if not re.match(r"^\s*[$#] ", line):
                    continue
                line = re.sub(r"^\s*[$#] ", "", line)
            if not pending:
                pending_line = number
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            for variant in synopsis_variants(pending + line):
                yield pending_line, variant, False
            pending = ""
            continue
        for span in re.findall(r"`([^`]+)`", raw):
            if span.split(" ", 1)[0] in PROGRAMS and " " in span:
                for variant in synopsis_variants(span):
                    yield number, variant, True


def commands_in(path):
    for number, line, inline in command_lines(path):
        outer, inner = substitutions(line)
        for candidate in [outer] + inner:
            for words in split_commands(candidate):
                words = strip_prefixes(words)
                if words and words[0].rsplit("/", 1)[-1] not in PROGRAMS and "--" in words:
                    # `kubectl exec POD -- warren status`, `ip netns exec NS warren ...`
                    words = strip_prefixes(words[words.index("--") + 1:])
                if not words:
                    continue
                program = words[0].rsplit("/", 1)[-1]
                if program in PROGRAMS:
                    yield number, program, [fill(w) for w in words[1:]], inline


def check(binary, argv):
    return subprocess.run([binary, "generate-assets", "--check", "--", *argv],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warren", required=True)
    parser.add_argument("--controller", required=True)
    parser.add_argument("--trace", type=Path,
                        help="command lines the test suites ran (WARREN_CLI_TRACE)")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    binaries = {"warren": args.warren, "warren-controller": args.controller}
    passed, failed, seen = 0, 0, set()
    documented = {}  # command path -> where the docs first show it
    for path in args.files:
        for number, program, argv, inline in commands_in(path):
            key = (program, tuple(argv))
            if key in seen:
                continue
            seen.add(key)
            result = check(binaries[program], argv)
            if result.returncode != 0 and inline:
                # Prose names a command (`warren join`) without its
                # arguments: the command and any flags given must exist.
                result = check(binaries[program], argv + ["--help"])
            if result.returncode == 0:
                passed += 1
                documented.setdefault(command_path(result), f"{path}:{number}")
            else:
                failed += 1
                print(f"{path}:{number}: {program} {' '.join(argv)}", file=sys.stderr)
                print("    " + result.stderr.strip().replace("\n", "\n    "), file=sys.stderr)
    print(f"doc commands: {passed} passed, {failed} failed")
    if args.trace:
        ran = traced_commands(args.trace, binaries)
        # A group (`warren routes`) counts as run when one of its commands was.
        missing = sorted(c for c in documented
                         if not any(r == c or r.startswith(c + " ") for r in ran))
        for command in missing:
            print(f"{documented[command]}: `{command}` is documented but no test runs it",
                  file=sys.stderr)
        print(f"doc commands run by the tests: {len(documented) - len(missing)} of "
              f"{len(documented)} ({len(ran)} commands in the trace)")
        failed += len(missing)
    return 1 if failed else 0


def command_path(result):
    """"ok: warren routes advertise" -> "warren routes advertise"."""
    return result.stdout.strip().splitlines()[-1].removeprefix("ok: ")


def traced_commands(trace, binaries):
    """The commands (as command paths) in a WARREN_CLI_TRACE file."""
    lines = set(trace.read_text(encoding="utf-8", errors="replace").splitlines())
    ran = set()
    for line in lines:
        words = line.split("\t")
        program = words[0].rsplit("/", 1)[-1]
        if program not in binaries or words[1:3] == ["generate-assets", "--check"]:
            continue
        result = check(binaries[program], words[1:])
        if result.returncode == 0:
            ran.add(command_path(result))
    return ran


if __name__ == "__main__":
    sys.exit(main())
