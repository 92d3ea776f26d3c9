#!/usr/bin/env python3
"""`twoostwo validate` on the corpus of broken topology files, as a user runs it.

broken_corpus_test.cpp checks the loader's diagnostics; this checks what the
command prints and returns: for each broken/NAME.yaml, run from the corpus
directory, exactly the lines of NAME.expected on standard output and exit
status 2; every file of examples/ reports "ok" with status 0; several files
at once are all reported, in order, and the status is 2 if any is broken; a
missing file is an error, not a crash. In NAME.expected, {dir} stands for the
corpus directory and {guest} for the guest image directory, which here holds
the i386 image only (so x86_64 is a missing image), as in the unit test.

Usage: check_cli_validate.py TWOOSTWO SOURCE_DIR
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    cli, source = Path(sys.argv[1]), Path(sys.argv[2])
    broken = source / "tests/topology/broken"
    failures = []

    with tempfile.TemporaryDirectory() as tmp:
        guest = Path(tmp) / "guest"
        (guest / "i386").mkdir(parents=True)
        for name in ("vmlinuz", "initrd.cpio"):
            (guest / "i386" / name).write_bytes(b"")
        env = dict(os.environ, TWOOSTWO_GUEST_DIR=str(guest))

        def validate(args, cwd):
            r = subprocess.run([str(cli), "validate", *args], cwd=cwd, env=env, capture_output=True, text=True,
                               timeout=60)
            return r.returncode, r.stdout, r.stderr

        def expected_of(name):
            text = (broken / f"{name}.expected").read_text()
            return text.replace("{dir}", str(broken)).replace("{guest}", str(guest))

        names = sorted(p.stem for p in broken.glob("*.yaml"))
        if not names:
            failures.append(f"no broken files in {broken}")
        for name in names:
            status, out, err = validate([f"{name}.yaml"], broken)
            if status != 2:
                failures.append(f"{name}.yaml: exit status {status}, expected 2\n{out}{err}")
            want = expected_of(name)
            if out != want:
                failures.append(f"{name}.yaml: output differs\n--- expected\n{want}--- printed\n{out}{err}")

        # All at once: each file's report in the order given, status 2.
        status, out, _ = validate([f"{n}.yaml" for n in names], broken)
        if status != 2 or out != "".join(expected_of(n) for n in names):
            failures.append(f"all {len(names)} files at once: status {status}, output not the concatenation")

        examples = sorted((source / "examples").glob("*.yaml"))
        if not examples:
            failures.append("no examples found")
        for example in examples:
            status, out, err = validate([str(example)], source)
            if status != 0 or not out.startswith(f"{example}: ok: lab '"):
                failures.append(f"{example.name}: status {status}\n{out}{err}")

        # A good file and a broken one: the good one still reports ok.
        if examples and names:
            status, out, _ = validate([str(examples[0]), f"{names[0]}.yaml"], broken)
            if status != 2 or not out.startswith(f"{examples[0]}: ok"):
                failures.append(f"good then broken: status {status}\n{out}")

        status, out, err = validate(["no-such-lab.yaml"], tmp)
        if status != 2 or out != "no-such-lab.yaml: cannot read: No such file or directory\n":
            failures.append(f"missing file: status {status}\n{out}{err}")

    for f in failures:
        print(f"FAIL: {f}")
    print(f"{len(names)} broken files and {len(examples)} examples through `twoostwo validate`: "
          f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
