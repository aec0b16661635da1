"""candidate_files: the walk's order (by relative path parts, a directory's subtree at its name's place),
resuming after a position without looking at what comes before it, and the confinement rules."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from bayou.intake import folders
from bayou.intake.folders import candidate_files
from extractor.errors import InputError

# in walk order: a directory's subtree sits at its name's place among its siblings ("b" between "a.png"
# and "c.png", "b/x" before "b.png"), where os.walk would list a directory's files first
FILES = ["a.png", "b/x.png", "b/y/z.png", "b.png", "c.png", "d/e/f.png", "d/g.png"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    folder = tmp_path / "scans"
    for relative in FILES:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(relative.encode())
    (folder / ".partial.png").write_bytes(b"hidden")
    (folder / "b" / ".hidden").mkdir()
    (folder / "b" / ".hidden" / "inside.png").write_bytes(b"hidden dir")
    return folder


def _relative(folder: Path, **kwargs: object) -> list[str]:
    return [candidate.relative for candidate in candidate_files(folder, folder, **kwargs)]


def test_files_come_in_the_order_of_their_path_parts(tree: Path) -> None:
    candidates = list(candidate_files(tree, tree, recursive=True))

    assert [candidate.relative for candidate in candidates] == FILES
    assert sorted(FILES, key=lambda relative: relative.split("/")) == FILES
    assert [candidate.path for candidate in candidates] == [(tree / relative).resolve() for relative in FILES]
    assert _relative(tree, recursive=False) == ["a.png", "b.png", "c.png"]


@pytest.mark.parametrize("position", range(len(FILES)))
def test_after_a_file_the_walk_goes_on_with_the_next(tree: Path, position: int) -> None:
    assert _relative(tree, recursive=True, after=FILES[position]) == FILES[position + 1 :]


def test_after_a_position_that_is_gone_the_walk_goes_on_from_its_place(tree: Path) -> None:
    assert _relative(tree, recursive=True, after="b/w.png") == FILES[1:]
    assert _relative(tree, recursive=True, after="b/y") == FILES[2:]  # a file then, a directory now
    assert _relative(tree, recursive=True, after="c.png/old.png") == FILES[5:]  # a directory then
    assert _relative(tree, recursive=True, after="zzz") == []
    assert _relative(tree, recursive=False, after="b/x.png") == ["b.png", "c.png"]


def test_what_comes_before_the_position_is_neither_listed_nor_resolved(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed: list[str] = []
    resolved: list[str] = []
    real_scandir, real_resolve = os.scandir, Path.resolve

    def scandir(path: Path) -> object:
        listed.append(Path(path).relative_to(tree).as_posix())
        return real_scandir(path)

    def resolve(path: Path, strict: bool = False) -> Path:
        if path != tree:
            resolved.append(path.relative_to(tree).as_posix())
        return real_resolve(path, strict)

    monkeypatch.setattr(folders.os, "scandir", scandir)
    monkeypatch.setattr(Path, "resolve", resolve)

    assert _relative(tree, recursive=True, after="d/e/f.png") == ["d/g.png"]
    # the subtrees of "b" and "d/e" sort before or at the position: only the path to it is listed
    assert listed == [".", "d", "d/e"]
    assert resolved == ["d/g.png"]


def test_links_leading_outside_or_to_directories_are_not_followed(linked_folder: Path) -> None:
    folder = linked_folder
    (folder / "inner").mkdir()
    (folder / "inner-link").symlink_to(folder / "inner", target_is_directory=True)
    (folder / "inner" / "deep.png").write_bytes(b"d")

    candidates = list(candidate_files(folder, folder, recursive=True))

    # a link to a file inside is taken as the file it leads to, under its own name (its place in the walk)
    assert [(c.relative, c.path) for c in candidates] == [
        ("alias.png", (folder / "own.png").resolve()),
        ("inner/deep.png", (folder / "inner" / "deep.png").resolve()),
        ("own.png", (folder / "own.png").resolve()),
    ]


def _skipped(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == folders.__name__]


def test_a_symlink_loop_is_skipped_and_the_walk_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        (folder / name).write_bytes(name.encode())
    # b1 -> b2 -> b1: resolving either raises (RuntimeError "Symlink loop from '/…'" on Python 3.11)
    (folder / "b1.png").symlink_to(folder / "b2.png")
    (folder / "b2.png").symlink_to(folder / "b1.png")

    with caplog.at_level(logging.INFO, logger=folders.__name__):
        assert _relative(folder, recursive=True) == ["a.png", "c.png"]

    # said, but without the path (a file name can be personal)
    assert len(_skipped(caplog)) == 2
    assert all(str(tmp_path) not in record.getMessage() for record in caplog.records)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 directory anyway")
def test_a_link_into_an_unreadable_directory_is_skipped(tmp_path: Path) -> None:
    folder, locked = tmp_path / "scans", tmp_path / "scans" / "locked"
    locked.mkdir(parents=True)
    (locked / "inside.png").write_bytes(b"i")
    (folder / "a.png").write_bytes(b"a")
    (folder / "link.png").symlink_to(locked / "inside.png")
    (folder / "z.png").write_bytes(b"z")
    locked.chmod(0)
    try:
        # "locked" itself is listed as nothing (unreadable); the link to a file in it cannot be looked at
        assert _relative(folder, recursive=True) == ["a.png", "z.png"]
    finally:
        locked.chmod(0o755)


def test_a_file_that_cannot_be_looked_at_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # as above, whoever runs the tests: looking at the link's target raises PermissionError (with the path)
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("a.png", "link.png", "z.png"):
        (folder / name).write_bytes(name.encode())
    real_lstat = os.lstat

    def lstat(path: str | Path, *args: object, **kwargs: object) -> os.stat_result:
        if Path(path).name == "link.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(folders.os, "lstat", lstat)
    with caplog.at_level(logging.INFO, logger=folders.__name__):
        assert _relative(folder, recursive=True) == ["a.png", "z.png"]
    assert len(_skipped(caplog)) == 1 and "link.png" not in caplog.text


def test_a_name_that_is_not_utf8_is_walked_and_resumed_after(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.png")  # "caf\udce9.png": a surrogate escape
    for file_name in ("a.png", name, "z.png"):
        (folder / file_name).write_bytes(b"x")

    assert _relative(folder, recursive=False) == ["a.png", name, "z.png"]
    assert _relative(folder, recursive=False, after=name) == ["z.png"]


def test_a_folder_that_is_a_symlink_loop_is_an_invalid_folder(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")

    with pytest.raises(InputError) as refused:
        folders.resolve_folder(tmp_path, "loop")
    assert refused.value.code == "invalid_folder" and str(tmp_path) not in str(refused.value)


def test_a_fifo_is_a_candidate_to_be_refused_and_each_candidate_carries_what_was_checked(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"a")
    os.mkfifo(folder / "b.pipe")

    candidates = list(candidate_files(folder, folder, recursive=True))

    assert [candidate.relative for candidate in candidates] == ["a.png", "b.pipe"]
    for candidate in candidates:
        status = os.lstat(candidate.path)
        assert candidate.identity == (status.st_dev, status.st_ino)
