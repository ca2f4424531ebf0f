"""shell_writes: the files a shell command writes, read from its text, hostile text included."""

from __future__ import annotations

import time

import pytest

from aether_cli.shell_writes import (
    MAX_COMMAND_CHARS,
    MAX_TARGETS,
    command_text,
    simple_commands,
    tokens,
    written_paths,
)


@pytest.mark.parametrize(
    ("command", "written"),
    [
        # redirections
        ("echo hi > out.txt", ["out.txt"]),
        ("echo hi >> log.txt", ["log.txt"]),
        ("echo hi>out.txt", ["out.txt"]),
        ("make 2> err.log", ["err.log"]),
        ("make &> all.log", ["all.log"]),
        ("make &>> all.log", ["all.log"]),
        ("make >| clobber.txt", ["clobber.txt"]),
        ("make >& both.log", ["both.log"]),
        ("cat a.txt b.txt > 'my file.txt'", ["my file.txt"]),
        ('printf "%s" x > "dir with space/f.txt"', ["dir with space/f.txt"]),
        ("echo a > one; echo b > two && echo c >> three || echo d > four", ["one", "two", "three", "four"]),
        ("echo x\necho y > second_line.txt", ["second_line.txt"]),
        ("(cd sub && echo x > in_sub.txt)", ["in_sub.txt"]),
        # writers
        ("pytest 2>&1 | tee out.log", ["out.log"]),
        ("echo x | tee -a a.log b.log", ["a.log", "b.log"]),
        ("echo x | tee -", []),
        ("sed -i 's/a/b/' src/a.py src/b.py", ["src/a.py", "src/b.py"]),
        ("sed -i.bak -e 's/a/b/' -e 's/c/d/' conf.ini", ["conf.ini"]),
        ("sed --in-place=.orig 's/a/b/' x.cfg", ["x.cfg"]),
        ("sed -ni 's/a/b/p' y.cfg", ["y.cfg"]),
        ("sed -i '' 's/a/b/' bsd.txt", ["bsd.txt"]),
        ("sed -n 's/a/b/p' read_only.txt", []),
        ("sed 's/a/b/' in.txt > out.txt", ["out.txt"]),
        ("perl -pi -e 's/a/b/' p.txt", ["p.txt"]),
        ("perl -i.bak -pe 's/a/b/' q.txt", ["q.txt"]),
        ("perl -ne 'print' r.txt", []),
        ("cp a.txt b.txt", ["b.txt"]),
        ("cp -r src/ dest/", ["dest/"]),
        ("cp -t target_dir a b", ["target_dir"]),
        ("cp --target-directory=tdir a b", ["tdir"]),
        ("mv old.py new.py", ["new.py"]),
        ("mv a b c into/", ["into/"]),
        ("mv -- -weird.txt plain.txt", ["plain.txt"]),
        ("cp only_one_arg", []),
        ("install -m 644 build/app /opt/app", ["/opt/app"]),
        ("touch -d yesterday t1 t2", ["t1", "t2"]),
        ("dd if=/dev/zero of=disk.img bs=1M count=1", ["disk.img"]),
        # wrappers, assignments and shells
        ("sudo tee /etc/hosts < hosts", ["/etc/hosts"]),
        ("FOO=1 BAR=2 cp a b", ["b"]),
        ("env -i PATH=/bin cp a b", ["b"]),
        ("timeout 10 cp a c", ["c"]),
        ("/bin/bash -lc 'echo hi > notes.txt'", ["notes.txt"]),
        ("bash -c \"sh -c 'cp x nested.txt'\"", ["nested.txt"]),
        ("/usr/bin/cp a abs_target", ["abs_target"]),
        # heredocs: the body is data
        ("cat > script.py <<'EOF'\nprint('a > b')\nopen('x','w') > 1\nEOF", ["script.py"]),
        ("cat <<EOF > after.txt\nline > not_a_file\nEOF\necho done > done.txt", ["after.txt", "done.txt"]),
        ("cat <<-END >> tabbed.txt\n\tx > nope\n\tEND", ["tabbed.txt"]),
        ("echo $((1<<2)) > shifted.txt", ["shifted.txt"]),
        # not writes
        ("cat a.txt | grep x", []),
        ("ls > /dev/null", []),
        ("make 2>/dev/null >/dev/stderr", []),
        ("cmd >&2", []),
        ("cmd 2>&1", []),
        ("cmd 2>&-", []),
        ("echo 'a > b'", []),
        ('echo "x >> y" and "z > w"', []),
        ("echo a\\>b", []),
        ("cmd > $OUT", []),
        ('cmd > "$HOME/x"', []),
        ("cmd > `mktemp`", []),
        ("grep -r foo . # > commented.txt", []),
        ("echo '#' > hash.txt", ["hash.txt"]),
        ("echo a#b > c", ["c"]),
        ("wc -l < input.txt", []),
        ("cat <<< 'here > string'", []),
        ("", []),
    ],
)
def test_every_write_form(command: str, written: list[str]) -> None:
    assert written_paths(command) == written


@pytest.mark.parametrize(
    "command",
    [
        'echo "unbalanced > a.txt',
        "echo 'never closed > b.txt",
        "echo \\",
        "'''",
        '"',
        ">",
        ">>",
        "| | ;; && >",
        "cat <<EOF",
        "cat <<EOF\nno end",
        "bash -c",
        "sed -i",
        "cp",
        "tee",
        "\x00\x01 > \x02",
        "echo \udcff > bad_unicode",
    ],
)
def test_hostile_text_never_raises(command: str) -> None:
    assert isinstance(written_paths(command), list)


def test_a_bad_line_costs_only_itself() -> None:
    cmd = 'echo "unbalanced > lost.txt\necho fine > kept.txt\necho \'also bad > x'
    assert written_paths(cmd) == ["kept.txt"]


def test_huge_commands_are_bounded() -> None:
    big = "echo " + "x" * (5 * MAX_COMMAND_CHARS) + " > far.txt"
    start = time.perf_counter()
    assert written_paths(big) == []  # the target is past the part that is read
    assert written_paths("echo hi > near.txt; " + "x " * 500_000) == ["near.txt"]
    many = "; ".join(f"echo > f{i}" for i in range(10_000))
    assert len(written_paths(many)) == MAX_TARGETS
    assert len(tokens("a " * 1_000_000)) <= 20_000
    deep = "bash -c " * 50 + "'echo > deep.txt'"
    assert isinstance(written_paths(deep), list)
    assert time.perf_counter() - start < 5


def test_simple_commands_strip_wrappers_and_follow_shells() -> None:
    cmds = simple_commands("cd x && sudo -E env A=1 pytest -q 2>&1 | tail -5")
    assert [argv for argv, _ in cmds] == [["cd", "x"], ["pytest", "-q"], ["tail", "-5"]]
    cmds = simple_commands("/bin/bash -lc 'npm test > log'")
    assert cmds[-1] == (["npm", "test"], ["log"])


def test_command_text() -> None:
    assert command_text("ls -la") == "ls -la"
    assert command_text(["bash", "-lc", "echo 'a b' > c"]) == "bash -lc 'echo '\"'\"'a b'\"'\"' > c'"
    assert written_paths(command_text(["bash", "-lc", "echo hi > c.txt"]) or "") == ["c.txt"]
    assert command_text(None) is None
    assert command_text(["ls", 3]) is None
    assert command_text([]) is None
